//! `/v1/collections/{c}/subjects`: enrol a subject, list (paged), get, rename or replace its metadata, erase.

use super::common::{collection, json_body, ListQuery};
use super::common::{Path, Query};
use super::error::ApiError;
use super::AppState;
use crate::gallery::SubjectName;
use crate::store::Subject;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn subject_name(s: &str) -> Result<SubjectName, ApiError> {
    SubjectName::parse(s).map_err(|e| ApiError::InvalidField { field: "name".into(), reason: e.to_string() })
}

/// Largest subject metadata, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 << 10;

fn check_metadata(m: Option<&serde_json::Value>) -> Result<(), ApiError> {
    match m {
        Some(v) if v.to_string().len() > MAX_METADATA_BYTES => Err(ApiError::InvalidField {
            field: "metadata".into(),
            reason: format!("at most {MAX_METADATA_BYTES} bytes as JSON"),
        }),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateSubject {
    pub name: String,
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateSubject {
    /// New name (rename); must be free in the collection.
    pub name: Option<String>,
    /// Replaces the metadata.
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectInfo {
    pub name: String,
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Value>,
    pub samples: i64,
    pub created_at: i64,
}

impl From<Subject> for SubjectInfo {
    fn from(s: Subject) -> Self {
        SubjectInfo { name: s.name, metadata: s.metadata, samples: s.sample_count, created_at: s.created_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectList {
    pub subjects: Vec<SubjectInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Enrol a subject (no samples yet).
#[utoipa::path(post, path = "/v1/collections/{c}/subjects", tag = "enrolment", params(("c" = String, Path)),
    request_body = CreateSubject,
    responses((status = 201, body = SubjectInfo), (status = 400, body = super::Problem), (status = 404, body = super::Problem), (status = 409, body = super::Problem, description = "subject_exists")))]
pub async fn create_subject(
    State(state): State<AppState>,
    Path(c): Path<String>,
    body: Result<Json<CreateSubject>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<SubjectInfo>), ApiError> {
    let body = json_body(body, state.limits.max_body_bytes)?;
    let name = subject_name(&body.name)?;
    let c = collection(&state, &c).await?;
    check_metadata(body.metadata.as_ref())?;
    let s = state.galleries.create_subject(&c, &name, body.metadata.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(s.into())))
}

/// Subjects by name, paged (`limit`, `cursor`), optionally those whose name starts with `prefix`.
#[utoipa::path(get, path = "/v1/collections/{c}/subjects", tag = "enrolment",
    params(("c" = String, Path), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query), ("prefix" = Option<String>, Query)),
    responses((status = 200, body = SubjectList), (status = 404, body = super::Problem)))]
pub async fn list_subjects(
    State(state): State<AppState>,
    Path(c): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<SubjectList>, ApiError> {
    let limit = q.limit()?;
    let c = collection(&state, &c).await?;
    let mut subjects = state.galleries.subjects(&c, q.prefix.as_deref(), q.cursor.as_deref(), limit + 1).await?;
    let next_cursor = if subjects.len() as i64 > limit {
        subjects.truncate(limit as usize);
        subjects.last().map(|s| s.name.clone())
    } else {
        None
    };
    Ok(Json(SubjectList { subjects: subjects.into_iter().map(Into::into).collect(), next_cursor }))
}

#[utoipa::path(get, path = "/v1/collections/{c}/subjects/{s}", tag = "enrolment", params(("c" = String, Path), ("s" = String, Path)),
    responses((status = 200, body = SubjectInfo), (status = 404, body = super::Problem)))]
pub async fn get_subject(
    State(state): State<AppState>,
    Path((c, s)): Path<(String, String)>,
) -> Result<Json<SubjectInfo>, ApiError> {
    let c = collection(&state, &c).await?;
    Ok(Json(state.galleries.subject(&c, &s).await?.into()))
}

/// Rename a subject and/or replace its metadata.
#[utoipa::path(patch, path = "/v1/collections/{c}/subjects/{s}", tag = "enrolment", params(("c" = String, Path), ("s" = String, Path)),
    request_body = UpdateSubject,
    responses((status = 200, body = SubjectInfo), (status = 404, body = super::Problem), (status = 409, body = super::Problem)))]
pub async fn update_subject(
    State(state): State<AppState>,
    Path((c, s)): Path<(String, String)>,
    body: Result<Json<UpdateSubject>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SubjectInfo>, ApiError> {
    let body = json_body(body, state.limits.max_body_bytes)?;
    let new_name = body.name.as_deref().map(subject_name).transpose()?;
    let c = collection(&state, &c).await?;
    check_metadata(body.metadata.as_ref())?;
    let s = state.galleries.rename_subject(&c, &s, new_name.as_ref(), body.metadata.as_ref()).await?;
    Ok(Json(s.into()))
}

/// Erase a subject: its samples, stored images and embeddings are gone when this returns.
#[utoipa::path(delete, path = "/v1/collections/{c}/subjects/{s}", tag = "enrolment", params(("c" = String, Path), ("s" = String, Path)),
    responses((status = 204), (status = 404, body = super::Problem)))]
pub async fn delete_subject(
    State(state): State<AppState>,
    Path((c, s)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let c = collection(&state, &c).await?;
    state.galleries.delete_subject(&c, &s).await?;
    Ok(StatusCode::NO_CONTENT)
}
