//! `siamese eval`, `eval-gallery` and `calibrate`: a model's figures on a dataset or listed pairs, and the
//! thresholds a card serves with (calibration itself is [`crate::train::calibrate`]).

use super::{device, resolve_model};
use crate::dataset::{parse_identity_list, read_pairs_file, Dataset};
use crate::distance::{Metric, Rule};
use crate::pipeline::{LocalEncoder, NoFace, Options};
use crate::train::{self, calibrate};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

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
    /// Which face of a photo to embed (face models): `central` (the service's rule: the face nearest the centre
    /// among those at least a quarter of the largest one's area) or `largest`.
    #[arg(long, value_enum, default_value = "central")]
    pub select: crate::face::FaceSelect,
    /// Mirror averaging: `card` (the model's setting, what the service does by default), `on` or `off` (what
    /// `serve --mirror-average` or a request's `mirror_average` chooses). Not with a calibration.
    #[arg(long, value_enum, default_value = "card", conflicts_with_all = ["calibrate", "calibrate_subject"])]
    pub mirror: super::Mirror,
    /// Test-time warps: `card` (the model's, e.g. the signature model's ±3° rotations) or `off` (one pass
    /// per image). Not with a calibration.
    #[arg(long, default_value = "card", value_parser = ["card", "off"],
        conflicts_with_all = ["calibrate", "calibrate_subject"])]
    pub tta: String,
    #[arg(long, env = "SIAMESE_DEVICE", default_value = "auto")]
    pub device: String,
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
    #[arg(long, value_enum, default_value = "central")]
    pub select: crate::face::FaceSelect,
    #[arg(long, env = "SIAMESE_DEVICE", default_value = "auto")]
    pub device: String,
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let dir = resolve_model(&a.model, &a.models);
    let mut model = evaluation_encoder(&dir, &a.device, a.select)?;
    if let Some(m) = a.mirror.forced() {
        model.model.card.input.mirror_average = m;
    }
    if a.tta == "off" {
        model.model.card.input.tta.clear();
    }
    let (rep, title) = if let Some(pairs) = &a.pairs {
        let listed = read_pairs_file(pairs, &a.data)?;
        let title = format!("{} on {}", model.card().id, pairs.file_name().unwrap_or_default().to_string_lossy());
        (train::evaluate_pairs(&model, &listed)?, title)
    } else {
        let ds = Dataset::open(&a.data)?;
        let ds = match &a.identities {
            Some(s) => ds.subset(&parse_identity_list(s)?)?,
            None => ds,
        };
        let title =
            format!("{} on {}", model.card().id, a.identities.clone().unwrap_or_else(|| "all identities".into()));
        match a.references {
            Some(k) => {
                let rule = match &a.rule {
                    Some(r) => Rule::parse(r).with_context(|| format!("unknown rule '{r}'"))?,
                    None => model.card().subject_rule(),
                };
                let title = format!("{title}, {k} references, rule {}", rule.name());
                (train::evaluate_references(&model, &ds, k, rule)?, title)
            }
            None => (train::evaluate_model(&model, &ds)?, title),
        }
    };
    train::write_report(&rep, &a.out, &title)?;
    if a.calibrate {
        let set = match (&a.pairs, &a.identities) {
            (Some(p), _) => p.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            (None, Some(ids)) => format!("all pairs of {ids}"),
            (None, None) => "all pairs of all identities".into(),
        };
        let mut card = model.card().clone();
        let details = serde_json::json!({"impostors": rep.pairs["impostor_kind"], "metric": rep.metric});
        calibrate::pair_thresholds(&mut card, &rep, &set, details);
        card.save(&dir)?;
        println!("wrote the pair thresholds into {}", dir.join(crate::model::CARD_FILE).display());
    }
    if a.calibrate_subject {
        let k = a.references.expect("clap: requires");
        let set = a.identities.clone().unwrap_or_else(|| "all identities".into());
        let mut card = model.card().clone();
        calibrate::subject_thresholds(&mut card, &rep, k, &set);
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

pub fn eval_gallery(a: EvalGalleryArgs) -> Result<()> {
    let model = evaluation_encoder(&resolve_model(&a.model, &a.models), &a.device, Default::default())?;
    let ds = Dataset::open(&a.data)?;
    let enrolled = ds.subset(&parse_identity_list(&a.enrol)?)?;
    let unknown = ds.subset(&parse_identity_list(&a.unknown)?)?;
    let rules: Vec<Rule> = a
        .rules
        .split(',')
        .map(|r| Rule::parse(r.trim()).with_context(|| format!("unknown rule '{r}'")))
        .collect::<Result<_>>()?;
    let metric = match &a.metric {
        Some(m) => m.parse::<Metric>().map_err(|e| anyhow::anyhow!("{e}"))?,
        None => model.card().default_metric,
    };
    let reps = train::evaluate_gallery(&model, &enrolled, a.per_subject, &unknown, metric, a.threshold, &rules)?;
    println!(
        "{} — enrol {} × {} images, probes: the rest; unknown: {}; metric {metric}, threshold {:.4}",
        model.card().id,
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

pub fn calibrate(a: CalibrateArgs) -> Result<()> {
    let dir = resolve_model(&a.model, &a.models);
    let model = evaluation_encoder(&dir, &a.device, a.select)?;
    let listed = read_pairs_file(&a.pairs, &a.data)?;
    let rep = train::evaluate_pairs(&model, &listed)?;
    let mut card = model.card().clone();
    let details =
        serde_json::json!({"face_select": a.select, "images_without_a_face": rep.pairs["images_without_a_face"]});
    calibrate::pair_thresholds(&mut card, &rep, &a.name, details);
    for m in Metric::ALL {
        let (t, eer) = (card.thresholds.get(m), rep.metrics[&m].summary.eer);
        println!("{m}: EER {:.2}% at {:.4}; threshold at FAR 1e-3 {:.4}", eer * 100.0, t.at_eer, t.at_far_1e3);
    }
    card.save(&dir)?;
    println!("wrote thresholds into {}", dir.join(crate::model::CARD_FILE).display());
    Ok(())
}

/// A model for evaluation: the service's pipeline with `select` choosing the face, and a face-less image
/// embedded whole (and counted) so that every listed pair gets a distance.
fn evaluation_encoder(dir: &std::path::Path, dev: &str, select: crate::face::FaceSelect) -> Result<LocalEncoder> {
    let options = Options { select, no_face: NoFace::WholeImage, ..Options::default() };
    Ok(LocalEncoder::load(dir, device(dev)?, options)?)
}
