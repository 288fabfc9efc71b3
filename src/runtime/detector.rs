//! The face detector's thread: one OS thread owns the MTCNN networks and takes images from a bounded
//! queue, one at a time (MTCNN's pyramid differs per image size, so images are not stacked; RNet and ONet
//! already batch every candidate of an image). A full queue refuses at once with `Overloaded`.

use super::RuntimeError;
use crate::face::{Face, Mtcnn};
use crossbeam_channel::{bounded, Sender, TrySendError};
use std::sync::Arc;
use tokio::sync::oneshot;

struct Job {
    image: Arc<image::RgbImage>,
    reply: oneshot::Sender<Vec<Face>>,
}

/// Async-side handle of the detector thread (cheap to clone).
#[derive(Clone)]
pub struct DetectorHandle {
    tx: Sender<Job>,
    pub id: String,
}

impl std::fmt::Debug for DetectorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DetectorHandle({})", self.id)
    }
}

impl DetectorHandle {
    /// Move `det` onto its own thread (after one warm-up detection).
    pub fn spawn(det: Mtcnn, id: &str, queue: usize) -> Result<Self, RuntimeError> {
        let warm = image::RgbImage::new(64, 64);
        det.detect(warm.as_raw(), 64, 64);
        let (tx, rx) = bounded::<Job>(queue.max(1));
        std::thread::Builder::new()
            .name(format!("detector-{id}"))
            .spawn(move || {
                while let Ok(j) = rx.recv() {
                    if j.reply.is_closed() {
                        continue;
                    }
                    let faces = det.detect(j.image.as_raw(), j.image.width() as usize, j.image.height() as usize);
                    let _ = j.reply.send(faces);
                }
            })
            .map_err(|_| RuntimeError::Stopped)?;
        Ok(DetectorHandle { tx, id: id.to_string() })
    }

    /// Every face in `image`, largest first.
    pub async fn detect(&self, image: Arc<image::RgbImage>) -> Result<Vec<Face>, RuntimeError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { image, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(RuntimeError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(RuntimeError::Stopped),
        }
        rx.await.map_err(|_| RuntimeError::Stopped)
    }
}
