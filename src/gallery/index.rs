//! The in-memory gallery of one collection under one model version: every embedding as a row of one
//! matrix, searched exactly (one matrix–vector product over all rows; no approximate index).
//!
//! Distances come from dot products and norms: ‖q − x‖² = ‖q‖² + ‖x‖² − 2 q·x and cos = q·x / (‖q‖‖x‖), so
//! one pass serves both metrics. The final figures of the subjects returned are recomputed directly with
//! [`Metric::distance`] on their rows, so what a client sees is exact.

use crate::distance::{dot, Metric, Rule};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::kernels::{row_dots, row_dots_f16};

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
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

/// How the gallery matrix is held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 32-bit floats, as the embeddings were made.
    #[default]
    F32,
    /// IEEE half floats: half the memory and half the bytes per query (the pass is bound by memory
    /// bandwidth). Every stored embedding is rounded to half precision once, at insert (relative error
    /// ≤ 2⁻¹¹ per component); queries are then exact over the stored values (f32 arithmetic).
    F16,
}

#[derive(Debug, Clone)]
enum Rows {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

/// Embeddings of one collection and model version.
#[derive(Debug, Clone)]
pub struct GalleryIndex {
    dim: usize,
    /// Row-major `len × dim`.
    data: Rows,
    norms: Vec<f32>,
    sample_ids: Vec<String>,
    row_subject: Vec<u32>,
    row_of: HashMap<String, u32>,
    subjects: Vec<SubjectSlot>,
    slot_of: HashMap<String, u32>,
    /// Threads a query may use.
    threads: usize,
    /// Bumped by every change, so that figures derived from the whole index can be cached.
    generation: u64,
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
        Self::with_precision(dim, Precision::F32)
    }

    pub fn with_precision(dim: usize, precision: Precision) -> Self {
        GalleryIndex {
            dim,
            data: match precision {
                Precision::F32 => Rows::F32(Vec::new()),
                Precision::F16 => Rows::F16(Vec::new()),
            },
            norms: Vec::new(),
            sample_ids: Vec::new(),
            row_subject: Vec::new(),
            row_of: HashMap::new(),
            subjects: Vec::new(),
            slot_of: HashMap::new(),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            generation: 0,
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

    /// Changes so far (inserts and removals).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Rows of a subject (empty when it has none in the index).
    pub fn subject_rows(&self, subject_id: &str) -> &[u32] {
        self.slot_of.get(subject_id).map(|&s| &self.subjects[s as usize].rows[..]).unwrap_or(&[])
    }

    /// A row's sample id, subject id and subject name.
    pub fn row_owner(&self, r: u32) -> (&str, &str, &str) {
        let s = &self.subjects[self.row_subject[r as usize] as usize];
        (&self.sample_ids[r as usize], &s.id, &s.name)
    }

    /// A stored row, widened to f32.
    pub fn row_vector(&self, r: u32) -> Vec<f32> {
        self.row(r).into_owned()
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
        let stored: Vec<f32> = match &mut self.data {
            Rows::F32(d) => {
                d.extend_from_slice(v);
                v.to_vec()
            }
            Rows::F16(d) => {
                let h: Vec<u16> = v.iter().map(|x| half::f16::from_f32(*x).to_bits()).collect();
                d.extend_from_slice(&h);
                h.iter().map(|b| half::f16::from_bits(*b).to_f32()).collect()
            }
        };
        self.norms.push(norm(&stored));
        self.sample_ids.push(sample_id.into());
        self.row_subject.push(slot);
        self.row_of.insert(sample_id.into(), row);
        self.subjects[slot as usize].rows.push(row);
        self.generation += 1;
        true
    }

    /// Remove a sample (the last row moves into its place). Returns whether it was present.
    pub fn remove_sample(&mut self, sample_id: &str) -> bool {
        let Some(row) = self.row_of.remove(sample_id) else { return false };
        self.generation += 1;
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
            match &mut self.data {
                Rows::F32(v) => v.copy_within(last * d..(last + 1) * d, r * d),
                Rows::F16(v) => v.copy_within(last * d..(last + 1) * d, r * d),
            }
        }
        match &mut self.data {
            Rows::F32(v) => v.truncate(last * self.dim),
            Rows::F16(v) => v.truncate(last * self.dim),
        }
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

    /// A stored row as f32 (borrowed for f32 storage, widened for f16).
    fn row(&self, r: u32) -> std::borrow::Cow<'_, [f32]> {
        let (a, b) = (r as usize * self.dim, (r as usize + 1) * self.dim);
        match &self.data {
            Rows::F32(d) => std::borrow::Cow::Borrowed(&d[a..b]),
            Rows::F16(d) => {
                std::borrow::Cow::Owned(d[a..b].iter().map(|x| half::f16::from_bits(*x).to_f32()).collect())
            }
        }
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
            let span = start * dim..(start + o.len()) * dim;
            match data {
                Rows::F32(d) => row_dots(q, &d[span], dim, o),
                Rows::F16(d) => row_dots_f16(q, &d[span], dim, o),
            }
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
        let owned: Vec<_> = rows.iter().map(|&r| self.row(r)).collect();
        let vecs: Vec<&[f32]> = owned.iter().map(|c| c.as_ref()).collect();
        let mut per: Vec<SampleDistance> = rows
            .iter()
            .map(|&r| SampleDistance {
                sample_id: self.sample_ids[r as usize].clone(),
                distance: metric.distance(q, &self.row(r)),
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
                let owned: Vec<_> = s.rows.iter().map(|&r| self.row(r)).collect();
                let vecs: Vec<&[f32]> = owned.iter().map(|c| c.as_ref()).collect();
                let (nearest_row, nearest_distance) = s
                    .rows
                    .iter()
                    .map(|&r| (r, metric.distance(q, &self.row(r))))
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
                assert!((x - m.distance(&q, &g.row(r as u32))).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn half_precision_distances_match_the_stored_values() {
        let (mut g32, mut g16) = (GalleryIndex::new(128), GalleryIndex::with_precision(128, Precision::F16));
        for i in 0..300u32 {
            g32.insert(&format!("s{i}"), &format!("p{}", i % 30), "P", &unit(i, 128));
            g16.insert(&format!("s{i}"), &format!("p{}", i % 30), "P", &unit(i, 128));
        }
        let q = unit(4242, 128);
        for m in [Metric::Euclidean, Metric::Cosine] {
            let (a, b) = (g32.distances(&q, m), g16.distances(&q, m));
            for (r, (x, y)) in a.iter().zip(&b).enumerate() {
                // Exact over the stored (rounded) values, and within rounding of the f32 gallery.
                let direct = m.distance(&q, &g16.row(r as u32));
                // The pass computes ‖q−x‖ from dot products: near zero distance that cancels to ~1e-3.
                assert!((y - direct).abs() < 1e-3, "{m:?} row {r}: pass {y} direct {direct} f32 {x}");
                assert!((x - y).abs() < 2e-3, "{x} vs {y}");
            }
            assert_eq!(
                g32.nearest_subjects(&q, m, Rule::Min, 3).iter().map(|s| &s.subject_id).collect::<Vec<_>>(),
                g16.nearest_subjects(&q, m, Rule::Min, 3).iter().map(|s| &s.subject_id).collect::<Vec<_>>()
            );
        }
        assert!(g16.remove_subject("p3") > 0);
        assert_eq!(g16.len(), 290);
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
