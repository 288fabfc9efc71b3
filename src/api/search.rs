//! Search an enrolled collection: verify a probe against one subject, and 1:N identify. A probe is an image
//! (multipart field `image`, or base64 JSON `image`) or a ready `embedding` (JSON list of numbers).

use super::auth::Caller;
use super::common::Path;
use super::common::{
    self, collection, encoder_of, parse_metric, parse_rule, parse_threshold, pipeline_options, ModelRef,
};
use super::error::ApiError;
use super::input::{read_parts, JsonShape, Parts};
use super::AppState;
use crate::auth::Scope;
use crate::distance::Metric;
use crate::gallery::GalleryError;
use crate::runtime::EncoderHandle;
use crate::store::Collection;
use axum::extract::{Request, State};
use axum::Json;
use serde::Serialize;
use std::time::Instant;
use utoipa::ToSchema;

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
    /// Every sample's distance, nearest first (empty for `verify`-only keys: per-sample distances would let
    /// a client rebuild a stored template by probing).
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
    /// The subject's nearest sample and its distance (absent for `verify`-only keys: per-sample distances
    /// would let a client rebuild a stored template by probing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest_sample: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest_distance: Option<f32>,
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

/// What every collection-wide probe route reads first, in this order: the caller, the collection and its
/// encoder, the body, the metric.
pub(super) struct ProbeRequest {
    pub(super) caller: Caller,
    /// Per-sample figures only for callers who may read the samples anyway (the `enrol` scope).
    pub(super) detail: bool,
    pub(super) c: Collection,
    pub(super) h: EncoderHandle,
    pub(super) parts: Parts,
    pub(super) metric: Metric,
}

impl ProbeRequest {
    pub(super) async fn read(state: &AppState, c: &str, req: Request) -> Result<Self, ApiError> {
        let caller = req.extensions().get::<Caller>().cloned().unwrap_or_default();
        let detail = caller.may(Scope::Enrol);
        let c = collection(state, c).await?;
        let h = encoder_of(state, &c)?;
        let parts = read_parts(req, state.limits.max_body_bytes, &JsonShape { single: &["image"], list: None }).await?;
        let metric = parse_metric(&parts, h.card().default_metric)?;
        Ok(ProbeRequest { caller, detail, c, h, parts, metric })
    }
}

/// A probe: its embedding, and the encoder input it was made from (`None` for an `embedding` a client sent).
pub(super) struct Probe {
    pub(super) vector: Vec<f32>,
    input: Option<Vec<f32>>,
}

impl Probe {
    /// The model version the probe was embedded with, to be checked against the gallery's.
    pub(super) fn version(&self, h: &EncoderHandle) -> Option<i64> {
        self.input.as_ref().map(|_| h.card().version as i64)
    }

    /// The collection switched model version meanwhile: embed the same input with the version served now.
    /// Returns false when that cannot help (a client's embedding, or too many tries).
    pub(super) async fn reembed(
        &mut self,
        state: &AppState,
        c: &Collection,
        h: &mut EncoderHandle,
        tries: &mut u32,
    ) -> Result<bool, ApiError> {
        let Some(input) = &self.input else { return Ok(false) };
        *tries += 1;
        if *tries > 3 {
            return Ok(false);
        }
        *h = encoder_of(state, c)?;
        self.vector = h.embed(vec![input.clone()]).await?.vectors.remove(0);
        Ok(true)
    }
}

