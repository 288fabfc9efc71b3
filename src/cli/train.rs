//! `siamese train`: flags → one [`TrainConfig`] (the options struct every way of starting a run shares) →
//! [`crate::train::train`].

use super::{device, ModelOutput};
use crate::dataset::{parse_identity_list, Dataset};
use crate::model::{Architecture, InputSpec, Modality};
use crate::train::{self, Augment, TrainConfig};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

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
    pub modality: Modality,
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
    /// Learn without labels (SimCLR): `--ssl-images` training images per batch, each augmented twice, the two
    /// views the only positives (NT-Xent at `--temperature`); `--pk-steps` batches per epoch. Validation
    /// identities still choose the epoch.
    #[arg(long)]
    pub self_supervised: bool,
    #[arg(long, default_value_t = 64)]
    pub ssl_images: usize,
    #[arg(long, default_value_t = 0.1)]
    pub temperature: f64,
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
    /// With `--signature`: the ink's darkness, `relative` (to the paper) or `normalized` (its median brought
    /// to one value, so pens, scanners and binarised scans look alike).
    #[arg(long, default_value = "relative")]
    pub signature_ink: crate::model::SignatureInk,
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

fn ids(s: &Option<String>) -> Result<Vec<String>> {
    Ok(match s {
        Some(s) => parse_identity_list(s)?,
        None => Vec::new(),
    })
}

pub fn train(a: TrainArgs) -> Result<()> {
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
    let architecture = match &pretrained {
        Some(p) => p.architecture.clone(),
        None => Architecture::ConvNet {
            channels: a.stages.clone(),
            convs: a.convs.clone(),
            embedding: a.embedding,
            dropout: a.dropout,
            l2_normalize: true,
            head: a.head.parse().map_err(anyhow::Error::msg)?,
        },
    };
    // `--freeze-stages N` and `--stage-lr-decay F` in terms of layer groups.
    let stages = architecture.stages();
    let cfg = TrainConfig {
        data: a.data.clone(),
        train_ids,
        val_ids: val,
        test_ids: test,
        out: a.output.out.clone(),
        id: a.output.id(),
        version: a.output.version,
        modality: a.modality,
        input: match &pretrained {
            // `--signature` on a pretrained encoder: its size and normalisation, signature preprocessing.
            Some(p) if a.signature => InputSpec {
                preprocess: crate::model::Preprocess::Signature {
                    margin: 0.05,
                    fit: a.signature_fit,
                    ink: a.signature_ink,
                },
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
                    crate::model::Preprocess::Signature { margin: 0.05, fit: a.signature_fit, ink: a.signature_ink }
                } else {
                    crate::model::Preprocess::Resize
                },
            },
        },
        architecture,
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
            _ if a.self_supervised => {
                train::Sampler::SelfSupervised { images: a.ssl_images, steps: a.pk_steps, temperature: a.temperature }
            }
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
        freeze: (0..a.freeze_stages.min(stages)).map(|i| format!("stage{i}")).collect(),
        lr_mult: if a.stage_lr_decay == 1.0 {
            Default::default()
        } else {
            train::groups::names(stages)
                .into_iter()
                .zip(train::groups::decay_multipliers(a.stage_lr_decay, stages))
                .collect()
        },
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
