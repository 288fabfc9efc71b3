//! Models: the directory format, the networks built with `tch::nn`, and a loaded model ready to embed.
//!
//! A model is a directory `models/<id>/` holding `model.json` (the *card*, [`ModelCard`]) and
//! `weights.safetensors` (every variable of the network's `VarStore`, batch-norm statistics included).
//!
//! | file | what |
//! |---|---|
//! | [`card`] | the card's schema, its validation, thresholds and subject calibration (plain data, no `tch`) |
//! | [`warp`] | the warp geometry shared by training's augmentation and test-time warps |
//! | [`network`] | [`Network`]: the architectures (small CNN, dlib's ResNet, ensembles) in `tch::nn` |
//! | [`onednn`] | CPU inference plans: weights reordered once for oneDNN, batch-norm folded |
//! | [`loaded`] | [`LoadedModel`]: card + network + variables; embeds flat host buffers |
//! | [`ensemble`] | `siamese ensemble`: models trained apart combined into one model directory |
//!
//! Dependencies point one way: this module knows nothing of training, galleries or HTTP.

pub mod card;
pub mod ensemble;
pub mod loaded;
pub mod network;
pub mod onednn;
pub mod warp;

pub use card::{
    Architecture, Head, InputSpec, Modality, ModelCard, Preprocess, SignatureFit, SignatureInk, SubjectCalibration,
    Threshold, Thresholds, TtaWarp, Verdict, INK_MEDIAN, MOMENT_SPAN,
};
pub use ensemble::combine_ensemble;
pub use loaded::{parse_device, LoadedModel};
pub use network::Network;

use std::path::PathBuf;

pub const CARD_FILE: &str = "model.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model directory {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("model card {0} is not valid: {1}")]
    InvalidCard(PathBuf, String),
    #[error("weights {0} do not fit the architecture: {1}")]
    Weights(PathBuf, String),
    #[error("unknown or unavailable device '{0}'")]
    Device(String),
    #[error("forward pass failed: {0}")]
    Forward(#[from] tch::TchError),
}
