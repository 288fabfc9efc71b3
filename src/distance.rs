//! Distances between embeddings and the calibrated score.
//!
//! Both metrics are *distances*: smaller means more alike. `cosine` is `1 − cos(a, b)` in `[0, 2]`; a zero
//! vector has no direction, so its cosine distance to anything is defined as `1` (similarity 0).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The distance used to compare two embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// ‖a − b‖₂
    Euclidean,
    /// 1 − a·b / (‖a‖‖b‖)
    Cosine,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::Euclidean, Metric::Cosine];

    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Euclidean => euclidean(a, b),
            Metric::Cosine => cosine(a, b),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metric name was not one we know.
#[derive(Debug, thiserror::Error)]
#[error("unknown metric '{0}' (expected 'euclidean' or 'cosine')")]
pub struct UnknownMetric(pub String);

impl FromStr for Metric {
    type Err = UnknownMetric;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "euclidean" | "l2" => Ok(Metric::Euclidean),
            "cosine" => Ok(Metric::Cosine),
            _ => Err(UnknownMetric(s.to_string())),
        }
    }
}

/// Euclidean (L2) distance. Panics in debug builds if the lengths differ; callers check dimensions.
pub fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (*x as f64) - (*y as f64);
            d * d
        })
        .sum::<f64>()
        .sqrt() as f32
}

/// Cosine distance `1 − cos θ`, clamped to `[0, 2]`; `1` when either vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 1.0;
    }
    (1.0 - dot / (na.sqrt() * nb.sqrt())).clamp(0.0, 2.0) as f32
}

/// Scale a vector to unit length in place (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
    }
}

/// Logistic map from a distance to a "same identity" probability: `σ(a + b·d)`, fitted on validation
/// distances (see [`crate::metrics::fit_logistic`]); `b < 0`, so the score falls as the distance grows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScoreMap {
    pub a: f64,
    pub b: f64,
}

impl ScoreMap {
    pub fn score(&self, distance: f32) -> f32 {
        let z = self.a + self.b * distance as f64;
        (1.0 / (1.0 + (-z).exp())) as f32
    }
}

/// The rule subject verification and identification use unless a request or the model card names another:
/// the mean distance to all of the subject's samples. Chosen by measurement on AT&T with the default face
/// model (docs/face-model.md, "Aggregation rule"): the lowest false-accept rate and the most "unknown"
/// answers for never-enrolled people, at no cost in rank-1 identification or false rejects.
pub const DEFAULT_RULE: Rule = Rule::MeanNearest(usize::MAX);

/// How the distances of a probe to a subject's samples become one distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The nearest sample.
    Min,
    /// The mean of the `k` nearest samples (all when fewer).
    MeanNearest(usize),
    /// The distance to the mean of the subject's embeddings (rescaled to their mean length).
    Centroid,
}

impl Rule {
    /// Parse `min`, `mean3` (mean of the 3 nearest), `mean` (all), `centroid`.
    pub fn parse(s: &str) -> Option<Rule> {
        match s {
            "min" => Some(Rule::Min),
            "centroid" => Some(Rule::Centroid),
            "mean" => Some(Rule::MeanNearest(usize::MAX)),
            _ => s.strip_prefix("mean").and_then(|k| k.parse().ok()).filter(|k| *k > 0).map(Rule::MeanNearest),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Rule::Min => "min".into(),
            Rule::Centroid => "centroid".into(),
            Rule::MeanNearest(usize::MAX) => "mean".into(),
            Rule::MeanNearest(k) => format!("mean{k}"),
        }
    }

    /// Aggregate a probe's distances to one subject's rows.
    pub fn aggregate(&self, q: &[f32], rows: &[&[f32]], metric: Metric) -> f32 {
        if rows.is_empty() {
            return f32::INFINITY;
        }
        match self {
            Rule::Min => rows.iter().map(|r| metric.distance(q, r)).fold(f32::INFINITY, f32::min),
            Rule::MeanNearest(k) => {
                let mut d: Vec<f32> = rows.iter().map(|r| metric.distance(q, r)).collect();
                d.sort_by(f32::total_cmp);
                let k = (*k).min(d.len());
                d[..k].iter().sum::<f32>() / k as f32
            }
            Rule::Centroid => {
                let dim = q.len();
                let mut c = vec![0f32; dim];
                let mut mean_norm = 0f32;
                for r in rows {
                    for (ci, ri) in c.iter_mut().zip(r.iter()) {
                        *ci += ri;
                    }
                    mean_norm += l2_norm(r);
                }
                mean_norm /= rows.len() as f32;
                let cn = l2_norm(&c);
                if cn > 0.0 {
                    c.iter_mut().for_each(|x| *x *= mean_norm / cn);
                }
                metric.distance(q, &c)
            }
        }
    }
}

fn l2_norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// Dot product with eight independent accumulators, which lets the compiler vectorise it.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}
