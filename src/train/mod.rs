//! Contrastive training of the shared-weight encoder, and evaluation of a model on a dataset.
//!
//! Loss (Hadsell, Chopra & LeCun 2006), with **Y = 0 for a similar pair** and Y = 1 for a dissimilar one:
//! `L = (1 − Y)·½·D² + Y·½·max(0, m − D)²`, D the Euclidean distance of the two embeddings, m the margin.
//! Both images of a pair go through the *same* network (one forward over the concatenated batch).
//!
//! Transfer learning: `init` loads a pretrained model of the same architecture; `freeze_stages` keeps its
//! first stages fixed (no gradient, batch-norm statistics as loaded); `stage_lr_decay` < 1 gives each
//! earlier stage a smaller learning rate than the next.

pub(crate) mod augment;
mod eval;
mod gallery_eval;

pub use augment::Augment;
pub use eval::{
    evaluate_model, evaluate_pairs, evaluate_references, pair_distances, write_report, EvalReport, MetricReport,
};
pub use gallery_eval::{evaluate_gallery, RuleReport};

use crate::dataset::{balanced_pairs, Dataset, DatasetError};
use crate::distance::Metric;
use crate::metrics::{self, Summary};
use crate::model::{
    Architecture, InputSpec, LoadedModel, ModelCard, ModelError, Network, Threshold, Thresholds, WEIGHTS_FILE,
};
use crate::preprocess::{self, DecodeLimits, ImageError};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// Errors of the training layer.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("image {0}: {1}")]
    Image(PathBuf, ImageError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Config(String),
    #[error("training was cancelled")]
    Cancelled,
    #[error("plot: {0}")]
    Plot(String),
}

/// Contrastive loss with margin `m` (Y = 0 for similar pairs).
#[derive(Debug, Clone, Copy)]
pub struct ContrastiveLoss {
    pub margin: f64,
}

impl ContrastiveLoss {
    /// `ea`, `eb`: `[B, E]`; `dissimilar`: `[B]` float, 0 = same identity (Y = 0), 1 = different.
    pub fn forward(&self, ea: &Tensor, eb: &Tensor, dissimilar: &Tensor) -> Tensor {
        let d2 = (ea - eb).square().sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let d = (&d2 + 1e-12).sqrt();
        let similar_term: Tensor = (1.0 - dissimilar) * 0.5 * &d2;
        let dissimilar_term: Tensor = dissimilar * 0.5 * (self.margin - d).relu().square();
        (similar_term + dissimilar_term).mean(Kind::Float)
    }
}

impl ContrastiveLoss {
    /// Every pair within a batch: `e` `[N, E]`, `labels` `[N]` identity indices. Positive and negative
    /// pairs are averaged separately and added, so the two kinds weigh the same however many there are.
    pub fn forward_all_pairs(&self, e: &Tensor, labels: &Tensor) -> Tensor {
        let n = e.size()[0];
        let d2 = (e.unsqueeze(1) - e.unsqueeze(0)).square().sum_dim_intlist([2i64].as_slice(), false, Kind::Float);
        let d = (&d2 + 1e-12).sqrt();
        let same = labels.unsqueeze(1).eq_tensor(&labels.unsqueeze(0));
        let eye = Tensor::eye(n, (Kind::Bool, e.device()));
        let pos = same.logical_and(&eye.logical_not()).to_kind(Kind::Float);
        let neg = same.logical_not().to_kind(Kind::Float);
        let lp = (&pos * 0.5 * &d2).sum(Kind::Float) / pos.sum(Kind::Float).clamp_min(1.0);
        let ln =
            (&neg * 0.5 * (self.margin - d).relu().square()).sum(Kind::Float) / neg.sum(Kind::Float).clamp_min(1.0);
        lp + ln
    }

