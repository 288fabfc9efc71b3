//! Enrolment quality control, computed from the embeddings the galleries hold (anomaly scores: [`super::anomaly`]).
//!
//! | what | rule |
//! |---|---|
//! | `inconsistent` | the median distance from a sample to its subject's other samples (and the other files of the same upload) exceeds the model's calibrated 1:1 threshold: it would not verify as its own subject |
//! | `duplicate` | a sample lies within [`DUPLICATE_FRACTION`] × threshold of one already enrolled (same subject: a re-upload; another subject: a likely mislabel) or of an earlier file of the same upload |
//! | `low_quality` | face models: detector score, face size, pose or sharpness out of range ([`FaceMeasures`]) |
//!
//! Everything here is arithmetic on embeddings and detections; no image is read and nothing is stored.

use super::{check_version, Galleries, GalleryError, GalleryIndex};
use crate::distance::Metric;
use crate::store::Collection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A duplicate lies within this fraction of the model's 1:1 threshold (dlib faces: 0.1 × 0.6; the nearest
/// two distinct AT&T photos of one person are further apart).
pub const DUPLICATE_FRACTION: f32 = 0.1;

pub use crate::store::QualityPolicy;

/// A sample's quality verdict, worst first when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Inconsistent,
    Duplicate,
    LowQuality,
    Ok,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Inconsistent => "inconsistent",
            Verdict::Duplicate => "duplicate",
            Verdict::LowQuality => "low_quality",
            Verdict::Ok => "ok",
        }
    }
}

/// The sample (or file of the same upload) a sample duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DuplicateOf {
    pub subject: String,
    /// The enrolled sample; absent when the duplicate is another file of the same upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_id: Option<String>,
    /// Position of the other file in the upload, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_index: Option<usize>,
    pub same_subject: bool,
    pub distance: f32,
}

/// A face's measures from its detection and chip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaceMeasures {
    /// The detector's confidence.
    pub score: f32,
    /// Shorter side of the face box, in pixels of the uploaded image.
    pub size: f32,
    /// Horizontal offset of the nose from the eyes' midpoint, in eye distances (0 frontal, ±0.5 and beyond:
    /// turned far to one side).
    pub yaw: f32,
    /// Sharpness of the chip: variance of its Laplacian over its variance (scale-free; blur lowers it).
    pub sharpness: f32,
}

/// Limits under which a face is `low_quality`.
pub const MIN_FACE_SCORE: f32 = 0.90;
pub const MIN_FACE_SIZE: f32 = 24.0;
pub const MAX_FACE_YAW: f32 = 0.6;
pub const MIN_FACE_SHARPNESS: f32 = 0.004;

impl FaceMeasures {
    /// Measures of a detected face (`bbox` x0 y0 x1 y1, landmarks: eyes, nose, mouth corners) and of its
    /// chip (`planes`: `c × h × w`, channel-major).
    pub fn new(bbox: [f32; 4], score: f32, landmarks: [[f32; 2]; 5], planes: &[f32], h: usize, w: usize) -> Self {
        let size = (bbox[2] - bbox[0]).min(bbox[3] - bbox[1]).max(0.0);
        let (le, re, nose) = (landmarks[0], landmarks[1], landmarks[2]);
        let eye_d = ((re[0] - le[0]).powi(2) + (re[1] - le[1]).powi(2)).sqrt().max(1e-3);
        let yaw = (nose[0] - (le[0] + re[0]) / 2.0) / eye_d;
        FaceMeasures { score, size, yaw, sharpness: sharpness(planes, h, w) }
    }

    /// What is wrong with the face, in words (empty when nothing is).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.score < MIN_FACE_SCORE {
            out.push(format!("detector score {:.2} is below {MIN_FACE_SCORE}", self.score));
        }
        if self.size < MIN_FACE_SIZE {
            out.push(format!("the face is {:.0} px, under {MIN_FACE_SIZE} px", self.size));
        }
        if self.yaw.abs() > MAX_FACE_YAW {
            out.push(format!("the face is turned to one side (yaw {:.2}, limit {MAX_FACE_YAW})", self.yaw));
        }
        if self.sharpness < MIN_FACE_SHARPNESS {
            out.push(format!("the face is blurred (sharpness {:.4}, limit {MIN_FACE_SHARPNESS})", self.sharpness));
        }
        out
    }
}

