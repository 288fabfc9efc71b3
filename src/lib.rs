//! # Siamese — face and signature verification with a shared-weight encoder
//!
//! One network (the *encoder*) maps an image to an embedding; two images are compared by the Euclidean or
//! cosine distance of their embeddings against a threshold calibrated on real data.
//!
//! ## Crate map (dependencies point downwards; nothing below `api` knows about HTTP)
//!
//! | module | what lives there |
//! |---|---|
//! | [`cli`] | the `siamese` command line: `serve`, `train`, `eval`, `verify`, `embed`, `info` |
//! | [`api`] | axum router, handlers, problem+json errors, OpenAPI, Prometheus metrics — the only HTTP code |
//! | [`runtime`] | [`runtime::EncoderHandle`]: one OS thread owns each loaded model; a bounded batching queue feeds it; [`runtime::ModelRegistry`] holds the loaded models |
//! | [`dlib`] | reader for dlib's `.dat` format; dlib's face ResNet rebuilt in `tch::nn` (imported as a model directory) |
//! | [`face`] | the face pipeline: MTCNN detection, landmark alignment to the encoder's chip |
//! | [`model`] | the model directory format (`model.json` card + `weights.safetensors`), architectures in `tch::nn` |
//! | [`preprocess`] | image decoding with limits, conversion to the tensor layout a card asks for |
//! | [`distance`] | Euclidean and cosine distance, calibrated score |
//! | [`metrics`] | ROC, AUC, EER, thresholds at a FAR, logistic calibration, plots |
//! | [`dataset`] | folder-per-identity datasets, identity-disjoint splits, pair generation |
//! | [`train`] | contrastive loss, augmentation, the training loop, evaluation of a model on a dataset |
//! | [`store`] | sqlx over SQLite (default) or PostgreSQL: collections, subjects, samples (image + embeddings), API keys |
//! | [`gallery`] | enrolment galleries in memory (one exact matrix per collection), subject verify, 1:N identify, replica sync |
//! | [`auth`] | API keys (hashed) and their scopes `verify`, `enrol`, `admin` |
//!
//! A request's path: `api::routes` → `preprocess::decode_and_prepare` (blocking pool) →
//! `runtime::EncoderHandle::embed` (queue → model thread → batch forward) → `distance` → JSON.
//! Enrolment adds `gallery::Galleries::enrol` (store transaction, then the in-memory index); identify is
//! `gallery::GalleryIndex::nearest_subjects` on the blocking pool.

pub mod api;
pub mod auth;
pub mod cli;
pub mod dataset;
pub mod distance;
pub mod dlib;
pub mod face;
pub mod gallery;
pub mod metrics;
pub mod model;
pub mod preprocess;
pub mod runtime;
pub mod store;
pub mod train;

/// Version of libtorch this build links against (as reported by torch-sys at build time).
pub fn torch_version() -> &'static str {
    "2.11.0"
}
