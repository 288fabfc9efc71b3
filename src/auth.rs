//! API keys and scopes (no HTTP here; the API layer reads the header and calls [`Auth::check`]).
//!
//! A key reads `sk_<id>_<secret>`: `id` (16 hex) finds the row, `secret` (64 hex, 256 random bits) is checked
//! against the stored SHA-256. A fast hash is enough because the secret is random, not a password.
//!
//! Scopes: `verify` (verify, embed, subject verify, identify), `enrol` (manage and read subjects and samples),
//! `admin` (collections, keys; implies the other two). While no key is active the service is open — the
//! server then refuses to bind anything but loopback.

use crate::store::{ApiKeyRecord, Store, StoreError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Verify,
    Enrol,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Verify => "verify",
            Scope::Enrol => "enrol",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s.trim() {
            "verify" => Ok(Scope::Verify),
            "enrol" | "enroll" => Ok(Scope::Enrol),
            "admin" => Ok(Scope::Admin),
            other => Err(AuthError::BadScope(other.to_string())),
        }
    }
}

/// Parse `verify,enrol` into scopes (at least one, no unknown names).
pub fn parse_scopes(s: &str) -> Result<Vec<Scope>, AuthError> {
    let mut out: Vec<Scope> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let sc: Scope = part.parse()?;
        if !out.contains(&sc) {
            out.push(sc);
        }
    }
    if out.is_empty() {
        return Err(AuthError::BadScope(s.to_string()));
    }
    Ok(out)
}

fn join_scopes(s: &[Scope]) -> String {
    s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(",")
}

/// Errors of the auth layer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("an API key is required (header `x-api-key` or `Authorization: Bearer`)")]
    Missing,
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key lacks the '{0}' scope")]
    Forbidden(Scope),
    #[error("too many failed API keys from this client; retry in {0} s")]
    TooManyFailures(u64),
    #[error("unknown scope '{0}' (use verify, enrol, admin)")]
    BadScope(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key as shown once, at creation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The full key; it cannot be shown again.
    pub key: String,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Key management and checks over a [`Store`].
///
/// Checks are cheap under a flood: a key verified in the last [`KEY_CACHE_TTL`] is checked in memory (a key
/// revoked through this process stops at once; through another replica, within the TTL), "keys enforced" is
/// remembered once true (it never goes back), and a client whose last [`FAILURES_ALLOWED`] keys failed within
/// [`FAILURE_WINDOW`] is refused without asking the database until the window ends.
#[derive(Clone, Debug)]
pub struct Auth {
    store: Store,
    enforced: Arc<AtomicBool>,
    cache: Arc<Mutex<Cache>>,
}

/// How long a verified key is trusted without the database.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Failed keys a client may present within [`FAILURE_WINDOW`].
pub const FAILURES_ALLOWED: u32 = 20;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Default)]
struct Cache {
    /// Key id → (secret hash, scopes, verified at).
    keys: HashMap<String, (String, Vec<Scope>, Instant)>,
    /// Client → (failures, first failure of the window).
    failures: HashMap<IpAddr, (u32, Instant)>,
}

impl Auth {
    pub fn new(store: Store) -> Self {
        Auth { store, enforced: Arc::default(), cache: Arc::default() }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds until `client` may try again, when it has failed too often.
    fn blocked(&self, client: Option<IpAddr>) -> Option<u64> {
        let c = self.cache();
        let (n, since) = c.failures.get(&client?)?;
        let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
        (*n >= FAILURES_ALLOWED).then(|| left.as_secs().max(1))
    }

    fn failed(&self, client: Option<IpAddr>) {
        let Some(ip) = client else { return };
        let mut c = self.cache();
        if c.failures.len() >= SWEEP_AT {
            c.failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let e = c.failures.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= FAILURE_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    pub async fn create_key(&self, name: &str, scopes: &[Scope]) -> Result<CreatedKey, AuthError> {
        use rand::RngCore;
        if scopes.is_empty() {
            return Err(AuthError::BadScope(String::new()));
        }
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        rand::thread_rng().fill_bytes(&mut secret);
        let (id, secret) = (hex::encode(id), hex::encode(secret));
        self.store.insert_key(&id, name, &sha256_hex(&secret), &join_scopes(scopes)).await?;
        Ok(CreatedKey { key: format!("sk_{id}_{secret}"), id, name: name.into(), scopes: scopes.to_vec() })
    }

    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>, AuthError> {
        Ok(self.store.keys().await?)
    }

    pub async fn revoke(&self, id: &str) -> Result<(), AuthError> {
        self.cache().keys.remove(id);
        self.store.revoke_key(id).await?;
        self.cache().keys.remove(id);
        Ok(())
    }

    /// Whether keys are enforced: once a key has existed, always (revoking the last key locks the service
    /// instead of opening it; create a new key with the CLI).
    pub async fn enforced(&self) -> Result<bool, AuthError> {
        if self.enforced.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let any = self.store.any_key().await?;
        if any {
            self.enforced.store(true, Ordering::Relaxed);
        }
        Ok(any)
    }

    /// Check a presented key (or its absence) for `needed`, on behalf of `client` (failed keys are counted
    /// per client). Returns the key's scopes, or `None` in open mode.
    pub async fn check(
        &self,
        client: Option<IpAddr>,
        presented: Option<&str>,
        needed: Scope,
    ) -> Result<Option<Vec<Scope>>, AuthError> {
        let Some(k) = presented else {
            return if self.enforced().await? { Err(AuthError::Missing) } else { Ok(None) };
        };
        let parsed = k.trim().strip_prefix("sk_").and_then(|rest| rest.split_once('_'));
        let hash = parsed.map(|(_, secret)| sha256_hex(secret));
        let cached = match (parsed, &hash) {
            (Some((id, _)), Some(hash)) => self.cache().keys.get(id).and_then(|(h, scopes, at)| {
                (at.elapsed() < KEY_CACHE_TTL && constant_time_eq(hash.as_bytes(), h.as_bytes()))
                    .then(|| scopes.clone())
            }),
            _ => None,
        };
        let scopes = match cached {
            Some(scopes) => scopes,
            None => {
                if let Some(secs) = self.blocked(client) {
                    return Err(AuthError::TooManyFailures(secs));
                }
                let (Some((id, _)), Some(hash)) = (parsed, hash) else {
                    self.failed(client);
                    return Err(AuthError::Invalid);
                };
                let rec = match self.store.active_key(id).await? {
                    Some(rec) if constant_time_eq(hash.as_bytes(), rec.secret_hash.as_bytes()) => rec,
                    _ => {
                        self.failed(client);
                        return Err(AuthError::Invalid);
                    }
                };
                let scopes = parse_scopes(&rec.scopes).unwrap_or_default();
                let mut c = self.cache();
                if c.keys.len() >= SWEEP_AT {
                    c.keys.retain(|_, (_, _, at)| at.elapsed() < KEY_CACHE_TTL);
                }
                c.keys.insert(id.to_string(), (hash, scopes.clone(), Instant::now()));
                scopes
            }
        };
        if scopes.contains(&Scope::Admin) || scopes.contains(&needed) {
            Ok(Some(scopes))
        } else {
            Err(AuthError::Forbidden(needed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_reject_unknown_names() {
        assert_eq!(parse_scopes("verify, enrol,verify").unwrap(), vec![Scope::Verify, Scope::Enrol]);
        assert!(parse_scopes("root").is_err());
        assert!(parse_scopes("").is_err());
    }
}
