//! `/v1/collections`: galleries bound to a modality and a model — create (admin), list, get, erase.

use super::common::Path;
use super::common::{collection, encoder_of, json_body, ModelRef};
use super::error::ApiError;
use super::AppState;
use crate::gallery::CollectionName;
use crate::model::Modality;
use crate::store::{Collection, QualityPolicy};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCollection {
    /// Unique name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// `face` or `signature`.
    pub modality: String,
    /// Model id; the modality's default model when absent.
    pub model: Option<String>,
    /// What an upload does with a sample the quality control flags: `flag` (store it and say so; the
    /// default) or `refuse` (422 per file, with the reason).
    pub quality_policy: Option<String>,
}

/// A collection's settings that may change (admin).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCollection {
    /// `flag` or `refuse`.
    pub quality_policy: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    pub modality: Modality,
    /// The model whose embeddings the collection searches (`version` as loaded now).
    pub model: ModelRef,
    pub created_at: i64,
    /// Embeddings and subjects in the in-memory index.
    pub samples: usize,
    pub subjects: usize,
    /// `flag` or `refuse`: what an upload does with a sample the quality control flags.
    pub quality_policy: QualityPolicy,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionInfo>,
}

pub(super) fn info(state: &AppState, c: Collection) -> Result<CollectionInfo, ApiError> {
    let h = encoder_of(state, &c)?;
    let (samples, subjects) = state.galleries.stats(&c.id).unwrap_or((0, 0));
    Ok(CollectionInfo {
        model: ModelRef { id: c.model_id.clone(), version: h.card().version },
        name: c.name,
        modality: c.modality,
        created_at: c.created_at,
        quality_policy: c.quality_policy,
        samples,
        subjects,
    })
}

/// Create a collection (admin).
#[utoipa::path(post, path = "/v1/collections", tag = "enrolment", request_body = CreateCollection,
    responses((status = 201, body = CollectionInfo), (status = 400, body = super::Problem), (status = 404, body = super::Problem, description = "unknown_model"), (status = 409, body = super::Problem, description = "collection_exists")))]
pub async fn create_collection(
    State(state): State<AppState>,
    body: Result<Json<CreateCollection>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CollectionInfo>), ApiError> {
    let body = json_body(body, state.limits.max_body_bytes)?;
    let name = CollectionName::parse(&body.name)
        .map_err(|e| ApiError::InvalidField { field: "name".into(), reason: e.to_string() })?;
    let modality: Modality =
        body.modality.parse().map_err(|reason| ApiError::InvalidField { field: "modality".into(), reason })?;
    let reg = state.registry()?;
    let model = match &body.model {
        Some(m) => {
            let h = reg.get(Some(m))?;
            if h.card().modality != modality {
                return Err(ApiError::InvalidField {
                    field: "model".into(),
                    reason: format!("model '{m}' is for modality '{}', not '{modality}'", h.card().modality),
                });
            }
            m.clone()
        }
        None => reg
            .default_for(modality)
            .ok_or_else(|| ApiError::InvalidField {
                field: "modality".into(),
                reason: format!("no model of modality '{modality}' is loaded"),
            })?
            .to_string(),
    };
    let policy = parse_policy(body.quality_policy.as_deref())?.unwrap_or_default();
    let c = state.galleries.create_collection(&name, modality, &model, policy).await?;
    Ok((StatusCode::CREATED, Json(info(&state, c)?)))
}

fn parse_policy(p: Option<&str>) -> Result<Option<QualityPolicy>, ApiError> {
    p.map(|p| p.parse().map_err(|reason| ApiError::InvalidField { field: "quality_policy".into(), reason })).transpose()
}

/// Change a collection's settings (admin): `quality_policy`.
#[utoipa::path(patch, path = "/v1/collections/{c}", tag = "enrolment", params(("c" = String, Path)), request_body = UpdateCollection,
    responses((status = 200, body = CollectionInfo), (status = 400, body = super::Problem), (status = 404, body = super::Problem)))]
pub async fn update_collection(
    State(state): State<AppState>,
    Path(c): Path<String>,
    body: Result<Json<UpdateCollection>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CollectionInfo>, ApiError> {
    let body = json_body(body, state.limits.max_body_bytes)?;
    let c = collection(&state, &c).await?;
    let c = match parse_policy(body.quality_policy.as_deref())? {
        Some(p) => state.galleries.set_quality_policy(&c.name, p).await?,
        None => c,
    };
    Ok(Json(info(&state, c)?))
}

/// List collections.
#[utoipa::path(get, path = "/v1/collections", tag = "enrolment", responses((status = 200, body = CollectionList)))]
pub async fn list_collections(State(state): State<AppState>) -> Result<Json<CollectionList>, ApiError> {
    state.registry()?;
    let cols = state.galleries.collections().await?;
    let collections = cols.into_iter().map(|c| info(&state, c)).collect::<Result<_, _>>()?;
    Ok(Json(CollectionList { collections }))
}

/// One collection with its size.
#[utoipa::path(get, path = "/v1/collections/{c}", tag = "enrolment", params(("c" = String, Path)),
    responses((status = 200, body = CollectionInfo), (status = 404, body = super::Problem)))]
pub async fn get_collection(
    State(state): State<AppState>,
    Path(c): Path<String>,
) -> Result<Json<CollectionInfo>, ApiError> {
    let c = collection(&state, &c).await?;
    Ok(Json(info(&state, c)?))
}

/// Erase a collection and everything in it (admin).
#[utoipa::path(delete, path = "/v1/collections/{c}", tag = "enrolment", params(("c" = String, Path)),
    responses((status = 204), (status = 404, body = super::Problem)))]
pub async fn delete_collection(State(state): State<AppState>, Path(c): Path<String>) -> Result<StatusCode, ApiError> {
    state.registry()?;
    state.galleries.delete_collection(&c).await?;
    Ok(StatusCode::NO_CONTENT)
}
