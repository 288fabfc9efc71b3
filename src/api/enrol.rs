//! Enrolment endpoints: collections, subjects, samples, verify against a subject, 1:N identify.
//!
//! Subjects are addressed by name (URL-encoded in paths). A sample upload answers per file: one bad image
//! never loses the others. Probes are an image (multipart field `image`, or base64 JSON `image`) or a ready
//! `embedding` (JSON list of numbers).

use super::error::ApiError;
use super::handlers::{parse_metric, parse_threshold, ModelRef};
use super::input::{read_parts, JsonShape, Parts};
use super::prepare::{prepare_files, FaceInfo, FaceOptions};
use super::AppState;
use crate::distance::Metric;
use crate::gallery::Rule;
use crate::runtime::EncoderHandle;
use crate::store::{Collection, NewSample, Sample, Subject};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Instant;
use utoipa::ToSchema;

// ---------- shapes ----------

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCollection {
    /// Unique name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// `face` or `signature`.
    pub modality: String,
    /// Model id; the modality's default model when absent.
    pub model: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    pub modality: String,
    /// The model whose embeddings the collection searches (`version` as loaded now).
    pub model: ModelRef,
    pub created_at: i64,
    /// Embeddings and subjects in the in-memory index.
    pub samples: usize,
    pub subjects: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionInfo>,
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

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SampleInfo {
    pub id: String,
    pub sha256: String,
    pub content_type: String,
    pub width: i64,
    pub height: i64,
    pub bytes: i64,
    pub created_at: i64,
    /// False when the sample was enrolled as a pre-aligned chip (`detect=false`).
    pub detect: bool,
}

impl From<Sample> for SampleInfo {
    fn from(s: Sample) -> Self {
        SampleInfo {
            id: s.id,
            sha256: s.sha256,
            content_type: s.content_type,
            width: s.width,
            height: s.height,
            bytes: s.byte_size,
            created_at: s.created_at,
            detect: s.detect,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SampleList {
    pub samples: Vec<SampleInfo>,
    pub next_cursor: Option<String>,
}

/// Why one file of an upload was not stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileError {
    pub code: String,
    pub message: String,
}

/// The fate of one uploaded file.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleResult {
    /// Position of the file among the request's `image` fields.
    pub index: usize,
    /// `stored` or `failed`.
    pub status: String,
    pub sample: Option<SampleInfo>,
    pub error: Option<FileError>,
    /// The face that was enrolled (face models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<FaceInfo>,
}

/// Per-file results. Status 201 when every file was stored, 207 when some were, 422 when none.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleUpload {
    pub subject: String,
    pub stored: usize,
    pub failed: usize,
    pub results: Vec<SampleResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SampleDistanceInfo {
    pub sample_id: String,
    pub distance: f32,
}

/// Verdict of a probe against one subject.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectVerdict {
    pub verified: bool,
    pub subject: String,
    /// The subject-level distance under `rule`.
    pub distance: f32,
    pub metric: Metric,
    pub threshold: f32,
    pub threshold_overridden: bool,
    pub score: f32,
    /// `min`, `meanK`, `mean` or `centroid`.
    pub rule: String,
    /// Every sample's distance, nearest first.
    pub samples: Vec<SampleDistanceInfo>,
    pub model: ModelRef,
    pub total_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Candidate {
    pub subject: String,
    pub distance: f32,
    pub score: f32,
    /// Whether `distance <= threshold`.
    pub within_threshold: bool,
    pub samples: usize,
    pub nearest_sample: String,
    pub nearest_distance: f32,
}

/// 1:N answer. `match` is the nearest subject when within the threshold, else `null` (unknown). The default
/// threshold is the model card's FAR = 1e-3 point (stricter than 1:1 verification's EER point).
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentifyResponse {
    #[serde(rename = "match")]
    pub matched: Option<Candidate>,
    pub candidates: Vec<Candidate>,
    pub metric: Metric,
    pub threshold: f32,
    pub rule: String,
    /// Embeddings searched.
    pub searched: usize,
    pub model: ModelRef,
    pub total_ms: f64,
}

// ---------- helpers ----------

fn valid_collection_name(n: &str) -> Result<(), ApiError> {
    let ok =
        !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidField { field: "name".into(), reason: "1-64 characters: letters, digits, . _ -".into() })
    }
}

fn valid_subject_name(n: &str) -> Result<(), ApiError> {
    if n.trim().is_empty() || n.len() > 256 || n.chars().any(char::is_control) {
        return Err(ApiError::InvalidField {
            field: "name".into(),
            reason: "1-256 characters, not blank, no control characters".into(),
        });
    }
    Ok(())
}

