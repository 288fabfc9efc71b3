//! Enrolment-style evaluation: enrol the first `per_subject` images of each identity, probe with the rest,
//! and with identities never enrolled; compare aggregation rules (how a probe's distances to a subject's
//! samples become one distance). Uses the same [`GalleryIndex`] as the server.

use super::eval::embed_files;
use super::TrainError;
use crate::dataset::Dataset;
use crate::distance::Metric;
use crate::gallery::{GalleryIndex, Rule};
use crate::metrics;
use crate::pipeline::LocalEncoder;
use serde::Serialize;

/// Figures of one rule at the card's threshold.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    pub rule: String,
    pub threshold: f32,
    /// Probes of an enrolled subject rejected by their own subject.
    pub frr: f64,
    /// (probe, other enrolled subject) verifications wrongly accepted.
    pub far: f64,
    /// Equal error rate of subject-level distances (threshold-free).
    pub eer: f64,
    /// Identify: the nearest subject is the right one.
    pub identify_rank1: f64,
    /// Identify: `match` is the right subject (nearest and within the threshold).
    pub identify_match: f64,
    /// Identify with probes of never-enrolled identities: `match` is null (unknown).
    pub unknown_rejected: f64,
    pub genuine_trials: usize,
    pub impostor_trials: usize,
    pub unknown_probes: usize,
}

/// Evaluate every rule in `rules` at `threshold` (default: the card's for `metric` and the rule).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_gallery(
    model: &LocalEncoder,
    enrolled: &Dataset,
    per_subject: usize,
    unknown: &Dataset,
    metric: Metric,
    threshold: Option<f32>,
    rules: &[Rule],
) -> Result<Vec<RuleReport>, TrainError> {
    let mut gallery = GalleryIndex::new(model.card().embedding_size as usize);
    let mut probes: Vec<(usize, Vec<f32>)> = Vec::new();
    for (k, id) in enrolled.identities.iter().enumerate() {
        if id.images.len() <= per_subject {
            return Err(TrainError::Config(format!(
                "{} has {} images; need more than {per_subject}",
                id.name,
                id.images.len()
            )));
        }
        let (embs, _) = embed_files(model, &id.images)?;
        for (j, e) in embs.into_iter().enumerate() {
            if j < per_subject {
                gallery.insert(&format!("{}#{j}", id.name), &k.to_string(), &id.name, &e);
            } else {
                probes.push((k, e));
            }
        }
    }
    let unknown_files: Vec<_> = unknown.identities.iter().flat_map(|i| i.images.clone()).collect();
    let (unknown_embs, _) = embed_files(model, &unknown_files)?;
    let n_subjects = enrolled.identities.len();
    let mut out = Vec::new();
    for &rule in rules {
        // The card's subject calibration when it was made for this rule, else its pair threshold.
        let threshold = threshold.unwrap_or(model.card().subject_threshold(rule, metric).value);
        let (mut g, mut i) = (Vec::new(), Vec::new());
        let (mut rank1, mut matched) = (0usize, 0usize);
        for (own, p) in &probes {
            for s in 0..n_subjects {
                let (d, _) = gallery.verify_subject(p, &s.to_string(), metric, rule).expect("enrolled");
                if s == *own {
                    g.push(d)
                } else {
                    i.push(d)
                }
            }
            let top = &gallery.nearest_subjects(p, metric, rule, 1)[0];
            if top.subject_id == own.to_string() {
                rank1 += 1;
                matched += (top.distance <= threshold) as usize;
            }
        }
        let unknown_rejected = unknown_embs
            .iter()
            .filter(|p| gallery.nearest_subjects(p, metric, rule, 1)[0].distance > threshold)
            .count();
        let (far, frr) = metrics::rates_at(&g, &i, threshold);
        out.push(RuleReport {
            rule: rule.name(),
            threshold,
            frr,
            far,
            eer: metrics::eer(&g, &i).0,
            identify_rank1: rank1 as f64 / probes.len() as f64,
            identify_match: matched as f64 / probes.len() as f64,
            unknown_rejected: unknown_rejected as f64 / unknown_embs.len().max(1) as f64,
            genuine_trials: g.len(),
            impostor_trials: i.len(),
            unknown_probes: unknown_embs.len(),
        });
    }
    Ok(out)
}
