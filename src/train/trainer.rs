//! The training loop: batches drawn afresh each epoch, augmentation, contrastive loss, Adam with a cosine
//! schedule, per-group learning rates and frozen groups for transfer learning, validation every epoch (both
//! metrics), the best epoch kept, thresholds calibrated, the model directory written.
//!
//! [`Hooks`] let a caller follow and steer a run: a report after every epoch, cancellation between steps,
//! and a checkpoint after every epoch from which a later run resumes (the weights, their moving average,
//! the best epoch so far and the sampler's random state; Adam's moment estimates start afresh).
//!
//! One file over 500 lines: the loop is one function whose parts (the three samplers — pairs, P×K,
//! self-supervised views — the loss, validation, checkpoints) share its state.

use super::augment;
use super::data::{load_split, Split};
use super::eval::{self, evaluate_model, pair_distances};
use super::{compact_list, groups, ContrastiveLoss, Sampler, TrainConfig, TrainError, TrainOutcome};
use crate::dataset::{balanced_pairs, Dataset};
use crate::distance::Metric;
use crate::metrics;
use crate::model::{InputSpec, ModelCard, Network, Threshold, Thresholds, WEIGHTS_FILE};
use crate::preprocess;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Tensor};

/// One training batch: sample indices, their identity labels (PK; a forgery has a label of its own) and
/// the identity each row belongs to or imitates, or the pairs' dissimilarity flags.
type Batch = (Vec<usize>, Vec<i64>, Vec<i64>, Option<Vec<f32>>);

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

/// What a run tells after each epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub epochs: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Validation EER and AUC, Euclidean and cosine.
    pub val_eer_euclidean: f64,
    pub val_eer_cosine: f64,
    pub val_auc_euclidean: f64,
    pub val_auc_cosine: f64,
    /// Seconds the epoch took (training steps and validation).
    pub seconds: f64,
}

/// How a caller follows and steers a run.
pub struct Hooks<'a> {
    /// Polled between steps: set, the run stops with [`TrainError::Cancelled`] (its checkpoint stays).
    pub cancel: &'a AtomicBool,
    /// Called after every epoch.
    pub on_epoch: &'a (dyn Fn(&EpochReport) + Sync),
    /// A directory for a checkpoint after every epoch; a run that finds one there goes on from it.
    pub checkpoint: Option<&'a Path>,
}

/// The state of a run after an epoch, beside its weights in the checkpoint directory.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    epoch: usize,
    /// Best validation (EER, AUC, epoch) so far.
    best: (f64, f64, usize),
    step: u64,
    /// The sampler's random generator: where its stream stands.
    rng_word_pos: u128,
    history: Vec<EpochReport>,
}

const CHECKPOINT: &str = "checkpoint.json";

fn save_checkpoint(dir: &Path, state: &Checkpoint, vars: [(&nn::VarStore, &str); 3]) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Config(format!("{}: {e}", dir.display())))?;
    for (vs, name) in vars {
        vs.save(dir.join(name))?;
    }
    // Written last and renamed into place: a checkpoint is whole or absent.
    let tmp = dir.join("checkpoint.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(state).expect("checkpoint serialises"))
        .and_then(|_| std::fs::rename(&tmp, dir.join(CHECKPOINT)))
        .map_err(|e| TrainError::Config(format!("{}: {e}", dir.display())))
}

fn load_checkpoint(dir: &Path) -> Option<Checkpoint> {
    serde_json::from_slice(&std::fs::read(dir.join(CHECKPOINT)).ok()?).ok()
}

/// Train an encoder as `cfg` says, write its model directory, and return what happened.
/// `cancel` is polled between steps.
pub fn train(cfg: &TrainConfig, cancel: &AtomicBool) -> Result<TrainOutcome, TrainError> {
    train_with(cfg, &Hooks { cancel, on_epoch: &|_| {}, checkpoint: None })
}

