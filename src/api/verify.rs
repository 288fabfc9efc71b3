//! `POST /v1/verify` (are two images the same identity?) and `POST /v1/embed` (the embeddings themselves).

use super::common::{self, parse_metric, parse_threshold, pipeline_options, FaceInfo, ModelRef};
use super::error::ApiError;
use super::input::{read_parts, JsonShape};
use super::AppState;
use crate::distance::Metric;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use utoipa::ToSchema;

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
    /// Also return the encoder's inputs as PNG pictures (`chips`), e.g. the aligned faces.
    pub chips: Option<bool>,
    /// Embed each image and its mirror image and average the two (twice the encoder's work); default: the
    /// deployment's setting (`serve --mirror-average`), else the model card's.
    pub mirror_average: Option<bool>,
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
    /// Whether the embeddings were mirror-averaged.
    pub mirror_average: bool,
    pub timings: Timings,
    /// The faces used, when the model detects and aligns faces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faces: Option<PairFaces>,
    /// With `chips=true`: what the encoder saw for each image, as `data:image/png;base64,…` URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chips: Option<PairChips>,
}

/// The encoder's input for each image of a pair, as PNG data URLs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PairChips {
    pub image_a: String,
    pub image_b: String,
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
    /// As for verify: mirror averaging for this request.
    pub mirror_average: Option<bool>,
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
    /// Whether the embeddings were mirror-averaged.
    pub mirror_average: bool,
    pub embeddings: Vec<Embedding>,
    pub timings: Timings,
}

/// Compare two images.
#[utoipa::path(post, path = "/v1/verify", tag = "verification",
    request_body(content = VerifyJson, description = "JSON with base64 images, or multipart/form-data with files `image_a`, `image_b` and text fields `metric`, `threshold`, `model`, `detect`, `chips`, `mirror_average`",
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
    let options = pipeline_options(&parts, false)?;
    let with_chips = common::parse_flag(&parts, "chips")?;
    let mirror = common::parse_opt_flag(&parts, "mirror_average")?;
    let t_dec = Instant::now();
    let files = vec![("image_a".into(), a), ("image_b".into(), b)];
    let mut prepared = Vec::new();
    for r in common::prepare(&state, &registry, h, files, options).await? {
        prepared.push(r?.swap_remove(0));
    }
    let decode_ms = t_dec.elapsed().as_secs_f64() * 1e3;
    let faces = match (&prepared[0].face, &prepared[1].face) {
        (Some(fa), Some(fb)) => Some(PairFaces { image_a: fa.into(), image_b: fb.into() }),
        _ => None,
    };
    let chips = with_chips.then(|| {
        let png = |p: &crate::pipeline::Prepared| {
            common::png_data_url(&crate::preprocess::input_png(&p.input, &h.card().input))
        };
        PairChips { image_a: png(&prepared[0]), image_b: png(&prepared[1]) }
    });
    let out = h.embed_with(prepared.into_iter().map(|p| p.input).collect(), mirror).await?;
    let v = h.card().thresholds.get(metric).decide(metric.distance(&out.vectors[0], &out.vectors[1]), override_t);
    Ok(Json(VerifyResponse {
        verified: v.verified,
        distance: v.distance,
        metric,
        threshold: v.threshold,
        threshold_overridden: v.threshold_overridden,
        score: v.score,
        model: h.card().into(),
        mirror_average: mirror.unwrap_or(h.mirror_average()),
        timings: Timings::of(decode_ms, &out, t0),
        faces,
        chips,
    }))
}

/// Embed one or more images.
#[utoipa::path(post, path = "/v1/embed", tag = "verification",
    request_body(content = EmbedJson, description = "JSON `{images: [base64...]}`, or multipart/form-data with one or more `image` files and optional `model`, `detect`, `faces`, `mirror_average` fields",
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
    let options = pipeline_options(&parts, true)?;
    let mirror = common::parse_opt_flag(&parts, "mirror_average")?;
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
    for (index, r) in common::prepare(&state, &registry, h, files, options).await?.into_iter().enumerate() {
        for p in r? {
            inputs.push(p.input);
            origin.push((index, p.face.as_ref().map(FaceInfo::from)));
        }
    }
    let decode_ms = t_dec.elapsed().as_secs_f64() * 1e3;
    let out = h.embed_with(inputs, mirror).await?;
    Ok(Json(EmbedResponse {
        model: h.card().into(),
        mirror_average: mirror.unwrap_or(h.mirror_average()),
        timings: Timings::of(decode_ms, &out, t0),
        embeddings: out
            .vectors
            .into_iter()
            .zip(origin)
            .map(|(vector, (index, face))| Embedding { vector, index, face })
            .collect(),
    }))
}
