//! The `siamese` command line. Each subcommand parses its flags (with `SIAMESE_*` environment fallbacks)
//! and calls into the library; nothing here is needed by the server's request path.

use crate::api::{self, AppState, ServerLimits};
use crate::dataset::{parse_identity_list, read_pairs_file, Dataset};
use crate::distance::Metric;
use crate::model::{parse_device, Architecture, InputSpec, LoadedModel};
use crate::preprocess::{self, DecodeLimits};
use crate::runtime::{BatchConfig, ModelRegistry};
use crate::train::{self, Augment, TrainConfig};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tch::Device;

#[derive(Parser, Debug)]
#[command(name = "siamese", version, about = "Face and signature verification with a shared-weight encoder")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the libtorch version and whether CUDA is available.
    Info,
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Train an encoder with contrastive loss and write a model directory.
    Train(Box<TrainArgs>),
    /// Evaluate a model on all pairs of some identities, or on an LFW-style pairs file.
    Eval(EvalArgs),
    /// Verify two image files.
    Verify(VerifyArgs),
    /// Print the embeddings of image files as JSON lines.
    Embed(EmbedArgs),
    /// Manage API keys: create, list, revoke.
    Keys(KeysArgs),
    /// Enrolment-style evaluation: enrol K images per identity, probe with the rest and with never-enrolled
    /// identities; compare aggregation rules for subject verify and identify.
    EvalGallery(EvalGalleryArgs),
    /// Import a pretrained encoder into a model directory: `siamese import dlib FILE.dat --out DIR`.
    Import(ImportArgs),
    /// Detect faces (MTCNN): one JSON line per image with boxes, scores and 5 landmarks, largest first.
    Detect(DetectArgs),
    /// Fit the MTCNN→chip alignment template of a face model from dlib's landmarks on the same photos
    /// (`scripts/dlib_reference.py chips` writes them) and write it into the model's card.
    FitTemplate(FitTemplateArgs),
    /// Encoder throughput: embed batches of real images (or seeded noise) on a device and print JSON figures.
    Bench(BenchArgs),
    /// Calibrate a model's thresholds (EER point, FAR 1e-3) and score mapping on listed pairs (LFW style)
    /// and write them into its card.
    Calibrate(CalibrateArgs),
    /// Combine models trained apart (same input) into one ensemble model: the members' embeddings
    /// concatenated; calibrate it afterwards (`eval --calibrate`).
    Ensemble(EnsembleArgs),
}

#[derive(Args, Debug)]
pub struct EnsembleArgs {
    /// Member model directories (two or more).
    #[arg(long = "member", required = true, num_args = 1)]
    pub members: Vec<PathBuf>,
    /// Test-time augmentation for the ensemble's card: a JSON list of fixed warps, e.g.
    /// `[{"rotate_deg":3},{"rotate_deg":-3}]` (fields rotate_deg, scale, shear, aspect, shift_x, shift_y).
    #[arg(long)]
    pub tta: Option<String>,
    #[command(flatten)]
    pub output: ModelOutput,
}

/// Where a command writes a model directory, and the id and version in its card.
#[derive(Args, Debug)]
pub struct ModelOutput {
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Model id (default: the output directory's name).
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub version: u32,
}

impl ModelOutput {
    /// `--id`, else the output directory's name.
    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            self.out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
        })
    }
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Model directory, or a model id under `--models`.
    #[arg(long)]
    pub model: String,
    #[arg(long, env = "SIAMESE_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Folder holding `<name>/<name>_NNNN.jpg`.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub pairs: PathBuf,
    /// How to name the calibration set in the card.
    #[arg(long)]
    pub name: String,
    /// Which face of a photo to embed (see `eval --select`).
    #[arg(long, value_enum, default_value = "largest")]
    pub select: crate::face::FaceSelect,
    #[arg(long, env = "SIAMESE_DEVICE", default_value = "auto")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct FitTemplateArgs {
    /// `chips.json` from `scripts/dlib_reference.py chips` (image paths and dlib's 5 landmarks).
    #[arg(long)]
    pub dlib_landmarks: PathBuf,
    /// The face model directory whose card gets the template.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, env = "SIAMESE_DETECTOR", default_value = "models/mtcnn-v1")]
    pub detector: PathBuf,
    /// How the photos were chosen, for the card.
    #[arg(long, default_value = "")]
    pub note: String,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model id (default: the default face model).
    #[arg(long)]
    pub model: Option<String>,
    /// Images per forward pass; several values are measured one after another.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub batch: Vec<usize>,
    /// Timed passes per batch size (after `--warmup` untimed ones).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed passes first (at least one; the last one's first embedding is printed, to compare devices).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Images to embed (faces are detected and aligned once, before timing); without any, seeded noise.
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub m: ModelArgs,
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The detector's model directory.
    #[arg(long, env = "SIAMESE_DETECTOR", default_value = "models/mtcnn-v1")]
    pub detector: PathBuf,
    #[arg(long, env = "SIAMESE_DEVICE", default_value = "auto")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Source format; only `dlib` (dlib's face recognition ResNet `.dat`).
    #[arg(value_parser = ["dlib"])]
    pub format: String,
    pub file: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Model id (default: the output directory's name).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct EvalGalleryArgs {
    /// Model directory, or a model id under `--models`.
    #[arg(long)]
    pub model: String,
    #[arg(long, env = "SIAMESE_MODELS", default_value = "models")]
    pub models: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    /// Identities to enrol, e.g. `s31-s40`.
    #[arg(long)]
    pub enrol: String,
    /// Images enrolled per identity (their first K by name); the rest are probes.
    #[arg(long, default_value_t = 5)]
    pub per_subject: usize,
    /// Identities never enrolled, probed for "unknown", e.g. `s1-s5`.
    #[arg(long)]
    pub unknown: String,
    #[arg(long, default_value = "min,mean2,mean3,mean,centroid")]
    pub rules: String,
    #[arg(long)]
    pub metric: Option<String>,
    /// Decision threshold (default: the card's threshold for the metric).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, env = "SIAMESE_DEVICE", default_value = "auto")]
    pub device: String,
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// `sqlite://PATH` (created when missing) or `postgres://...` for replicas sharing state.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = "sqlite://data/siamese.db")]
    pub url: String,
}

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create a key and print it (it is shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: verify, enrol, admin.
        #[arg(long)]
        scopes: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Directory holding model directories.
    #[arg(long, env = "SIAMESE_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    #[arg(long, env = "SIAMESE_DEVICE", default_value = "auto")]
    pub device: String,
}

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
    pub collections: Vec<crate::api::CollectionSpec>,
}