    /// Every pair within a batch that holds skilled forgeries: `labels` `[N]` identity indices (each forgery
    /// a label of its own), `owner` `[N]` the identity each row belongs to or imitates. Three kinds of pair
    /// are averaged separately and added: genuine pairs of one identity, an identity's genuine sample against
    /// a forgery of it (the hard case), and rows of different identities. The skilled forgeries would
    /// otherwise be outnumbered many times by the easy pairs of different people.
    pub fn forward_with_forgeries(&self, e: &Tensor, labels: &Tensor, owner: &Tensor) -> Tensor {
        let n = e.size()[0];
        let d2 = (e.unsqueeze(1) - e.unsqueeze(0)).square().sum_dim_intlist([2i64].as_slice(), false, Kind::Float);
        let d = (&d2 + 1e-12).sqrt();
        let same = labels.unsqueeze(1).eq_tensor(&labels.unsqueeze(0));
        let same_owner = owner.unsqueeze(1).eq_tensor(&owner.unsqueeze(0));
        let genuine = labels.eq_tensor(owner);
        // A row is genuine when its label is its owner; a skilled pair has one genuine row and one forgery.
        let one_genuine = genuine.unsqueeze(1).logical_xor(&genuine.unsqueeze(0));
        let eye = Tensor::eye(n, (Kind::Bool, e.device()));
        let pos = same.logical_and(&eye.logical_not()).to_kind(Kind::Float);
        let skilled = same_owner.logical_and(&one_genuine).to_kind(Kind::Float);
        let other = same_owner.logical_not().to_kind(Kind::Float);
        let hinge = (self.margin - d).relu().square() * 0.5;
        let avg = |mask: &Tensor, v: &Tensor| (mask * v).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0);
        avg(&pos, &(&d2 * 0.5)) + avg(&skilled, &hinge) + avg(&other, &hinge)
    }
}

/// One training batch: sample indices, their identity labels (PK; a forgery has a label of its own) and
/// the identity each row belongs to or imitates, or the pairs' dissimilarity flags.
type Batch = (Vec<usize>, Vec<i64>, Vec<i64>, Option<Vec<f32>>);

/// How training batches are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
    pub modality: String,
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
    pub freeze_stages: usize,
    pub stage_lr_decay: f64,
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
}

/// Images of a split: genuine samples first (`labels[i]` is the identity of `planes[i]`), then skilled
/// forgeries (`planes[labels.len() + j]` imitates identity `forgery_of[j]`).
struct Split {
    planes: Vec<Vec<f32>>,
    labels: Vec<usize>,
    forgery_of: Vec<usize>,
}

fn load_split(ds: &Dataset, spec: &InputSpec, det: Option<&crate::face::Mtcnn>) -> Result<Split, TrainError> {
    let (samples, forgeries) = (ds.samples(), ds.forgery_samples());
    let files: Vec<&std::path::Path> = samples.iter().chain(&forgeries).map(|(p, _)| p.as_path()).collect();
    // Face models learn on aligned chips: detect once per image (largest face), align, sample. Without a
    // detector the files are read on all cores (in order).
    let load = |p: &std::path::Path| load_file(p, spec, DecodeLimits::default(), det, Default::default()).map(|r| r.0);
    let planes = match det {
        Some(_) => files.iter().map(|p| load(p)).collect::<Result<Vec<_>, _>>()?,
        None => par_map(&files, |p| load_file(p, spec, DecodeLimits::default(), None, Default::default()).map(|r| r.0))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?,
    };
    let labels = samples.iter().map(|(_, l)| *l).collect();
    let forgery_of = forgeries.iter().map(|(_, l)| *l).collect();
    Ok(Split { planes, labels, forgery_of })
}

/// `f` over `items` on all cores, results in order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    let per = items.len().div_ceil(threads.max(1)).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(per).map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("loader thread")).collect()
    })
}

/// Validation distances: with skilled forgeries, genuine–genuine pairs of a writer against
/// genuine–forgery pairs of the same writer; otherwise all genuine and impostor pairs.
fn split_distances(embs: &[Vec<f32>], split: &Split, m: Metric) -> (Vec<f32>, Vec<f32>) {
    let n = split.labels.len();
    if split.forgery_of.is_empty() {
        return pair_distances(&embs[..n], &split.labels, m);
    }
    let (gen, _) = pair_distances(&embs[..n], &split.labels, m);
    let mut imp = Vec::new();
    for (i, l) in split.labels.iter().enumerate() {
        for (j, f) in split.forgery_of.iter().enumerate() {
            if l == f {
                imp.push(m.distance(&embs[i], &embs[n + j]));
            }
        }
    }
    (gen, imp)
}