fn json_body<T>(b: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(x)| x).map_err(|e| match e {
        axum::extract::rejection::JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected application/json".into())
        }
        other => ApiError::InvalidJson(other.body_text()),
    })
}

fn limit_of(q: &ListQuery) -> Result<i64, ApiError> {
    match q.limit {
        None => Ok(50),
        Some(l) if (1..=1000).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::InvalidField { field: "limit".into(), reason: "between 1 and 1000".into() }),
    }
}

async fn collection(state: &AppState, name: &str) -> Result<Collection, ApiError> {
    state.registry()?;
    Ok(state.galleries.store().collection(name).await?)
}

fn encoder_of(state: &AppState, c: &Collection) -> Result<EncoderHandle, ApiError> {
    Ok(state.registry()?.get(Some(&c.model_id))?.clone())
}

fn info(state: &AppState, c: Collection) -> Result<CollectionInfo, ApiError> {
    let h = encoder_of(state, &c)?;
    let (samples, subjects) = state.galleries.stats(&c.id).unwrap_or((0, 0));
    Ok(CollectionInfo {
        model: ModelRef { id: c.model_id.clone(), version: h.card().version },
        name: c.name,
        modality: c.modality,
        created_at: c.created_at,
        samples,
        subjects,
    })
}

fn mime_of(bytes: &[u8]) -> String {
    match image::guess_format(bytes) {
        Ok(f) => f.to_mime_type().to_string(),
        Err(_) => "application/octet-stream".into(),
    }
}

/// The request's `rule`, else the model card's calibrated subject rule, else the service's default.
fn parse_rule(parts: &Parts, card: &crate::model::ModelCard) -> Result<Rule, ApiError> {
    match parts.text("rule") {
        None => Ok(card.subject_rule()),
        Some(s) => Rule::parse(s).ok_or_else(|| ApiError::InvalidField {
            field: "rule".into(),
            reason: format!("'{s}' is not one of min, meanK (e.g. mean3), mean, centroid"),
        }),
    }
}

/// The probe's embedding: a given `embedding`, or the `image` run through the collection's model.
async fn probe_embedding(state: &AppState, h: &EncoderHandle, parts: &mut Parts) -> Result<Vec<f32>, ApiError> {
    if let Some(text) = parts.text("embedding") {
        let v: Vec<f32> = serde_json::from_str(text).map_err(|e| ApiError::InvalidField {
            field: "embedding".into(),
            reason: format!("expected a list of numbers: {e}"),
        })?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(ApiError::InvalidField { field: "embedding".into(), reason: "values must be finite".into() });
        }
        return Ok(v);
    }
    let img = parts.take_file("image")?;
    let opts = FaceOptions::parse(parts.text("detect"), None)?;
    let registry = state.registry()?;
    let mut prepared = prepare_files(state, &registry, h, vec![("image".into(), img)], opts).await?;
    let input = prepared.remove(0)?.swap_remove(0).input;
    Ok(h.embed(vec![input]).await?.vectors.remove(0))
}

// ---------- collections ----------

/// Create a collection (admin).
#[utoipa::path(post, path = "/v1/collections", tag = "enrolment", request_body = CreateCollection,
    responses((status = 201, body = CollectionInfo), (status = 400, body = super::Problem), (status = 404, body = super::Problem, description = "unknown_model"), (status = 409, body = super::Problem, description = "collection_exists")))]
pub async fn create_collection(
    State(state): State<AppState>,
    body: Result<Json<CreateCollection>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CollectionInfo>), ApiError> {
    let body = json_body(body)?;
    valid_collection_name(&body.name)?;
    let reg = state.registry()?;
    let model = match &body.model {
        Some(m) => {
            let h = reg.get(Some(m))?;
            if h.card().modality != body.modality {
                return Err(ApiError::InvalidField {
                    field: "model".into(),
                    reason: format!("model '{m}' is for modality '{}', not '{}'", h.card().modality, body.modality),
                });
            }
            m.clone()
        }
        None => reg
            .default_for(&body.modality)
            .ok_or_else(|| ApiError::InvalidField {
                field: "modality".into(),
                reason: format!("no model of modality '{}' is loaded", body.modality),
            })?
            .to_string(),
    };
    let c = state.galleries.create_collection(&body.name, &body.modality, &model).await?;
    Ok((StatusCode::CREATED, Json(info(&state, c)?)))
}