impl ServeArgs {
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_body_bytes: self.max_body_bytes,
            max_images: self.max_images,
            decode: DecodeLimits { max_dimension: self.max_image_dim, max_alloc_bytes: self.max_decode_bytes },
        }
    }
    pub fn batch(&self) -> BatchConfig {
        BatchConfig {
            max_batch: self.max_batch,
            max_wait: Duration::from_millis(self.max_wait_ms),
            queue_capacity: self.queue,
        }
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Folder-per-identity dataset (e.g. the AT&T faces directory).
    #[arg(long)]
    pub data: PathBuf,
    /// Training identities, e.g. `s1-s30` (default: all but the validation and test ones).
    #[arg(long)]
    pub train: Option<String>,
    /// Validation identities, e.g. `s31-s35`; without it, `--val-ratio` of the identities at random.
    #[arg(long)]
    pub val: Option<String>,
    /// Held-out test identities whose figures go into the card.
    #[arg(long)]
    pub test: Option<String>,
    #[arg(long, default_value_t = 0.15)]
    pub val_ratio: f64,
    #[command(flatten)]
    pub output: ModelOutput,
    #[arg(long, default_value = "face")]
    pub modality: String,
    /// Input width, height and channels (1 grey, 3 RGB).
    #[arg(long, default_value_t = 46)]
    pub width: u32,
    #[arg(long, default_value_t = 56)]
    pub height: u32,
    #[arg(long, default_value_t = 1)]
    pub channels: u32,
    /// Output channels per stage.
    #[arg(long, default_value = "32,64,128,256", value_delimiter = ',')]
    pub stages: Vec<i64>,
    /// Convolutions per stage.
    #[arg(long, default_value = "1,2,2,1", value_delimiter = ',')]
    pub convs: Vec<i64>,
    #[arg(long, default_value_t = 128)]
    pub embedding: i64,
    #[arg(long, default_value_t = 0.2)]
    pub dropout: f64,
    /// `global_average`, `flatten`, or `grid:RxC` (average over a coarse grid, e.g. `grid:3x5`).
    #[arg(long, default_value = "flatten")]
    pub head: String,
    /// Signature preprocessing (Otsu background removal, crop to the ink, invert, aspect-preserving fit).
    #[arg(long)]
    pub signature: bool,
    /// Embed each image and its mirror image and average them (default: yes for faces, no with `--signature`:
    /// a mirrored signature is not the same signature).
    #[arg(long, action = clap::ArgAction::Set)]
    pub mirror_average: Option<bool>,
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_pairs: usize,
    #[arg(long, default_value_t = 2)]
    pub pairs_per_image: usize,
    /// `pairs` (balanced explicit pairs) or `pk` (P identities × K images, all pairs in the batch).
    #[arg(long, default_value = "pairs")]
    pub sampler: String,
    /// Identities and images per identity in a `pk` batch, and batches per epoch.
    #[arg(long, default_value_t = 16)]
    pub pk_p: usize,
    #[arg(long, default_value_t = 4)]
    pub pk_k: usize,
    #[arg(long, default_value_t = 20)]
    pub pk_steps: usize,
    /// Skilled forgeries per identity in a `pk` batch (signature data), used as negatives only.
    #[arg(long, default_value_t = 0)]
    pub pk_forgeries: usize,
    /// The forgeries of one identity share a label (positives of each other) instead of one label each.
    #[arg(long)]
    pub pk_forger_classes: bool,
    /// Moving average of the weights (per-step decay; 0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub ema_decay: f64,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Contrastive margin (embeddings are unit length, so distances lie in [0, 2]).
    #[arg(long, default_value_t = 1.0)]
    pub margin: f64,
    #[arg(long, default_value_t = 10.0)]
    pub rotate: f32,
    #[arg(long, default_value_t = 0.06)]
    pub shift: f32,
    #[arg(long, default_value_t = 0.1)]
    pub scale: f32,
    /// With `--signature`: what is fitted into the canvas, `box` (the ink's bounding box) or `moments`
    /// (centre of mass and spread of the ink).
    #[arg(long, default_value = "box")]
    pub signature_fit: crate::model::SignatureFit,
    /// Largest horizontal shear (x += shear · y), either way; 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub shear: f32,
    /// Largest relative change of the width alone (0.1 = 0.9× .. 1.1× wider); 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub aspect: f32,
    /// Largest stroke-width change: a blend of up to this weight toward a 3×3 dilation (thicker) or
    /// erosion (thinner), either way; 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub stroke: f32,
    /// Largest edge softening: a blend of up to this weight toward a 3×3 blur; 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub blur: f32,
    #[arg(long, default_value_t = 0.1)]
    pub brightness: f32,
    #[arg(long, default_value_t = 0.2)]
    pub contrast: f32,
    /// Mirror images at random (right for faces, wrong for signatures).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub hflip: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Start from this pretrained model directory (same architecture).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Keep the first N stages fixed.
    #[arg(long, default_value_t = 0)]
    pub freeze_stages: usize,
    /// Learning-rate factor per stage towards the input (1 = same rate everywhere).
    #[arg(long, default_value_t = 1.0)]
    pub stage_lr_decay: f64,
    #[arg(long, env = "SIAMESE_DEVICE", default_value = "auto")]
    pub device: String,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
    /// Stop after the epoch that ends past this many minutes (the best epoch so far is kept).
    #[arg(long)]
    pub time_limit_min: Option<f64>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory, or a model id under `--models`.
    #[arg(long)]
    pub model: String,
    #[arg(long, env = "SIAMESE_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Dataset root (folder per identity; for `--pairs`, the folder holding `<name>/<name>_NNNN.jpg`).
    #[arg(long)]
    pub data: PathBuf,
    /// Identities to evaluate on, all pairs (e.g. `s36-s40`).
    #[arg(long, conflicts_with = "pairs")]
    pub identities: Option<String>,
    /// LFW-style pairs file.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Enrolment protocol instead of all pairs: each identity's first K images are references, every
    /// other image (and each skilled forgery) a probe scored by its mean distance to the references.
    #[arg(long, conflicts_with = "pairs")]
    pub references: Option<usize>,
    /// With `--references`: how a probe's distances to the references become one (`min`, `meanK`, `mean`,
    /// `centroid`); default: the card's subject rule, else `mean`.
    #[arg(long, requires = "references")]
    pub rule: Option<String>,
    /// With `--references`: write the rule and thresholds calibrated on these distances (EER point, FAR
    /// 1e-3, score mapping) into the card's `subject` block, the service's default for subject verification.
    #[arg(long, requires = "references")]
    pub calibrate_subject: bool,
    /// Write the pair thresholds (EER point, FAR 1e-3, score mapping) measured here into the model's card
    /// (all pairs of `--identities`, or `--pairs`).
    #[arg(long, conflicts_with = "references")]
    pub calibrate: bool,
    /// Where report.json, roc.png and distances.png go.
    #[arg(long)]
    pub out: PathBuf,
    /// Which face of a photo to embed (face models): `largest`, or `central` for sets built around a centred
    /// subject such as LFW.
    #[arg(long, value_enum, default_value = "largest")]
    pub select: crate::face::FaceSelect,
    #[arg(long, env = "SIAMESE_DEVICE", default_value = "auto")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub image_a: PathBuf,
    pub image_b: PathBuf,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub metric: Option<String>,
    #[arg(long)]
    pub threshold: Option<f32>,
    #[command(flatten)]
    pub m: ModelArgs,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub m: ModelArgs,
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => info(),
        Command::Serve(a) => serve(a),
        Command::Train(a) => train_cmd(*a),
        Command::Eval(a) => eval_cmd(a),
        Command::Verify(a) => verify_cmd(a),
        Command::Embed(a) => embed_cmd(a),
        Command::Keys(a) => keys_cmd(a),
        Command::EvalGallery(a) => eval_gallery_cmd(a),
        Command::Bench(a) => bench_cmd(a),
        Command::Ensemble(a) => {
            let o = &a.output;
            let tta: Vec<crate::model::TtaWarp> = match &a.tta {
                Some(t) => serde_json::from_str(t).context("--tta: a JSON list of warps")?,
                None => vec![],
            };
            let card = crate::model::combine_ensemble(&a.members, &o.out, &o.id(), o.version, &tta)?;
            println!(
                "wrote {} ({} members, embedding {}); calibrate it with `siamese eval --calibrate`",
                o.out.display(),
                a.members.len(),
                card.embedding_size
            );
            Ok(())
        }
        Command::Detect(a) => {
            let det = crate::face::Mtcnn::load(&a.detector, device(&a.device)?).map_err(anyhow::Error::msg)?;
            for p in &a.images {
                let img = preprocess::decode(&std::fs::read(p)?, DecodeLimits::default())?.to_rgb8();
                let faces = det.detect(img.as_raw(), img.width() as usize, img.height() as usize);
                println!("{}", serde_json::json!({"image": p, "faces": faces}));
            }
            Ok(())
        }
        Command::FitTemplate(a) => fit_template_cmd(a),
        Command::Calibrate(a) => calibrate_cmd(a),
        Command::Import(a) => {
            let id = a.id.clone().or_else(|| a.out.file_name().map(|n| n.to_string_lossy().into_owned()));
            let id = id.context("--id is needed when --out has no final component")?;
            let card = crate::dlib::import(&a.file, &a.out, &id)?;
            println!("imported {} ({}) into {}", card.id, a.format, a.out.display());
            Ok(())
        }
    }
}