/// [`train`], followed and steered through `hooks`.
pub fn train_with(cfg: &TrainConfig, hooks: &Hooks) -> Result<TrainOutcome, TrainError> {
    let cancel = hooks.cancel;
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
    // Self-supervised training reads no labels: one folder of images will do.
    let min_train = if matches!(cfg.sampler, Sampler::SelfSupervised { .. }) { 1 } else { 2 };
    if train_ds.identities.len() < min_train || val_ds.identities.len() < 2 {
        return Err(TrainError::Config("need at least 2 training and 2 validation identities".into()));
    }
    let spec = &cfg.input;
    let det = crate::pipeline::detector_for(spec, &cfg.out, cfg.device)
        .map_err(|e| TrainError::Input(cfg.out.clone(), Box::new(e)))?;
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
        vs.load(init.join(WEIGHTS_FILE))
            .map_err(|e| crate::model::ModelError::Weights(init.join(WEIGHTS_FILE), e.to_string()))?;
    }
    // Layer groups: stage i's variables are optimiser group i, the head group `n_stages` (`Network::new`).
    let n_stages = net.num_stages();
    let frozen: Vec<usize> =
        cfg.freeze.iter().map(|g| groups::parse(g, n_stages)).collect::<Result<_, _>>().map_err(TrainError::Config)?;
    let mut mult = vec![1.0; n_stages + 1];
    for (g, m) in &cfg.lr_mult {
        if !(m.is_finite() && *m >= 0.0) {
            return Err(TrainError::Config(format!("lr_mult of {g} must be a non-negative number, not {m}")));
        }
        mult[groups::parse(g, n_stages).map_err(TrainError::Config)?] = *m;
    }
    // Frozen: no gradient, and batch-norm statistics kept as loaded (inference mode).
    net.frozen = frozen.iter().copied().filter(|g| *g < n_stages).collect();
    groups::freeze(&vs, &frozen, n_stages);
    let mut opt = nn::Adam { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?;
    let group_lr = groups::learning_rates(cfg.lr, &mult, n_stages);
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
        Sampler::Pk { steps, .. } | Sampler::SelfSupervised { steps, .. } => steps,
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
    let ssl_temperature = match cfg.sampler {
        Sampler::SelfSupervised { temperature, .. } => Some(temperature),
        _ => None,
    };
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
    let mut history: Vec<EpochReport> = Vec::new();
    // Resume: the epoch after the checkpoint's, with its weights, best epoch and random stream.
    let mut first_epoch = 1;
    if let Some(ck) = hooks.checkpoint.and_then(|dir| load_checkpoint(dir).map(|c| (dir, c))) {
        let (dir, ck) = ck;
        vs.load(dir.join("live.safetensors"))?;
        ema_vs.load(dir.join("ema.safetensors"))?;
        best_vs.load(dir.join("best.safetensors"))?;
        (best, step, epochs_run, first_epoch) = (ck.best, ck.step, ck.epoch, ck.epoch + 1);
        rng.set_word_pos(ck.rng_word_pos);
        history = ck.history;
        bar.set_position(step);
        tracing::info!(epoch = ck.epoch, dir = %dir.display(), "resuming from a checkpoint");
    }
    for epoch in first_epoch..=cfg.epochs {
        let epoch_started = Instant::now();
        // Cosine learning-rate schedule over the whole run.
        let frac = (epoch - 1) as f64 / cfg.epochs.max(1) as f64;
        let sched = 0.5 * (1.0 + (std::f64::consts::PI * frac).cos());
        for (g, lr) in group_lr.iter().enumerate() {
            opt.set_lr_group(g, lr * sched);
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
            // Each chosen image twice: rows i and i + n are its two views (augmented independently below).
            Sampler::SelfSupervised { images, steps, .. } => (0..steps)
                .map(|_| {
                    let chosen = rand::seq::index::sample(&mut rng, n_gen, images.min(n_gen)).into_vec();
                    let idx: Vec<usize> = chosen.iter().chain(chosen.iter()).copied().collect();
                    (idx, Vec::new(), Vec::new(), None)
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
                _ if ssl_temperature.is_some() => super::loss::nt_xent(&e, ssl_temperature.unwrap_or(0.1)),
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
        let report = EpochReport {
            epoch,
            epochs: cfg.epochs,
            train_loss: epoch_loss / nb.max(1) as f64,
            val_eer_euclidean: se.eer,
            val_eer_cosine: sc.eer,
            val_auc_euclidean: se.auc,
            val_auc_cosine: sc.auc,
            seconds: epoch_started.elapsed().as_secs_f64(),
        };
        history.push(report.clone());
        if let Some(dir) = hooks.checkpoint {
            let state = Checkpoint { epoch, best, step, rng_word_pos: rng.get_word_pos(), history: history.clone() };
            save_checkpoint(
                dir,
                &state,
                [(&vs, "live.safetensors"), (&ema_vs, "ema.safetensors"), (&best_vs, "best.safetensors")],
            )?;
        }
        (hooks.on_epoch)(&report);
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
        modality: cfg.modality,
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
            "frozen_groups": cfg.freeze, "lr_mult": cfg.lr_mult,
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
        let options = crate::pipeline::Options { no_face: crate::pipeline::NoFace::WholeImage, ..Default::default() };
        let model = crate::pipeline::LocalEncoder::load(&cfg.out, cfg.device, options)
            .map_err(|e| TrainError::Input(cfg.out.clone(), Box::new(e)))?;
        let test = all.subset(&cfg.test_ids)?;
        let rep = evaluate_model(&model, &test)?;
        evaluation["test"] = serde_json::to_value(&rep).expect("report serialises");
        evaluation["test"]["identities"] = compact_list(&cfg.test_ids).into();
    }
    card.evaluation = evaluation;
    card.save(&cfg.out)?;
    Ok(TrainOutcome { card, best_epoch: best.2, untrained_val, val: val_summaries, seconds, history })
}