/// Enrolment-style validation on a split with skilled forgeries (see [`eval::reference_distances`]): the
/// EER of genuine probes against forgeries, each scored by mean distance to its writer's first `k` images.
fn reference_eer(embs: &[Vec<f32>], split: &Split, m: Metric, k: usize) -> Option<f64> {
    if split.forgery_of.is_empty() {
        return None;
    }
    let (g, i) = eval::pooled(&eval::reference_distances(
        embs,
        &split.labels,
        &split.forgery_of,
        k,
        m,
        crate::gallery::DEFAULT_RULE,
    ));
    (!g.is_empty() && !i.is_empty()).then(|| metrics::summarize(&g, &i).eer)
}

/// Embed `planes` (in [0, 1]) with `net` in inference mode, batched.
fn embed_planes(net: &Network, planes: &[Vec<f32>], spec: &InputSpec, device: Device) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(planes.len());
    for chunk in planes.chunks(64) {
        let x = batch_tensor(chunk.iter().map(|p| p.as_slice()), spec, device);
        let e = net.embed_tta(&x, spec.mirror_average, &spec.tta).to_device(Device::Cpu).contiguous();
        let dim = e.size()[1] as usize;
        let flat = Vec::<f32>::try_from(e.view([-1])).expect("float embeddings");
        out.extend(flat.chunks(dim).map(|c| c.to_vec()));
    }
    out
}

fn batch_tensor<'a>(planes: impl Iterator<Item = &'a [f32]>, spec: &InputSpec, device: Device) -> Tensor {
    let mut flat = Vec::new();
    let mut n = 0i64;
    for p in planes {
        let start = flat.len();
        flat.extend_from_slice(p);
        preprocess::normalize(&mut flat[start..], spec);
        n += 1;
    }
    Tensor::from_slice(&flat)
        .reshape([n, spec.channels as i64, spec.height as i64, spec.width as i64])
        .to_device(device)
}

fn summaries(embs: &[Vec<f32>], split: &Split) -> [(Vec<f32>, Vec<f32>); 2] {
    Metric::ALL.map(|m| split_distances(embs, split, m))
}