fn info() -> Result<()> {
    let cuda = tch::Cuda::is_available();
    println!("siamese {}", env!("CARGO_PKG_VERSION"));
    println!("torch {}", crate::torch_version());
    println!("cuda available: {cuda}");
    if cuda {
        println!("cuda devices: {}", tch::Cuda::device_count());
        println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    }
    println!("cpu threads: {}", tch::get_num_threads());
    Ok(())
}

fn device(s: &str) -> Result<tch::Device> {
    parse_device(s).map_err(anyhow::Error::msg)
}

fn serve(a: ServeArgs) -> Result<()> {
    let dev = device(&a.model.device)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = crate::store::Store::connect(&a.db.url).await.with_context(|| format!("opening {}", a.db.url))?;
        let auth = crate::auth::Auth::new(store.clone());
        let enforced = auth.enforced().await?;
        let listener = tokio::net::TcpListener::bind(&a.bind).await.with_context(|| format!("binding {}", a.bind))?;
        let addr = listener.local_addr()?;
        api::check_bind_policy(addr, enforced).map_err(anyhow::Error::msg)?;
        if !enforced {
            eprintln!("siamese: no API key exists: open access, listening on loopback only (create one with `siamese keys create`)");
        }
        let state = AppState::with_precision(a.limits(), store.clone(), a.gallery_precision);
        // Load (and warm up) the models and galleries while the port already answers /healthz; /readyz says
        // when done.
        let (models, default, batch, st) = (a.model.models.clone(), a.default_model.clone(), a.batch(), state.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let collections = a.collections.clone();
        let loader = tokio::spawn(async move {
            let reg = tokio::task::spawn_blocking(move || -> Result<ModelRegistry> {
                let reg = ModelRegistry::load_dir(&models, dev, batch, default.as_deref())
                    .with_context(|| format!("loading models from {}", models.display()))?;
                if reg.is_empty() {
                    bail!("no model directories (with model.json) under {}", models.display());
                }
                Ok(reg)
            })
            .await??;
            tracing::info!(default = reg.default_id().unwrap_or("-"), "models ready");
            st.start(reg, &collections, stop_rx).await.map_err(anyhow::Error::msg)?;
            tracing::info!("galleries ready");
            Ok::<(), anyhow::Error>(())
        });
        tracing::info!(%addr, ?dev, "listening");
        eprintln!("siamese: serving on http://{addr} (docs at /docs)");
        let server = tokio::spawn(api::serve(listener, state, api::shutdown_signal()));
        loader.await??;
        server.await??;
        let _ = stop_tx.send(true);
        store.close().await;
        Ok(())
    })
}

