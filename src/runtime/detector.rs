//! The face detector's thread: one OS thread owns the MTCNN networks and takes images from a bounded
//! queue. Like the encoders, it gathers a batch (up to `max_batch` images or `max_wait` after the first);
//! each image's pyramid runs through PNet alone (sizes differ), the candidates of the whole batch go through
//! RNet and ONet together. Callers that went away are dropped first; a full queue refuses with `Overloaded`.

use super::{BatchConfig, RuntimeError, Worker};
use crate::face::{Face, Mtcnn};
use crossbeam_channel::RecvTimeoutError;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

struct Job {
    image: Arc<image::RgbImage>,
    reply: oneshot::Sender<Result<Vec<Face>, RuntimeError>>,
}

/// Async-side handle of the detector thread (cheap to clone; the thread is joined when the last clone goes).
#[derive(Clone)]
pub struct DetectorHandle {
    worker: Arc<Worker<Job>>,
    pub id: String,
}

impl std::fmt::Debug for DetectorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DetectorHandle({})", self.id)
    }
}

impl DetectorHandle {
    /// Move `det` onto its own thread (after one warm-up detection).
    pub fn spawn(det: Mtcnn, id: &str, cfg: BatchConfig) -> Result<Self, RuntimeError> {
        let warm = image::RgbImage::new(64, 64);
        det.detect(warm.as_raw(), 64, 64);
        let worker = Worker::spawn(
            format!("detector-{id}"),
            cfg.queue_capacity,
            move |rx: crossbeam_channel::Receiver<Job>, health: Arc<super::Health>| {
                let blank = image::RgbImage::new(64, 64);
                let self_check = || {
                    let _ = health.guard(|| det.detect(blank.as_raw(), 64, 64));
                };
                while let Some(first) = super::next_job(&rx, &health, self_check) {
                    let deadline = Instant::now() + cfg.max_wait;
                    let mut jobs = vec![first];
                    while jobs.len() < cfg.max_batch.max(1) {
                        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                            Ok(j) => jobs.push(j),
                            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    jobs.retain(|j| !j.reply.is_closed());
                    if jobs.is_empty() {
                        continue;
                    }
                    let images: Vec<(&[u8], usize, usize)> = jobs
                        .iter()
                        .map(|j| (j.image.as_raw().as_slice(), j.image.width() as usize, j.image.height() as usize))
                        .collect();
                    match health.guard(|| det.detect_batch(&images)) {
                        Ok(faces) => {
                            for (j, f) in jobs.into_iter().zip(faces) {
                                let _ = j.reply.send(Ok(f));
                            }
                        }
                        Err(panic) => {
                            for j in jobs {
                                let msg = format!("face detection panicked: {panic}");
                                let _ = j.reply.send(Err(RuntimeError::Inference(msg)));
                            }
                            self_check();
                        }
                    }
                }
            },
        )?;
        Ok(DetectorHandle { worker: Arc::new(worker), id: id.to_string() })
    }

    /// Every face in `image`, largest first.
    pub async fn detect(&self, image: Arc<image::RgbImage>) -> Result<Vec<Face>, RuntimeError> {
        let (reply, rx) = oneshot::channel();
        self.worker.try_send(Job { image, reply })?;
        rx.await.map_err(|_| RuntimeError::Stopped)?
    }

    /// Whether the detector's thread runs and its last batch succeeded.
    pub fn health(&self) -> super::HealthReport {
        self.worker.health()
    }

    /// Make the next `n` detection batches panic (fault drills and tests). Not reachable over HTTP.
    #[doc(hidden)]
    pub fn inject_panics(&self, n: u32) {
        self.worker.health.injected.store(n, std::sync::atomic::Ordering::SeqCst);
    }
}
