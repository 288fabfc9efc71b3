//! `/v1/jobs` (retrain jobs: submit, list, get, cancel, resume, events, report) and
//! `/v1/models/{id}/versions` (list, activate). Admin scope, except listing versions.

use super::common::{json_body, ListQuery};
use super::common::{Path, Query};
use super::error::ApiError;
use super::AppState;
use crate::jobs::{JobParams, Jobs, FINAL_STATES};
use crate::store::JobRecord;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use utoipa::ToSchema;

/// A retrain job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobInfo {
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled` or `interrupted`.
    pub state: String,
    /// The model trained (the candidate becomes its next version).
    pub model: String,
    /// The parameters as given, with defaults filled in, and `resolved`: base version and identity split.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// One entry per epoch: train loss, validation EER and AUC (both metrics), seconds.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<serde_json::Value>,
    /// Why a failed job failed.
    pub error: Option<String>,
    /// The version the candidate was registered as.
    pub candidate_version: Option<i64>,
    /// Whether the candidate was activated by `auto_promote`.
    pub promoted: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Seconds from start to end (or to now while running).
    pub seconds: Option<f64>,
}

impl From<JobRecord> for JobInfo {
    fn from(j: JobRecord) -> Self {
        let end = j.finished_at.unwrap_or_else(crate::store::now_ms);
        JobInfo {
            seconds: j.started_at.map(|s| (end - s) as f64 / 1e3),
            id: j.id,
            state: j.state,
            model: j.model_id,
            params: j.params,
            history: j.history,
            error: j.error,
            candidate_version: j.candidate_version,
            promoted: j.promoted,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobInfo>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn jobs(state: &AppState) -> Result<&Arc<Jobs>, ApiError> {
    state.jobs.as_ref().ok_or(ApiError::NotReady)
}

/// Queue a retrain job (admin). Every parameter has a default; a job needs `collection` and/or `dataset`.
/// Bad or insufficient input is refused before anything is queued.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobParams,
    responses((status = 202, body = JobInfo, description = "queued; `Location` names it"),
        (status = 400, body = super::Problem, description = "invalid_json, path_outside_data_root"),
        (status = 404, body = super::Problem, description = "unknown_model, collection_not_found"),
        (status = 422, body = super::Problem, description = "invalid_job: what is missing or wrong")))]
pub async fn submit(
    State(state): State<AppState>,
    body: Result<Json<JobParams>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    state.registry()?;
    let params = json_body(body, state.limits.max_body_bytes)?;
    let job = jobs(&state)?.submit(params).await?;
    let location =
        HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = (StatusCode::ACCEPTED, Json(JobInfo::from(job))).into_response();
    resp.headers_mut().insert(header::LOCATION, location);
    Ok(resp)
}

/// Jobs, newest first, paged (`limit`, `cursor`).
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = JobList)))]
pub async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<JobList>, ApiError> {
    let limit = q.limit()?;
    let mut list = jobs(&state)?.list(q.cursor.as_deref(), limit + 1).await?;
    let next_cursor = if list.len() as i64 > limit {
        list.truncate(limit as usize);
        list.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(Json(JobList { jobs: list.into_iter().map(Into::into).collect(), next_cursor }))
}

/// A job: state, per-epoch history, timings, error, candidate.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobInfo), (status = 404, body = super::Problem, description = "job_not_found")))]
pub async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobInfo>, ApiError> {
    Ok(Json(jobs(&state)?.get(&id).await?.into()))
}

/// Cancel a job: a queued one at once, a running one after its current step (its checkpoint is kept).
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 202, body = JobInfo), (status = 404, body = super::Problem), (status = 409, body = super::Problem, description = "job_state")))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobInfo>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(jobs(&state)?.cancel(&id).await?.into())))
}

/// Queue an interrupted or cancelled job again; it goes on from its last per-epoch checkpoint.
#[utoipa::path(post, path = "/v1/jobs/{id}/resume", tag = "jobs", params(("id" = String, Path)),
    responses((status = 202, body = JobInfo), (status = 404, body = super::Problem), (status = 409, body = super::Problem, description = "job_state")))]
pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobInfo>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(jobs(&state)?.resume(&id).await?.into())))
}

fn sse_event(kind: &str, data: &serde_json::Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

/// Server-sent events: `epoch` (one per epoch) and `state` (one per state change). A client first gets the
/// history so far and the current state; the stream ends when the job does.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream"), (status = 404, body = super::Problem)))]
pub async fn events(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let jobs = jobs(&state)?.clone();
    // Subscribe before reading the backlog, so nothing falls between the two.
    let rx = jobs.subscribe();
    let job = jobs.get(&id).await?;
    let mut backlog: VecDeque<Event> = job.history.iter().map(|h| sse_event("epoch", h)).collect();
    let last_epoch = job.history.iter().filter_map(|h| h["epoch"].as_u64()).max().unwrap_or(0);
    backlog.push_back(sse_event("state", &serde_json::json!({ "state": job.state, "error": job.error })));
    let ended = FINAL_STATES.contains(&job.state.as_str()) || job.state == "interrupted";
    struct S {
        backlog: VecDeque<Event>,
        rx: tokio::sync::broadcast::Receiver<crate::jobs::JobEvent>,
        id: String,
        last_epoch: u64,
        ended: bool,
    }
    let s = S { backlog, rx, id, last_epoch, ended };
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        if let Some(e) = s.backlog.pop_front() {
            return Some((Ok::<_, std::convert::Infallible>(e), s));
        }
        if s.ended {
            return None;
        }
        loop {
            match s.rx.recv().await {
                Ok(ev) if ev.job == s.id => {
                    if ev.kind == "epoch" {
                        let e = ev.data["epoch"].as_u64().unwrap_or(0);
                        if e <= s.last_epoch && s.last_epoch > 0 {
                            // Already sent with the backlog (a resumed run starts its count afresh below it).
                            s.last_epoch = 0;
                            continue;
                        }
                    }
                    if ev.kind == "state" {
                        let st = ev.data["state"].as_str().unwrap_or("");
                        s.ended = FINAL_STATES.contains(&st) || st == "interrupted";
                    }
                    return Some((Ok(sse_event(ev.kind, &ev.data)), s));
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// The evaluation gate: candidate and active model on the same validation pairs (EER, AUC, TAR at FAR
/// 1e-3, both metrics). 404 until the job has succeeded.
#[utoipa::path(get, path = "/v1/jobs/{id}/report", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = super::Problem)))]
pub async fn report(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = jobs(&state)?.get(&id).await?;
    job.report.map(Json).ok_or_else(|| ApiError::UnknownJob(format!("{id}/report (the job is {})", job.state)))
}

/// A plot of the gate: `roc.png` (both models, both metrics), `distances-candidate.png`,
/// `distances-active.png`.
#[utoipa::path(get, path = "/v1/jobs/{id}/report/{file}", tag = "jobs", params(("id" = String, Path), ("file" = String, Path)),
    responses((status = 200, content_type = "image/png"), (status = 404, body = super::Problem)))]
pub async fn report_file(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (ct, bytes) = jobs(&state)?.file(&id, &file).await?;
    let ct = HeaderValue::from_str(&ct).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, ct)], bytes).into_response())
}

/// A version of a model.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: i64,
    /// Whether this version is the one served.
    pub active: bool,
    /// The version it was trained from.
    pub parent_version: Option<i64>,
    /// The job that produced it.
    pub job: Option<String>,
    pub created_at: i64,
    /// Its model card (thresholds, training, evaluation).
    #[schema(value_type = Object)]
    pub card: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    pub model: String,
    /// The served version.
    pub active: i64,
    /// Layer groups of the architecture, from the input on (for a job's `freeze` and `lr_mult`).
    pub layer_groups: Vec<String>,
    pub versions: Vec<VersionInfo>,
}

/// Every version of a model.
#[utoipa::path(get, path = "/v1/models/{id}/versions", tag = "models", params(("id" = String, Path)),
    responses((status = 200, body = VersionList), (status = 404, body = super::Problem)))]
pub async fn versions(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<VersionList>, ApiError> {
    let registry = state.registry()?;
    let h = registry.get(Some(&id))?;
    let active = h.card().version as i64;
    let layer_groups = crate::train::groups::names(h.card().architecture.stages());
    let list = jobs(&state)?.catalog().versions(&id).await?;
    let versions = list
        .into_iter()
        .map(|v| VersionInfo {
            active: v.version == active,
            version: v.version,
            parent_version: v.parent_version,
            job: v.job_id,
            created_at: v.created_at,
            card: v.card,
        })
        .collect();
    Ok(Json(VersionList { model: id, active, layer_groups, versions }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Activated {
    pub model: String,
    pub version: i64,
    /// Enrolled samples embedded with this version before the switch.
    pub embedded: usize,
}

/// Serve version `v` (admin): every enrolled sample of the model's collections is embedded with it first,
/// then the collections switch in one step. Rollback: activate an older version.
#[utoipa::path(post, path = "/v1/models/{id}/versions/{v}/activate", tag = "models",
    params(("id" = String, Path), ("v" = i64, Path)),
    responses((status = 200, body = Activated), (status = 404, body = super::Problem, description = "unknown_model, version_not_found")))]
pub async fn activate(
    State(state): State<AppState>,
    Path((id, v)): Path<(String, i64)>,
) -> Result<Json<Activated>, ApiError> {
    state.registry()?.get(Some(&id))?;
    // Its own task: a client that hangs up (or the request deadline) never stops a switch half-way.
    let (catalog, model) = (jobs(&state)?.catalog().clone(), id.clone());
    let embedded = tokio::spawn(async move { catalog.activate(&model, v).await })
        .await
        .map_err(|e| ApiError::Internal(format!("activation task: {e}")))??;
    Ok(Json(Activated { model: id, version: v, embedded }))
}
