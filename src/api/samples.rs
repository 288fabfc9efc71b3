//! `/v1/collections/{c}/subjects/{s}/samples`: upload images (one result per file), list (paged), get one,
//! its stored original, delete.

use super::common::{self, collection, encoder_of, pipeline_options, FaceInfo, ListQuery};
use super::common::{Path, Query};
use super::error::ApiError;
use super::input::{read_parts, JsonShape};
use super::AppState;
use crate::gallery::quality::{Assessment, FaceMeasures, Quality, QualityPolicy, Verdict};
use crate::gallery::GalleryError;
use crate::store::{NewSample, Sample};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

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
    /// `genuine` (a reference of the subject) or `forgery` (a skilled forgery of the subject's signature:
    /// used by retrain jobs as a hard negative, never compared with at verify or identify).
    pub kind: String,
    /// The quality verdict the sample was given at upload (absent for forgeries and older samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
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
            kind: if s.forgery { "forgery" } else { "genuine" }.into(),
            quality: s.quality.and_then(|q| serde_json::from_value(q).ok()),
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
    /// The quality control's verdict on the file (genuine samples that were embedded): `ok`,
    /// `inconsistent`, `duplicate` or `low_quality`, with reasons. Under the collection's `refuse` policy a
    /// flagged file is not stored and its error code is the verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
}