fn keys_cmd(a: KeysArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = crate::store::Store::connect(&a.db.url).await.with_context(|| format!("opening {}", a.db.url))?;
        let auth = crate::auth::Auth::new(store.clone());
        match a.action {
            KeysAction::Create { name, scopes } => {
                let k = auth.create_key(&name, &crate::auth::parse_scopes(&scopes)?).await?;
                println!("{}", serde_json::to_string_pretty(&k)?);
                eprintln!("siamese: keep this key now; only its hash is stored");
            }
            KeysAction::List => {
                for k in auth.list().await? {
                    println!("{}", serde_json::to_string(&k)?);
                }
            }
            KeysAction::Revoke { id } => {
                auth.revoke(&id).await?;
                eprintln!("siamese: key {id} revoked");
            }
        }
        store.close().await;
        Ok(())
    })
}

fn resolve_model(spec: &str, models: &Path) -> PathBuf {
    let p = PathBuf::from(spec);
    if p.join(crate::model::CARD_FILE).exists() {
        p
    } else {
        models.join(spec)
    }
}

fn ids(s: &Option<String>) -> Result<Vec<String>> {
    Ok(match s {
        Some(s) => parse_identity_list(s)?,
        None => Vec::new(),
    })
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    use rand::SeedableRng;
    let ds = Dataset::open(&a.data)?;
    let test = ids(&a.test)?;
    let mut val = ids(&a.val)?;
    let mut train_ids = ids(&a.train)?;
    if val.is_empty() {
        let rest = Dataset {
            root: ds.root.clone(),
            identities: ds.identities.iter().filter(|i| !test.contains(&i.name)).cloned().collect(),
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
        let (_, v) = rest.split_ratio(a.val_ratio, &mut rng);
        val = v.names();
    }
    if train_ids.is_empty() {
        train_ids = ds.names().into_iter().filter(|n| !val.contains(n) && !test.contains(n)).collect();
    }
    let c = a.channels as usize;
    // Transfer learning: a pretrained model fixes the architecture and the input (size, normalisation,
    // face alignment) of what is trained from it.
    let pretrained = match &a.init {
        Some(init) => Some(crate::model::ModelCard::load(init)?),
        None => None,
    };
    let cfg = TrainConfig {
        data: a.data.clone(),
        train_ids,
        val_ids: val,
        test_ids: test,
        out: a.output.out.clone(),
        id: a.output.id(),
        version: a.output.version,
        modality: a.modality.clone(),
        input: match &pretrained {
            // `--signature` on a pretrained encoder: its size and normalisation, signature preprocessing.
            Some(p) if a.signature => InputSpec {
                preprocess: crate::model::Preprocess::Signature { margin: 0.05, fit: a.signature_fit },
                mirror_average: false,
                ..p.input.clone()
            },
            Some(p) => p.input.clone(),
            None => InputSpec {
                width: a.width,
                height: a.height,
                channels: a.channels,
                mean: vec![0.5; c],
                std: vec![0.5; c],
                mirror_average: a.mirror_average.unwrap_or(!a.signature),
                tta: vec![],
                preprocess: if a.signature {
                    crate::model::Preprocess::Signature { margin: 0.05, fit: a.signature_fit }
                } else {
                    crate::model::Preprocess::Resize
                },
            },
        },
        architecture: match &pretrained {
            Some(p) => p.architecture.clone(),
            None => Architecture::ConvNet {
                channels: a.stages.clone(),
                convs: a.convs.clone(),
                embedding: a.embedding,
                dropout: a.dropout,
                l2_normalize: true,
                head: a.head.parse().map_err(anyhow::Error::msg)?,
            },
        },
        epochs: a.epochs,
        batch_pairs: a.batch_pairs,
        pairs_per_image: a.pairs_per_image,
        lr: a.lr,
        weight_decay: a.weight_decay,
        margin: a.margin,
        augment: Augment {
            rotate_deg: a.rotate,
            shift: a.shift,
            scale: a.scale,
            shear: a.shear,
            aspect: a.aspect,
            stroke: a.stroke,
            blur: a.blur,
            brightness: a.brightness,
            contrast: a.contrast,
            hflip: a.hflip,
        },
        sampler: match a.sampler.as_str() {
            "pairs" => train::Sampler::Pairs,
            "pk" => train::Sampler::Pk {
                p: a.pk_p,
                k: a.pk_k,
                steps: a.pk_steps,
                forgeries: a.pk_forgeries,
                forger_classes: a.pk_forger_classes,
            },
            s => bail!("--sampler must be pairs or pk, not {s}"),
        },
        ema_decay: a.ema_decay,
        seed: a.seed,
        device: device(&a.device)?,
        init: a.init.clone(),
        freeze_stages: a.freeze_stages,
        stage_lr_decay: a.stage_lr_decay,
        progress: !a.quiet,
        time_limit: a.time_limit_min.map(|m| std::time::Duration::from_secs_f64(m * 60.0)),
    };
    let out = train::train(&cfg, &AtomicBool::new(false))?;
    println!(
        "wrote {} (best epoch {}, {:.0} s): validation EER euclidean {:.2}% (untrained {:.2}%), cosine {:.2}% (untrained {:.2}%)",
        a.output.out.display(),
        out.best_epoch,
        out.seconds,
        out.val[0].eer * 100.0,
        out.untrained_val[0].eer * 100.0,
        out.val[1].eer * 100.0,
        out.untrained_val[1].eer * 100.0
    );
    if let Some(t) = out.card.evaluation.get("test") {
        println!(
            "test ({}): EER {:.2}%, AUC {:.4}, accuracy at threshold {:.2}%",
            t["identities"].as_str().unwrap_or(""),
            t["eer"].as_f64().unwrap_or(f64::NAN) * 100.0,
            t["auc"].as_f64().unwrap_or(f64::NAN),
            t["accuracy"].as_f64().unwrap_or(f64::NAN) * 100.0
        );
    }
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let dir = resolve_model(&a.model, &a.models);
    let mut model = LoadedModel::load(&dir, device(&a.device)?)?.with_detector()?;
    model.face_select = a.select;
    let (rep, title) = if let Some(pairs) = &a.pairs {
        let listed = read_pairs_file(pairs, &a.data)?;
        let title = format!("{} on {}", model.card.id, pairs.file_name().unwrap_or_default().to_string_lossy());
        (train::evaluate_pairs(&model, &listed, DecodeLimits::default())?, title)
    } else {
        let ds = Dataset::open(&a.data)?;
        let ds = match &a.identities {
            Some(s) => ds.subset(&parse_identity_list(s)?)?,
            None => ds,
        };
        let title = format!("{} on {}", model.card.id, a.identities.clone().unwrap_or_else(|| "all identities".into()));
        match a.references {
            Some(k) => {
                let rule = match &a.rule {
                    Some(r) => crate::gallery::Rule::parse(r).with_context(|| format!("unknown rule '{r}'"))?,
                    None => model.card.subject_rule(),
                };
                let title = format!("{title}, {k} references, rule {}", rule.name());
                (train::evaluate_references(&model, &ds, k, rule, DecodeLimits::default())?, title)
            }
            None => (train::evaluate_model(&model, &ds, DecodeLimits::default())?, title),
        }
    };
    train::write_report(&rep, &a.out, &title)?;
    if a.calibrate {
        let set = match (&a.pairs, &a.identities) {
            (Some(p), _) => p.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            (None, Some(ids)) => format!("all pairs of {ids}"),
            (None, None) => "all pairs of all identities".into(),
        };
        let mut card = model.card.clone();
        card.thresholds = rep.thresholds(|g, i| format!("EER point on {set} ({g} genuine + {i} impostor pairs)"));
        card.evaluation["calibration"] = serde_json::json!({
            "set": set, "impostors": rep.pairs["impostor_kind"], "metric": rep.metric, "eer": rep.eer, "auc": rep.auc,
        });
        card.save(&dir)?;
        println!("wrote the pair thresholds into {}", dir.join(crate::model::CARD_FILE).display());
    }
    if a.calibrate_subject {
        let (k, rule) =
            (a.references.expect("clap: requires"), rep.pairs["rule"].as_str().unwrap_or("mean").to_string());
        let set = a.identities.clone().unwrap_or_else(|| "all identities".into());
        let mut card = model.card.clone();
        let thresholds = rep.thresholds(|g, i| {
            format!("EER point, {k} references per identity, rule {rule}, on {set} ({g} genuine + {i} impostor probes)")
        });
        card.evaluation["subject_calibration"] = serde_json::json!({
            "identities": set, "references": k, "rule": rule, "protocol": rep.pairs["protocol"],
            "impostors": rep.pairs["impostor_kind"], "genuine": rep.pairs["genuine"], "impostor": rep.pairs["impostor"],
            "metric": rep.metric, "eer": rep.eer, "auc": rep.auc,
        });
        card.subject = Some(crate::model::SubjectCalibration { rule, references: k, thresholds });
        card.save(&dir)?;
        println!("wrote the subject calibration into {}", dir.join(crate::model::CARD_FILE).display());
    }
    println!(
        "{}: {} comparisons ({} genuine, {} impostor); metric {}: EER {:.2}%, AUC {:.4}, accuracy {:.2}% at threshold {:.4}, TAR {:.2}% at FAR 1e-3",
        title,
        rep.pairs["total"], rep.pairs["genuine"], rep.pairs["impostor"],
        rep.metric, rep.eer * 100.0, rep.auc, rep.accuracy * 100.0, rep.threshold, rep.tar_at_far_1e3 * 100.0
    );
    if let Some(per) = rep.pairs.get("per_identity").and_then(|v| v.as_array()) {
        let each: Vec<String> = per
            .iter()
            .map(|p| {
                format!(
                    "{} {:.1}%",
                    p["identity"].as_str().unwrap_or("?"),
                    p["eer"].as_f64().unwrap_or(f64::NAN) * 100.0
                )
            })
            .collect();
        println!("EER of each identity at its own threshold: {}", each.join(", "));
    }
    println!("wrote {}/report.json, roc.png, distances.png", a.out.display());
    Ok(())
}

fn eval_gallery_cmd(a: EvalGalleryArgs) -> Result<()> {
    let model = LoadedModel::load(&resolve_model(&a.model, &a.models), device(&a.device)?)?.with_detector()?;
    let ds = Dataset::open(&a.data)?;
    let enrolled = ds.subset(&parse_identity_list(&a.enrol)?)?;
    let unknown = ds.subset(&parse_identity_list(&a.unknown)?)?;
    let rules: Vec<crate::gallery::Rule> = a
        .rules
        .split(',')
        .map(|r| crate::gallery::Rule::parse(r.trim()).with_context(|| format!("unknown rule '{r}'")))
        .collect::<Result<_>>()?;
    let metric = match &a.metric {
        Some(m) => m.parse::<Metric>().map_err(|e| anyhow::anyhow!("{e}"))?,
        None => model.card.default_metric,
    };
    let reps = train::evaluate_gallery(
        &model,
        &enrolled,
        a.per_subject,
        &unknown,
        metric,
        a.threshold,
        &rules,
        DecodeLimits::default(),
    )?;
    println!(
        "{} — enrol {} × {} images, probes: the rest; unknown: {}; metric {metric}, threshold {:.4}",
        model.card.id,
        a.enrol,
        a.per_subject,
        a.unknown,
        reps.first().map(|r| r.threshold).unwrap_or(0.0)
    );
    println!("rule      FRR      FAR    EER   rank-1  match  unknown→null");
    for r in &reps {
        println!(
            "{:<8} {:>5.1}% {:>6.2}% {:>5.2}% {:>6.1}% {:>5.1}% {:>6.1}%   ({} genuine, {} impostor trials, {} unknown probes)",
            r.rule, r.frr * 100.0, r.far * 100.0, r.eer * 100.0, r.identify_rank1 * 100.0, r.identify_match * 100.0,
            r.unknown_rejected * 100.0, r.genuine_trials, r.impostor_trials, r.unknown_probes
        );
    }
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_string_pretty(&reps)? + "\n")?;
    }
    Ok(())
}