/// The probe's embedding: a given `embedding` (callers with the `enrol` scope: raw embeddings let a client
/// search the embedding space directly), or the `image` run through the collection's model.
pub(super) async fn probe_embedding(
    state: &AppState,
    h: &EncoderHandle,
    parts: &mut Parts,
    caller: &Caller,
) -> Result<Probe, ApiError> {
    if let Some(text) = parts.text("embedding") {
        if !caller.may(Scope::Enrol) {
            return Err(ApiError::Forbidden(
                "probing with a raw embedding needs a key with the 'enrol' scope; send an image".into(),
            ));
        }
        let v: Vec<f32> = serde_json::from_str(text).map_err(|e| ApiError::InvalidField {
            field: "embedding".into(),
            reason: format!("expected a list of numbers: {e}"),
        })?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(ApiError::InvalidField { field: "embedding".into(), reason: "values must be finite".into() });
        }
        return Ok(Probe { vector: v, input: None });
    }
    let img = parts.take_file("image")?;
    let options = pipeline_options(parts, false)?;
    let registry = state.registry()?;
    let mut prepared = common::prepare(state, &registry, h, vec![("image".into(), img)], options).await?;
    let input = prepared.remove(0)?.swap_remove(0).input;
    let vector = h.embed(vec![input.clone()]).await?.vectors.remove(0);
    Ok(Probe { vector, input: Some(input) })
}

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
    let caller = req.extensions().get::<Caller>().cloned().unwrap_or_default();
    // Per-sample distances only for callers who may read the samples anyway.
    let detail = caller.may(Scope::Enrol);
    let c = collection(&state, &c).await?;
    let subject = state.galleries.subject(&c, &s).await?;
    let mut h = encoder_of(&state, &c)?;
    let mut parts = read_parts(req, state.limits.max_body_bytes, &JsonShape { single: &["image"], list: None }).await?;
    let metric = parse_metric(&parts, h.card().default_metric)?;
    let override_t = parse_threshold(&parts)?;
    let rule = parse_rule(&parts, h.card())?;
    let mut probe = probe_embedding(&state, &h, &mut parts, &caller).await?;
    let mut tries = 0;
    let (distance, per) = loop {
        let r = state.galleries.verify_subject(&c, &subject, &probe.vector, probe.version(&h), metric, rule).await;
        match r {
            Err(GalleryError::VersionChanged { .. }) if probe.reembed(&state, &c, &mut h, &mut tries).await? => {}
            r => break r?,
        }
    };
    let v = h.card().subject_threshold(rule, metric).decide(distance, override_t);
    Ok(Json(SubjectVerdict {
        verified: v.verified,
        subject: subject.name,
        distance,
        metric,
        threshold: v.threshold,
        threshold_overridden: v.threshold_overridden,
        score: v.score,
        rule: rule.name(),
        samples: per
            .into_iter()
            .filter(|_| detail)
            .map(|p| SampleDistanceInfo { sample_id: p.sample_id, distance: p.distance })
            .collect(),
        model: h.card().into(),
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
    let ProbeRequest { caller, detail, c, mut h, mut parts, metric } = ProbeRequest::read(&state, &c, req).await?;
    let override_t = parse_threshold(&parts)?;
    let rule = parse_rule(&parts, h.card())?;
    let top_k = match parts.text("top_k") {
        None => 5,
        Some(t) => t.trim().parse::<usize>().ok().filter(|k| (1..=100).contains(k)).ok_or_else(|| {
            ApiError::InvalidField { field: "top_k".into(), reason: format!("'{t}' is not an integer from 1 to 100") }
        })?,
    };
    let mut probe = probe_embedding(&state, &h, &mut parts, &caller).await?;
    let mut tries = 0;
    let (found, searched) = loop {
        let r = state.galleries.identify(&c, probe.vector.clone(), probe.version(&h), metric, rule, top_k).await;
        match r {
            Err(GalleryError::VersionChanged { .. }) if probe.reembed(&state, &c, &mut h, &mut tries).await? => {}
            r => break r?,
        }
    };
    // 1:N compares a probe with every subject, so its default operating point is the stricter one the card
    // calibrated at a false-accept rate of 1e-3 (1:1 verification uses the EER point).
    let cal = h.card().subject_threshold(rule, metric);
    let threshold = override_t.unwrap_or(cal.at_far_1e3);
    let candidates: Vec<Candidate> = found
        .into_iter()
        .map(|m| (cal.decide_at(m.distance, override_t, cal.at_far_1e3), m))
        .map(|(v, m)| Candidate {
            within_threshold: v.verified,
            score: v.score,
            subject: m.subject_name,
            distance: m.distance,
            samples: m.samples,
            nearest_sample: detail.then_some(m.nearest_sample),
            nearest_distance: detail.then_some(m.nearest_distance),
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
        model: h.card().into(),
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
    }))
}
