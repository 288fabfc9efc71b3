//! Re-embedding after a model changes version: a collection's gallery holds embeddings of one model
//! version, so samples enrolled under an older version are missing from it until they are embedded again.
//! At start-up the service does that in the background from the stored original images, through the same
//! preparation as enrolment (for face models: detect, the central face, align), and adds each new embedding to
//! the gallery as it is stored (replicas hear of it like any enrolment).

use super::{Galleries, GalleryError};
use crate::pipeline::{prepare_files, Options, PipelineError};
use crate::preprocess::DecodeLimits;
use crate::runtime::{DetectorHandle, EncoderHandle, ModelRegistry};
use crate::store::{Change, Collection, EmbeddingRow, StoreError};
use bytes::Bytes;

/// Samples embedded again, per run.
const CHUNK: usize = 16;

/// Embed every sample that lacks an embedding under its collection's loaded model version; returns how many
/// were embedded. Each is prepared as at enrolment (a chip enrolled with `detect=false` is not run through
/// detection). A sample whose image no longer yields an input is logged and left out of the gallery.
pub async fn reembed_missing(
    galleries: &Galleries,
    registry: &ModelRegistry,
    limits: DecodeLimits,
) -> Result<usize, GalleryError> {
    let mut done = 0;
    for c in galleries.store().collections().await? {
        let Ok(h) = registry.get(Some(&c.model_id)) else { continue };
        done += embed_missing(galleries, &c, h, registry.detector(), limits).await?;
    }
    Ok(done)
}

/// Embed with `h` (any version of the collection's model, e.g. one being activated) every sample of `c`
/// that lacks an embedding of that version; returns how many were embedded.
pub async fn embed_missing(
    galleries: &Galleries,
    c: &Collection,
    h: &EncoderHandle,
    detector: Option<&DetectorHandle>,
    limits: DecodeLimits,
) -> Result<usize, GalleryError> {
    let store = galleries.store();
    let mut done = 0;
    let (model_id, version) = (h.card().id.clone(), h.card().version as i64);
    let missing = store.samples_missing_embedding(&c.id, &model_id, version).await?;
    if missing.is_empty() {
        return Ok(0);
    }
    tracing::info!(collection = %c.name, model = %model_id, version, samples = missing.len(),
        "embedding samples from their stored images");
    // Prepared as at enrolment: pre-aligned chips (enrolled with `detect=false`) without detection.
    let (detected, chips): (Vec<_>, Vec<_>) = missing.into_iter().partition(|(_, detect)| *detect);
    let batches = detected.chunks(CHUNK).chain(chips.chunks(CHUNK));
    for chunk in batches {
        let detect = chunk[0].1;
        let chunk: Vec<String> = chunk.iter().map(|(s, _)| s.clone()).collect();
        let mut files = Vec::with_capacity(chunk.len());
        for s in &chunk {
            files.push((s.clone(), Bytes::from(store.sample_image(s).await?)));
        }
        let options = Options { detect, ..Options::default() };
        let prepared =
            patiently(|| prepare_files(files.clone(), limits, &h.card().input, options, detector, None)).await?;
        let (mut ids, mut inputs) = (Vec::new(), Vec::new());
        for (s, (_, p)) in chunk.iter().zip(prepared) {
            match p {
                Ok(mut v) if !v.is_empty() => {
                    ids.push(s);
                    inputs.push(v.swap_remove(0).input);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(sample = %s, error = %e, "cannot re-embed this sample"),
            }
        }
        if inputs.is_empty() {
            continue;
        }
        let vectors = patiently(|| async { h.embed(inputs.clone()).await.map_err(PipelineError::from) }).await?.vectors;
        for (s, v) in ids.into_iter().zip(vectors) {
            match store.add_embedding(&c.id, s, &EmbeddingRow::new(&model_id, version, &v)).await {
                Ok(()) => done += 1,
                // Another replica embedded it first.
                Err(StoreError::Conflict { .. }) => {}
                // The sample was deleted meanwhile.
                Err(StoreError::Db(sqlx::Error::Database(d))) if d.is_foreign_key_violation() => {}
                Err(e) => return Err(e.into()),
            }
            galleries.apply(&Change::SampleAdded { collection: c.id.clone(), sample: s.clone() }).await?;
        }
    }
    Ok(done)
}

/// Run `f` again while the service is at capacity (a full model or detector queue): background
/// re-embedding waits for room instead of giving up; any other error is returned.
async fn patiently<T, F, Fut>(mut f: F) -> Result<T, PipelineError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PipelineError>>,
{
    let mut wait = std::time::Duration::from_millis(50);
    loop {
        match f().await {
            Err(PipelineError::Detector(crate::runtime::RuntimeError::Overloaded)) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(2));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeError;

    #[tokio::test]
    async fn re_embedding_waits_out_a_full_queue_and_stops_on_other_errors() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r = patiently(|| async {
            match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 | 1 => Err(PipelineError::Detector(RuntimeError::Overloaded)),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        let r: Result<(), _> = patiently(|| async { Err(PipelineError::NoDetector) }).await;
        assert!(matches!(r, Err(PipelineError::NoDetector)));
    }
}
