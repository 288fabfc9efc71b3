//! From uploaded bytes to encoder inputs: decode (blocking pool), and for models that align faces, detect
//! (the detector's thread) → choose the face (largest, or every face) → align → chip. One result per file,
//! so that an upload can keep going past a bad file.

use super::error::ApiError;
use super::AppState;
use crate::face::Face;
use crate::model::Preprocess;
use crate::preprocess;
use crate::runtime::{EncoderHandle, ModelRegistry};
use axum::body::Bytes;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// A face the pipeline used: box `[x1, y1, x2, y2]`, detection score, five landmarks (left eye, right
/// eye, nose, mouth left, mouth right), in the uploaded image's pixels.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
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

/// One encoder input and where it came from.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub input: Vec<f32>,
    pub face: Option<FaceInfo>,
}

/// How faces are found.
#[derive(Debug, Clone, Copy)]
pub struct FaceOptions {
    /// Run the detector (else an image is a ready chip).
    pub detect: bool,
    /// Every face of an image instead of the largest.
    pub all: bool,
}

impl FaceOptions {
    /// `detect` (default true) and `faces` (`largest` or `all`) request fields.
    pub fn parse(detect: Option<&str>, faces: Option<&str>) -> Result<Self, ApiError> {
        let detect = match detect.map(|s| s.trim().to_ascii_lowercase()) {
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
        let all = match faces {
            None | Some("largest") => false,
            Some("all") => true,
            Some(s) => {
                return Err(ApiError::InvalidField {
                    field: "faces".into(),
                    reason: format!("'{s}' is not largest or all"),
                })
            }
        };
        Ok(FaceOptions { detect, all })
    }
}

/// Prepare every file for `h`. Each file gives its inputs (one, or one per face with `all`) or its error.
pub async fn prepare_files(
    state: &AppState,
    registry: &ModelRegistry,
    h: &EncoderHandle,
    files: Vec<(String, Bytes)>,
    opts: FaceOptions,
) -> Result<Vec<Result<Vec<Prepared>, ApiError>>, ApiError> {
    let spec = h.card().input.clone();
    let limits = state.limits.decode;
    let template = match spec.preprocess {
        Preprocess::FaceChip { template } if opts.detect => Some(template),
        _ => None,
    };
    let Some(template) = template else {
        // No detection: decode and prepare on the blocking pool.
        return tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|(field, bytes)| {
                    preprocess::decode_and_prepare(&bytes, limits, &spec)
                        .map(|input| vec![Prepared { input, face: None }])
                        .map_err(|source| ApiError::Image { field, source })
                })
                .collect()
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()));
    };
    let det =
        registry.detector().ok_or_else(|| ApiError::Internal("model aligns faces but no detector is loaded".into()))?;
    let decoded: Vec<(String, Result<Arc<image::RgbImage>, ApiError>)> = tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .map(|(field, bytes)| {
                let r = preprocess::decode(&bytes, limits)
                    .map(|img| Arc::new(img.to_rgb8()))
                    .map_err(|source| ApiError::Image { field: field.clone(), source });
                (field, r)
            })
            .collect()
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut out = Vec::with_capacity(decoded.len());
    for (field, img) in decoded {
        let img = match img {
            Ok(i) => i,
            Err(e) => {
                out.push(Err(e));
                continue;
            }
        };
        let mut faces = det.detect(img.clone()).await?;
        if faces.is_empty() {
            out.push(Err(ApiError::NoFace(field)));
            continue;
        }
        if !opts.all {
            faces.truncate(1);
        }
        let spec = spec.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            faces
                .iter()
                .map(|f| {
                    let chip = crate::face::chip_for(&img, f, &template, spec.width);
                    let mut p = preprocess::to_planes(&image::DynamicImage::ImageRgb8(chip), &spec);
                    preprocess::normalize(&mut p, &spec);
                    Prepared { input: p, face: Some(f.into()) }
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        out.push(Ok(prepared));
    }
    Ok(out)
}