/// Variance of the 4-neighbour Laplacian of the first plane over the plane's variance.
fn sharpness(planes: &[f32], h: usize, w: usize) -> f32 {
    if h < 3 || w < 3 || planes.len() < h * w {
        return 0.0;
    }
    let p = &planes[..h * w];
    let n = p.len() as f64;
    let mean = p.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = p.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    if var <= 1e-12 {
        return 0.0;
    }
    let mut lap = Vec::with_capacity((h - 2) * (w - 2));
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = p[y * w + x] as f64;
            lap.push(
                p[(y - 1) * w + x] as f64
                    + p[(y + 1) * w + x] as f64
                    + p[y * w + x - 1] as f64
                    + p[y * w + x + 1] as f64
                    - 4.0 * c,
            );
        }
    }
    let lm = lap.iter().sum::<f64>() / lap.len() as f64;
    let lv = lap.iter().map(|x| (x - lm).powi(2)).sum::<f64>() / lap.len() as f64;
    (lv / var) as f32
}

/// The quality of one enrolled (or uploaded) sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Quality {
    /// The worst of `flags`, `ok` when there is none.
    pub verdict: Verdict,
    /// Every verdict that applies, worst first.
    pub flags: Vec<Verdict>,
    /// The reasons, in words.
    pub reasons: Vec<String>,
    /// Median distance to the subject's other samples (and the upload's other files); absent when there are
    /// none to compare with.
    pub subject_distance: Option<f32>,
    /// How many samples `subject_distance` is the median of.
    pub compared_with: usize,
    /// The model's calibrated 1:1 threshold that `subject_distance` is judged against.
    pub threshold: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<DuplicateOf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<FaceMeasures>,
}

/// What the embeddings say about one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub subject_distance: Option<f32>,
    pub compared_with: usize,
    pub duplicate_of: Option<DuplicateOf>,
}

impl Assessment {
    /// The verdict, given the 1:1 threshold and the face's measures (face models).
    pub fn judge(self, threshold: f32, face: Option<FaceMeasures>) -> Quality {
        let mut flags = Vec::new();
        let mut reasons = Vec::new();
        if let Some(d) = self.subject_distance.filter(|d| *d > threshold) {
            flags.push(Verdict::Inconsistent);
            reasons.push(format!(
                "median distance {d:.3} to the subject's {} other samples is beyond the threshold {threshold:.3}",
                self.compared_with
            ));
        }
        if let Some(dup) = &self.duplicate_of {
            flags.push(Verdict::Duplicate);
            reasons.push(match (&dup.sample_id, dup.upload_index, dup.same_subject) {
                (_, Some(k), _) => {
                    format!("near-identical to file {} of this upload (distance {:.3})", k, dup.distance)
                }
                (Some(id), _, true) => {
                    format!("near-identical to sample {id} of this subject (distance {:.3})", dup.distance)
                }
                (Some(id), _, false) => format!(
                    "near-identical to sample {id} of subject '{}' (distance {:.3}): likely mislabelled",
                    dup.subject, dup.distance
                ),
                (None, None, _) => format!("near-identical to another sample (distance {:.3})", dup.distance),
            });
        }
        if let Some(f) = &face {
            let p = f.problems();
            if !p.is_empty() {
                flags.push(Verdict::LowQuality);
                reasons.extend(p);
            }
        }
        flags.sort();
        Quality {
            verdict: flags.first().copied().unwrap_or(Verdict::Ok),
            flags,
            reasons,
            subject_distance: self.subject_distance,
            compared_with: self.compared_with,
            threshold,
            duplicate_of: self.duplicate_of,
            face,
        }
    }
}

fn median(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Assess uploaded embeddings `probes` (in upload order) of subject `subject_id` against `g`.
pub fn assess_in(g: &GalleryIndex, subject_id: &str, probes: &[Vec<f32>], metric: Metric, dup: f32) -> Vec<Assessment> {
    let own = g.subject_rows(subject_id);
    probes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let d = g.distances(p, metric);
            let mut others: Vec<f32> = own.iter().map(|&r| d[r as usize]).collect();
            let batch: Vec<(usize, f32)> =
                probes.iter().enumerate().filter(|(j, _)| *j != i).map(|(j, q)| (j, metric.distance(p, q))).collect();
            others.extend(batch.iter().map(|(_, x)| *x));
            let compared_with = others.len();
            let subject_distance = median(&mut others);
            // The nearest enrolled sample, then an earlier file of this upload.
            let nearest = d.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(r, &x)| (r as u32, x));
            let mut duplicate_of = nearest.filter(|(_, x)| *x <= dup).map(|(r, x)| {
                let (sample, subj, name) = g.row_owner(r);
                DuplicateOf {
                    subject: name.to_string(),
                    sample_id: Some(sample.to_string()),
                    upload_index: None,
                    same_subject: subj == subject_id,
                    distance: x,
                }
            });
            if duplicate_of.is_none() {
                duplicate_of =
                    batch.iter().filter(|(j, x)| *j < i && *x <= dup).min_by(|a, b| a.1.total_cmp(&b.1)).map(
                        |&(j, x)| DuplicateOf {
                            subject: String::new(),
                            sample_id: None,
                            upload_index: Some(j),
                            same_subject: true,
                            distance: x,
                        },
                    );
            }
            Assessment { subject_distance, compared_with, duplicate_of }
        })
        .collect()
}

