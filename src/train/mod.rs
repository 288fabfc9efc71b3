//! Contrastive training of the shared-weight encoder, evaluation of a model on a dataset, and calibration
//! of a card's thresholds from an evaluation.
//!
//! | file | what |
//! |---|---|
//! | this file | [`TrainConfig`] (one options struct for every way of starting a run), [`Sampler`], errors |
//! | [`loss`] | [`ContrastiveLoss`] (Hadsell, Chopra & LeCun 2006, Y = 0 for a similar pair) |
//! | [`augment`] | random warps, flips, brightness/contrast for invariance |
//! | `data` | a split's images prepared once through [`crate::pipeline`] |
//! | `trainer` | [`train`]: the loop, validation every epoch, the best epoch kept, the model directory written |
//! | `eval`, `gallery_eval` | figures of a model on all pairs, listed pairs, the enrolment protocol, galleries |
//! | [`calibrate`] | thresholds and subject calibration written into a card from an evaluation |
//!
//! Both images of a pair go through the *same* network (one forward over the concatenated batch).
//!
//! Transfer learning: `init` loads a pretrained model of the same architecture; `freeze` keeps layer groups
//! fixed (no gradient, batch-norm statistics as loaded); `lr_mult` gives each group its own learning rate
//! ([`groups`]), e.g. each earlier stage a smaller learning rate than the next. A run reports every epoch,
//! polls for cancellation between steps, and can checkpoint each epoch and resume from it ([`Hooks`]).

pub mod augment;
pub mod calibrate;
mod data;
mod eval;
mod gallery_eval;
pub mod groups;
pub mod loss;
mod trainer;

pub use augment::Augment;
pub use eval::{
    evaluate_model, evaluate_pairs, evaluate_references, pair_distances, write_report, EvalReport, MetricReport,
};
pub use gallery_eval::{evaluate_gallery, RuleReport};
pub use loss::ContrastiveLoss;
pub use trainer::{train, train_with, EpochReport, Hooks};

use crate::dataset::DatasetError;
use crate::metrics::Summary;
use crate::model::{Architecture, InputSpec, Modality, ModelCard, ModelError};
use crate::pipeline::PipelineError;
use std::path::PathBuf;
use tch::Device;

/// Errors of the training layer.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("image {0}: {1}")]
    Input(PathBuf, Box<PipelineError>),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Config(String),
    #[error("training was cancelled")]
    Cancelled,
    #[error("plot: {0}")]
    Plot(String),
}

/// How training batches are drawn.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Explicit balanced pairs: each image anchors one same and one different pair per round.
    Pairs,
    /// `p` identities × `k` images per batch, every pair inside the batch used (balanced by averaging
    /// positives and negatives separately); `steps` batches per epoch.
    /// `forgeries` skilled forgeries of each chosen identity join the batch as negatives of its genuine
    /// samples. With `forger_classes`, the forgeries of one identity share a label of their own (positives of
    /// each other: CEDAR's forgeries of a writer come from few forgers, so they form extra "identities");
    /// otherwise each forgery has a unique label.
    Pk {
        p: usize,
        k: usize,
        steps: usize,
        forgeries: usize,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        forger_classes: bool,
    },
    /// Self-supervised (SimCLR): `images` training images per batch, each augmented twice; the two views of
    /// one image are the positive pair, every other image of the batch a negative ([`loss::nt_xent`] at
    /// `temperature`). The training images' identity labels are never read; `steps` batches per epoch.
    SelfSupervised { images: usize, steps: usize, temperature: f64 },
}

/// Everything a training run needs.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub data: PathBuf,
    pub train_ids: Vec<String>,
    pub val_ids: Vec<String>,
    /// Held-out identities whose figures go into the card (never used to choose anything).
    pub test_ids: Vec<String>,
    pub out: PathBuf,
    pub id: String,
    pub version: u32,
    pub modality: Modality,
    pub input: InputSpec,
    pub architecture: Architecture,
    pub epochs: usize,
    /// Pairs per optimisation step.
    pub batch_pairs: usize,
    /// How many times each training image anchors a same and a different pair per epoch.
    pub pairs_per_image: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub margin: f64,
    pub augment: Augment,
    pub sampler: Sampler,
    /// Keep an exponential moving average of the weights (decay per step, e.g. 0.98; 0 = off) and
    /// validate, select and ship the averaged weights: they fluctuate far less from epoch to epoch.
    pub ema_decay: f64,
    pub seed: u64,
    pub device: Device,
    /// Pretrained model to start from.
    pub init: Option<PathBuf>,
    /// Layer groups kept fixed ([`groups`]: `stage0` … `stage{N-1}`, `head`).
    pub freeze: Vec<String>,
    /// Learning-rate multiplier per layer group; a group not named learns at `lr`.
    pub lr_mult: std::collections::BTreeMap<String, f64>,
    pub progress: bool,
    /// Stop after the first epoch that ends past this (the best epoch so far is kept).
    pub time_limit: Option<std::time::Duration>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub card: ModelCard,
    pub best_epoch: usize,
    pub untrained_val: [Summary; 2],
    pub val: [Summary; 2],
    pub seconds: f64,
    /// Every epoch's report (those before a resume included).
    pub history: Vec<EpochReport>,
}

/// `["s31","s32","s33"]` → `"s31–s33"` when consecutive, else comma-joined.
pub fn compact_list(ids: &[String]) -> String {
    if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
        if let (Ok(a), Ok(b)) = (crate::dataset::parse_identity_list(&format!("{first}-{last}")), Ok::<_, ()>(ids)) {
            if a == *b && ids.len() > 2 {
                return format!("{first}-{last}");
            }
        }
    }
    ids.join(",")
}
