//! # Siamese — face and signature verification with a shared-weight encoder
//!
//! One network (the *encoder*) maps an image to an embedding; two images are compared by the Euclidean or
//! cosine distance of their embeddings against a threshold calibrated on real data.
//!
//! ## Crate map (dependencies point downwards; nothing below `api` knows about HTTP)
//!
//! | module | what lives there |
//! |---|---|
//! | [`cli`] | the `siamese` command line, one file per group of subcommands |
//! | [`startup`] | [`startup::Application`]: settings → database, bind policy, listener, models, galleries, background tasks, shutdown; used by `serve` and the tests |
//! | [`api`] | axum router, one file per resource, problem+json errors, API-key gate, OpenAPI, Prometheus metrics — the only HTTP code |
//! | [`jobs`] | retrain jobs: parameters and their checks, the queue, the trainer's thread, the evaluation gate |
//! | [`catalog`] | model versions in the database, loading any version, activation without mixing versions |
//! | [`gallery`] | enrolment galleries in memory (one exact matrix per collection), subject verify, 1:N identify, replica sync, re-embedding, names, quality control and anomaly scores |
//! | [`auth`] | API keys (hashed) and their scopes `verify`, `enrol`, `admin` |
//! | [`store`] | SQL only (sqlx over SQLite or PostgreSQL): collections, subjects, samples, embeddings, API keys |
//! | [`pipeline`] | bytes → encoder input: decode, detect, choose a face, align, or the whole image; used by HTTP, CLI, training, evaluation, re-embedding |
//! | [`runtime`] | threads that own tensors: one per loaded model behind a batching queue, one for the face detector; the registry of loaded models |
//! | [`train`] | contrastive loss, augmentation, the training loop, evaluation, calibration |
//! | [`model`] | the model card (no `tch`), networks, a loaded model, ensembles, warp geometry |
//! | [`face`] | MTCNN detection, face choice, landmark alignment to the encoder's chip |
//! | [`dlib`] | reader for dlib's `.dat` format; dlib's face ResNet rebuilt in `tch::nn` |
//! | [`preprocess`] | image decoding with limits; image → planes for a card (resize, signature ink on paper) |
//! | [`distance`], [`metrics`], [`dataset`] | distances and aggregation rules; ROC, EER, calibration, plots; folder-per-identity datasets |
//! | [`heap`] | the C heap under libtorch: arena cap, trimming, counters for `/metrics` |
//!
//! ## Two request paths
//!
//! `POST /v1/verify`: [`api::verify`] reads the two files → [`pipeline::prepare_files`] (decode on the
//! blocking pool; for a face model, detection on the detector's thread, then align) →
//! [`runtime::EncoderHandle::embed`] (queue → model thread → one batched forward pass) → distance →
//! [`model::Threshold::decide`] → JSON.
//!
//! `POST /v1/collections/{c}/subjects/{s}/samples`: [`api::samples`] reads the files → the same pipeline
//! and encoder → [`gallery::Galleries::enrol`] (image, row and embedding in one store transaction, then
//! the in-memory index; replicas hear of it through PostgreSQL's `NOTIFY`).

pub mod api;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod dataset;
pub mod distance;
pub mod dlib;
pub mod face;
pub mod gallery;
pub mod heap;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod runtime;
pub mod startup;
pub mod store;
pub mod train;

/// The version of the libtorch this process runs on, read from the library itself: the directory that
/// holds the loaded `libtorch_cpu.so` says it (`../version.py` of a PyTorch installation, or
/// `../build-version` of a standalone libtorch). `None` when neither is found.
pub fn torch_version() -> Option<String> {
    // Any call into libtorch makes sure the library is loaded before the maps are read.
    let _ = tch::get_num_threads();
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let lib = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libtorch_cpu.so"))?;
    let dir = std::path::Path::new(lib).parent()?.parent()?;
    if let Ok(v) = std::fs::read_to_string(dir.join("build-version")) {
        return Some(v.trim().to_string());
    }
    let py = std::fs::read_to_string(dir.join("version.py")).ok()?;
    let line = py.lines().find(|l| l.starts_with("__version__"))?;
    Some(line.split(['\'', '"']).nth(1)?.to_string())
}