/// One enrolled sample as the audit sees it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditSample {
    pub subject: String,
    pub sample_id: String,
    pub quality: Quality,
}

/// One subject's agreement with itself.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditSubject {
    pub subject: String,
    pub samples: usize,
    /// Median distance over all pairs of the subject's samples.
    pub median_pair_distance: f32,
    /// Share of the pairs beyond the threshold.
    pub pairs_beyond_threshold: f32,
    /// Samples of the subject flagged `inconsistent`.
    pub inconsistent_samples: usize,
}

/// The audit of a whole index: flagged samples (worst first: by verdict, then by how far beyond the
/// threshold) and subjects with at least one pair beyond the threshold (most disagreeing first). One pass
/// over the index per sample: O(n²) distances.
pub fn audit_index(g: &GalleryIndex, metric: Metric, threshold: f32) -> (Vec<AuditSample>, Vec<AuditSubject>) {
    let dup = DUPLICATE_FRACTION * threshold;
    let n = g.len() as u32;
    let mut samples = Vec::new();
    let mut by_subject: std::collections::BTreeMap<String, (Vec<f32>, usize, usize)> = Default::default();
    for r in 0..n {
        let v = g.row_vector(r);
        let d = g.distances(&v, metric);
        let (sample, subj, name) = g.row_owner(r);
        let own = g.subject_rows(subj);
        let mut others: Vec<f32> = own.iter().filter(|&&o| o != r).map(|&o| d[o as usize]).collect();
        let e = by_subject.entry(name.to_string()).or_default();
        e.1 = own.len();
        e.0.extend(own.iter().filter(|&&o| o > r).map(|&o| d[o as usize]));
        let compared_with = others.len();
        let subject_distance = median(&mut others);
        let nearest = d
            .iter()
            .enumerate()
            .filter(|(o, _)| *o as u32 != r)
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(o, &x)| (o as u32, x));
        let duplicate_of = nearest.filter(|(_, x)| *x <= dup).map(|(o, x)| {
            let (s2, subj2, name2) = g.row_owner(o);
            DuplicateOf {
                subject: name2.to_string(),
                sample_id: Some(s2.to_string()),
                upload_index: None,
                same_subject: subj2 == subj,
                distance: x,
            }
        });
        let q = Assessment { subject_distance, compared_with, duplicate_of }.judge(threshold, None);
        if q.verdict == Verdict::Inconsistent {
            e.2 += 1;
        }
        if q.verdict != Verdict::Ok {
            samples.push(AuditSample { subject: name.to_string(), sample_id: sample.to_string(), quality: q });
        }
    }
    samples.sort_by(|a, b| {
        a.quality.verdict.cmp(&b.quality.verdict).then_with(|| {
            let k = |s: &AuditSample| s.quality.subject_distance.unwrap_or(0.0);
            k(b).total_cmp(&k(a))
        })
    });
    let mut subjects: Vec<AuditSubject> = by_subject
        .into_iter()
        .filter(|(_, (pairs, _, _))| pairs.iter().any(|&x| x > threshold))
        .map(|(subject, (mut pairs, count, inconsistent))| {
            let beyond = pairs.iter().filter(|&&x| x > threshold).count() as f32 / pairs.len() as f32;
            AuditSubject {
                subject,
                samples: count,
                median_pair_distance: median(&mut pairs).unwrap_or(0.0),
                pairs_beyond_threshold: beyond,
                inconsistent_samples: inconsistent,
            }
        })
        .collect();
    subjects.sort_by(|a, b| {
        b.pairs_beyond_threshold
            .total_cmp(&a.pairs_beyond_threshold)
            .then_with(|| b.median_pair_distance.total_cmp(&a.median_pair_distance))
    });
    (samples, subjects)
}

impl Galleries {
    /// Set what uploads to a collection do with flagged samples.
    pub async fn set_quality_policy(&self, name: &str, policy: QualityPolicy) -> Result<Collection, GalleryError> {
        Ok(self.store.set_quality_policy(name, policy).await?)
    }

