//! Running one job: lay out its data, train on an OS thread of its own (epoch reports flow back as
//! events), judge the candidate and the active model on the same validation pairs (the evaluation gate),
//! register the candidate as the model's next version, and activate it when asked and better.

use super::{JobParams, Jobs, Resolved};
use crate::dataset::{read_pairs_file, Dataset};
use crate::distance::Metric;
use crate::pipeline::{LocalEncoder, NoFace, Options};
use crate::store::JobRecord;
use crate::train::{self, Augment, EpochReport, EvalReport, Hooks, Sampler, TrainConfig, TrainError};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Why a run ended without a candidate.
enum Stop {
    /// Cancelled by a user (`cancelled`) or by the process stopping (`interrupted`).
    Cancelled,
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Failed(e.to_string())
    }
}

/// The gate's figures of one model.
fn figures(r: &EvalReport, version: i64) -> serde_json::Value {
    let per = |m: Metric| {
        let s = &r.metrics[&m].summary;
        json!({ "eer": s.eer, "auc": s.auc, "tar_at_far_1e-3": s.tar_far_1e3 })
    };
    json!({
        "version": version,
        "metric": r.metric,
        "eer": r.eer,
        "auc": r.auc,
        "tar_at_far_1e-3": r.tar_at_far_1e3,
        "euclidean": per(Metric::Euclidean),
        "cosine": per(Metric::Cosine),
    })
}

/// A subject's folder name in the laid-out data: the name itself when it is a plain file name, else
/// `x` and its hex.
fn folder_name(name: &str) -> String {
    let plain = !name.starts_with('.')
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ' '));
    if plain {
        name.to_string()
    } else {
        format!("x{}", hex::encode(name.as_bytes()))
    }
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/bmp" => "bmp",
        "image/gif" => "gif",
        "image/tiff" => "tif",
        "image/webp" => "webp",
        "image/x-portable-graymap" | "image/x-portable-anymap" => "pgm",
        _ => "png",
    }
}

const EVAL_OPTIONS: Options = Options {
    detect: true,
    select: crate::face::FaceSelect::Central,
    all_faces: false,
    no_face: NoFace::WholeImage,
    normalize: true,
};

pub(super) async fn run(jobs: &Arc<Jobs>, job: JobRecord, stop: &mut watch::Receiver<bool>) {
    let id = job.id.clone();
    tracing::info!(job = %id, model = %job.model_id, "job started");
    jobs.publish_state(&id, "running", None);
    let cancel = Arc::new(AtomicBool::new(false));
    jobs.running.lock().expect("jobs lock").insert(id.clone(), cancel.clone());
    let outcome = run_job(jobs, &job, cancel.clone(), stop).await;
    jobs.running.lock().expect("jobs lock").remove(&id);
    let store = &jobs.store;
    let (state, error) = match outcome {
        Ok(()) => ("succeeded", None),
        Err(Stop::Cancelled) if *stop.borrow() => ("interrupted", None),
        Err(Stop::Cancelled) => ("cancelled", None),
        Err(Stop::Failed(e)) => ("failed", Some(e)),
    };
    if state != "succeeded" {
        if let Err(e) = store.finish_job(&id, state, error.as_deref(), None, None).await {
            tracing::error!(job = %id, error = %e, "recording the job's end failed");
        }
    }
    tracing::info!(job = %id, state, error = error.as_deref().unwrap_or(""), "job ended");
    jobs.publish_state(&id, state, error.as_deref());
}

