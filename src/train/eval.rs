//! Evaluation of a model on identities it never saw (all pairs), or on a listed set of pairs (LFW style).

use super::TrainError;
use crate::dataset::{all_pairs, Dataset, ListedPair};
use crate::distance::Metric;
use crate::gallery::Rule;
use crate::metrics::{self, Summary};
use crate::pipeline::LocalEncoder;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Figures for one metric.
#[derive(Debug, Clone, Serialize)]
pub struct MetricReport {
    #[serde(flatten)]
    pub summary: Summary,
    /// The card's threshold for this metric.
    pub threshold: f32,
    /// Accuracy over all pairs at `threshold`.
    pub accuracy: f64,
    pub far: f64,
    pub frr: f64,
}

/// `report.json`: the card's default metric at top level, both metrics under `metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: serde_json::Value,
    pub metric: Metric,
    pub auc: f64,
    pub eer: f64,
    pub accuracy: f64,
    pub threshold: f32,
    #[serde(rename = "tar_at_far_1e-3")]
    pub tar_at_far_1e3: f64,
    pub pairs: serde_json::Value,
    pub metrics: HashMap<Metric, MetricReport>,
    #[serde(skip)]
    pub distances: HashMap<Metric, (Vec<f32>, Vec<f32>)>,
}

impl EvalReport {
    /// Thresholds calibrated on this report's distances (EER point, FAR 1e-3, logistic score mapping) for
    /// both metrics; `method` describes the set from the genuine and impostor counts.
    pub fn thresholds(&self, method: impl Fn(usize, usize) -> String) -> crate::model::Thresholds {
        let t = |m: Metric| {
            let (g, i) = &self.distances[&m];
            let s = crate::metrics::summarize(g, i);
            crate::model::Threshold {
                value: s.eer_threshold,
                method: method(g.len(), i.len()),
                at_eer: s.eer_threshold,
                at_far_1e3: s.threshold_far_1e3,
                score: crate::metrics::fit_logistic(g, i),
            }
        };
        crate::model::Thresholds { euclidean: t(Metric::Euclidean), cosine: t(Metric::Cosine) }
    }
}

/// Genuine and impostor distances over all pairs of `embs` (labels give identities).
pub fn pair_distances(embs: &[Vec<f32>], labels: &[usize], m: Metric) -> (Vec<f32>, Vec<f32>) {
    let (g, i) = all_pairs(labels);
    let d = |v: Vec<(usize, usize)>| v.into_iter().map(|(a, b)| m.distance(&embs[a], &embs[b])).collect();
    (d(g), d(i))
}

/// Embeddings of image files, in order, prepared by the model's pipeline (for a face model, the detector
/// and the encoder's options: an image without a face is embedded whole, resized, and counted in the second
/// value).
pub(super) fn embed_files(model: &LocalEncoder, files: &[PathBuf]) -> Result<(Vec<Vec<f32>>, usize), TrainError> {
    let spec = &model.card().input;
    let mut out = Vec::with_capacity(files.len());
    let mut no_face = 0;
    for chunk in files.chunks(32) {
        let mut flat = Vec::with_capacity(chunk.len() * spec.len());
        for f in chunk {
            let p = model.prepare_file(f).map_err(|e| TrainError::Input(f.clone(), Box::new(e)))?.swap_remove(0);
            no_face += usize::from(p.no_face);
            flat.extend(p.input);
        }
        out.extend(model.model.embed_flat(&flat, chunk.len())?);
    }
    Ok((out, no_face))
}

/// Figures at the card's threshold: the pair threshold, or with `rule` (the enrolment protocol) the subject
/// threshold calibrated for that rule when the card has one.
fn report(model: &LocalEncoder, distances: HashMap<Metric, (Vec<f32>, Vec<f32>)>, rule: Option<Rule>) -> EvalReport {
    let metrics: HashMap<Metric, MetricReport> = distances
        .iter()
        .map(|(m, (g, i))| {
            let t = match rule {
                Some(r) => model.card().subject_threshold(r, *m).value,
                None => model.card().thresholds.get(*m).value,
            };
            let (far, frr) = metrics::rates_at(g, i, t);
            let r = MetricReport {
                summary: metrics::summarize(g, i),
                threshold: t,
                accuracy: metrics::accuracy_at(g, i, t),
                far,
                frr,
            };
            (*m, r)
        })
        .collect();
    let m = model.card().default_metric;
    let top = &metrics[&m];
    let (g, i) = &distances[&m];
    EvalReport {
        model: serde_json::json!({"id": model.card().id, "version": model.card().version}),
        metric: m,
        auc: top.summary.auc,
        eer: top.summary.eer,
        accuracy: top.accuracy,
        threshold: top.threshold,
        tar_at_far_1e3: top.summary.tar_far_1e3,
        pairs: serde_json::json!({"genuine": g.len(), "impostor": i.len(), "total": g.len() + i.len()}),
        metrics,
        distances,
    }
}

