//! Anomaly scores: does a probe resemble anything a collection holds? The distance from the probe to its
//! nearest enrolled sample, divided by the [`ANOMALY_QUANTILE`] of the collection's own nearest-neighbour
//! distances (each sample against all the others, leave one out); above 1 the probe is further from
//! everything enrolled than 95 % of the enrolled samples are from their nearest neighbour. The reference is
//! cached per index generation and metric.

use super::{check_version, Galleries, GalleryError, GalleryIndex};
use crate::distance::Metric;
use crate::store::Collection;
use serde::Serialize;
use utoipa::ToSchema;

/// The quantile of the collection's leave-one-out nearest-neighbour distances an anomaly score divides by.
pub const ANOMALY_QUANTILE: f32 = 0.95;
/// Rows at most used to estimate that quantile (evenly spaced through the index).
const ANOMALY_REFERENCE_ROWS: usize = 2000;

/// How unlike the collection a probe is.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AnomalyScore {
    /// Distance to the nearest enrolled sample.
    pub distance: f32,
    /// The collection's own nearest-neighbour distance at [`ANOMALY_QUANTILE`] (leave one out).
    pub reference: f32,
    /// `distance / reference`: above 1, the probe is further from everything enrolled than 95 % of the
    /// enrolled samples are from their nearest neighbour.
    pub score: f32,
    pub nearest_subject: String,
    pub nearest_sample: String,
    /// Embeddings searched.
    pub searched: usize,
}

/// The [`ANOMALY_QUANTILE`] of the leave-one-out nearest-neighbour distances of (at most
/// [`ANOMALY_REFERENCE_ROWS`] evenly spaced) rows; `None` with fewer than 2 rows.
pub fn anomaly_reference(g: &GalleryIndex, metric: Metric) -> Option<f32> {
    let n = g.len();
    if n < 2 {
        return None;
    }
    let step = n.div_ceil(ANOMALY_REFERENCE_ROWS).max(1);
    let mut nn: Vec<f32> = (0..n)
        .step_by(step)
        .map(|r| {
            let d = g.distances(&g.row_vector(r as u32), metric);
            d.iter().enumerate().filter(|(o, _)| *o != r).map(|(_, &x)| x).fold(f32::INFINITY, f32::min)
        })
        .collect();
    nn.sort_by(|a, b| a.total_cmp(b));
    let k = ((nn.len() as f32 * ANOMALY_QUANTILE).ceil() as usize).clamp(1, nn.len()) - 1;
    Some(nn[k].max(1e-6))
}

impl Galleries {
    /// The anomaly score of a probe made by model `version` (`None` for a client's embedding); `None` when
    /// the collection has fewer than 2 samples. The reference is cached until the index changes.
    pub async fn anomaly(
        &self,
        c: &Collection,
        probe: Vec<f32>,
        version: Option<i64>,
        metric: Metric,
    ) -> Result<Option<AnomalyScore>, GalleryError> {
        let l = self.live(c).await?;
        check_version(&l, version)?;
        if probe.len() != l.model.dim {
            return Err(GalleryError::Dimension { got: probe.len(), expected: l.model.dim });
        }
        Ok(tokio::task::spawn_blocking(move || {
            let g = l.index.read().expect("index lock");
            let key = (g.generation(), metric);
            let cached = *l.anomaly.lock().expect("anomaly lock");
            let reference = match cached {
                Some((k, r)) if k == key => r,
                _ => {
                    let r = anomaly_reference(&g, metric)?;
                    *l.anomaly.lock().expect("anomaly lock") = Some((key, r));
                    r
                }
            };
            let d = g.distances(&probe, metric);
            let (r, &distance) = d.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1))?;
            let (sample, _, name) = g.row_owner(r as u32);
            Some(AnomalyScore {
                distance,
                reference,
                score: distance / reference,
                nearest_subject: name.to_string(),
                nearest_sample: sample.to_string(),
                searched: g.len(),
            })
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
    fn the_anomaly_reference_is_the_leave_one_out_quantile() {
        let mut g = GalleryIndex::new(2);
        for i in 0..20 {
            g.insert(&format!("s{i}"), &format!("S{}", i / 2), "x", &v((i / 2) as f32 * 10.0, (i % 2) as f32));
        }
        // Every sample's nearest neighbour is its pair, 1.0 away.
        assert_eq!(anomaly_reference(&g, Metric::Euclidean), Some(1.0));
        assert_eq!(anomaly_reference(&GalleryIndex::new(2), Metric::Euclidean), None);
    }
}