async fn run_job(
    jobs: &Arc<Jobs>,
    job: &JobRecord,
    cancel: Arc<AtomicBool>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Stop> {
    let mut stored = job.params.clone();
    let resolved: Resolved = serde_json::from_value(stored["resolved"].take())?;
    if let Some(o) = stored.as_object_mut() {
        o.remove("resolved");
    }
    let params: JobParams = serde_json::from_value(stored)?;
    let dir = jobs.settings.work_dir.join("jobs").join(&job.id);
    let data = dir.join("data");
    let layout = lay_out(jobs, &resolved, &data).await?;
    crate::catalog::link_detector(&jobs.settings.models_dir, &dir)?;
    let catalog = &jobs.catalog;
    let base_dir = catalog.model_dir(&resolved.base, resolved.base_version).await?;
    let active_version = catalog.served_version(&resolved.base).ok_or("the base model is no longer loaded")?;
    let active_dir = catalog.model_dir(&resolved.base, active_version).await?;
    let card = crate::model::ModelCard::load(&base_dir)?;
    let a = &params.augment;
    let mirror = a.mirror.unwrap_or(card.modality == crate::model::Modality::Face);
    let names = |v: &[String]| v.iter().map(|s| layout[s].clone()).collect::<Vec<_>>();
    let cfg = TrainConfig {
        data: data.clone(),
        train_ids: names(&resolved.train),
        val_ids: names(&resolved.val),
        test_ids: Vec::new(),
        out: dir.join("candidate"),
        id: resolved.base.clone(),
        version: card.version,
        modality: card.modality,
        input: card.input.clone(),
        architecture: card.architecture.clone(),
        epochs: params.epochs as usize,
        batch_pairs: params.batch_pairs as usize,
        pairs_per_image: 1,
        lr: params.lr,
        weight_decay: params.weight_decay,
        margin: params.margin,
        augment: Augment {
            rotate_deg: a.rotation_deg,
            shift: a.shift,
            scale: a.scale,
            brightness: a.brightness,
            contrast: a.contrast,
            hflip: mirror,
            ..Augment::NONE
        },
        sampler: match (params.pk, params.self_supervised) {
            (_, Some(ss)) => Sampler::SelfSupervised {
                images: ss.images as usize,
                steps: ss.steps as usize,
                temperature: ss.temperature,
            },
            (Some(pk), None) => Sampler::Pk {
                p: pk.p as usize,
                k: pk.k as usize,
                steps: pk.steps as usize,
                forgeries: pk.forgeries as usize,
                forger_classes: false,
            },
            (None, None) => Sampler::Pairs,
        },
        ema_decay: 0.0,
        seed: params.seed,
        device: jobs.settings.device,
        init: (!params.from_scratch).then(|| base_dir.clone()),
        freeze: params.freeze.clone(),
        lr_mult: params.lr_mult.clone(),
        progress: false,
        time_limit: params.time_limit_min.map(|m| std::time::Duration::from_secs_f64(m * 60.0)),
    };
    // Epoch reports from the trainer's thread.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<EpochReport>();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let gate = (resolved.gate_pairs.clone(), resolved.gate_images.clone(), cfg.val_ids.clone());
    let (thread_cancel, checkpoint) = (cancel.clone(), dir.join("checkpoint"));
    let gate_dir = dir.join("gate");
    let thread_gate_dir = gate_dir.clone();
    std::thread::Builder::new()
        .name(format!("train-{}", job.id))
        .spawn(move || {
            let on_epoch = move |r: &EpochReport| {
                let _ = tx.send(r.clone());
            };
            let hooks = Hooks { cancel: &thread_cancel, on_epoch: &on_epoch, checkpoint: Some(&checkpoint) };
            let r = train::train_with(&cfg, &hooks)
                .and_then(|outcome| evaluate_gate(&cfg, &active_dir, &gate, &thread_gate_dir).map(|g| (outcome, g)));
            let _ = done_tx.send(r);
        })
        .map_err(|e| format!("starting the trainer's thread: {e}"))?;
    let mut history = job.history.clone();
    let mut beat = tokio::time::interval(std::time::Duration::from_secs(5));
    let result = loop {
        tokio::select! {
            _ = beat.tick() => {
                // Cancelled through another replica: stop here too.
                if jobs.store.job_heartbeat(&job.id).await.is_ok_and(|s| s != "running") {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
            Some(r) = rx.recv() => {
                record_epoch(jobs, &job.id, &mut history, &r);
                jobs.store.set_job_history(&job.id, &history).await?;
            }
            r = &mut done_rx => break r.map_err(|_| "the trainer's thread stopped")?,
            _ = stop.changed() => cancel.store(true, Ordering::SeqCst),
        }
    };
    // Reports sent just before the end.
    while let Ok(r) = rx.try_recv() {
        record_epoch(jobs, &job.id, &mut history, &r);
    }
    let (outcome, (cand, active)) = match result {
        Ok(r) => r,
        Err(TrainError::Cancelled) => {
            jobs.store.set_job_history(&job.id, &history).await?;
            return Err(Stop::Cancelled);
        }
        Err(e) => return Err(Stop::Failed(e.to_string())),
    };
    let history: Vec<serde_json::Value> =
        outcome.history.iter().map(|r| serde_json::to_value(r).expect("report serialises")).collect();
    jobs.store.set_job_history(&job.id, &history).await?;
    // Register the candidate as the next version.
    let out = dir.join("candidate");
    let mut card_json = serde_json::to_value(crate::model::ModelCard::load(&out)?)?;
    card_json["default"] = card.default.into();
    card_json["training"]["job"] = job.id.clone().into();
    card_json["training"]["parent_version"] = resolved.base_version.into();
    let weights = std::fs::read(out.join(crate::model::WEIGHTS_FILE))?;
    let v = jobs
        .store
        .add_version(&resolved.base, &card_json, &weights, Some(resolved.base_version), Some(&job.id))
        .await?;
    let better = cand.eer < active.eer;
    let report = json!({
        "pairs": cand.pairs,
        "gate": if resolved.gate_pairs.is_some() { "listed pairs (gate_pairs)" } else { "all pairs of the validation identities" },
        "candidate": figures(&cand, v),
        "active": figures(&active, active_version),
        "better": better,
        "best_epoch": outcome.best_epoch,
        "seconds": outcome.seconds,
    });
    for (name, file) in [
        ("roc.png", gate_dir.join("roc.png")),
        ("distances-candidate.png", gate_dir.join("candidate").join("distances.png")),
        ("distances-active.png", gate_dir.join("active").join("distances.png")),
    ] {
        let bytes = std::fs::read(&file)?;
        jobs.store.put_job_file(&job.id, name, "image/png", &bytes).await?;
    }
    jobs.store.finish_job(&job.id, "succeeded", None, Some(v), Some(&report)).await?;
    if params.auto_promote && better {
        match catalog.activate(&resolved.base, v).await {
            Ok(_) => jobs.store.set_job_promoted(&job.id).await?,
            Err(e) => tracing::error!(job = %job.id, error = %e, "activating the candidate failed"),
        }
    }
    Ok(())
}

/// An epoch's report joins the history (replacing any later epochs a resumed run trains again) and is
/// published.
fn record_epoch(jobs: &Jobs, id: &str, history: &mut Vec<serde_json::Value>, r: &EpochReport) {
    history.retain(|h| h["epoch"].as_u64().is_some_and(|e| (e as usize) < r.epoch));
    let v = serde_json::to_value(r).expect("an epoch report serialises");
    history.push(v.clone());
    jobs.publish(id, "epoch", v);
}

/// Write the training identities' images into `data/`: a folder per identity (collection samples from
/// their stored originals, dataset identities as links to their folders), or, when the collection holds
/// skilled forgeries, CEDAR's layout (`full_org/original_<w>_<k>`, `full_forg/forgeries_<w>_<k>`). Returns
/// each identity's name in the laid-out data.
async fn lay_out(jobs: &Jobs, r: &Resolved, data: &Path) -> Result<HashMap<String, String>, Stop> {
    let _ = std::fs::remove_dir_all(data);
    std::fs::create_dir_all(data)?;
    let mut wanted: Vec<&String> = r.train.iter().chain(&r.val).collect();
    wanted.sort();
    let names: HashMap<String, String> = wanted
        .iter()
        .enumerate()
        .map(|(k, n)| ((*n).clone(), if r.forgeries { format!("w{}", k + 1) } else { folder_name(n) }))
        .collect();
    // Where sample `k` of identity `name` goes.
    let (org, forg) = (data.join("full_org"), data.join("full_forg"));
    let place = |name: &str, k: usize, forgery: bool, ext: &str| -> std::io::Result<PathBuf> {
        let id = &names[name];
        if r.forgeries {
            let (dir, prefix) = if forgery { (&forg, "forgeries") } else { (&org, "original") };
            std::fs::create_dir_all(dir)?;
            Ok(dir.join(format!("{prefix}_{}_{k}.{ext}", &id[1..])))
        } else {
            let dir = data.join(id);
            std::fs::create_dir_all(&dir)?;
            Ok(dir.join(format!("{k}.{ext}")))
        }
    };
    if let Some(c) = &r.collection_id {
        let mut count: HashMap<(String, bool), usize> = HashMap::new();
        for s in jobs.store.collection_samples(c).await? {
            if !names.contains_key(&s.subject) {
                continue;
            }
            let k = count.entry((s.subject.clone(), s.forgery)).or_default();
            *k += 1;
            let bytes = jobs.store.sample_image(&s.sample).await?;
            std::fs::write(place(&s.subject, *k, s.forgery, extension(&s.content_type))?, bytes)?;
        }
    }
    if let Some(ds) = &r.dataset {
        let ds = Dataset::open(ds)?;
        for id in ds.identities.iter().filter(|i| names.contains_key(&i.name)) {
            for (k, f) in id.images.iter().enumerate() {
                let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("png");
                std::os::unix::fs::symlink(f, place(&id.name, k + 1, false, ext)?)?;
            }
        }
    }
    Ok(names)
}

type Gate = (Option<PathBuf>, Option<PathBuf>, Vec<String>);

/// The candidate (in `cfg.out`) and the active model evaluated on the same pairs; plots in `out`.
fn evaluate_gate(
    cfg: &TrainConfig,
    active_dir: &Path,
    (pairs, images, val): &Gate,
    out: &Path,
) -> Result<(EvalReport, EvalReport), TrainError> {
    let listed = match (pairs, images) {
        (Some(p), Some(i)) => Some(read_pairs_file(p, i)?),
        _ => None,
    };
    let val_ds = Dataset::open(&cfg.data)?.subset(val)?;
    let eval = |dir: &Path| -> Result<EvalReport, TrainError> {
        let model = LocalEncoder::load(dir, cfg.device, EVAL_OPTIONS)
            .map_err(|e| TrainError::Input(dir.to_path_buf(), Box::new(e)))?;
        match &listed {
            Some(l) => train::evaluate_pairs(&model, l),
            None => train::evaluate_model(&model, &val_ds),
        }
    };
    let cand = eval(&cfg.out)?;
    let active = eval(active_dir)?;
    train::write_report(&cand, &out.join("candidate"), "candidate")?;
    train::write_report(&active, &out.join("active"), "active model")?;
    let series: Vec<(String, Vec<(f64, f64)>)> = [("candidate", &cand), ("active", &active)]
        .iter()
        .flat_map(|(who, r)| {
            Metric::ALL.iter().map(move |m| {
                let (g, i) = &r.distances[m];
                (format!("{who} {}", m.as_str()), crate::metrics::roc(g, i))
            })
        })
        .collect();
    let series: Vec<(&str, Vec<(f64, f64)>)> = series.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    crate::metrics::plot_roc(&out.join("roc.png"), "ROC — candidate and active model", &series)
        .map_err(|e| TrainError::Plot(e.to_string()))?;
    Ok((cand, active))
}
