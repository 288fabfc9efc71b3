//! What the handlers share: request fields parsed once (metric, threshold, rule, detection options, paging,
//! JSON bodies), the shapes every answer reuses (`ModelRef`, `FaceInfo`), and the bridge from a request's
//! files to [`crate::pipeline::prepare_files`].

use super::error::ApiError;
use super::input::Parts;
use super::AppState;
use crate::distance::{Metric, Rule};
use crate::face::{Face, FaceSelect};
use crate::model::ModelCard;
use crate::pipeline::{self, Options, Prepared};
use crate::runtime::{EncoderHandle, ModelRegistry};
use crate::store::Collection;
use axum::body::Bytes;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{id, version}` of the model that answered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelRef {
    pub id: String,
    pub version: u32,
}

impl From<&ModelCard> for ModelRef {
    fn from(c: &ModelCard) -> Self {
        ModelRef { id: c.id.clone(), version: c.version }
    }
}

/// A face the pipeline used: box `[x1, y1, x2, y2]`, detection score, five landmarks (left eye, right
/// eye, nose, mouth left, mouth right), in the uploaded image's pixels.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FaceInfo {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
}

impl From<&Face> for FaceInfo {
    fn from(f: &Face) -> Self {
        FaceInfo { bbox: f.bbox, score: f.score, landmarks: f.landmarks }
    }
}

/// The request's `metric`, else `default`.
pub fn parse_metric(parts: &Parts, default: Metric) -> Result<Metric, ApiError> {
    match parts.text("metric") {
        None => Ok(default),
        Some(s) => s.parse::<Metric>().map_err(|e| ApiError::InvalidMetric(e.to_string())),
    }
}

/// The request's `threshold`, when given.
pub fn parse_threshold(parts: &Parts) -> Result<Option<f32>, ApiError> {
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

/// The request's `rule`, else the model card's calibrated subject rule, else the service's default.
pub fn parse_rule(parts: &Parts, card: &ModelCard) -> Result<Rule, ApiError> {
    match parts.text("rule") {
        None => Ok(card.subject_rule()),
        Some(s) => Rule::parse(s).ok_or_else(|| ApiError::InvalidField {
            field: "rule".into(),
            reason: format!("'{s}' is not one of min, meanK (e.g. mean3), mean, centroid"),
        }),
    }
}

/// A `true`/`false` field of the request (`false` when absent).
pub fn parse_flag(parts: &Parts, name: &str) -> Result<bool, ApiError> {
    match parts.text(name).map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(s) if s == "true" || s == "1" => Ok(true),
        Some(s) if s == "false" || s == "0" => Ok(false),
        Some(s) => Err(ApiError::InvalidField { field: name.into(), reason: format!("'{s}' is not true or false") }),
    }
}

/// An optional true/false field: `None` when the request does not have it.
pub fn parse_opt_flag(parts: &Parts, name: &str) -> Result<Option<bool>, ApiError> {
    Ok(match parts.text(name) {
        None => None,
        Some(_) => Some(parse_flag(parts, name)?),
    })
}

/// `bytes` of a PNG as a `data:` URL.
pub fn png_data_url(bytes: &[u8]) -> String {
    use base64::Engine;
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The request's `detect` (default true) and `faces` fields: `central` (the default: the face nearest the centre
/// among the large ones), `largest`, or `all` (only where `allow_all`).
pub fn pipeline_options(parts: &Parts, allow_all: bool) -> Result<Options, ApiError> {
    let detect = match parts.text("detect").map(|s| s.trim().to_ascii_lowercase()) {
        None => true,
        Some(s) if s == "true" || s == "1" => true,
        Some(s) if s == "false" || s == "0" => false,
        Some(s) => {
            return Err(ApiError::InvalidField {
                field: "detect".into(),
                reason: format!("'{s}' is not true or false"),
            })
        }
    };
    let (select, all_faces) = match parts.text("faces") {
        None | Some("central") => (FaceSelect::Central, false),
        Some("largest") => (FaceSelect::Largest, false),
        Some("all") if allow_all => (FaceSelect::Central, true),
        Some(s) => {
            let choices = if allow_all { "central, largest or all" } else { "central or largest" };
            return Err(ApiError::InvalidField { field: "faces".into(), reason: format!("'{s}' is not {choices}") });
        }
    };
    Ok(Options { detect, select, all_faces, ..Options::default() })
}

/// Every named file prepared for `h`'s input: one result per file (a bad file keeps its own error, named by
/// its field).
pub async fn prepare(
    state: &AppState,
    registry: &ModelRegistry,
    h: &EncoderHandle,
    files: Vec<(String, Bytes)>,
    options: Options,
) -> Result<Vec<Result<Vec<Prepared>, ApiError>>, ApiError> {
    // While this request's images are prepared, the model's batches wait for it (up to `--max-wait-ms`).
    let _coming = h.preparing();
    let done = pipeline::prepare_files(
        files,
        state.limits.decode,
        &h.card().input,
        options,
        registry.detector(),
        Some(&state.decode_budget),
    )
    .await?;
    Ok(done.into_iter().map(|(field, r)| r.map_err(|e| ApiError::from_pipeline(&field, e))).collect())
}

/// A JSON body (of at most `max_body` bytes), or the problem with it.
pub fn json_body<T>(
    b: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    max_body: usize,
) -> Result<T, ApiError> {
    b.map(|Json(x)| x).map_err(|e| match e {
        axum::extract::rejection::JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected application/json".into())
        }
        other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(max_body),
        other => ApiError::InvalidJson(other.body_text()),
    })
}

/// axum's `Path`, refusing with problem+json (`invalid_path`) instead of plain text.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// axum's `Query`, refusing with problem+json (`invalid_query`) instead of plain text.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::InvalidPath(e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::InvalidQuery(e.body_text())
    }
}

/// `?limit=&cursor=&prefix=` of a paged list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub prefix: Option<String>,
}

impl ListQuery {
    /// The page size: 50 by default, 1 to 1000.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(l) if (1..=1000).contains(&l) => Ok(l),
            Some(_) => Err(ApiError::InvalidField { field: "limit".into(), reason: "between 1 and 1000".into() }),
        }
    }
}

/// The collection `name` (once the service is ready).
pub async fn collection(state: &AppState, name: &str) -> Result<Collection, ApiError> {
    state.registry()?;
    Ok(state.galleries.collection(name).await?)
}

/// The encoder of a collection's model.
pub fn encoder_of(state: &AppState, c: &Collection) -> Result<EncoderHandle, ApiError> {
    Ok(state.registry()?.get(Some(&c.model_id))?.clone())
}
