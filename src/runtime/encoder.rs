//! The model thread and its batching queue.
//!
//! A batch closes when it holds `max_batch` images, when `max_wait` has passed since its first job arrived,
//! or at once when no request for this model is still being prepared (decoded, its faces detected): with
//! nobody on the way, waiting would only add latency. Jobs whose caller has gone (the HTTP client hung up)
//! are dropped before any compute. The queue is bounded: when it is full, [`EncoderHandle::embed`] fails at
//! once with `Overloaded` instead of making the caller wait without bound. Jobs carry their mirror-averaging
//! choice; a batch runs one forward pass per choice among its jobs.

use super::{RuntimeError, Worker};
use crate::model::{LoadedModel, ModelCard};
use crossbeam_channel::RecvTimeoutError;
use prometheus::{Histogram, HistogramOpts, IntGauge};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How a model thread runs: batching parameters and the deployment's mirror-averaging choice.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Most images one forward pass takes.
    pub max_batch: usize,
    /// Longest a batch waits for company after its first job arrived.
    pub max_wait: Duration,
    /// Jobs that may wait in the queue; one more is refused as overloaded.
    pub queue_capacity: usize,
    /// Mirror averaging for every model (`serve --mirror-average on|off`); `None`: each card's own setting.
    pub mirror_average: Option<bool>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_batch: 16, max_wait: Duration::from_millis(5), queue_capacity: 256, mirror_average: None }
    }
}

/// The embeddings of one job and where its time went.
#[derive(Debug, Clone)]
pub struct EmbedOutput {
    pub vectors: Vec<Vec<f32>>,
    /// Time from enqueue to the start of the forward pass.
    pub queue_ms: f64,
    /// Time of the forward pass that carried this job.
    pub inference_ms: f64,
    /// Images in that forward pass.
    pub batch_images: usize,
}

struct Job {
    inputs: Vec<Vec<f32>>,
    /// Embed each input and its mirror image and average the two.
    mirror: bool,
    enqueued: Instant,
    reply: oneshot::Sender<Result<EmbedOutput, RuntimeError>>,
}

static BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    let h = Histogram::with_opts(
        HistogramOpts::new("siamese_batch_images", "Images per forward pass")
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
    )
    .expect("metric");
    prometheus::register(Box::new(h.clone())).ok();
    h
});
static INFER_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    let h = Histogram::with_opts(HistogramOpts::new("siamese_inference_seconds", "Duration of one forward pass"))
        .expect("metric");
    prometheus::register(Box::new(h.clone())).ok();
    h
});
static QUEUE_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new("siamese_queue_jobs", "Jobs waiting in encoder queues").expect("metric");
    prometheus::register(Box::new(g.clone())).ok();
    g
});

/// Async-side handle to one model thread. Cloning is cheap; the thread stops, and is joined, when the last
/// clone is dropped.
#[derive(Clone)]
pub struct EncoderHandle {
    worker: Arc<Worker<Job>>,
    card: Arc<ModelCard>,
    device: String,
    /// Most images per job: a larger request is cut into jobs of this size (no forward pass beyond it).
    max_batch: usize,
    /// Mirror averaging when a request does not choose: the deployment's setting, else the card's.
    mirror: bool,
    /// Requests for this model being prepared right now ([`EncoderHandle::preparing`]).
    preparing: Arc<AtomicUsize>,
}

/// Counts a request as being prepared for a model until dropped ([`EncoderHandle::preparing`]).
pub struct Preparing(Arc<AtomicUsize>);

