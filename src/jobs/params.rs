//! A job's parameters, their documented defaults, and the checks that run before a job is queued.

use super::{JobError, Jobs};
use crate::dataset::Dataset;
use crate::train::groups;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use utoipa::ToSchema;

/// Fewest identities (with at least two samples each) a job trains and validates on.
pub const MIN_IDENTITIES: usize = 4;

/// Augmentation for invariance, drawn afresh for every training image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentParams {
    /// Largest rotation, degrees either way.
    #[schema(default = 8.0)]
    pub rotation_deg: f32,
    /// Largest shift, as a fraction of the width / height.
    #[schema(default = 0.05)]
    pub shift: f32,
    /// Largest relative scale change (0.1 = 0.9× … 1.1×).
    #[schema(default = 0.08)]
    pub scale: f32,
    /// Largest brightness offset (pixel values in [0, 1]).
    #[schema(default = 0.1)]
    pub brightness: f32,
    /// Largest relative contrast change.
    #[schema(default = 0.2)]
    pub contrast: f32,
    /// Mirror left-right half the time (default: yes for faces, no for signatures).
    pub mirror: Option<bool>,
}

impl Default for AugmentParams {
    fn default() -> Self {
        AugmentParams { rotation_deg: 8.0, shift: 0.05, scale: 0.08, brightness: 0.1, contrast: 0.2, mirror: None }
    }
}

/// Identity-balanced batches: `p` identities × `k` images each, every pair inside the batch used; `steps`
/// batches per epoch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PkParams {
    pub p: i64,
    pub k: i64,
    pub steps: i64,
    /// Skilled forgeries of each chosen identity added to the batch as its hard negatives (collections
    /// with samples uploaded as `kind=forgery`).
    #[serde(default)]
    pub forgeries: i64,
}

/// Self-supervised training (SimCLR): `images` per batch, each augmented twice (the two views are the only
/// positives; identity labels are not read), `steps` batches per epoch, NT-Xent at `temperature`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SelfSupervisedParams {
    pub images: i64,
    pub steps: i64,
    #[serde(default = "default_temperature")]
    #[schema(default = 0.1)]
    pub temperature: f64,
}

fn default_temperature() -> f64 {
    0.1
}

/// What `POST /v1/jobs` takes. Every field is optional; a job needs `collection` and/or `dataset`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobParams {
    /// The model to start from and to register the candidate under (default: the collection's model, else
    /// the default model).
    pub base: Option<String>,
    /// Train the base model's architecture from random weights instead of from its weights.
    #[schema(default = false)]
    pub from_scratch: bool,
    /// Train on this collection's enrolled subjects (their stored original images).
    pub collection: Option<String>,
    /// And/or on a folder-per-identity dataset: a path under the server's `--data-root`.
    pub dataset: Option<String>,
    /// Identities kept out of training for validation (default: `val_ratio` of them, drawn with `seed`).
    pub val_subjects: Vec<String>,
    /// Share of the identities held out for validation when `val_subjects` is empty.
    #[schema(default = 0.2)]
    pub val_ratio: f64,
    /// Seed of the validation draw, the pair sampler and augmentation.
    #[schema(default = 1)]
    pub seed: u64,
    /// Judge candidate and active model on these listed pairs (LFW's `pairs*.txt` format, a path under
    /// the data root) instead of on the validation identities' pairs.
    pub gate_pairs: Option<String>,
    /// The image folder `gate_pairs` names files in (under the data root; default: the pairs file's
    /// folder's `lfw/`).
    pub gate_images: Option<String>,
    #[schema(default = 5)]
    pub epochs: i64,
    /// Pairs per optimisation step.
    #[schema(default = 32)]
    pub batch_pairs: i64,
    /// Learning rate of groups without a multiplier.
    #[schema(default = 0.0001)]
    pub lr: f64,
    /// Draw identity-balanced batches instead of explicit pairs (default: pairs, each training image
    /// anchoring one same and one different pair per epoch, `batch_pairs` per step).
    pub pk: Option<PkParams>,
    /// Learn without labels instead (SimCLR-style; the validation identities still choose the epoch and
    /// the gate still judges the candidate). Not together with `pk`.
    pub self_supervised: Option<SelfSupervisedParams>,
    /// Adam's weight decay.
    #[schema(default = 0.0)]
    pub weight_decay: f64,
    /// Contrastive margin (distance beyond which a different pair costs nothing).
    #[schema(default = 1.0)]
    pub margin: f64,
    /// `contrastive` (Hadsell, Chopra & LeCun 2006) is the one loss jobs train with.
    #[schema(default = "contrastive")]
    pub loss: String,
    /// Layer groups kept fixed (`stage0` … `stage{N-1}`, `head`; `GET /v1/models/{id}/versions` lists
    /// a model's groups).
    pub freeze: Vec<String>,
    /// Learning-rate multiplier per layer group (e.g. `{"stage1": 0.1, "stage2": 0.3}`): smaller near the
    /// input; a group not named learns at `lr`.
    #[schema(value_type = Object)]
    pub lr_mult: BTreeMap<String, f64>,
    pub augment: AugmentParams,
    /// Stop after the first epoch that ends past this many minutes (the best epoch so far is kept).
    pub time_limit_min: Option<f64>,
    /// Activate the candidate when its validation EER is lower than the active model's.
    #[schema(default = false)]
    pub auto_promote: bool,
}