/// List collections.
#[utoipa::path(get, path = "/v1/collections", tag = "enrolment", responses((status = 200, body = CollectionList)))]
pub async fn list_collections(State(state): State<AppState>) -> Result<Json<CollectionList>, ApiError> {
    state.registry()?;
    let cols = state.galleries.store().collections().await?;
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

// ---------- subjects ----------

/// Enrol a subject (no samples yet).
#[utoipa::path(post, path = "/v1/collections/{c}/subjects", tag = "enrolment", params(("c" = String, Path)),
    request_body = CreateSubject,
    responses((status = 201, body = SubjectInfo), (status = 400, body = super::Problem), (status = 404, body = super::Problem), (status = 409, body = super::Problem, description = "subject_exists")))]
pub async fn create_subject(
    State(state): State<AppState>,
    Path(c): Path<String>,
    body: Result<Json<CreateSubject>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<SubjectInfo>), ApiError> {
    let body = json_body(body)?;
    valid_subject_name(&body.name)?;
    let c = collection(&state, &c).await?;
    let s = state.galleries.store().create_subject(&c.id, &body.name, body.metadata.as_ref()).await?;
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
    let limit = limit_of(&q)?;
    let c = collection(&state, &c).await?;
    let mut subjects =
        state.galleries.store().subjects(&c.id, q.prefix.as_deref(), q.cursor.as_deref(), limit + 1).await?;
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
    Ok(Json(state.galleries.store().subject(&c.id, &s).await?.into()))
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
    let body = json_body(body)?;
    if let Some(n) = &body.name {
        valid_subject_name(n)?;
    }
    let c = collection(&state, &c).await?;
    let s = state.galleries.rename_subject(&c, &s, body.name.as_deref(), body.metadata.as_ref()).await?;
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

// ---------- samples ----------

/// Add samples: multipart with one or more `image` files (or JSON `{"images": [base64, ...]}`).
#[utoipa::path(post, path = "/v1/collections/{c}/subjects/{s}/samples", tag = "enrolment", params(("c" = String, Path), ("s" = String, Path)),
    responses((status = 201, body = SampleUpload, description = "all stored"), (status = 207, body = SampleUpload, description = "some stored"),
        (status = 422, body = SampleUpload, description = "none stored"), (status = 404, body = super::Problem), (status = 429, body = super::Problem)))]
pub async fn add_samples(
    State(state): State<AppState>,
    Path((c, s)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let c = collection(&state, &c).await?;
    let subject = state.galleries.store().subject(&c.id, &s).await?;
    let h = encoder_of(&state, &c)?;
    let shape = JsonShape { single: &[], list: Some(("images", "image")) };
    let parts = read_parts(req, state.limits.max_body_bytes, &shape).await?;
    let opts = FaceOptions::parse(parts.text("detect"), None)?;
    let files: Vec<Bytes> = parts.files.into_iter().filter(|(n, _)| n == "image").map(|(_, b)| b).collect();
    if files.is_empty() {
        return Err(ApiError::MissingField("image".into()));
    }
    if files.len() > state.limits.max_images {
        return Err(ApiError::TooManyImages(state.limits.max_images));
    }
    // Decode (and, for face models, detect and align) every file; a file that fails keeps its own error.
    let registry = state.registry()?;
    let named: Vec<(String, Bytes)> =
        files.iter().enumerate().map(|(k, b)| (format!("image[{k}]"), b.clone())).collect();
    let prepared = prepare_files(&state, &registry, &h, named, opts).await?;
    type Decoded = Result<(NewSample, Vec<f32>, Option<FaceInfo>), FileError>;
    let decoded: Vec<Decoded> = files
        .into_iter()
        .zip(prepared)
        .map(|(b, r)| match r {
            Ok(mut v) => {
                let p = v.swap_remove(0);
                let (width, height) = image::ImageReader::new(std::io::Cursor::new(&b[..]))
                    .with_guessed_format()
                    .ok()
                    .and_then(|r| r.into_dimensions().ok())
                    .unwrap_or((0, 0));
                let new = NewSample {
                    sha256: hex::encode(Sha256::digest(&b)),
                    content_type: mime_of(&b),
                    width: width as i64,
                    height: height as i64,
                    image: b.to_vec(),
                    detect: opts.detect,
                };
                Ok((new, p.input, p.face))
            }
            Err(e) => Err(FileError { code: e.status_code().1.to_string(), message: e.to_string() }),
        })
        .collect();
    // One forward pass for every decodable file.
    let inputs: Vec<Vec<f32>> = decoded.iter().filter_map(|d| d.as_ref().ok().map(|(_, x, _)| x.clone())).collect();
    let mut vectors = if inputs.is_empty() { Vec::new() } else { h.embed(inputs).await?.vectors }.into_iter();
    let mut results = Vec::new();
    for (index, d) in decoded.into_iter().enumerate() {
        let r = match d {
            Err(error) => SampleResult { index, status: "failed".into(), sample: None, error: Some(error), face: None },
            Ok((new, _, face)) => {
                let v = vectors.next().ok_or_else(|| ApiError::Internal("embedding count".into()))?;
                match state.galleries.enrol(&c, &subject, &new, &v).await {
                    Ok(s) => SampleResult { index, status: "stored".into(), sample: Some(s.into()), error: None, face },
                    Err(e) => {
                        let e = ApiError::from(e);
                        let (st, code) = e.status_code();
                        if st.is_server_error() {
                            tracing::error!(error = %e, "storing a sample failed");
                        }
                        let message = if st.is_server_error() { "internal error".into() } else { e.to_string() };
                        SampleResult {
                            index,
                            status: "failed".into(),
                            sample: None,
                            error: Some(FileError { code: code.into(), message }),
                            face: None,
                        }
                    }
                }
            }
        };
        results.push(r);
    }
    let stored = results.iter().filter(|r| r.sample.is_some()).count();
    let failed = results.len() - stored;
    let status = match (stored, failed) {
        (_, 0) => StatusCode::CREATED,
        (0, _) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::MULTI_STATUS,
    };
    Ok((status, Json(SampleUpload { subject: subject.name, stored, failed, results })).into_response())
}

/// A subject's samples, paged.
#[utoipa::path(get, path = "/v1/collections/{c}/subjects/{s}/samples", tag = "enrolment",
    params(("c" = String, Path), ("s" = String, Path), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = SampleList), (status = 404, body = super::Problem)))]