impl Drop for Preparing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EncoderHandle {
    /// Move `model` onto a new thread, warm it up with one forward pass, and return its handle.
    pub fn spawn(model: LoadedModel, cfg: BatchConfig) -> Result<Self, RuntimeError> {
        let card = Arc::new(model.card.clone());
        let mirror = cfg.mirror_average.unwrap_or(card.input.mirror_average);
        let preparing = Arc::new(AtomicUsize::new(0));
        let on_the_way = preparing.clone();
        let device = format!("{:?}", model.vs.device());
        let n = card.input.len();
        // Warm-up before anyone can call: allocations and kernel choice happen here, not on a request.
        model.embed_flat(&vec![0.0; n * cfg.max_batch.clamp(1, 4)], cfg.max_batch.clamp(1, 4))?;
        let worker = Worker::spawn(format!("model-{}", card.id), cfg.queue_capacity, move |rx, health| {
            model_thread(model, rx, cfg, &health, &on_the_way)
        })?;
        Ok(EncoderHandle { worker: Arc::new(worker), card, device, max_batch: cfg.max_batch.max(1), mirror, preparing })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// Say that a request for this model is being prepared, until the guard is dropped: while any is, a
    /// batch waits up to `max_wait` for company; with none, it runs at once.
    pub fn preparing(&self) -> Preparing {
        self.preparing.fetch_add(1, Ordering::Relaxed);
        Preparing(self.preparing.clone())
    }

    /// Whether [`EncoderHandle::embed`] mirror-averages (the deployment's setting, else the card's).
    pub fn mirror_average(&self) -> bool {
        self.mirror
    }

    fn submit(
        &self,
        inputs: Vec<Vec<f32>>,
        mirror: bool,
    ) -> Result<oneshot::Receiver<Result<EmbedOutput, RuntimeError>>, RuntimeError> {
        let expected = self.card.input.len();
        if let Some(bad) = inputs.iter().find(|v| v.len() != expected) {
            return Err(RuntimeError::BadInput { got: bad.len(), expected });
        }
        let (reply, rx) = oneshot::channel();
        self.worker.try_send(Job { inputs, mirror, enqueued: Instant::now(), reply })?;
        QUEUE_DEPTH.inc();
        Ok(rx)
    }

    /// Whether the model's thread runs and its last forward pass succeeded.
    pub fn health(&self) -> super::HealthReport {
        self.worker.health()
    }

    /// Make the next `n` forward passes of this model panic (fault drills and tests: the batch's requests
    /// fail, `/readyz` reports the model, the thread recovers). Not reachable over HTTP.
    #[doc(hidden)]
    pub fn inject_panics(&self, n: u32) {
        self.worker.health.injected.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Embed preprocessed images (each `C × H × W` as the card says), in order, mirror-averaged as
    /// [`EncoderHandle::mirror_average`] says.
    pub async fn embed(&self, inputs: Vec<Vec<f32>>) -> Result<EmbedOutput, RuntimeError> {
        self.embed_with(inputs, None).await
    }

    /// [`EncoderHandle::embed`] with mirror averaging chosen by the caller (`None`: the handle's setting).
    pub async fn embed_with(
        &self,
        mut inputs: Vec<Vec<f32>>,
        mirror: Option<bool>,
    ) -> Result<EmbedOutput, RuntimeError> {
        let mirror = mirror.unwrap_or(self.mirror);
        if inputs.len() <= self.max_batch {
            let rx = self.submit(inputs, mirror)?;
            return rx.await.map_err(|_| RuntimeError::Stopped)?;
        }
        // Jobs of at most max_batch inputs, one after the other. The first is admitted or refused like any
        // job; once admitted, the request's later jobs wait for room in the queue instead of failing.
        let mut out = EmbedOutput { vectors: Vec::new(), queue_ms: 0.0, inference_ms: 0.0, batch_images: 0 };
        let mut first = true;
        while !inputs.is_empty() {
            let rest = inputs.split_off(inputs.len().min(self.max_batch));
            let chunk = std::mem::replace(&mut inputs, rest);
            let rx = loop {
                match self.submit(chunk.clone(), mirror) {
                    Err(RuntimeError::Overloaded) if !first => {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await
                    }
                    r => break r?,
                }
            };
            first = false;
            let part = rx.await.map_err(|_| RuntimeError::Stopped)??;
            out.vectors.extend(part.vectors);
            out.queue_ms = out.queue_ms.max(part.queue_ms);
            out.inference_ms += part.inference_ms;
            out.batch_images = out.batch_images.max(part.batch_images);
        }
        Ok(out)
    }
}

fn model_thread(
    model: LoadedModel,
    rx: crossbeam_channel::Receiver<Job>,
    cfg: BatchConfig,
    health: &super::Health,
    preparing: &AtomicUsize,
) {
    let n_in = model.card.input.len();
    let blank = vec![0f32; n_in];
    let self_check = || {
        let _ = health.guard(|| model.embed_flat(&blank, 1));
    };
    while let Some(first) = super::next_job(&rx, health, self_check) {
        let deadline = Instant::now() + cfg.max_wait;
        let mut jobs = vec![first];
        let mut images = jobs[0].inputs.len();
        while images < cfg.max_batch {
            // Queued jobs join at once; beyond them, wait (in short steps, re-checking) only while some
            // request for this model is still being prepared.
            let left = deadline.saturating_duration_since(Instant::now());
            let coming = preparing.load(Ordering::Relaxed) > 0;
            let step = if coming { left.min(Duration::from_micros(500)) } else { Duration::ZERO };
            match rx.recv_timeout(step) {
                Ok(j) => {
                    images += j.inputs.len();
                    jobs.push(j);
                }
                Err(RecvTimeoutError::Timeout) if coming && Instant::now() < deadline => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        QUEUE_DEPTH.sub(jobs.len() as i64);
        // Callers that went away are not worth a forward pass.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        // One forward pass per mirror setting among the batch's jobs.
        let (mirrored, plain): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.mirror);
        for (group, mirror) in [(plain, false), (mirrored, true)] {
            if !group.is_empty() {
                run_batch(&model, group, mirror, n_in, health, &self_check);
            }
        }
    }
}

/// One forward pass over `jobs` (all with the same mirror setting), each job answered with its vectors.
fn run_batch(
    model: &LoadedModel,
    jobs: Vec<Job>,
    mirror: bool,
    n_in: usize,
    health: &super::Health,
    self_check: &dyn Fn(),
) {
    let total: usize = jobs.iter().map(|j| j.inputs.len()).sum();
    let mut flat = Vec::with_capacity(total * n_in);
    for j in &jobs {
        for v in &j.inputs {
            flat.extend_from_slice(v);
        }
    }
    let start = Instant::now();
    let result = match health.guard(|| model.embed_flat_with(&flat, total, mirror, true)) {
        Ok(r) => r,
        Err(panic) => {
            for j in jobs {
                let _ = j.reply.send(Err(RuntimeError::Inference(format!("the forward pass panicked: {panic}"))));
            }
            self_check();
            return;
        }
    };
    let infer = start.elapsed();
    BATCH_SIZE.observe(total as f64);
    INFER_SECONDS.observe(infer.as_secs_f64());
    match result {
        Ok(vectors) => {
            let mut it = vectors.into_iter();
            for j in jobs {
                let k = j.inputs.len();
                let out = EmbedOutput {
                    vectors: it.by_ref().take(k).collect(),
                    queue_ms: (start - j.enqueued).as_secs_f64() * 1e3,
                    inference_ms: infer.as_secs_f64() * 1e3,
                    batch_images: total,
                };
                let _ = j.reply.send(Ok(out));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "forward pass failed");
            let msg = e.to_string();
            for j in jobs {
                let _ = j.reply.send(Err(RuntimeError::Inference(msg.clone())));
            }
        }
    }
}
