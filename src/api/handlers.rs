//! Request handlers: parse, call the runtime, shape the JSON answer.

use super::error::ApiError;
use super::input::{read_parts, JsonShape, Parts};
use super::prepare::{prepare_files, FaceInfo, FaceOptions};
use super::AppState;
use crate::distance::Metric;
use crate::model::{InputSpec, Thresholds};
use crate::runtime::EncoderHandle;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use utoipa::ToSchema;

/// `{id, version}` of the model that answered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelRef {
    pub id: String,
    pub version: u32,
}

/// Where a request's time went, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Timings {
    /// Decoding, and for face models detection and alignment.
    pub decode_ms: f64,
    pub queue_ms: f64,
    pub inference_ms: f64,
    pub total_ms: f64,
    /// Images in the forward pass that carried this request (batching at work when > inputs).
    pub batch_images: usize,
}

impl Timings {
    fn of(decode_ms: f64, out: &crate::runtime::EmbedOutput, started: Instant) -> Self {
        Timings {
            decode_ms,
            queue_ms: out.queue_ms,
            inference_ms: out.inference_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            batch_images: out.batch_images,
        }
    }
}

/// JSON form of a verify request (multipart takes the same field names, images as files).
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyJson {
    /// First image, base64 (a `data:` URL prefix is accepted).
    pub image_a: String,
    /// Second image, base64.
    pub image_b: String,
    /// `euclidean` or `cosine`; the model's default metric when absent.
    pub metric: Option<String>,
    /// Decision threshold overriding the model card's for this metric.
    pub threshold: Option<f32>,
    /// Model id; the default model when absent.
    pub model: Option<String>,
}

/// The verdict on a pair.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    /// `distance <= threshold`.
    pub verified: bool,
    pub distance: f32,
    pub metric: Metric,
    pub threshold: f32,
    /// Whether `threshold` came from the request rather than the model card.
    pub threshold_overridden: bool,
    /// Calibrated probability in [0, 1] that the two images show the same identity (logistic fit of
    /// validation distances, stored in the model card).
    pub score: f32,
    pub model: ModelRef,
    pub timings: Timings,
    /// The faces used, when the model detects and aligns faces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faces: Option<PairFaces>,
}

/// The face used from each image of a pair.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PairFaces {
    pub image_a: FaceInfo,
    pub image_b: FaceInfo,
}

/// JSON form of an embed request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbedJson {
    /// Images, base64.
    pub images: Vec<String>,
    pub model: Option<String>,
}

/// One embedding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Embedding {
    pub vector: Vec<f32>,
    /// Index of the input image.
    pub index: usize,
    /// The face this vector encodes, when the model detects faces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<FaceInfo>,
}

/// Embeddings, one per input image, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbedResponse {
    pub model: ModelRef,
    pub embeddings: Vec<Embedding>,
    pub timings: Timings,
}

/// A loaded model as `/v1/models` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    pub id: String,
    pub version: u32,
    pub modality: String,
    pub embedding_size: i64,
    pub input: InputSpec,
    pub default_metric: Metric,
    pub thresholds: Thresholds,
    /// Whether requests that name no model get this one.
    pub default: bool,
    pub device: String,
    /// Evaluation figures from the model card.
    #[schema(value_type = Object)]
    pub evaluation: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsResponse {
    pub models: Vec<ModelInfo>,
}

fn model_ref(h: &EncoderHandle) -> ModelRef {
    ModelRef { id: h.card().id.clone(), version: h.card().version }
}

pub(super) fn parse_metric(parts: &Parts, default: Metric) -> Result<Metric, ApiError> {
    match parts.text("metric") {
        None => Ok(default),
        Some(s) => s.parse::<Metric>().map_err(|e| ApiError::InvalidMetric(e.to_string())),
    }
}

pub(super) fn parse_threshold(parts: &Parts) -> Result<Option<f32>, ApiError> {
    match parts.text("threshold") {
        None => Ok(None),
        Some(s) => match s.trim().parse::<f32>() {
            Ok(t) if t.is_finite() && t >= 0.0 => Ok(Some(t)),
            _ => Err(ApiError::InvalidField {
                field: "threshold".into(),
                reason: format!("'{s}' is not a non-negative number"),
            }),
        },
    }
}

/// Compare two images.
#[utoipa::path(post, path = "/v1/verify", tag = "verification",
    request_body(content = VerifyJson, description = "JSON with base64 images, or multipart/form-data with files `image_a`, `image_b` and text fields `metric`, `threshold`, `model`",
        content_type = "application/json"),
    responses(
        (status = 200, body = VerifyResponse),
        (status = 400, body = super::Problem, description = "missing_field, invalid_metric, invalid_field, invalid_json, invalid_multipart"),
        (status = 404, body = super::Problem, description = "unknown_model"),
        (status = 413, body = super::Problem, description = "payload_too_large, image_too_large"),
        (status = 415, body = super::Problem, description = "unsupported_media_type"),
        (status = 422, body = super::Problem, description = "image_decode_failed"),
        (status = 429, body = super::Problem, description = "overloaded (Retry-After)"),
    ))]