fn calibrate_cmd(a: CalibrateArgs) -> Result<()> {
    let dir = resolve_model(&a.model, &a.models);
    let mut model = LoadedModel::load(&dir, device(&a.device)?)?.with_detector()?;
    model.face_select = a.select;
    let listed = read_pairs_file(&a.pairs, &a.data)?;
    let rep = train::evaluate_pairs(&model, &listed, DecodeLimits::default())?;
    let mut card = model.card.clone();
    card.thresholds = rep.thresholds(|g, i| format!("EER point on {} ({g} genuine + {i} impostor pairs)", a.name));
    for m in Metric::ALL {
        let (t, eer) = (card.thresholds.get(m), rep.metrics[&m].summary.eer);
        println!("{m}: EER {:.2}% at {:.4}; threshold at FAR 1e-3 {:.4}", eer * 100.0, t.at_eer, t.at_far_1e3);
    }
    card.evaluation["calibration"] = serde_json::json!({
        "set": a.name,
        "face_select": a.select,
        "images_without_a_face": rep.pairs["images_without_a_face"],
        "auc": rep.auc, "eer": rep.eer,
    });
    card.save(&dir)?;
    println!("wrote thresholds into {}", dir.join(crate::model::CARD_FILE).display());
    Ok(())
}

fn fit_template_cmd(a: FitTemplateArgs) -> Result<()> {
    let det = crate::face::Mtcnn::load(&a.detector, Device::Cpu).map_err(anyhow::Error::msg)?;
    let meta: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&a.dlib_landmarks)?)?;
    let mut pairs = Vec::new();
    let mut skipped = 0;
    for m in &meta {
        let path = m["image"].as_str().context("image")?;
        let lm: Vec<[f64; 2]> = m["landmarks"]
            .as_array()
            .context("landmarks")?
            .iter()
            .map(|p| [p[0].as_f64().unwrap_or(0.0), p[1].as_f64().unwrap_or(0.0)])
            .collect();
        let img = preprocess::decode(&std::fs::read(path)?, DecodeLimits::default())?.to_rgb8();
        let faces = det.detect(img.as_raw(), img.width() as usize, img.height() as usize);
        // The MTCNN face whose box holds dlib's nose point.
        let nose = lm[4];
        let face = faces.iter().find(|f| {
            f.bbox[0] as f64 <= nose[0]
                && nose[0] <= f.bbox[2] as f64
                && f.bbox[1] as f64 <= nose[1]
                && nose[1] <= f.bbox[3] as f64
        });
        match face {
            Some(f) if lm.len() == 5 => pairs.push(([lm[0], lm[1], lm[2], lm[3], lm[4]], f.landmarks)),
            _ => skipped += 1,
        }
    }
    let mut card = crate::model::ModelCard::load(&a.model)?;
    let size = card.input.width;
    let (template, spread) = crate::face::fit_template(&pairs, size);
    card.input.preprocess = crate::model::Preprocess::FaceChip { template };
    card.training["alignment"] = serde_json::json!({
        "template": "MTCNN's 5 landmarks in chip pixels: per-point median, over the photos, of the MTCNN landmarks mapped into dlib's chip by the similarity that takes dlib's 5-point template onto dlib's own landmarks (dlib-bin 20.0.1: frontal detector, shape_predictor_5_face_landmarks, get_face_chip size 150 padding 0.25)",
        "photos": pairs.len(),
        "skipped_no_matching_face": skipped,
        "median_spread_px": spread,
        "data": a.note,
        "command": "siamese fit-template",
    });
    card.save(&a.model)?;
    println!(
        "template (chip px) {template:?}; median spread per point {spread:?} px; {} photos, {skipped} skipped",
        pairs.len()
    );
    Ok(())
}