impl Default for JobParams {
    fn default() -> Self {
        JobParams {
            base: None,
            from_scratch: false,
            collection: None,
            dataset: None,
            val_subjects: Vec::new(),
            val_ratio: 0.2,
            seed: 1,
            gate_pairs: None,
            gate_images: None,
            epochs: 5,
            batch_pairs: 32,
            lr: 1e-4,
            pk: None,
            self_supervised: None,
            weight_decay: 0.0,
            margin: 1.0,
            loss: "contrastive".into(),
            freeze: Vec::new(),
            lr_mult: BTreeMap::new(),
            augment: AugmentParams::default(),
            time_limit_min: None,
            auto_promote: false,
        }
    }
}

/// What the checks settled: the base model and version, the data, the identity split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resolved {
    pub base: String,
    pub base_version: i64,
    pub collection_id: Option<String>,
    pub dataset: Option<PathBuf>,
    pub gate_pairs: Option<PathBuf>,
    pub gate_images: Option<PathBuf>,
    pub train: Vec<String>,
    pub val: Vec<String>,
    /// Whether the collection holds skilled forgeries (training lays the data out with them).
    #[serde(default)]
    pub forgeries: bool,
}

fn invalid(s: impl Into<String>) -> JobError {
    JobError::Invalid(s.into())
}

/// `p` (relative to the data root, or absolute) as a canonical path that lies under the data root.
pub(super) fn under_root(root: Option<&Path>, p: &str) -> Result<PathBuf, JobError> {
    let root = root.ok_or_else(|| {
        invalid("this server has no data root (start it with --data-root DIR to train on dataset folders)")
    })?;
    let root = root.canonicalize().map_err(|e| invalid(format!("the data root {}: {e}", root.display())))?;
    let joined = root.join(p);
    // Reject `..` escapes even when the target does not exist.
    if Path::new(p).components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(JobError::OutsideDataRoot(p.into()));
    }
    match joined.canonicalize() {
        Ok(c) if c.starts_with(&root) => Ok(c),
        Ok(_) => Err(JobError::OutsideDataRoot(p.into())),
        Err(_) if !joined.starts_with(&root) => Err(JobError::OutsideDataRoot(p.into())),
        Err(e) => Err(invalid(format!("'{p}' under the data root: {e}"))),
    }
}

