//! Calibration: the thresholds a card serves with, measured on an evaluation's distances and written into
//! the card — the pair thresholds (`siamese calibrate`, `siamese eval --calibrate`) and the subject
//! calibration of the enrolment protocol (`siamese eval --references K --calibrate-subject`).

use super::EvalReport;
use crate::model::{ModelCard, SubjectCalibration};

/// Set `card`'s pair thresholds (EER point, FAR 1e-3, logistic score, both metrics) from `rep`, measured on
/// the pairs named `set`, and record the calibration in `evaluation.calibration` with `details`.
pub fn pair_thresholds(card: &mut ModelCard, rep: &EvalReport, set: &str, details: serde_json::Value) {
    card.thresholds = rep.thresholds(|g, i| format!("EER point on {set} ({g} genuine + {i} impostor pairs)"));
    let mut record = serde_json::json!({"set": set, "eer": rep.eer, "auc": rep.auc});
    merge(&mut record, details);
    card.evaluation["calibration"] = record;
}

/// Set `card`'s subject calibration from `rep`, an enrolment-protocol evaluation (`k` references per
/// identity of `set`, the rule it names): the rule becomes the default for subject verification and
/// identification, with thresholds measured for it.
pub fn subject_thresholds(card: &mut ModelCard, rep: &EvalReport, k: usize, set: &str) {
    let rule = rep.pairs["rule"].as_str().unwrap_or("mean").to_string();
    let thresholds = rep.thresholds(|g, i| {
        format!("EER point, {k} references per identity, rule {rule}, on {set} ({g} genuine + {i} impostor probes)")
    });
    card.evaluation["subject_calibration"] = serde_json::json!({
        "identities": set, "references": k, "rule": rule, "protocol": rep.pairs["protocol"],
        "impostors": rep.pairs["impostor_kind"], "genuine": rep.pairs["genuine"], "impostor": rep.pairs["impostor"],
        "metric": rep.metric, "eer": rep.eer, "auc": rep.auc,
    });
    card.subject = Some(SubjectCalibration { rule, references: k, thresholds });
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}