    /// Samples of a collection given `low_quality` at upload, with their stored verdict.
    pub async fn low_quality_samples(&self, c: &Collection) -> Result<Vec<AuditSample>, GalleryError> {
        let rows = self.store.low_quality_samples(&c.id).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(sample_id, subject, q)| {
                let quality = serde_json::from_str(&q).ok()?;
                Some(AuditSample { subject, sample_id, quality })
            })
            .collect())
    }

    /// Assess an upload's embeddings (made by model `version`) for `subject`: see [`assess_in`].
    pub async fn assess(
        &self,
        c: &Collection,
        subject_id: &str,
        probes: Vec<Vec<f32>>,
        version: i64,
        metric: Metric,
        threshold: f32,
    ) -> Result<Vec<Assessment>, GalleryError> {
        let l = self.live(c).await?;
        check_version(&l, Some(version))?;
        let subject_id = subject_id.to_string();
        Ok(tokio::task::spawn_blocking(move || {
            let g = l.index.read().expect("index lock");
            assess_in(&g, &subject_id, &probes, metric, DUPLICATE_FRACTION * threshold)
        })
        .await?)
    }

    /// The audit of a collection's index ([`audit_index`]), and how many samples it covered.
    pub async fn audit(
        &self,
        c: &Collection,
        metric: Metric,
        threshold: f32,
    ) -> Result<(Vec<AuditSample>, Vec<AuditSubject>, usize), GalleryError> {
        let l = self.live(c).await?;
        Ok(tokio::task::spawn_blocking(move || {
            let g = l.index.read().expect("index lock");
            let (a, b) = audit_index(&g, metric, threshold);
            (a, b, g.len())
        })
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: f32, y: f32) -> Vec<f32> {
        vec![x, y]
    }

    #[test]
    fn an_odd_file_among_an_upload_is_inconsistent_and_a_repeat_is_a_duplicate() {
        let mut g = GalleryIndex::new(2);
        g.insert("a1", "A", "alice", &v(0.0, 0.0));
        g.insert("b1", "B", "bob", &v(5.0, 5.0));
        // Alice: two near her, one far (bob's place), one repeat of a1.
        let probes = vec![v(0.2, 0.0), v(0.0, 0.3), v(5.0, 5.01), v(0.0, 0.0)];
        let a = assess_in(&g, "A", &probes, Metric::Euclidean, 0.05);
        let q: Vec<Quality> = a.into_iter().map(|x| x.judge(1.0, None)).collect();
        assert_eq!(q[0].verdict, Verdict::Ok, "{q:?}");
        assert_eq!(q[1].verdict, Verdict::Ok);
        assert_eq!(q[2].flags, vec![Verdict::Inconsistent, Verdict::Duplicate], "{:?}", q[2]);
        assert_eq!(q[2].duplicate_of.as_ref().map(|d| d.same_subject), Some(false));
        assert_eq!(q[3].verdict, Verdict::Duplicate);
        assert_eq!(q[3].duplicate_of.as_ref().and_then(|d| d.sample_id.clone()).as_deref(), Some("a1"));
        assert_eq!(q[0].compared_with, 4);
    }

    #[test]
    fn the_audit_lists_the_odd_sample_and_its_subject() {
        let mut g = GalleryIndex::new(2);
        for (i, p) in [v(0.0, 0.0), v(0.3, 0.0), v(0.0, 0.4), v(3.0, 3.0)].iter().enumerate() {
            g.insert(&format!("a{i}"), "A", "alice", p);
        }
        g.insert("b0", "B", "bob", &v(9.0, 0.0));
        g.insert("b1", "B", "bob", &v(9.0, 0.4));
        let (samples, subjects) = audit_index(&g, Metric::Euclidean, 1.0);
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert_eq!((samples[0].sample_id.as_str(), samples[0].quality.verdict), ("a3", Verdict::Inconsistent));
        assert_eq!(subjects.len(), 1);
        assert_eq!((subjects[0].subject.as_str(), subjects[0].inconsistent_samples), ("alice", 1));
        assert!((subjects[0].pairs_beyond_threshold - 0.5).abs() < 1e-6);
    }

    #[test]
    fn blur_lowers_sharpness_and_faces_turned_away_are_low_quality() {
        let (h, w) = (32, 32);
        let sharp: Vec<f32> = (0..h * w).map(|i| if (i / w + i % w) % 2 == 0 { 1.0 } else { 0.0 }).collect();
        let smooth: Vec<f32> = (0..h * w).map(|i| (i % w) as f32 / w as f32).collect();
        assert!(sharpness(&sharp, h, w) > 1.0);
        assert!(sharpness(&smooth, h, w) < MIN_FACE_SHARPNESS);
        let lm = [[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]];
        let frontal = FaceMeasures::new([0.0, 0.0, 100.0, 120.0], 0.99, lm, &sharp, h, w);
        assert!(frontal.problems().is_empty(), "{frontal:?}");
        let mut turned = lm;
        turned[2][0] = 78.0;
        let f = FaceMeasures::new([0.0, 0.0, 100.0, 120.0], 0.99, turned, &sharp, h, w);
        assert_eq!(f.problems().len(), 1, "{f:?}");
    }
}
