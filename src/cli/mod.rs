//! The `siamese` command line: one file per group of subcommands, each parsing its flags (with `SIAMESE_*`
//! environment fallbacks) and calling into the library.
//!
//! | file | subcommands |
//! |---|---|
//! | [`serve`] | `serve` (through [`crate::startup`]) |
//! | [`train`] | `train` |
//! | [`eval`] | `eval`, `eval-gallery`, `calibrate` |
//! | [`models`] | `import`, `ensemble`, `fit-template` |
//! | [`local`] | `info`, `verify`, `embed`, `detect`, `bench` (a model on this machine, no server) |
//! | [`keys`] | `keys create|list|revoke` |
//! | [`jobs`] | `jobs list|show|submit|cancel|resume` (retrain jobs of a running server) |

pub mod eval;
pub mod jobs;
pub mod keys;
pub mod local;
pub mod models;
pub mod serve;
pub mod train;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

pub use eval::{CalibrateArgs, EvalArgs, EvalGalleryArgs};
pub use keys::{KeysAction, KeysArgs};
pub use local::{BenchArgs, DetectArgs, EmbedArgs, VerifyArgs};
pub use models::{EnsembleArgs, FitTemplateArgs, ImportArgs};
pub use serve::ServeArgs;
pub use train::TrainArgs;

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
    /// Retrain jobs of a running server: list, show, submit, cancel, resume.
    Jobs(jobs::JobsArgs),
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

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => local::info(),
        Command::Serve(a) => serve::serve(a),
        Command::Train(a) => train::train(*a),
        Command::Eval(a) => eval::eval(a),
        Command::EvalGallery(a) => eval::eval_gallery(a),
        Command::Calibrate(a) => eval::calibrate(a),
        Command::Verify(a) => local::verify(a),
        Command::Embed(a) => local::embed(a),
        Command::Detect(a) => local::detect(a),
        Command::Bench(a) => local::bench(a),
        Command::Keys(a) => keys::keys(a),
        Command::Jobs(a) => jobs::jobs(a),
        Command::Import(a) => models::import(a),
        Command::Ensemble(a) => models::ensemble(a),
        Command::FitTemplate(a) => models::fit_template(a),
    }
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

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// `sqlite://PATH` (created when missing) or `postgres://...` for replicas sharing state.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = "sqlite://data/siamese.db")]
    pub url: String,
}

/// A mirror-averaging choice on the command line: the card's setting, or on / off for every model.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mirror {
    Card,
    On,
    Off,
}

impl Mirror {
    /// The override it makes (`None`: each card decides).
    pub fn forced(self) -> Option<bool> {
        match self {
            Mirror::Card => None,
            Mirror::On => Some(true),
            Mirror::Off => Some(false),
        }
    }
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

/// `--device`: `cpu`, `cuda`, `cuda:N` or `auto`.
pub fn device(s: &str) -> Result<tch::Device> {
    Ok(crate::model::parse_device(s)?)
}

/// A model directory given as a path, or a model id under `models`.
pub fn resolve_model(spec: &str, models: &Path) -> PathBuf {
    let p = PathBuf::from(spec);
    if p.join(crate::model::CARD_FILE).exists() {
        p
    } else {
        models.join(spec)
    }
}
