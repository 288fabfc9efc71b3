//! The API-key gate: which scope each route needs, read from the method and path, checked before the
//! handler runs. Operational routes (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/docs`) are open.

use super::error::ApiError;
use super::AppState;
use crate::auth::Scope;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The scope a request needs, or `None` for an open route.
pub fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.first() != Some(&"v1") {
        return None;
    }
    let read = method == Method::GET || method == Method::HEAD;
    Some(match segs.as_slice() {
        ["v1", "admin", ..] | ["v1", "jobs", ..] => Scope::Admin,
        ["v1", "models", _, "versions", _, "activate"] => Scope::Admin,
        ["v1", "collections"] | ["v1", "collections", _] => {
            if read {
                Scope::Verify
            } else {
                Scope::Admin
            }
        }
        ["v1", "collections", _, "identify"] | ["v1", "collections", _, "subjects", _, "verify"] => Scope::Verify,
        ["v1", "collections", ..] => Scope::Enrol,
        _ => Scope::Verify,
    })
}

fn presented_key(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Some(k) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_string());
    }
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|k| k.trim().to_string())
}

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(scope) = required_scope(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let key = presented_key(&req);
    match state.auth.check(key.as_deref(), scope).await {
        Ok(_) => next.run(req).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}