/// Train an encoder as `cfg` says, write its model directory, and return what happened.
/// `cancel` is polled between steps.
pub fn train(cfg: &TrainConfig, cancel: &AtomicBool) -> Result<TrainOutcome, TrainError> {
    let started = Instant::now();
    tch::manual_seed(cfg.seed as i64);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let all = Dataset::open(&cfg.data)?;
    let overlap: Vec<_> =
        cfg.train_ids.iter().filter(|n| cfg.val_ids.contains(n) || cfg.test_ids.contains(n)).collect();
    if !overlap.is_empty() {
        return Err(TrainError::Config(format!("identities in both training and validation/test: {overlap:?}")));
    }
    let (train_ds, val_ds) = (all.subset(&cfg.train_ids)?, all.subset(&cfg.val_ids)?);
    if train_ds.identities.len() < 2 || val_ds.identities.len() < 2 {
        return Err(TrainError::Config("need at least 2 training and 2 validation identities".into()));
    }
    let spec = &cfg.input;
    let det = match spec.preprocess {
        crate::model::Preprocess::FaceChip { .. } => {
            let d = cfg.out.parent().unwrap_or(std::path::Path::new(".")).join("mtcnn-v1");
            Some(crate::face::Mtcnn::load(&d, cfg.device).map_err(|e| ModelError::Weights(d.clone(), e))?)
        }
        _ => None,
    };
    let train = load_split(&train_ds, spec, det.as_ref())?;
    let val = load_split(&val_ds, spec, det.as_ref())?;

    if cfg.device.is_cuda() {
        // Fixed input shapes: let cuDNN pick its fastest kernels (at the price of bit-for-bit reruns).
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let mut vs = nn::VarStore::new(cfg.device);
    let mut net = Network::new(&vs.root(), &cfg.architecture, spec);
    if let Some(init) = &cfg.init {
        let pre = ModelCard::load(init)?;
        // Same network and tensor shape; the preprocessing may differ (e.g. signatures on a face encoder).
        let shape = |i: &InputSpec| (i.width, i.height, i.channels);
        if pre.architecture != cfg.architecture || shape(&pre.input) != shape(spec) {
            return Err(TrainError::Config(format!("--init {} has another architecture or input", init.display())));
        }
        vs.load(init.join(WEIGHTS_FILE)).map_err(|e| ModelError::Weights(init.join(WEIGHTS_FILE), e.to_string()))?;
    }
    // Freezing: no gradient for the first stages' variables.
    net.frozen_stages = cfg.freeze_stages.min(net.num_stages());
    let n_stages = net.num_stages();
    for (name, t) in vs.variables() {
        let stage = name.strip_prefix("stage").and_then(|r| r.split('.').next()).and_then(|n| n.parse::<usize>().ok());
        if stage.is_some_and(|s| s < net.frozen_stages) {
            let _ = t.set_requires_grad(false);
        }
    }
    let mut opt = nn::Adam { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?;
    // Stage i's variables are in optimiser group i, the projection in group `n_stages` (see `Network::new`):
    // each stage nearer the input learns `stage_lr_decay` times slower than the one after it.
    let stage_lr = |g: usize| cfg.lr * cfg.stage_lr_decay.powi((n_stages - g.min(n_stages)) as i32);
    let loss_fn = ContrastiveLoss { margin: cfg.margin };
    let mut ema_vs = nn::VarStore::new(cfg.device);
    let ema_net = Network::new(&ema_vs.root(), &cfg.architecture, spec);
    ema_vs.copy(&vs)?;
    let use_ema = cfg.ema_decay > 0.0;
    let (live_vars, ema_vars) = (vs.variables(), ema_vs.variables());
    let ema_pairs: Vec<(Tensor, Tensor)> =
        live_vars.iter().map(|(k, v)| (v.shallow_clone(), ema_vars[k].shallow_clone())).collect();
    // The network whose weights are validated and shipped.
    let eval_net = if use_ema { &ema_net } else { &net };

    let untrained = summaries(&embed_planes(&net, &val.planes, spec, cfg.device), &val);
    let untrained_val =
        [metrics::summarize(&untrained[0].0, &untrained[0].1), metrics::summarize(&untrained[1].0, &untrained[1].1)];
    if cfg.progress {
        eprintln!(
            "untrained: val EER euclidean {:.2}% cosine {:.2}%",
            untrained_val[0].eer * 100.0,
            untrained_val[1].eer * 100.0
        );
    }
    let mut best = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
    let mut best_vs = nn::VarStore::new(Device::Cpu);
    let _ = Network::new(&best_vs.root(), &cfg.architecture, spec);
    best_vs.copy(&vs)?;
    let (c, h, w) = (spec.channels as usize, spec.height as usize, spec.width as usize);
    let steps_per_epoch = match cfg.sampler {
        Sampler::Pairs => (train.planes.len() * 2 * cfg.pairs_per_image).div_ceil(cfg.batch_pairs),
        Sampler::Pk { steps, .. } => steps,
    };
    let n_gen = train.labels.len();
    let mut forg_by_id: Vec<Vec<usize>> = vec![Vec::new(); train_ds.identities.len()];
    for (j, l) in train.forgery_of.iter().enumerate() {
        forg_by_id[*l].push(n_gen + j);
    }
    let mut by_id: Vec<Vec<usize>> = vec![Vec::new(); train_ds.identities.len()];
    for (i, l) in train.labels.iter().enumerate() {
        by_id[*l].push(i);
    }
    let multi: Vec<usize> = (0..by_id.len()).filter(|k| by_id[*k].len() >= 2).collect();
    let total_steps = (steps_per_epoch * cfg.epochs) as u64;
    let bar = if cfg.progress {
        let b = indicatif::ProgressBar::new(total_steps);
        b.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps, eta {eta} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut step = 0u64;
    let mut epochs_run = 0;
    for epoch in 1..=cfg.epochs {
        // Cosine learning-rate schedule over the whole run.
        let frac = (epoch - 1) as f64 / cfg.epochs.max(1) as f64;
        let sched = 0.5 * (1.0 + (std::f64::consts::PI * frac).cos());
        for g in 0..=n_stages {
            opt.set_lr_group(g, stage_lr(g) * sched);
        }
        let mut epoch_loss = 0.0;
        let mut nb = 0;
        let batches: Vec<Batch> = match cfg.sampler {
            Sampler::Pairs => {
                let mut pairs = Vec::new();
                for _ in 0..cfg.pairs_per_image {
                    pairs.extend(balanced_pairs(&train.labels, &mut rng));
                }
                pairs.shuffle(&mut rng);
                pairs
                    .chunks(cfg.batch_pairs)
                    .map(|b| {
                        let idx = b.iter().map(|p| p.0).chain(b.iter().map(|p| p.1)).collect();
                        let y = b.iter().map(|p| if p.2 { 0f32 } else { 1.0 }).collect();
                        (idx, Vec::new(), Vec::new(), Some(y))
                    })
                    .collect()
            }
            Sampler::Pk { p, k, steps, forgeries, forger_classes } => (0..steps)
                .map(|_| {
                    let ids: Vec<usize> = multi.choose_multiple(&mut rng, p.min(multi.len())).copied().collect();
                    let mut idx = Vec::new();
                    let mut lab = Vec::new();
                    let mut own = Vec::new();
                    let mut unique = by_id.len() as i64;
                    for id in ids {
                        for j in by_id[id].choose_multiple(&mut rng, k.min(by_id[id].len())) {
                            idx.push(*j);
                            lab.push(id as i64);
                            own.push(id as i64);
                        }
                        // A forgery gets a label of its own (never "the same" as anything), or with
                        // `forger_classes` the label of its identity's forgeries.
                        for j in forg_by_id[id].choose_multiple(&mut rng, forgeries.min(forg_by_id[id].len())) {
                            idx.push(*j);
                            lab.push(if forger_classes { (by_id.len() + id) as i64 } else { unique });
                            own.push(id as i64);
                            unique += 1;
                        }
                    }
                    (idx, lab, own, None)
                })
                .collect(),
        };
        for (idx, lab, own, dissimilar) in batches {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainError::Cancelled);
            }
            // Random changes drawn in order from the run's generator, the warping itself on all cores.
            let jobs: Vec<(&[f32], augment::Warp)> =
                idx.iter().map(|k| (train.planes[*k].as_slice(), cfg.augment.draw(&mut rng))).collect();
            let aug = augment::warp_all(&jobs, c, h, w);
            let x = batch_tensor(aug.iter().map(|v| v.as_slice()), spec, cfg.device);
            let e = net.forward(&x, true);
            let loss = match dissimilar {
                Some(y) => {
                    let b = y.len() as i64;
                    let y = Tensor::from_slice(&y).to_device(cfg.device);
                    loss_fn.forward(&e.narrow(0, 0, b), &e.narrow(0, b, b), &y)
                }
                None if own.iter().zip(&lab).any(|(o, l)| o != l) => loss_fn.forward_with_forgeries(
                    &e,
                    &Tensor::from_slice(&lab).to_device(cfg.device),
                    &Tensor::from_slice(&own).to_device(cfg.device),
                ),
                None => loss_fn.forward_all_pairs(&e, &Tensor::from_slice(&lab).to_device(cfg.device)),
            };
            opt.zero_grad();
            loss.backward();
            opt.step();
            if use_ema {
                tch::no_grad(|| {
                    for (live, avg) in &ema_pairs {
                        let mut avg = avg.shallow_clone();
                        let _ = avg.g_mul_scalar_(cfg.ema_decay);
                        let _ = avg.g_add_(&(live * (1.0 - cfg.ema_decay)));
                    }
                });
            }
            epoch_loss += loss.double_value(&[]);
            nb += 1;
            step += 1;
            bar.set_position(step);
        }
        let embs = embed_planes(eval_net, &val.planes, spec, cfg.device);
        let d = summaries(&embs, &val);
        let se = metrics::summarize(&d[0].0, &d[0].1);
        let sc = metrics::summarize(&d[1].0, &d[1].1);
        let refs = reference_eer(&embs, &val, Metric::Euclidean, 10)
            .map_or(String::new(), |e| format!(", 10-reference EER {:.2}%", e * 100.0));
        let msg = format!(
            "epoch {epoch}/{}: loss {:.4}, val EER euclidean {:.2}% cosine {:.2}%, AUC {:.4}/{:.4}{refs}",
            cfg.epochs,
            epoch_loss / nb.max(1) as f64,
            se.eer * 100.0,
            sc.eer * 100.0,
            se.auc,
            sc.auc
        );
        bar.set_message(format!("val EER {:.2}%", se.eer * 100.0));
        if cfg.progress {
            bar.suspend(|| eprintln!("{msg} [{:.0} s]", started.elapsed().as_secs_f64()));
        }
        tracing::debug!("{msg}");
        if se.eer < best.0 || (se.eer == best.0 && se.auc > best.1) {
            best = (se.eer, se.auc, epoch);
            best_vs.copy(if use_ema { &ema_vs } else { &vs })?;
        }
        epochs_run = epoch;
        if cfg.time_limit.is_some_and(|l| started.elapsed() > l) && epoch < cfg.epochs {
            if cfg.progress {
                bar.suspend(|| eprintln!("time limit reached after epoch {epoch}"));
            }
            break;
        }
    }
    bar.finish_and_clear();
    vs.copy(&best_vs)?;
    drop(ema_pairs);

    // Calibrate on validation identities with the chosen weights.
    let embs = embed_planes(&net, &val.planes, spec, cfg.device);
    let d = summaries(&embs, &val);
    let val_summaries = [metrics::summarize(&d[0].0, &d[0].1), metrics::summarize(&d[1].0, &d[1].1)];
    let val_desc = format!("EER point on validation identities {}", compact_list(&cfg.val_ids));
    let thr = |k: usize| Threshold {
        value: val_summaries[k].eer_threshold,
        method: val_desc.clone(),
        at_eer: val_summaries[k].eer_threshold,
        at_far_1e3: val_summaries[k].threshold_far_1e3,
        score: metrics::fit_logistic(&d[k].0, &d[k].1),
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut card = ModelCard {
        id: cfg.id.clone(),
        version: cfg.version,
        modality: cfg.modality.clone(),
        architecture: cfg.architecture.clone(),
        input: spec.clone(),
        embedding_size: cfg.architecture.embedding_size(),
        default_metric: Metric::Euclidean,
        thresholds: Thresholds { euclidean: thr(0), cosine: thr(1) },
        training: serde_json::json!({
            "command": "siamese train",
            "data": cfg.data.file_name().map(|s| s.to_string_lossy().into_owned()),
            "train_identities": compact_list(&cfg.train_ids),
            "validation_identities": compact_list(&cfg.val_ids),
            "loss": format!("contrastive (Hadsell et al. 2006), Y = 0 for similar pairs, margin {}", cfg.margin),
            "optimizer": format!("Adam lr {} (cosine schedule), weight decay {}", cfg.lr, cfg.weight_decay),
            "epochs": cfg.epochs, "epochs_run": epochs_run, "best_epoch": best.2, "batch_pairs": cfg.batch_pairs,
            "steps_per_epoch": steps_per_epoch,
            "augmentation": cfg.augment, "sampler": cfg.sampler, "ema_decay": cfg.ema_decay, "seed": cfg.seed,
            "init": cfg.init.as_ref().map(|p| p.display().to_string()),
            "freeze_stages": cfg.freeze_stages, "stage_lr_decay": cfg.stage_lr_decay,
            "device": format!("{:?}", cfg.device), "torch": crate::torch_version(),
            "seconds": (seconds * 10.0).round() / 10.0,
        }),
        evaluation: serde_json::Value::Null,
        default: false,
        subject: None,
    };
    card.validate().map_err(TrainError::Config)?;
    card.save(&cfg.out)?;
    vs.save(cfg.out.join(WEIGHTS_FILE))?;

    let mut evaluation = serde_json::json!({
        "validation": {
            "identities": compact_list(&cfg.val_ids),
            "euclidean": val_summaries[0], "cosine": val_summaries[1],
            "untrained_eer": {"euclidean": untrained_val[0].eer, "cosine": untrained_val[1].eer},
        }
    });
    if !cfg.test_ids.is_empty() {
        let model = LoadedModel::load(&cfg.out, cfg.device)?.with_detector()?;
        let test = all.subset(&cfg.test_ids)?;
        let rep = evaluate_model(&model, &test, DecodeLimits::default())?;
        evaluation["test"] = serde_json::to_value(&rep).expect("report serialises");
        evaluation["test"]["identities"] = compact_list(&cfg.test_ids).into();
    }
    card.evaluation = evaluation;
    card.save(&cfg.out)?;
    Ok(TrainOutcome { card, best_epoch: best.2, untrained_val, val: val_summaries, seconds })
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

/// Load one image file as `C × H × W` planes in [0, 1] at the card's size.
/// An image file as input planes (see [`crate::face::input_planes`]); a face model that finds no face in it
/// gets the whole image, with a warning.
pub(crate) fn load_file(
    path: &std::path::Path,
    spec: &InputSpec,
    limits: DecodeLimits,
    det: Option<&crate::face::Mtcnn>,
    select: crate::face::FaceSelect,
) -> Result<(Vec<f32>, bool), TrainError> {
    let bytes =
        std::fs::read(path).map_err(|e| TrainError::Image(path.to_path_buf(), ImageError::Decode(e.to_string())))?;
    let img = preprocess::decode(&bytes, limits).map_err(|e| TrainError::Image(path.to_path_buf(), e))?;
    let (planes, found) = crate::face::input_planes(&img, spec, det, select);
    if !found {
        tracing::warn!(file = %path.display(), "no face found; using the whole image");
    }
    Ok((planes, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgery_aware_loss_averages_the_three_kinds_of_pair_separately() {
        // Rows: writer 0 genuine ×2, a forgery of writer 0, writer 1 genuine. 2-d embeddings on a line.
        let e = Tensor::from_slice(&[0.0f32, 0.0, 0.2, 0.0, 0.5, 0.0, 3.0, 0.0]).reshape([4, 2]);
        let labels = Tensor::from_slice(&[0i64, 0, 2, 1]);
        let owner = Tensor::from_slice(&[0i64, 0, 0, 1]);
        let m = 1.0;
        let got = ContrastiveLoss { margin: m }.forward_with_forgeries(&e, &labels, &owner).double_value(&[]);
        let hinge = |d: f64| 0.5 * (m - d).max(0.0).powi(2);
        // Positives: (0,1) both ways, D = 0.2. Skilled: (0,2) D = 0.5, (1,2) D = 0.3, both ways.
        // Others: every pair with row 3: D = 3.0, 2.8, 2.5 — beyond the margin.
        let want = 0.5 * 0.2f64.powi(2) + (hinge(0.5) + hinge(0.3)) / 2.0 + 0.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn forgeries_sharing_a_forger_class_label_are_positives_of_each_other() {
        // Rows: writer 0 genuine ×2, two forgeries of writer 0 (one forger class, label 7), writer 1 genuine.
        let e = Tensor::from_slice(&[0.0f32, 0.0, 0.2, 0.0, 0.5, 0.0, 0.9, 0.0, 3.0, 0.0]).reshape([5, 2]);
        let owner = Tensor::from_slice(&[0i64, 0, 0, 0, 1]);
        let m = 1.0;
        let hinge = |d: f64| 0.5 * (m - d).max(0.0).powi(2);
        let loss = |labels: &[i64]| {
            ContrastiveLoss { margin: m }
                .forward_with_forgeries(&e, &Tensor::from_slice(labels), &owner)
                .double_value(&[])
        };
        // Skilled pairs either way: genuine rows 0, 1 against forgeries 2, 3: D = 0.5, 0.9, 0.3, 0.7.
        let skilled = (hinge(0.5) + hinge(0.9) + hinge(0.3) + hinge(0.7)) / 4.0;
        // Unique forgery labels: the only positive pair is (0,1), D = 0.2.
        let unique = loss(&[0, 0, 7, 8, 1]);
        assert!((unique - (0.5 * 0.04 + skilled)).abs() < 1e-6, "{unique}");
        // One forger class: (2,3), D = 0.4, is a positive too.
        let shared = loss(&[0, 0, 7, 7, 1]);
        let want = 0.5 * (0.04 + 0.16) / 2.0 + skilled;
        assert!((shared - want).abs() < 1e-6, "{shared} vs {want}");
    }
}
