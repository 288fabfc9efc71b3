//! The API-key gate: which scope each route needs, read from the method and path, checked before the
//! handler runs. Operational routes (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/docs`) are open.

use super::error::ApiError;
use super::AppState;
use crate::auth::Scope;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The scope a request needs, or `None` for an open route. Every `/v1` route is listed; anything else
/// under `/v1` needs `admin` (deny by default: a new route never gets a weak scope by accident).
pub fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.first() != Some(&"v1") {
        return None;
    }
    let read = method == Method::GET || method == Method::HEAD;
    Some(match segs.as_slice() {
        ["v1", "verify"] | ["v1", "embed"] | ["v1", "models"] => Scope::Verify,
        ["v1", "models", _, "versions"] if read => Scope::Verify,
        ["v1", "collections"] | ["v1", "collections", _] if read => Scope::Verify,
        ["v1", "collections", _, "identify"]
        | ["v1", "collections", _, "anomaly"]
        | ["v1", "collections", _, "subjects", _, "verify"] => Scope::Verify,
        ["v1", "collections", _, "audit"] if read => Scope::Enrol,
        ["v1", "collections", _, "subjects"]
        | ["v1", "collections", _, "subjects", _]
        | ["v1", "collections", _, "subjects", _, "samples"]
        | ["v1", "collections", _, "subjects", _, "samples", _]
        | ["v1", "collections", _, "subjects", _, "samples", _, "image"] => Scope::Enrol,
        // Collections (create, erase), keys, jobs, activation, and any route not listed above.
        _ => Scope::Admin,
    })
}

fn presented_key(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Some(k) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_string());
    }
    // The scheme is case-insensitive (RFC 9110 §11.1).
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim().to_string())
}

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(scope) = required_scope(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let key = presented_key(&req);
    let client = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    match state.auth.check(client, key.as_deref(), scope).await {
        Ok(scopes) => {
            let mut req = req;
            req.extensions_mut().insert(Caller { scopes });
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Who is calling, as the key gate found out (a request extension on every gated route).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The key's scopes; `None` in open mode (no key was ever created).
    pub scopes: Option<Vec<Scope>>,
}

impl Caller {
    /// Whether the caller holds `scope` (`admin` holds every scope; open mode holds all).
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.as_ref().is_none_or(|s| s.contains(&Scope::Admin) || s.contains(&scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_scope_and_unknown_routes_need_admin() {
        let s = |m: Method, p: &str| required_scope(&m, p);
        let (g, p, d, pa) = (Method::GET, Method::POST, Method::DELETE, Method::PATCH);
        for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/"] {
            assert_eq!(s(g.clone(), path), None, "{path}");
        }
        let table = [
            (p.clone(), "/v1/verify", Scope::Verify),
            (p.clone(), "/v1/embed", Scope::Verify),
            (g.clone(), "/v1/models", Scope::Verify),
            (g.clone(), "/v1/models/m/versions", Scope::Verify),
            (p.clone(), "/v1/models/m/versions/2/activate", Scope::Admin),
            (p.clone(), "/v1/models/m/versions", Scope::Admin),
            (g.clone(), "/v1/collections", Scope::Verify),
            (p.clone(), "/v1/collections", Scope::Admin),
            (g.clone(), "/v1/collections/c", Scope::Verify),
            (d.clone(), "/v1/collections/c", Scope::Admin),
            (p.clone(), "/v1/collections/c/identify", Scope::Verify),
            (p.clone(), "/v1/collections/c/subjects", Scope::Enrol),
            (g.clone(), "/v1/collections/c/subjects", Scope::Enrol),
            (g.clone(), "/v1/collections/c/subjects/s", Scope::Enrol),
            (pa.clone(), "/v1/collections/c/subjects/s", Scope::Enrol),
            (d.clone(), "/v1/collections/c/subjects/s", Scope::Enrol),
            (p.clone(), "/v1/collections/c/subjects/s/verify", Scope::Verify),
            (p.clone(), "/v1/collections/c/subjects/s/samples", Scope::Enrol),
            (g.clone(), "/v1/collections/c/subjects/s/samples/x", Scope::Enrol),
            (d.clone(), "/v1/collections/c/subjects/s/samples/x", Scope::Enrol),
            (g.clone(), "/v1/collections/c/subjects/s/samples/x/image", Scope::Enrol),
            (p.clone(), "/v1/admin/keys", Scope::Admin),
            (g.clone(), "/v1/admin/keys", Scope::Admin),
            (d.clone(), "/v1/admin/keys/k", Scope::Admin),
            (p.clone(), "/v1/jobs", Scope::Admin),
            (g.clone(), "/v1/jobs", Scope::Admin),
            (g.clone(), "/v1/jobs/j", Scope::Admin),
            (d.clone(), "/v1/jobs/j", Scope::Admin),
            (p.clone(), "/v1/jobs/j/resume", Scope::Admin),
            (g.clone(), "/v1/jobs/j/events", Scope::Admin),
            (g.clone(), "/v1/jobs/j/report/roc.png", Scope::Admin),
            // Not a route: the strongest scope, never the weakest.
            (g.clone(), "/v1/something-new", Scope::Admin),
            (g.clone(), "/v1/collections/c/subjects/s/samples/x/image/more", Scope::Admin),
        ];
        for (m, path, want) in table {
            assert_eq!(s(m.clone(), path), Some(want), "{m} {path}");
        }
    }
}
