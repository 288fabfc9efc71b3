//! The in-memory gallery of one collection under one model version: every embedding as a row of one
//! matrix, searched exactly (one matrix–vector product over all rows; no approximate index).
//!
//! Distances come from dot products and norms: ‖q − x‖² = ‖q‖² + ‖x‖² − 2 q·x and cos = q·x / (‖q‖‖x‖), so
//! one pass serves both metrics. The final figures of the subjects returned are recomputed directly with
//! [`Metric::distance`] on their rows, so what a client sees is exact.

use crate::distance::Metric;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

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
                    mean_norm += norm(r);
                }
                mean_norm /= rows.len() as f32;
                let cn = norm(&c);
                if cn > 0.0 {
                    c.iter_mut().for_each(|x| *x *= mean_norm / cn);
                }
                metric.distance(q, &c)
            }
        }
    }
}

fn norm(v: &[f32]) -> f32 {
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

/// `out[i] = q · rows[i]` for each `dim`-wide row. Uses AVX2+FMA when the CPU has them (checked at run
/// time, so the binary still runs on any x86-64), else the portable loop.
fn row_dots(q: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for (checked just above).
            unsafe { row_dots_avx2(q, rows, dim, out) };
            return;
        }
    }
    row_dots_portable(q, rows, dim, out)
}

#[inline(always)]
fn row_dots_portable(q: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        *o = dot(q, r);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_dots_avx2(q: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
    // The same code, compiled for AVX2+FMA: the compiler vectorises `dot` eight lanes wide.
    row_dots_portable(q, rows, dim, out)
}

#[derive(Debug, Clone)]
struct SubjectSlot {
    id: String,
    name: String,
    /// Rows of this subject in the matrix.
    rows: Vec<u32>,
}

/// One subject's aggregated distance to a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectMatch {
    pub subject_id: String,
    pub subject_name: String,
    pub distance: f32,
    /// Samples of the subject in the index.
    pub samples: usize,
    /// The subject's nearest sample and its distance.
    pub nearest_sample: String,
    pub nearest_distance: f32,
}

/// One sample's distance to a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleDistance {
    pub sample_id: String,
    pub distance: f32,
}

/// Embeddings of one collection and model version.
#[derive(Debug, Clone)]
pub struct GalleryIndex {
    dim: usize,
    /// Row-major `len × dim`.
    data: Vec<f32>,
    norms: Vec<f32>,
    sample_ids: Vec<String>,
    row_subject: Vec<u32>,
    row_of: HashMap<String, u32>,
    subjects: Vec<SubjectSlot>,
    slot_of: HashMap<String, u32>,
    /// Threads a query may use.
    threads: usize,
}

/// Rows below this are searched on one thread (spawning costs more than it saves).
const PARALLEL_ROWS: usize = 32 * 1024;

#[derive(PartialEq)]
struct Cand(f32, u32);
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

