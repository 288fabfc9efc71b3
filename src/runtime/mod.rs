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
pub use encoder::{BatchConfig, EmbedOutput, EncoderHandle, Preparing};
pub use registry::{ModelRegistry, SharedRegistry};

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

/// A model thread and the sending end of its queue, shared by every clone of its handle. When the last clone
/// goes, the queue closes, the thread finishes the jobs already queued and stops, and it is joined here: no
/// model thread outlives the handles that feed it.
struct Worker<J> {
    tx: Option<crossbeam_channel::Sender<J>>,
    thread: Option<std::thread::JoinHandle<()>>,
    health: Arc<Health>,
}

/// How a model thread is doing: a panic inside a batch (libtorch out of memory, say) fails that batch's
/// requests, is counted, and marks the thread failing until a forward pass succeeds again (the thread checks
/// itself at once after a panic, then every second while failing, so it recovers without traffic).
#[derive(Debug, Default)]
pub struct Health {
    panics: AtomicU64,
    failing: AtomicBool,
    /// Batches still to fail on purpose ([`EncoderHandle::inject_panics`]).
    injected: AtomicU32,
}

/// What `/readyz` tells of one model thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthReport {
    /// The thread is running.
    pub alive: bool,
    /// Its last forward pass panicked and no pass has succeeded since.
    pub failing: bool,
    /// Panics caught since start.
    pub panics: u64,
}

impl Health {
    /// Run `f` (one batch) catching a panic: `Err` with its message, the thread marked failing.
    fn guard<T>(&self, f: impl FnOnce() -> T) -> Result<T, String> {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if self.injected.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                panic!("injected fault");
            }
            f()
        }));
        match out {
            Ok(v) => {
                self.failing.store(false, Ordering::SeqCst);
                Ok(v)
            }
            Err(payload) => {
                self.panics.fetch_add(1, Ordering::SeqCst);
                self.failing.store(true, Ordering::SeqCst);
                PANICS.inc();
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                tracing::error!(thread = std::thread::current().name().unwrap_or("?"), panic = %msg, "a batch panicked; its requests fail, the thread goes on");
                Err(msg)
            }
        }
    }

    fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }
}

/// Take the next job; while the thread is failing, run `self_check` whenever a second passes without one.
fn next_job<J>(rx: &crossbeam_channel::Receiver<J>, health: &Health, mut self_check: impl FnMut()) -> Option<J> {
    loop {
        if !health.is_failing() {
            return rx.recv().ok();
        }
        match rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(j) => return Some(j),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => self_check(),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
        }
    }
}

static PANICS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    let c = prometheus::IntCounter::new(
        "siamese_model_thread_panics_total",
        "Batches that panicked in a model or detector thread",
    )
    .expect("metric");
    prometheus::register(Box::new(c.clone())).ok();
    c
});

impl<J: Send + 'static> Worker<J> {
    /// Start `body` on a thread named `name`, fed by a queue of `capacity` jobs.
    fn spawn(
        name: String,
        capacity: usize,
        body: impl FnOnce(crossbeam_channel::Receiver<J>, Arc<Health>) + Send + 'static,
    ) -> Result<Self, RuntimeError> {
        let (tx, rx) = crossbeam_channel::bounded::<J>(capacity.max(1));
        let health = Arc::new(Health::default());
        let h = health.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || body(rx, h)).map_err(RuntimeError::Spawn)?;
        Ok(Worker { tx: Some(tx), thread: Some(thread), health })
    }

    fn health(&self) -> HealthReport {
        HealthReport {
            alive: self.thread.as_ref().is_some_and(|t| !t.is_finished()),
            failing: self.health.is_failing(),
            panics: self.health.panics.load(Ordering::SeqCst),
        }
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
