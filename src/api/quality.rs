//! Quality control and anomaly detection over HTTP: `GET /v1/collections/{c}/audit` (flagged samples and
//! subjects whose samples disagree, worst first) and `POST /v1/collections/{c}/anomaly` (does a probe
//! resemble anything enrolled?). The arithmetic is in [`crate::gallery::quality`].

use super::common::{collection, encoder_of, Path};
use super::error::ApiError;
use super::search::{probe_embedding, ProbeRequest};
use super::AppState;
use crate::distance::Metric;
use crate::gallery::anomaly::{AnomalyScore, ANOMALY_QUANTILE};
use crate::gallery::quality::{AuditSample, AuditSubject};
use crate::gallery::GalleryError;
use axum::extract::{Request, State};
use axum::Json;
use serde::Serialize;
use std::time::Instant;
use utoipa::ToSchema;

/// The audit of a collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditResponse {
    /// Flagged samples, worst first: `inconsistent` (by how far beyond the threshold), `duplicate`, then
    /// `low_quality` (as given at upload).
    pub samples: Vec<AuditSample>,
    /// Subjects with at least one pair of samples beyond the threshold, most disagreeing first.
    pub subjects: Vec<AuditSubject>,
    pub metric: Metric,
    /// The model's calibrated 1:1 threshold the samples were judged against.
    pub threshold: f32,
    /// Samples audited (the collection's genuine samples in its index).
    pub audited: usize,
    pub total_ms: f64,
}

/// Flagged samples and disagreeing subjects of a collection, recomputed from its current embeddings
/// (O(n²) distances: about 1 s per 10,000 samples on two cores). Optional `limit` (default 100, at most
/// 10,000) per list.
#[utoipa::path(get, path = "/v1/collections/{c}/audit", tag = "enrolment",
    params(("c" = String, Path), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = AuditResponse), (status = 404, body = super::Problem)))]
pub async fn audit(
    State(state): State<AppState>,
    Path(c): Path<String>,
    super::common::Query(q): super::common::Query<AuditQuery>,
) -> Result<Json<AuditResponse>, ApiError> {
    let t0 = Instant::now();
    let limit = match q.limit {
        None => 100,
        Some(l) if (1..=10_000).contains(&l) => l as usize,
        Some(l) => {
            return Err(ApiError::InvalidField { field: "limit".into(), reason: format!("{l} is not from 1 to 10000") })
        }
    };
    let c = collection(&state, &c).await?;
    let h = encoder_of(&state, &c)?;
    let metric = h.card().default_metric;
    let threshold = h.card().thresholds.get(metric).value;
    let (mut samples, mut subjects, audited) = state.galleries.audit(&c, metric, threshold).await?;
    let flagged: std::collections::HashSet<String> = samples.iter().map(|s| s.sample_id.clone()).collect();
    samples
        .extend(state.galleries.low_quality_samples(&c).await?.into_iter().filter(|s| !flagged.contains(&s.sample_id)));
    samples.truncate(limit);
    subjects.truncate(limit);
    Ok(Json(AuditResponse {
        samples,
        subjects,
        metric,
        threshold,
        audited,
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
    }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<i64>,
}

/// Does a probe resemble anything enrolled?
#[derive(Debug, Serialize, ToSchema)]
pub struct AnomalyResponse {
    /// True when `score > 1`, or when a face model finds no face in the image (`reason: "no_face"`).
    pub anomalous: bool,
    /// Distance to the nearest enrolled sample ÷ `reference`; absent when no face was found.
    pub score: Option<f32>,
    pub distance: Option<f32>,
    /// The collection's own leave-one-out nearest-neighbour distance at its 95th percentile.
    pub reference: Option<f32>,
    /// The quantile `reference` is taken at.
    pub quantile: f32,
    /// `no_face` when the image holds no face for a face model; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The nearest enrolled subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest_subject: Option<String>,
    /// Its nearest sample (callers with the `enrol` scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest_sample: Option<String>,
    pub metric: Metric,
    pub searched: usize,
    pub model: super::common::ModelRef,
    pub total_ms: f64,
}

/// Score a probe (multipart or JSON `image`, or `embedding` with the `enrol` scope; optional `metric`)
/// against the whole collection: its distance to the nearest enrolled sample relative to the collection's
/// own nearest-neighbour distances. 422 `too_few_samples` when the collection has fewer than 2 samples.
#[utoipa::path(post, path = "/v1/collections/{c}/anomaly", tag = "enrolment", params(("c" = String, Path)),
    responses((status = 200, body = AnomalyResponse), (status = 400, body = super::Problem), (status = 404, body = super::Problem),
        (status = 422, body = super::Problem, description = "too_few_samples, image_decode_failed")))]
pub async fn anomaly(
    State(state): State<AppState>,
    Path(c): Path<String>,
    req: Request,
) -> Result<Json<AnomalyResponse>, ApiError> {
    let t0 = Instant::now();
    let ProbeRequest { caller, detail, c, mut h, mut parts, metric } = ProbeRequest::read(&state, &c, req).await?;
    let (searched, _) = state.galleries.stats(&c.id).unwrap_or((0, 0));
    if searched < 2 {
        return Err(ApiError::TooFewSamples(searched));
    }
    let answer =
        |score: Option<AnomalyScore>, reason: Option<String>, h: &crate::runtime::EncoderHandle| AnomalyResponse {
            anomalous: score.as_ref().is_none_or(|s| s.score > 1.0),
            score: score.as_ref().map(|s| s.score),
            distance: score.as_ref().map(|s| s.distance),
            reference: score.as_ref().map(|s| s.reference),
            quantile: ANOMALY_QUANTILE,
            reason,
            nearest_subject: score.as_ref().map(|s| s.nearest_subject.clone()),
            nearest_sample: score.as_ref().filter(|_| detail).map(|s| s.nearest_sample.clone()),
            metric,
            searched: score.as_ref().map(|s| s.searched).unwrap_or(searched),
            model: h.card().into(),
            total_ms: t0.elapsed().as_secs_f64() * 1e3,
        };
    let mut probe = match probe_embedding(&state, &h, &mut parts, &caller).await {
        Err(ApiError::NoFace(_)) => return Ok(Json(answer(None, Some("no_face".into()), &h))),
        r => r?,
    };
    let mut tries = 0;
    let score = loop {
        match state.galleries.anomaly(&c, probe.vector.clone(), probe.version(&h), metric).await {
            Err(GalleryError::VersionChanged { .. }) if probe.reembed(&state, &c, &mut h, &mut tries).await? => {}
            r => break r?,
        }
    };
    match score {
        Some(s) => Ok(Json(answer(Some(s), None, &h))),
        None => Err(ApiError::TooFewSamples(0)),
    }
}