/// The named model, or the default one: the model whose card claims the default, else the first face model
/// by id. Face models come with their detector.
fn one_model(m: &ModelArgs, id: Option<&str>) -> Result<LoadedModel> {
    let dev = device(&m.device)?;
    let dir = match id {
        Some(id) => resolve_model(id, &m.models),
        None => {
            let mut cards: Vec<_> = std::fs::read_dir(&m.models)
                .with_context(|| format!("reading {}", m.models.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|d| {
                    crate::model::ModelCard::load(&d).ok().map(|c| (!c.default, c.modality != "face", c.id, d))
                })
                .collect();
            cards.sort();
            cards.into_iter().next().map(|c| c.3).with_context(|| format!("no models under {}", m.models.display()))?
        }
    };
    Ok(LoadedModel::load(&dir, dev)?.with_detector()?)
}

/// An image file as the model's input: for a face model, the largest face, aligned (an error without one).
fn read_image(p: &Path, model: &LoadedModel) -> Result<Vec<f32>> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let img = preprocess::decode(&bytes, DecodeLimits::default()).with_context(|| p.display().to_string())?;
    let spec = &model.card.input;
    let (mut planes, found) =
        crate::face::input_planes(&img, spec, model.detector.as_ref(), crate::face::FaceSelect::Largest);
    if !found {
        bail!("{}: no face was found", p.display());
    }
    preprocess::normalize(&mut planes, spec);
    Ok(planes)
}