pub async fn list_samples(
    State(state): State<AppState>,
    Path((c, s)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Json<SampleList>, ApiError> {
    let limit = limit_of(&q)?;
    let c = collection(&state, &c).await?;
    let subject = state.galleries.store().subject(&c.id, &s).await?;
    let mut samples = state.galleries.store().samples(&subject.id, q.cursor.as_deref(), limit + 1).await?;
    let next_cursor = if samples.len() as i64 > limit {
        samples.truncate(limit as usize);
        samples.last().map(|s| s.id.clone())
    } else {
        None
    };
    Ok(Json(SampleList { samples: samples.into_iter().map(Into::into).collect(), next_cursor }))
}

#[utoipa::path(get, path = "/v1/collections/{c}/subjects/{s}/samples/{id}", tag = "enrolment",
    params(("c" = String, Path), ("s" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = SampleInfo), (status = 404, body = super::Problem)))]
pub async fn get_sample(
    State(state): State<AppState>,
    Path((c, s, id)): Path<(String, String, String)>,
) -> Result<Json<SampleInfo>, ApiError> {
    let c = collection(&state, &c).await?;
    let subject = state.galleries.store().subject(&c.id, &s).await?;
    Ok(Json(state.galleries.store().sample(&subject.id, &id).await?.into()))
}

/// The stored original image, byte for byte.
#[utoipa::path(get, path = "/v1/collections/{c}/subjects/{s}/samples/{id}/image", tag = "enrolment",
    params(("c" = String, Path), ("s" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "the image"), (status = 404, body = super::Problem)))]
pub async fn sample_image(
    State(state): State<AppState>,
    Path((c, s, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let c = collection(&state, &c).await?;
    let subject = state.galleries.store().subject(&c.id, &s).await?;
    let sample = state.galleries.store().sample(&subject.id, &id).await?;
    let bytes = state.galleries.store().sample_image(&sample.id).await?;
    Ok(([(header::CONTENT_TYPE, sample.content_type)], bytes).into_response())
}

#[utoipa::path(delete, path = "/v1/collections/{c}/subjects/{s}/samples/{id}", tag = "enrolment",
    params(("c" = String, Path), ("s" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = super::Problem)))]
