//! Serving runtime: one OS thread owns each loaded model and is fed by a bounded batching queue.
//!
//! - [`EncoderHandle`] is the cheap, cloneable, async-side handle of one model.
//! - [`ModelRegistry`] holds every loaded model and the default per modality.
//!
//! `tch::Tensor` is `Send` but not `Sync`, so no tensor ever leaves the model thread: requests carry plain
//! `Vec<f32>` inputs and get plain `Vec<f32>` embeddings back.

mod detector;
mod encoder;
mod registry;

pub use detector::DetectorHandle;
pub use encoder::{BatchConfig, EmbedOutput, EncoderHandle};
pub use registry::{ModelRegistry, SharedRegistry};

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the encoder queue is full")]
    Overloaded,
    #[error("the encoder thread has stopped")]
    Stopped,
    #[error("input has {got} values, the model expects {expected}")]
    BadInput { got: usize, expected: usize },
    #[error("unknown model '{0}'")]
    UnknownModel(String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}