impl GalleryIndex {
    pub fn new(dim: usize) -> Self {
        GalleryIndex {
            dim,
            data: Vec::new(),
            norms: Vec::new(),
            sample_ids: Vec::new(),
            row_subject: Vec::new(),
            row_of: HashMap::new(),
            subjects: Vec::new(),
            slot_of: HashMap::new(),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of embeddings.
    pub fn len(&self) -> usize {
        self.sample_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sample_ids.is_empty()
    }

    /// Subjects with at least one embedding.
    pub fn subject_count(&self) -> usize {
        self.subjects.iter().filter(|s| !s.rows.is_empty()).count()
    }

    pub fn contains(&self, sample_id: &str) -> bool {
        self.row_of.contains_key(sample_id)
    }

    /// Add a sample; returns false (and changes nothing) when it is already present or has the wrong size.
    pub fn insert(&mut self, sample_id: &str, subject_id: &str, subject_name: &str, v: &[f32]) -> bool {
        if v.len() != self.dim || self.row_of.contains_key(sample_id) {
            return false;
        }
        let slot = match self.slot_of.get(subject_id) {
            Some(&s) => s,
            None => {
                let s = self.subjects.len() as u32;
                self.subjects.push(SubjectSlot { id: subject_id.into(), name: subject_name.into(), rows: Vec::new() });
                self.slot_of.insert(subject_id.into(), s);
                s
            }
        };
        let row = self.sample_ids.len() as u32;
        self.data.extend_from_slice(v);
        self.norms.push(norm(v));
        self.sample_ids.push(sample_id.into());
        self.row_subject.push(slot);
        self.row_of.insert(sample_id.into(), row);
        self.subjects[slot as usize].rows.push(row);
        true
    }

    /// Remove a sample (the last row moves into its place). Returns whether it was present.
    pub fn remove_sample(&mut self, sample_id: &str) -> bool {
        let Some(row) = self.row_of.remove(sample_id) else { return false };
        let (r, last) = (row as usize, self.sample_ids.len() - 1);
        let slot = self.row_subject[r] as usize;
        self.subjects[slot].rows.retain(|&x| x != row);
        if r != last {
            let moved_slot = self.row_subject[last] as usize;
            for x in self.subjects[moved_slot].rows.iter_mut().filter(|x| **x as usize == last) {
                *x = row;
            }
            self.row_of.insert(self.sample_ids[last].clone(), row);
            let d = self.dim;
            self.data.copy_within(last * d..(last + 1) * d, r * d);
        }
        self.data.truncate(last * self.dim);
        self.norms.swap_remove(r);
        self.sample_ids.swap_remove(r);
        self.row_subject.swap_remove(r);
        true
    }

    /// Remove every sample of a subject; returns how many.
    pub fn remove_subject(&mut self, subject_id: &str) -> usize {
        let Some(&slot) = self.slot_of.get(subject_id) else { return 0 };
        let ids: Vec<String> =
            self.subjects[slot as usize].rows.iter().map(|&r| self.sample_ids[r as usize].clone()).collect();
        for id in &ids {
            self.remove_sample(id);
        }
        self.subjects[slot as usize].name.clear();
        ids.len()
    }

    pub fn rename_subject(&mut self, subject_id: &str, name: &str) {
        if let Some(&slot) = self.slot_of.get(subject_id) {
            self.subjects[slot as usize].name = name.into();
        }
    }

    fn row(&self, r: u32) -> &[f32] {
        let r = r as usize;
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    /// Distance from `q` to every row (the one pass over the matrix), in row order.
    pub fn distances(&self, q: &[f32], metric: Metric) -> Vec<f32> {
        let n = self.len();
        let mut out = vec![0f32; n];
        if n == 0 {
            return out;
        }
        let qn = norm(q);
        let (dim, norms, data) = (self.dim, &self.norms, &self.data);
        let work = move |start: usize, o: &mut [f32]| {
            let rows = &data[start * dim..(start + o.len()) * dim];
            row_dots(q, rows, dim, o);
            for (i, oi) in o.iter_mut().enumerate() {
                let (d, xn) = (*oi, norms[start + i]);
                *oi = match metric {
                    Metric::Euclidean => (qn * qn + xn * xn - 2.0 * d).max(0.0).sqrt(),
                    Metric::Cosine => {
                        let den = qn * xn;
                        if den > 0.0 {
                            1.0 - d / den
                        } else {
                            1.0
                        }
                    }
                };
            }
        };
        let threads = if n >= PARALLEL_ROWS { self.threads.max(1) } else { 1 };
        if threads == 1 {
            work(0, &mut out);
        } else {
            let chunk = n.div_ceil(threads);
            std::thread::scope(|s| {
                for (k, o) in out.chunks_mut(chunk).enumerate() {
                    s.spawn(move || work(k * chunk, o));
                }
            });
        }
        out
    }

    /// Per-sample distances of one subject (exact), nearest first, and the subject's aggregated distance.
    pub fn verify_subject(
        &self,
        q: &[f32],
        subject_id: &str,
        metric: Metric,
        rule: Rule,
    ) -> Option<(f32, Vec<SampleDistance>)> {
        let slot = *self.slot_of.get(subject_id)?;
        let rows = &self.subjects[slot as usize].rows;
        if rows.is_empty() {
            return None;
        }
        let vecs: Vec<&[f32]> = rows.iter().map(|&r| self.row(r)).collect();
        let mut per: Vec<SampleDistance> = rows
            .iter()
            .map(|&r| SampleDistance {
                sample_id: self.sample_ids[r as usize].clone(),
                distance: metric.distance(q, self.row(r)),
            })
            .collect();
        per.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        Some((rule.aggregate(q, &vecs, metric), per))
    }

    /// The `top_k` nearest subjects under `rule`.
    ///
    /// One pass computes every row's distance; the `candidates` nearest rows name the candidate subjects
    /// (at least `top_k` distinct ones — the pass widens to every row when needed); each candidate is then
    /// scored exactly on all its rows. For `Rule::Min` this is exact; for the other rules a subject none of
    /// whose samples is among the nearest rows is not considered.
    pub fn nearest_subjects(&self, q: &[f32], metric: Metric, rule: Rule, top_k: usize) -> Vec<SubjectMatch> {
        let n = self.len();
        if n == 0 || top_k == 0 {
            return Vec::new();
        }
        let d = self.distances(q, metric);
        let want_subjects = match rule {
            Rule::Min => top_k,
            _ => top_k.max(8) * 2,
        };
        let mut m = (want_subjects * 8).max(64).min(n);
        let mut picked: Vec<u32>;
        loop {
            let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(m + 1);
            for (r, &x) in d.iter().enumerate() {
                if heap.len() < m {
                    heap.push(Cand(x, r as u32));
                } else if x < heap.peek().map(|c| c.0).unwrap_or(f32::INFINITY) {
                    heap.pop();
                    heap.push(Cand(x, r as u32));
                }
            }
            let rows = heap.into_sorted_vec();
            picked = Vec::new();
            for c in &rows {
                let s = self.row_subject[c.1 as usize];
                if !picked.contains(&s) {
                    picked.push(s);
                    if picked.len() == want_subjects {
                        break;
                    }
                }
            }
            if picked.len() >= want_subjects.min(self.subject_count()) || m == n {
                break;
            }
            m = (m * 8).min(n);
        }
        let mut out: Vec<SubjectMatch> = picked
            .into_iter()
            .map(|slot| {
                let s = &self.subjects[slot as usize];
                let vecs: Vec<&[f32]> = s.rows.iter().map(|&r| self.row(r)).collect();
                let (nearest_row, nearest_distance) = s
                    .rows
                    .iter()
                    .map(|&r| (r, metric.distance(q, self.row(r))))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .unwrap_or((0, f32::INFINITY));
                SubjectMatch {
                    subject_id: s.id.clone(),
                    subject_name: s.name.clone(),
                    distance: rule.aggregate(q, &vecs, metric),
                    samples: s.rows.len(),
                    nearest_sample: self.sample_ids[nearest_row as usize].clone(),
                    nearest_distance,
                }
            })
            .collect();
        out.sort_by(|a, b| a.distance.total_cmp(&b.distance).then_with(|| a.subject_name.cmp(&b.subject_name)));
        out.truncate(top_k);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u32, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|i| (((seed * 7919 + i as u32 * 104729) % 1000) as f32) - 500.0).collect();
        let n = norm(&v);
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    #[test]
    fn removal_keeps_rows_and_subjects_consistent() {
        let mut g = GalleryIndex::new(16);
        for i in 0..20u32 {
            assert!(g.insert(&format!("s{i}"), &format!("p{}", i % 4), &format!("P{}", i % 4), &unit(i, 16)));
        }
        assert!(!g.insert("s3", "p3", "P3", &unit(3, 16)), "duplicates are refused");
        assert!(g.remove_sample("s0"));
        assert!(!g.remove_sample("s0"));
        assert_eq!(g.remove_subject("p1"), 5);
        assert_eq!(g.len(), 14);
        // Every remaining sample is still found at distance zero from itself, under its own subject.
        for i in (0..20u32).filter(|i| *i != 0 && i % 4 != 1) {
            let hit = &g.nearest_subjects(&unit(i, 16), Metric::Euclidean, Rule::Min, 1)[0];
            assert_eq!(hit.subject_id, format!("p{}", i % 4));
            assert_eq!(hit.nearest_sample, format!("s{i}"));
            assert!(hit.distance < 1e-6);
        }
    }

    #[test]
    fn matrix_distances_match_direct_ones() {
        let mut g = GalleryIndex::new(32);
        for i in 0..50u32 {
            g.insert(&format!("s{i}"), "p", "P", &unit(i, 32));
        }
        let q = unit(999, 32);
        for m in [Metric::Euclidean, Metric::Cosine] {
            let d = g.distances(&q, m);
            for (r, x) in d.iter().enumerate() {
                assert!((x - m.distance(&q, g.row(r as u32))).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn rules_parse() {
        assert_eq!(Rule::parse("min"), Some(Rule::Min));
        assert_eq!(Rule::parse("mean3"), Some(Rule::MeanNearest(3)));
        assert_eq!(Rule::parse("centroid"), Some(Rule::Centroid));
        assert_eq!(Rule::parse("mean0"), None);
        assert_eq!(Rule::parse("median"), None);
    }
}
