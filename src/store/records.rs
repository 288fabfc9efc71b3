//! The records the store keeps — collections, subjects, samples, embeddings — and how a row becomes one.

use super::{get, Result, StoreError};
use crate::model::Modality;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;

/// A named gallery bound to a modality and a model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Collection {
    pub id: String,
    pub name: String,
    pub modality: Modality,
    pub model_id: String,
    pub created_at: i64,
    /// What an upload does with a sample the quality control flags.
    #[serde(default)]
    pub quality_policy: QualityPolicy,
}

/// What an upload does with a flagged file: store it and say so, or refuse it (422 with the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QualityPolicy {
    #[default]
    Flag,
    Refuse,
}

impl QualityPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            QualityPolicy::Flag => "flag",
            QualityPolicy::Refuse => "refuse",
        }
    }
}

impl std::str::FromStr for QualityPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "flag" => Ok(QualityPolicy::Flag),
            "refuse" => Ok(QualityPolicy::Refuse),
            other => Err(format!("'{other}' is not flag or refuse")),
        }
    }
}

/// A person (or writer) enrolled in a collection; `name` is unique within it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subject {
    pub id: String,
    pub collection_id: String,
    pub name: String,
    pub metadata: Option<serde_json::Value>,
    pub created_at: i64,
    pub sample_count: i64,
}

/// One enrolled image of a subject (its bytes are fetched separately).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub id: String,
    pub subject_id: String,
    pub sha256: String,
    pub content_type: String,
    pub width: i64,
    pub height: i64,
    pub byte_size: i64,
    pub created_at: i64,
    /// False for a pre-aligned chip enrolled with `detect=false` (no face detection at enrolment, nor when
    /// the sample is embedded again under a new model version).
    pub detect: bool,
    /// A skilled forgery of the subject's signature (training only; never a reference).
    pub forgery: bool,
    /// The quality verdict given at upload (JSON), when one was.
    #[serde(default)]
    pub quality: Option<serde_json::Value>,
}

/// What enrolling a sample writes: the original image and its facts.
#[derive(Debug, Clone)]
pub struct NewSample {
    pub image: Vec<u8>,
    pub sha256: String,
    pub content_type: String,
    pub width: i64,
    pub height: i64,
    /// See [`Sample::detect`].
    pub detect: bool,
    /// See [`Sample::forgery`].
    pub forgery: bool,
    /// See [`Sample::quality`].
    pub quality: Option<serde_json::Value>,
}

impl NewSample {
    /// The record of an uploaded image: its SHA-256, its media type and its size (read from its header;
    /// `0 × 0` when the header does not say), kept byte for byte.
    pub fn new(image: Vec<u8>, detect: bool) -> Self {
        let content_type = match image::guess_format(&image) {
            Ok(f) => f.to_mime_type().to_string(),
            Err(_) => "application/octet-stream".into(),
        };
        let (width, height) = image::ImageReader::new(std::io::Cursor::new(&image[..]))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok())
            .unwrap_or((0, 0));
        NewSample {
            sha256: hex::encode(Sha256::digest(&image)),
            content_type,
            width: width as i64,
            height: height as i64,
            image,
            detect,
            forgery: false,
            quality: None,
        }
    }
}

/// An embedding as stored: little-endian f32s. `dim` must equal `vector.len() / 4`; the database checks it.
#[derive(Debug, Clone)]
pub struct EmbeddingRow {
    pub model_id: String,
    pub model_version: i64,
    pub dim: i64,
    pub vector: Vec<u8>,
}

impl EmbeddingRow {
    pub fn new(model_id: &str, model_version: i64, v: &[f32]) -> Self {
        EmbeddingRow {
            model_id: model_id.to_string(),
            model_version,
            dim: v.len() as i64,
            vector: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

pub(super) fn floats(bytes: &[u8]) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(StoreError::Corrupt(format!("embedding of {} bytes", bytes.len())));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// An embedding read back with the sample and subject it belongs to.
#[derive(Debug, Clone)]
pub struct StoredEmbedding {
    pub sample_id: String,
    pub subject_id: String,
    pub subject_name: String,
    pub vector: Vec<f32>,
}

/// A change to a gallery, announced to other replicas (JSON on [`super::CHANGE_CHANNEL`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    SampleAdded {
        collection: String,
        sample: String,
    },
    SampleRemoved {
        collection: String,
        sample: String,
    },
    SubjectRemoved {
        collection: String,
        subject: String,
    },
    SubjectRenamed {
        collection: String,
        subject: String,
        name: String,
    },
    CollectionAdded {
        collection: String,
    },
    CollectionRemoved {
        collection: String,
    },
    /// A model version became the active one (its embeddings are already stored).
    ModelActivated {
        model: String,
        version: i64,
    },
}

impl Change {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub(super) fn collection(r: &AnyRow) -> Result<Collection> {
    Ok(Collection {
        id: get(r, "id")?,
        name: get(r, "name")?,
        modality: get::<String>(r, "modality")?.parse().map_err(StoreError::Corrupt)?,
        model_id: get(r, "model_id")?,
        created_at: get(r, "created_at")?,
        quality_policy: get::<String>(r, "quality_policy")?.parse().map_err(StoreError::Corrupt)?,
    })
}

pub(super) fn subject(r: &AnyRow) -> Result<Subject> {
    let meta: Option<String> = get(r, "metadata")?;
    Ok(Subject {
        id: get(r, "id")?,
        collection_id: get(r, "collection_id")?,
        name: get(r, "name")?,
        metadata: meta.map(|m| serde_json::from_str(&m)).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: get(r, "created_at")?,
        sample_count: get(r, "sample_count")?,
    })
}

pub(super) fn sample(r: &AnyRow) -> Result<Sample> {
    Ok(Sample {
        id: get(r, "id")?,
        subject_id: get(r, "subject_id")?,
        sha256: get(r, "sha256")?,
        content_type: get(r, "content_type")?,
        width: get(r, "width")?,
        height: get(r, "height")?,
        byte_size: get(r, "byte_size")?,
        detect: get::<i64>(r, "detect")? != 0,
        forgery: get::<String>(r, "kind")? == "forgery",
        created_at: get(r, "created_at")?,
        quality: get::<Option<String>>(r, "quality")?
            .map(|q| serde_json::from_str(&q))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}