fn verify_cmd(a: VerifyArgs) -> Result<()> {
    let model = one_model(&a.m, a.model.as_deref())?;
    let flat = [read_image(&a.image_a, &model)?, read_image(&a.image_b, &model)?].concat();
    let vectors = model.embed_flat(&flat, 2)?;
    let card = &model.card;
    let metric = match &a.metric {
        Some(m) => m.parse::<Metric>()?,
        None => card.default_metric,
    };
    let cal = card.thresholds.get(metric);
    let threshold = a.threshold.unwrap_or(cal.value);
    let d = metric.distance(&vectors[0], &vectors[1]);
    let v = serde_json::json!({
        "verified": d <= threshold, "distance": d, "metric": metric, "threshold": threshold,
        "score": cal.score.score(d), "model": {"id": card.id, "version": card.version},
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn embed_cmd(a: EmbedArgs) -> Result<()> {
    let model = one_model(&a.m, a.model.as_deref())?;
    for p in &a.images {
        let v = model.embed_flat(&read_image(p, &model)?, 1)?;
        println!("{}", serde_json::json!({"file": p.display().to_string(), "vector": v[0]}));
    }
    Ok(())
}

/// Time `embed_flat` (host buffer in, embeddings back on the host: what a server request pays) per batch size.
fn bench_cmd(a: BenchArgs) -> Result<()> {
    let model = one_model(&a.m, a.model.as_deref())?;
    let spec = model.card.input.clone();
    let inputs: Vec<Vec<f32>> = if a.images.is_empty() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        (0..8).map(|_| (0..spec.len()).map(|_| rng.gen_range(-1.0f32..1.0)).collect()).collect()
    } else {
        a.images.iter().map(|p| read_image(p, &model)).collect::<Result<_>>()?
    };
    let device = model.vs.device();
    for &b in &a.batch {
        let b = b.max(1);
        let flat: Vec<f32> = (0..b).flat_map(|i| inputs[i % inputs.len()].iter().copied()).collect();
        let mut first = Vec::new();
        for _ in 0..a.warmup.max(1) {
            first = model.embed_flat(&flat, b)?.swap_remove(0);
        }
        let mut ms = Vec::with_capacity(a.iters);
        for _ in 0..a.iters.max(1) {
            let t = std::time::Instant::now();
            model.embed_flat(&flat, b)?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        let p50 = ms[ms.len() / 2];
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        println!(
            "{}",
            serde_json::json!({
                "model": model.card.id, "device": format!("{device:?}"), "batch": b, "iters": ms.len(),
                "mirror_average": spec.mirror_average, "ms_per_batch_p50": p50, "ms_per_batch_mean": mean,
                "ms_per_image": p50 / b as f64, "images_per_second": b as f64 * 1e3 / p50,
                "real_images": !a.images.is_empty(), "first_vector": first,
            })
        );
    }
    Ok(())
}
