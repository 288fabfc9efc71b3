//! `siamese serve`: the HTTP service, started through [`crate::startup`] like the tests start it.

use super::{device, DbArgs, ModelArgs};
use crate::api::ServerLimits;
use crate::preprocess::DecodeLimits;
use crate::runtime::BatchConfig;
use crate::startup::{Application, CollectionSpec, Settings};
use anyhow::Result;
use clap::Args;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, env = "SIAMESE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Model used when a request names none (default: the first face model).
    #[arg(long, env = "SIAMESE_DEFAULT_MODEL")]
    pub default_model: Option<String>,
    /// Most images per forward pass.
    #[arg(long, env = "SIAMESE_MAX_BATCH", default_value_t = 16)]
    pub max_batch: usize,
    /// Longest wait for a batch to fill, milliseconds.
    #[arg(long, env = "SIAMESE_MAX_WAIT_MS", default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Requests that may queue per model before 429.
    #[arg(long, env = "SIAMESE_QUEUE", default_value_t = 256)]
    pub queue: usize,
    /// Mirror averaging (embed each image and its mirror image, average the two): `card` (each model's
    /// setting), `on` or `off`. It doubles the encoder's work; requests to /v1/verify and /v1/embed may
    /// still choose with `mirror_average`.
    #[arg(long, env = "SIAMESE_MIRROR_AVERAGE", value_enum, default_value = "card")]
    pub mirror_average: super::Mirror,
    /// Largest request body in bytes.
    #[arg(long, env = "SIAMESE_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Largest image width or height in pixels.
    #[arg(long, env = "SIAMESE_MAX_IMAGE_DIM", default_value_t = 8192)]
    pub max_image_dim: u32,
    /// Most memory one image decode may use, bytes.
    #[arg(long, env = "SIAMESE_MAX_DECODE_BYTES", default_value_t = 256 << 20)]
    pub max_decode_bytes: u64,
    /// Most images per request.
    #[arg(long, default_value_t = 32)]
    pub max_images: usize,
    /// Most MiB one request's images may take once decoded (413 `images_too_large`).
    #[arg(long, env = "SIAMESE_MAX_REQUEST_DECODE_MIB", default_value_t = 1024)]
    pub max_request_decode_mib: u64,
    /// Most MiB of decoded images across all requests at once (429 `overloaded` beyond).
    #[arg(long, env = "SIAMESE_MAX_INFLIGHT_DECODE_MIB", default_value_t = 2048)]
    pub max_inflight_decode_mib: u64,
    /// Seconds a client may take to send a request's headers (then the connection is closed).
    #[arg(long, env = "SIAMESE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a request may take, its body upload included (then 504 `timeout`).
    #[arg(long, env = "SIAMESE_REQUEST_TIMEOUT_SECS", default_value_t = 60)]
    pub request_timeout_secs: u64,
    #[command(flatten)]
    pub db: DbArgs,
    /// In-memory gallery precision: `f32`, or `f16` (half the memory and time per 1:N query).
    #[arg(long, env = "SIAMESE_GALLERY_PRECISION", value_enum, default_value = "f32")]
    pub gallery_precision: crate::gallery::Precision,
    /// Collections to create at start-up when missing: `NAME=MODALITY[:MODEL]`, comma-separated.
    #[arg(
        long = "collection",
        env = "SIAMESE_COLLECTIONS",
        value_delimiter = ',',
        default_value = "faces=face,signatures=signature"
    )]
    pub collections: Vec<CollectionSpec>,
    /// Folder for retrain jobs (laid-out data, checkpoints, candidates) and unpacked model versions.
    #[arg(long, env = "SIAMESE_WORK_DIR", default_value = "data/work")]
    pub work_dir: std::path::PathBuf,
    /// Retrain jobs may name dataset folders under this folder only (unset: jobs train on collections).
    #[arg(long, env = "SIAMESE_DATA_ROOT")]
    pub data_root: Option<std::path::PathBuf>,
}

impl ServeArgs {
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_body_bytes: self.max_body_bytes,
            max_images: self.max_images,
            decode: DecodeLimits { max_dimension: self.max_image_dim, max_alloc_bytes: self.max_decode_bytes },
            max_request_decode_bytes: self.max_request_decode_mib << 20,
            max_inflight_decode_bytes: self.max_inflight_decode_mib << 20,
            timeouts: crate::api::Timeouts {
                header: Duration::from_secs(self.header_timeout_secs.max(1)),
                request: Duration::from_secs(self.request_timeout_secs.max(1)),
            },
        }
    }
    pub fn batch(&self) -> BatchConfig {
        BatchConfig {
            max_batch: self.max_batch,
            max_wait: Duration::from_millis(self.max_wait_ms),
            queue_capacity: self.queue,
            mirror_average: self.mirror_average.forced(),
        }
    }
}

impl ServeArgs {
    /// The service's settings from these flags.
    pub fn settings(&self) -> Result<Settings> {
        Ok(Settings {
            bind: self.bind.clone(),
            models_dir: self.model.models.clone(),
            device: device(&self.model.device)?,
            default_model: self.default_model.clone(),
            batch: self.batch(),
            limits: self.limits(),
            database_url: self.db.url.clone(),
            gallery_precision: self.gallery_precision,
            collections: self.collections.clone(),
            work_dir: self.work_dir.clone(),
            data_root: self.data_root.clone(),
        })
    }
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let settings = a.settings()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let device = settings.device;
        let app = Application::build(settings).await?;
        if !app.keys_enforced {
            eprintln!("siamese: no API key exists: open access, listening on loopback only (create one with `siamese keys create`)");
        }
        let addr = app.addr();
        tracing::info!(%addr, ?device, "listening");
        eprintln!("siamese: serving on http://{addr} (docs at /docs)");
        app.run_until_stopped(crate::api::shutdown_signal()).await?;
        Ok(())
    })
}