/// Check everything about a job before it is queued.
pub(super) async fn resolve(p: &JobParams, jobs: &Jobs) -> Result<Resolved, JobError> {
    if p.epochs < 1 || p.epochs > 1000 {
        return Err(invalid(format!("epochs must be from 1 to 1000, not {}", p.epochs)));
    }
    if p.batch_pairs < 2 || p.batch_pairs > 4096 {
        return Err(invalid(format!("batch_pairs must be from 2 to 4096, not {}", p.batch_pairs)));
    }
    if !(p.lr.is_finite() && p.lr > 0.0 && p.lr <= 1.0) {
        return Err(invalid(format!("lr must be in (0, 1], not {}", p.lr)));
    }
    if !(p.margin.is_finite() && p.margin > 0.0) {
        return Err(invalid(format!("margin must be positive, not {}", p.margin)));
    }
    if let Some(ss) = p.self_supervised {
        if p.pk.is_some()
            || ss.images < 2
            || ss.images > 2048
            || ss.steps < 1
            || !(ss.temperature > 0.0 && ss.temperature <= 10.0)
        {
            return Err(invalid(format!(
                "self_supervised needs 2–2048 images per batch, steps ≥ 1 and a temperature in (0, 10], and no pk; not {ss:?}"
            )));
        }
    }
    if let Some(pk) = p.pk {
        if pk.p < 2 || pk.k < 2 || pk.steps < 1 || pk.forgeries < 0 || pk.p * (pk.k + pk.forgeries) > 4096 {
            return Err(invalid(format!(
                "pk needs p ≥ 2 identities and k ≥ 2 images per batch (p·k ≤ 4096) and steps ≥ 1, not {pk:?}"
            )));
        }
    }
    if !(p.weight_decay.is_finite() && p.weight_decay >= 0.0) {
        return Err(invalid(format!("weight_decay must be ≥ 0, not {}", p.weight_decay)));
    }
    if p.loss != "contrastive" {
        return Err(invalid(format!("loss '{}' is not available; jobs train with 'contrastive'", p.loss)));
    }
    if p.val_subjects.is_empty() && !(p.val_ratio > 0.0 && p.val_ratio < 1.0) {
        return Err(invalid(format!("val_ratio must be between 0 and 1, not {}", p.val_ratio)));
    }
    if let Some(t) = p.time_limit_min {
        if !(t.is_finite() && t > 0.0) {
            return Err(invalid(format!("time_limit_min must be positive, not {t}")));
        }
    }
    let a = &p.augment;
    let ranges = [("rotation_deg", a.rotation_deg, 45.0), ("shift", a.shift, 0.5), ("scale", a.scale, 0.5)];
    let ranges2 = [("brightness", a.brightness, 1.0), ("contrast", a.contrast, 1.0)];
    for (name, v, max) in ranges.into_iter().chain(ranges2) {
        if !(v.is_finite() && (0.0..=max).contains(&v)) {
            return Err(invalid(format!("augment.{name} must be from 0 to {max}, not {v}")));
        }
    }
    if p.collection.is_none() && p.dataset.is_none() {
        return Err(invalid("a job needs training data: 'collection' and/or 'dataset'"));
    }
    // The collection and the base model.
    let collection = match &p.collection {
        Some(name) => Some(jobs.galleries.collection(name).await.map_err(|e| match e {
            crate::gallery::GalleryError::Store(crate::store::StoreError::NotFound { .. }) => {
                JobError::UnknownCollection(name.clone())
            }
            other => JobError::Invalid(other.to_string()),
        })?),
        None => None,
    };
    let registry = jobs.registry.get();
    let base = match (&p.base, &collection) {
        (Some(b), _) => b.clone(),
        (None, Some(c)) => c.model_id.clone(),
        (None, None) => registry.default_id().unwrap_or_default().to_string(),
    };
    let h = registry.get(Some(&base)).map_err(|_| JobError::UnknownModel(base.clone()))?;
    let card = h.card();
    if let Some(c) = &collection {
        if c.modality != card.modality {
            return Err(invalid(format!(
                "collection '{}' holds {} samples; model '{base}' is a {} model",
                c.name, c.modality, card.modality
            )));
        }
    }
    let stages = card.architecture.stages();
    for g in p.freeze.iter().chain(p.lr_mult.keys()) {
        groups::parse(g, stages).map_err(JobError::Invalid)?;
    }
    for (g, m) in &p.lr_mult {
        if !(m.is_finite() && *m >= 0.0) {
            return Err(invalid(format!("lr_mult of '{g}' must be a number ≥ 0, not {m}")));
        }
    }
    if groups::names(stages).iter().all(|g| p.freeze.contains(g)) {
        return Err(invalid("every layer group is frozen: nothing would learn"));
    }
    // The identities: samples per identity, from the collection and the dataset.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut forgeries = false;
    if let Some(c) = &collection {
        for s in jobs.store.collection_samples(&c.id).await? {
            if s.forgery {
                forgeries = true;
            } else {
                *counts.entry(s.subject).or_default() += 1;
            }
        }
    }
    let dataset = match &p.dataset {
        Some(d) => {
            let path = under_root(jobs.settings.data_root.as_deref(), d)?;
            let ds = Dataset::open(&path).map_err(|e| invalid(format!("dataset '{d}': {e}")))?;
            for i in &ds.identities {
                if counts.contains_key(&i.name) {
                    return Err(invalid(format!("identity '{}' is both in the collection and in the dataset", i.name)));
                }
                counts.insert(i.name.clone(), i.images.len());
            }
            Some(path)
        }
        None => None,
    };
    let usable: Vec<String> = counts.iter().filter(|(_, n)| **n >= 2).map(|(k, _)| k.clone()).collect();
    if usable.len() < MIN_IDENTITIES {
        let from = match (&p.collection, &p.dataset) {
            (Some(c), None) => format!("collection '{c}' has"),
            (None, Some(d)) => format!("dataset '{d}' has"),
            _ => "the collection and the dataset have".into(),
        };
        return Err(invalid(format!("needs ≥ {MIN_IDENTITIES} subjects with ≥ 2 samples; {from} {}", usable.len())));
    }
    let val: Vec<String> = if p.val_subjects.is_empty() {
        let mut ids = usable.clone();
        ids.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(p.seed));
        let k = ((ids.len() as f64 * p.val_ratio).round() as usize).clamp(2, ids.len() - 2);
        let mut v = ids.split_off(ids.len() - k);
        v.sort();
        v
    } else {
        for s in &p.val_subjects {
            match counts.get(s) {
                None => return Err(invalid(format!("val_subjects: no identity '{s}' in the training data"))),
                Some(n) if *n < 2 => return Err(invalid(format!("val_subjects: '{s}' has {n} sample; needs ≥ 2"))),
                _ => {}
            }
        }
        p.val_subjects.clone()
    };
    let train: Vec<String> = usable.iter().filter(|s| !val.contains(s)).cloned().collect();
    if train.len() < 2 || val.len() < 2 {
        return Err(invalid(format!(
            "needs ≥ 2 training and ≥ 2 validation identities with ≥ 2 samples; the split gives {} and {}",
            train.len(),
            val.len()
        )));
    }
    let (gate_pairs, gate_images) = match &p.gate_pairs {
        Some(f) => {
            let pairs = under_root(jobs.settings.data_root.as_deref(), f)?;
            let images = match &p.gate_images {
                Some(d) => under_root(jobs.settings.data_root.as_deref(), d)?,
                None => pairs.parent().unwrap_or(Path::new("/")).join("lfw"),
            };
            let listed =
                crate::dataset::read_pairs_file(&pairs, &images).map_err(|e| invalid(format!("gate_pairs: {e}")))?;
            if listed.iter().all(|l| l.same) || listed.iter().all(|l| !l.same) {
                return Err(invalid("gate_pairs must list both same and different pairs"));
            }
            (Some(pairs), Some(images))
        }
        None if p.gate_images.is_some() => return Err(invalid("gate_images needs gate_pairs")),
        None => (None, None),
    };
    Ok(Resolved {
        base,
        base_version: card.version as i64,
        collection_id: collection.map(|c| c.id),
        dataset,
        gate_pairs,
        gate_images,
        train,
        val,
        forgeries,
    })
}