/// All genuine and impostor pairs among the images of `ds`; when `ds` has skilled forgeries, the
/// impostor pairs are each genuine sample against every forgery of the same identity instead.
pub fn evaluate_model(model: &LocalEncoder, ds: &Dataset) -> Result<EvalReport, TrainError> {
    let (samples, forgeries) = (ds.samples(), ds.forgery_samples());
    let files: Vec<PathBuf> = samples.iter().chain(&forgeries).map(|(p, _)| p.clone()).collect();
    let labels: Vec<usize> = samples.iter().map(|(_, l)| *l).collect();
    let (embs, no_face) = embed_files(model, &files)?;
    let n = labels.len();
    let distances = Metric::ALL
        .iter()
        .map(|m| {
            let (g, mut i) = pair_distances(&embs[..n], &labels, *m);
            if !forgeries.is_empty() {
                i.clear();
                for (a, la) in labels.iter().enumerate() {
                    for (j, (_, lf)) in forgeries.iter().enumerate() {
                        if la == lf {
                            i.push(m.distance(&embs[a], &embs[n + j]));
                        }
                    }
                }
            }
            (*m, (g, i))
        })
        .collect();
    let mut rep = report(model, distances, None);
    rep.pairs["images_without_a_face"] = no_face.into();
    rep.pairs["impostor_kind"] = if forgeries.is_empty() { "other identities" } else { "skilled forgeries" }.into();
    Ok(rep)
}

/// Enrolment-style evaluation, as subject verification scores it: each identity's first `k` genuine images
/// (by name) are its references; every other genuine image is a genuine probe, and each of the identity's
/// skilled forgeries (or, without forgeries, every other identity's probes) an impostor probe. A probe's
/// distance to an identity is `rule` applied to its distances to the `k` references.
pub fn evaluate_references(model: &LocalEncoder, ds: &Dataset, k: usize, rule: Rule) -> Result<EvalReport, TrainError> {
    if k == 0 || ds.identities.iter().any(|i| i.images.len() <= k) {
        return Err(TrainError::Config(format!("--references {k}: every identity needs more than {k} images")));
    }
    let (samples, forgeries) = (ds.samples(), ds.forgery_samples());
    let files: Vec<PathBuf> = samples.iter().chain(&forgeries).map(|(p, _)| p.clone()).collect();
    let (embs, no_face) = embed_files(model, &files)?;
    let labels: Vec<usize> = samples.iter().map(|(_, l)| *l).collect();
    let forgery_of: Vec<usize> = forgeries.iter().map(|(_, l)| *l).collect();
    let per: HashMap<Metric, Vec<Distances>> =
        Metric::ALL.iter().map(|m| (*m, reference_distances(&embs, &labels, &forgery_of, k, *m, rule))).collect();
    let distances = per.iter().map(|(m, p)| (*m, pooled(p))).collect();
    let mut rep = report(model, distances, Some(rule));
    rep.pairs["images_without_a_face"] = no_face.into();
    rep.pairs["protocol"] = format!(
        "{k} references per identity (its first {k} images), rule {} (distance to the references)",
        rule.name()
    )
    .into();
    rep.pairs["rule"] = rule.name().into();
    rep.pairs["impostor_kind"] = if forgeries.is_empty() { "other identities" } else { "skilled forgeries" }.into();
    // Each identity apart (default metric): with few identities one hard identity can decide the pooled
    // figure, and this shows which. The EER here lets each identity have its own threshold.
    rep.pairs["per_identity"] = ds
        .identities
        .iter()
        .zip(&per[&model.card().default_metric])
        .map(|(id, (g, i))| {
            let s = metrics::summarize(g, i);
            serde_json::json!({"identity": id.name, "genuine": g.len(), "impostor": i.len(), "eer": s.eer, "auc": s.auc})
        })
        .collect::<Vec<_>>()
        .into();
    Ok(rep)
}

