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

/// A model thread and the sending end of its queue, shared by every clone of its handle. When the last clone
/// goes, the queue closes, the thread finishes the jobs already queued and stops, and it is joined here: no
/// model thread outlives the handles that feed it.
struct Worker<J> {
    tx: Option<crossbeam_channel::Sender<J>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<J: Send + 'static> Worker<J> {
    /// Start `body` on a thread named `name`, fed by a queue of `capacity` jobs.
    fn spawn(
        name: String,
        capacity: usize,
        body: impl FnOnce(crossbeam_channel::Receiver<J>) + Send + 'static,
    ) -> Result<Self, RuntimeError> {
        let (tx, rx) = crossbeam_channel::bounded::<J>(capacity.max(1));
        let thread = std::thread::Builder::new().name(name).spawn(move || body(rx)).map_err(RuntimeError::Spawn)?;
        Ok(Worker { tx: Some(tx), thread: Some(thread) })
    }

    /// Queue `job`, or say at once why not.
    fn try_send(&self, job: J) -> Result<(), RuntimeError> {
        let tx = self.tx.as_ref().ok_or(RuntimeError::Stopped)?;
        tx.try_send(job).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => RuntimeError::Overloaded,
            crossbeam_channel::TrySendError::Disconnected(_) => RuntimeError::Stopped,
        })
    }
}

impl<J> Drop for Worker<J> {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("a model thread panicked");
            }
        }
    }
}

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the queue is full")]
    Overloaded,
    #[error("the model's thread has stopped")]
    Stopped,
    #[error("starting a model thread: {0}")]
    Spawn(std::io::Error),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("loading the face detector from {0}: {1}")]
    Detector(std::path::PathBuf, crate::face::DetectorError),
    #[error("input has {got} values, the model expects {expected}")]
    BadInput { got: usize, expected: usize },
    #[error("unknown model '{0}'")]
    UnknownModel(String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}
