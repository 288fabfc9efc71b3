//! `/v1/admin/keys`: create (the key is shown once), list, revoke. Needs the `admin` scope.

use super::common::Path;
use super::error::ApiError;
use super::AppState;
use crate::auth::{parse_scopes, CreatedKey, Scope};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A new key's name and scopes (`["verify"]`, or `"verify,enrol"`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKey {
    pub name: String,
    #[schema(value_type = Object)]
    pub scopes: serde_json::Value,
}

/// A key as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The whole key, to send as `x-api-key`. Shown only now.
    pub key: String,
}

fn scopes_of(v: &serde_json::Value) -> Result<Vec<Scope>, ApiError> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","),
        _ => String::new(),
    };
    Ok(parse_scopes(&text)?)
}

/// Create an API key.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", request_body = CreateKey,
    responses((status = 201, body = NewKey), (status = 400, body = super::Problem), (status = 401, body = super::Problem), (status = 403, body = super::Problem)))]
pub async fn create_key(
    State(state): State<AppState>,
    body: Result<Json<CreateKey>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    let body = super::common::json_body(body, state.limits.max_body_bytes)?;
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(ApiError::InvalidField { field: "name".into(), reason: "1 to 200 characters".into() });
    }
    let scopes = scopes_of(&body.scopes)?;
    let CreatedKey { id, name, scopes, key } = state.auth.create_key(body.name.trim(), &scopes).await?;
    Ok((StatusCode::CREATED, Json(NewKey { id, name, scopes, key })))
}

/// List API keys (without secrets).
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin", responses((status = 200, body = KeyList)))]
pub async fn list_keys(State(state): State<AppState>) -> Result<Json<KeyList>, ApiError> {
    let keys = state
        .auth
        .list()
        .await?
        .into_iter()
        .map(|k| KeyInfo {
            scopes: k.scopes.split(',').map(str::to_string).collect(),
            id: k.id,
            name: k.name,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        })
        .collect();
    Ok(Json(KeyList { keys }))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = super::Problem)))]
pub async fn revoke_key(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.auth.revoke(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