/// The enrolment protocol on embeddings: `embs` holds the genuine samples (`labels[i]` their identity) and
/// then the skilled forgeries (`forgery_of[j]` the identity imitated). Each identity's first `k` samples are
/// its references; its other samples are genuine probes, and its forgeries (or, when there are none, every
/// other identity's probes) impostor probes. A probe's distance to an identity is `rule` applied to its
/// distances to the references (as the gallery does). One (genuine, impostor) list per identity, by label;
/// [`pooled`] joins them.
pub(crate) fn reference_distances(
    embs: &[Vec<f32>],
    labels: &[usize],
    forgery_of: &[usize],
    k: usize,
    m: Metric,
    rule: Rule,
) -> Vec<Distances> {
    let n = labels.len();
    let ids = labels.iter().max().map_or(0, |l| l + 1);
    let (mut refs, mut probes, mut forg) = (vec![Vec::new(); ids], vec![Vec::new(); ids], vec![Vec::new(); ids]);
    for (row, l) in labels.iter().enumerate() {
        if refs[*l].len() < k {
            refs[*l].push(row)
        } else {
            probes[*l].push(row)
        }
    }
    for (j, l) in forgery_of.iter().enumerate() {
        forg[*l].push(n + j);
    }
    let score = |id: usize, row: usize| {
        let rows: Vec<&[f32]> = refs[id].iter().map(|r| embs[*r].as_slice()).collect();
        rule.aggregate(&embs[row], &rows, m)
    };
    (0..ids)
        .map(|id| {
            let g: Vec<f32> = probes[id].iter().map(|r| score(id, *r)).collect();
            let i: Vec<f32> = if forgery_of.is_empty() {
                probes
                    .iter()
                    .enumerate()
                    .filter(|(o, _)| *o != id)
                    .flat_map(|(_, rows)| rows.iter().map(|r| score(id, *r)))
                    .collect()
            } else {
                forg[id].iter().map(|r| score(id, *r)).collect()
            };
            (g, i)
        })
        .collect()
}

/// The listed pairs only.
pub fn evaluate_pairs(model: &LocalEncoder, pairs: &[ListedPair]) -> Result<EvalReport, TrainError> {
    let mut files: Vec<PathBuf> = pairs.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).collect();
    files.sort();
    files.dedup();
    let (embs, no_face) = embed_files(model, &files)?;
    let idx: HashMap<&PathBuf, usize> = files.iter().enumerate().map(|(k, f)| (f, k)).collect();
    let distances = Metric::ALL
        .iter()
        .map(|m| {
            let (mut g, mut i) = (Vec::new(), Vec::new());
            for p in pairs {
                let d = m.distance(&embs[idx[&p.a]], &embs[idx[&p.b]]);
                if p.same {
                    g.push(d)
                } else {
                    i.push(d)
                }
            }
            (*m, (g, i))
        })
        .collect();
    let mut rep = report(model, distances, None);
    rep.pairs["images_without_a_face"] = no_face.into();
    Ok(rep)
}

/// Genuine and impostor distances.
pub(crate) type Distances = (Vec<f32>, Vec<f32>);

/// All identities' genuine and impostor distances of [`reference_distances`] together.
pub(crate) fn pooled(per: &[Distances]) -> Distances {
    (per.iter().flat_map(|p| p.0.iter().copied()).collect(), per.iter().flat_map(|p| p.1.iter().copied()).collect())
}

/// Write `report.json`, `roc.png` and `distances.png` into `out`.
pub fn write_report(rep: &EvalReport, out: &Path, title: &str) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::Config(format!("{}: {e}", out.display())))?;
    let json = serde_json::to_string_pretty(rep).expect("report serialises");
    std::fs::write(out.join("report.json"), json + "\n").map_err(|e| TrainError::Config(e.to_string()))?;
    let series: Vec<(&str, Vec<(f64, f64)>)> = Metric::ALL
        .iter()
        .map(|m| {
            let (g, i) = &rep.distances[m];
            (m.as_str(), metrics::roc(g, i))
        })
        .collect();
    metrics::plot_roc(&out.join("roc.png"), &format!("ROC — {title}"), &series)
        .map_err(|e| TrainError::Plot(e.to_string()))?;
    let (g, i) = &rep.distances[&rep.metric];
    metrics::plot_distances(
        &out.join("distances.png"),
        &format!("{} distances — {title}", rep.metric),
        g,
        i,
        rep.threshold,
    )
    .map_err(|e| TrainError::Plot(e.to_string()))?;
    Ok(())
}