/// Per-file results. Status 201 when every file was stored, 207 when some were, 422 when none.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleUpload {
    pub subject: String,
    pub stored: usize,
    pub failed: usize,
    pub results: Vec<SampleResult>,
}

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
    let subject = state.galleries.subject(&c, &s).await?;
    let h = encoder_of(&state, &c)?;
    let shape = JsonShape { single: &[], list: Some(("images", "image")) };
    let parts = read_parts(req, state.limits.max_body_bytes, &shape).await?;
    let options = pipeline_options(&parts, false)?;
    let forgery = match parts.text("kind").map(str::trim) {
        None | Some("genuine") => false,
        Some("forgery") => true,
        Some(k) => {
            return Err(ApiError::InvalidField {
                field: "kind".into(),
                reason: format!("'{k}' is not genuine or forgery"),
            })
        }
    };
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
    let prepared = common::prepare(&state, &registry, &h, named, options).await?;
    let decoded: Vec<Decoded> = files
        .into_iter()
        .zip(prepared)
        .map(|(b, r)| match r {
            Ok(mut v) => {
                let p = v.swap_remove(0);
                let new = NewSample { forgery, ..NewSample::new(b.to_vec(), options.detect) };
                Ok((new, p.input, p.face.as_ref().map(FaceInfo::from)))
            }
            Err(e) => Err(FileError { code: e.status_code().1.to_string(), message: e.to_string() }),
        })
        .collect();
    // One forward pass for every decodable file.
    let inputs: Vec<Vec<f32>> = decoded.iter().filter_map(|d| d.as_ref().ok().map(|(_, x, _)| x.clone())).collect();
    let vectors = if inputs.is_empty() { Vec::new() } else { h.embed(inputs).await?.vectors };
    let qualities = quality_of(&state, &c, &subject, &h, &decoded, &vectors, forgery).await?;
    let (mut vectors, mut qualities) = (vectors.into_iter(), qualities.into_iter());
    let mut results = Vec::new();
    for (index, d) in decoded.into_iter().enumerate() {
        let r = match d {
            Err(error) => SampleResult {
                index,
                status: "failed".into(),
                sample: None,
                error: Some(error),
                face: None,
                quality: None,
            },
            Ok((mut new, input, face)) => {
                let v = vectors.next().ok_or_else(|| ApiError::Internal("embedding count".into()))?;
                let quality = qualities.next().flatten();
                let refused =
                    quality.as_ref().filter(|q| c.quality_policy == QualityPolicy::Refuse && q.verdict != Verdict::Ok);
                if let Some(q) = refused {
                    let error = FileError { code: q.verdict.as_str().into(), message: q.reasons.join("; ") };
                    results.push(SampleResult {
                        index,
                        status: "failed".into(),
                        sample: None,
                        error: Some(error),
                        face,
                        quality,
                    });
                    continue;
                }
                new.quality = quality.as_ref().and_then(|q| serde_json::to_value(q).ok());
                match enrol(&state, &c, &subject, &new, v, &h, &input).await {
                    Ok(s) => SampleResult {
                        index,
                        status: "stored".into(),
                        sample: Some(s.into()),
                        error: None,
                        face,
                        quality,
                    },
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
                            quality: None,
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
    let limit = q.limit()?;
    let c = collection(&state, &c).await?;
    let subject = state.galleries.subject(&c, &s).await?;
    let mut samples = state.galleries.samples(&subject, q.cursor.as_deref(), limit + 1).await?;
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
    let subject = state.galleries.subject(&c, &s).await?;
    Ok(Json(state.galleries.sample(&subject, &id).await?.into()))
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
    let subject = state.galleries.subject(&c, &s).await?;
    let sample = state.galleries.sample(&subject, &id).await?;
    let bytes = state.galleries.sample_image(&sample).await?;
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
    let subject = state.galleries.subject(&c, &s).await?;
    state.galleries.delete_sample(&c, &subject, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

type Decoded = Result<(NewSample, Vec<f32>, Option<FaceInfo>), FileError>;

/// The quality control's verdict on each decoded file (in order; `None` for forgeries, and for every file
/// when the collection switched model version meanwhile). The files are judged together with the subject's
/// enrolled samples and with each other.
async fn quality_of(
    state: &AppState,
    c: &crate::store::Collection,
    subject: &crate::store::Subject,
    h: &crate::runtime::EncoderHandle,
    decoded: &[Decoded],
    vectors: &[Vec<f32>],
    forgery: bool,
) -> Result<Vec<Option<Quality>>, ApiError> {
    if forgery || vectors.is_empty() {
        return Ok(vec![None; vectors.len()]);
    }
    let card = h.card();
    let metric = card.default_metric;
    let threshold = card.thresholds.get(metric).value;
    let (ih, iw) = (card.input.height as usize, card.input.width as usize);
    let version = card.version as i64;
    let assessed = match state.galleries.assess(c, &subject.id, vectors.to_vec(), version, metric, threshold).await {
        Ok(a) => a,
        Err(GalleryError::VersionChanged { .. }) => return Ok(vec![None; vectors.len()]),
        Err(e) => return Err(e.into()),
    };
    let faces = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .map(|(_, input, face)| face.as_ref().map(|f| FaceMeasures::new(f.bbox, f.score, f.landmarks, input, ih, iw)));
    Ok(assessed.into_iter().zip(faces).map(|(a, f): (Assessment, _)| Some(a.judge(threshold, f))).collect())
}

/// Store one sample with the embedding `v` made by `h` from `input`; when the collection switched model
/// version meanwhile, the input is embedded again with the version served now.
async fn enrol(
    state: &AppState,
    c: &crate::store::Collection,
    subject: &crate::store::Subject,
    new: &NewSample,
    mut v: Vec<f32>,
    h: &crate::runtime::EncoderHandle,
    input: &[f32],
) -> Result<crate::store::Sample, crate::gallery::GalleryError> {
    let mut version = h.card().version as i64;
    for _ in 0..3 {
        match state.galleries.enrol(c, subject, new, &v, version).await {
            Err(crate::gallery::GalleryError::VersionChanged { .. }) => {
                let h = state.models().get(Some(&c.model_id))?.clone();
                version = h.card().version as i64;
                v = h.embed(vec![input.to_vec()]).await?.vectors.remove(0);
            }
            r => return r,
        }
    }
    state.galleries.enrol(c, subject, new, &v, version).await
}