pub async fn verify(State(state): State<AppState>, req: Request) -> Result<Json<VerifyResponse>, ApiError> {
    let t0 = Instant::now();
    let registry = state.registry()?;
    let shape = JsonShape { single: &["image_a", "image_b"], list: None };
    let mut parts = read_parts(req, state.limits.max_body_bytes, &shape).await?;
    let a = parts.take_file("image_a")?;
    let b = parts.take_file("image_b")?;
    let h = registry.get(parts.text("model"))?;
    let metric = parse_metric(&parts, h.card().default_metric)?;
    let override_t = parse_threshold(&parts)?;
    let opts = FaceOptions::parse(parts.text("detect"), None)?;
    let t_dec = Instant::now();
    let files = vec![("image_a".into(), a), ("image_b".into(), b)];
    let mut prepared = Vec::new();
    for r in prepare_files(&state, &registry, h, files, opts).await? {
        prepared.push(r?.swap_remove(0));
    }
    let decode_ms = t_dec.elapsed().as_secs_f64() * 1e3;
    let faces = match (&prepared[0].face, &prepared[1].face) {
        (Some(fa), Some(fb)) => Some(PairFaces { image_a: fa.clone(), image_b: fb.clone() }),
        _ => None,
    };
    let out = h.embed(prepared.into_iter().map(|p| p.input).collect()).await?;
    let distance = metric.distance(&out.vectors[0], &out.vectors[1]);
    let cal = h.card().thresholds.get(metric);
    let threshold = override_t.unwrap_or(cal.value);
    Ok(Json(VerifyResponse {
        verified: distance <= threshold,
        distance,
        metric,
        threshold,
        threshold_overridden: override_t.is_some(),
        score: cal.score.score(distance),
        model: model_ref(h),
        timings: Timings::of(decode_ms, &out, t0),
        faces,
    }))
}

/// Embed one or more images.
#[utoipa::path(post, path = "/v1/embed", tag = "verification",
    request_body(content = EmbedJson, description = "JSON `{images: [base64...]}`, or multipart/form-data with one or more `image` files and an optional `model` field",
        content_type = "application/json"),
    responses(
        (status = 200, body = EmbedResponse),
        (status = 400, body = super::Problem), (status = 404, body = super::Problem),
        (status = 413, body = super::Problem), (status = 415, body = super::Problem),
        (status = 422, body = super::Problem), (status = 429, body = super::Problem),
    ))]
pub async fn embed(State(state): State<AppState>, req: Request) -> Result<Json<EmbedResponse>, ApiError> {
    let t0 = Instant::now();
    let registry = state.registry()?;
    let shape = JsonShape { single: &[], list: Some(("images", "image")) };
    let parts = read_parts(req, state.limits.max_body_bytes, &shape).await?;
    let h = registry.get(parts.text("model"))?;
    let opts = FaceOptions::parse(parts.text("detect"), parts.text("faces"))?;
    let files: Vec<(String, Bytes)> = parts
        .files
        .into_iter()
        .filter(|(n, _)| n == "image")
        .enumerate()
        .map(|(k, (_, b))| (format!("image[{k}]"), b))
        .collect();
    if files.is_empty() {
        return Err(ApiError::MissingField("image".into()));
    }
    if files.len() > state.limits.max_images {
        return Err(ApiError::TooManyImages(state.limits.max_images));
    }
    let t_dec = Instant::now();
    let mut inputs = Vec::new();
    let mut origin = Vec::new();
    for (index, r) in prepare_files(&state, &registry, h, files, opts).await?.into_iter().enumerate() {
        for p in r? {
            inputs.push(p.input);
            origin.push((index, p.face));
        }
    }
    let decode_ms = t_dec.elapsed().as_secs_f64() * 1e3;
    let out = h.embed(inputs).await?;
    Ok(Json(EmbedResponse {
        model: model_ref(h),
        timings: Timings::of(decode_ms, &out, t0),
        embeddings: out
            .vectors
            .into_iter()
            .zip(origin)
            .map(|(vector, (index, face))| Embedding { vector, index, face })
            .collect(),
    }))
}

/// The loaded models with their cards' thresholds and figures.
#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, body = ModelsResponse)))]
pub async fn models(State(state): State<AppState>) -> Result<Json<ModelsResponse>, ApiError> {
    let registry = state.registry()?;
    let default = registry.default_id().map(str::to_string);
    let models = registry
        .iter()
        .map(|h| {
            let c = h.card();
            ModelInfo {
                id: c.id.clone(),
                version: c.version,
                modality: c.modality.clone(),
                embedding_size: c.embedding_size,
                input: c.input.clone(),
                default_metric: c.default_metric,
                thresholds: c.thresholds.clone(),
                default: default.as_deref() == Some(c.id.as_str()),
                device: h.device().to_string(),
                evaluation: c.evaluation.clone(),
            }
        })
        .collect();
    Ok(Json(ModelsResponse { models }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: models loaded and warmed up.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, body = super::Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let reg = state.registry()?;
    Ok(Json(
        serde_json::json!({"status": "ready", "models": reg.iter().map(|h| h.card().id.clone()).collect::<Vec<_>>()}),
    ))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics() -> impl IntoResponse {
    let mut buf = String::new();
    let enc = prometheus::TextEncoder::new();
    if let Err(e) = enc.encode_utf8(&prometheus::gather(), &mut buf) {
        return ApiError::Internal(e.to_string()).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response()
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
