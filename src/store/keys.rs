//! API key rows. Only a SHA-256 of each secret is stored; see [`crate::auth`] for the key format.

use super::{get, now_ms, Result, Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;

/// An API key as stored (no secret).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: String,
    /// Comma-separated scopes, e.g. `verify,enrol`.
    pub scopes: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

fn key(r: &AnyRow) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: get(r, "id")?,
        name: get(r, "name")?,
        secret_hash: get(r, "secret_hash")?,
        scopes: get(r, "scopes")?,
        created_at: get(r, "created_at")?,
        revoked_at: get(r, "revoked_at")?,
    })
}

const COLS: &str = "id, name, secret_hash, scopes, created_at, revoked_at";

impl Store {
    pub async fn insert_key(&self, id: &str, name: &str, secret_hash: &str, scopes: &str) -> Result<ApiKeyRecord> {
        let created_at = now_ms();
        sqlx::query("INSERT INTO api_keys (id, name, secret_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(name)
            .bind(secret_hash)
            .bind(scopes)
            .bind(created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::conflict_or(e, "api key", id))?;
        Ok(ApiKeyRecord {
            id: id.into(),
            name: name.into(),
            secret_hash: secret_hash.into(),
            scopes: scopes.into(),
            created_at,
            revoked_at: None,
        })
    }

    /// An active (not revoked) key by id.
    pub async fn active_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {COLS} FROM api_keys WHERE id = $1 AND revoked_at IS NULL");
        sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.as_ref().map(key).transpose()
    }

    pub async fn keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let sql = format!("SELECT {COLS} FROM api_keys ORDER BY created_at, id");
        sqlx::query(&sql).fetch_all(&self.pool).await?.iter().map(key).collect()
    }

    /// Whether any key is active (if none, the service runs open, on loopback only).
    /// Whether any key was ever created (revoked ones count: a server never falls back to open mode).
    pub async fn any_key(&self) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys").fetch_one(&self.pool).await?;
        Ok(get::<i64>(&row, "n")? > 0)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<()> {
        let r = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound { kind: "api key", name: id.into() });
        }
        Ok(())
    }
}