pub async fn delete_sample(
    State(state): State<AppState>,
    Path((c, s, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let c = collection(&state, &c).await?;
    let subject = state.galleries.store().subject(&c.id, &s).await?;
    state.galleries.delete_sample(&c, &subject, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------- verify against a subject, identify ----------

/// Verify a probe against every sample of one subject. Multipart field `image` (or JSON base64 `image`, or
/// JSON `embedding`), optional `metric`, `threshold`, `rule`.
#[utoipa::path(post, path = "/v1/collections/{c}/subjects/{s}/verify", tag = "enrolment",
    params(("c" = String, Path), ("s" = String, Path)),
    responses((status = 200, body = SubjectVerdict), (status = 400, body = super::Problem), (status = 404, body = super::Problem),
        (status = 422, body = super::Problem, description = "image_decode_failed, subject_has_no_samples")))]
pub async fn verify_subject(
    State(state): State<AppState>,
    Path((c, s)): Path<(String, String)>,
    req: Request,
) -> Result<Json<SubjectVerdict>, ApiError> {
    let t0 = Instant::now();
    let c = collection(&state, &c).await?;
    let subject = state.galleries.store().subject(&c.id, &s).await?;
    let h = encoder_of(&state, &c)?;
    let mut parts = read_parts(req, state.limits.max_body_bytes, &JsonShape { single: &["image"], list: None }).await?;
    let metric = parse_metric(&parts, h.card().default_metric)?;
    let override_t = parse_threshold(&parts)?;
    let rule = parse_rule(&parts, h.card())?;
    let probe = probe_embedding(&state, &h, &mut parts).await?;
    let (distance, per) = state.galleries.verify_subject(&c, &subject, &probe, metric, rule).await?;
    let cal = h.card().subject_threshold(rule, metric);
    let threshold = override_t.unwrap_or(cal.value);
    Ok(Json(SubjectVerdict {
        verified: distance <= threshold,
        subject: subject.name,
        distance,
        metric,
        threshold,
        threshold_overridden: override_t.is_some(),
        score: cal.score.score(distance),
        rule: rule.name(),
        samples: per.into_iter().map(|p| SampleDistanceInfo { sample_id: p.sample_id, distance: p.distance }).collect(),
        model: ModelRef { id: h.card().id.clone(), version: h.card().version },
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
    }))
}

/// 1:N: the `top_k` nearest subjects of a collection; `match` is null (unknown) when even the nearest is
/// beyond the threshold.
#[utoipa::path(post, path = "/v1/collections/{c}/identify", tag = "enrolment", params(("c" = String, Path)),
    responses((status = 200, body = IdentifyResponse), (status = 400, body = super::Problem), (status = 404, body = super::Problem)))]
pub async fn identify(
    State(state): State<AppState>,
    Path(c): Path<String>,
    req: Request,
) -> Result<Json<IdentifyResponse>, ApiError> {
    let t0 = Instant::now();
    let c = collection(&state, &c).await?;
    let h = encoder_of(&state, &c)?;
    let mut parts = read_parts(req, state.limits.max_body_bytes, &JsonShape { single: &["image"], list: None }).await?;
    let metric = parse_metric(&parts, h.card().default_metric)?;
    let override_t = parse_threshold(&parts)?;
    let rule = parse_rule(&parts, h.card())?;
    let top_k = match parts.text("top_k") {
        None => 5,
        Some(t) => t.trim().parse::<usize>().ok().filter(|k| (1..=100).contains(k)).ok_or_else(|| {
            ApiError::InvalidField { field: "top_k".into(), reason: format!("'{t}' is not an integer from 1 to 100") }
        })?,
    };
    let probe = probe_embedding(&state, &h, &mut parts).await?;
    let (found, searched) = state.galleries.identify(&c, probe, metric, rule, top_k).await?;
    // 1:N compares a probe with every subject, so its default operating point is the stricter one the card
    // calibrated at a false-accept rate of 1e-3 (1:1 verification uses the EER point).
    let cal = h.card().subject_threshold(rule, metric);
    let threshold = override_t.unwrap_or(cal.at_far_1e3);
    let candidates: Vec<Candidate> = found
        .into_iter()
        .map(|m| Candidate {
            within_threshold: m.distance <= threshold,
            score: cal.score.score(m.distance),
            subject: m.subject_name,
            distance: m.distance,
            samples: m.samples,
            nearest_sample: m.nearest_sample,
            nearest_distance: m.nearest_distance,
        })
        .collect();
    let matched = candidates.first().filter(|m| m.within_threshold).map(|m| Candidate {
        subject: m.subject.clone(),
        nearest_sample: m.nearest_sample.clone(),
        ..*m
    });
    Ok(Json(IdentifyResponse {
        matched,
        candidates,
        metric,
        threshold,
        rule: rule.name(),
        searched,
        model: ModelRef { id: h.card().id.clone(), version: h.card().version },
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
    }))
}
