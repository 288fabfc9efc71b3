//! Verification metrics over genuine (same identity) and impostor (different identity) pair distances:
//! ROC, AUC, EER, thresholds at a false-accept rate, logistic score calibration, and the two plots.
//!
//! Conventions: a pair is *accepted* (declared "same") when `distance <= threshold`.
//! FAR = accepted impostors / impostors; FRR = rejected genuine / genuine; TAR = 1 − FRR.

use crate::distance::ScoreMap;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Summary of one metric's distances.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub auc: f64,
    pub eer: f64,
    pub eer_threshold: f32,
    #[serde(rename = "threshold_at_far_1e-3")]
    pub threshold_far_1e3: f32,
    #[serde(rename = "tar_at_far_1e-3")]
    pub tar_far_1e3: f64,
    pub genuine: usize,
    pub impostor: usize,
}

/// Fraction of impostors accepted and of genuine rejected at `t`.
pub fn rates_at(genuine: &[f32], impostor: &[f32], t: f32) -> (f64, f64) {
    let far = impostor.iter().filter(|d| **d <= t).count() as f64 / impostor.len().max(1) as f64;
    let frr = genuine.iter().filter(|d| **d > t).count() as f64 / genuine.len().max(1) as f64;
    (far, frr)
}

/// Accuracy over all pairs at threshold `t`.
pub fn accuracy_at(genuine: &[f32], impostor: &[f32], t: f32) -> f64 {
    let ok = genuine.iter().filter(|d| **d <= t).count() + impostor.iter().filter(|d| **d > t).count();
    ok as f64 / (genuine.len() + impostor.len()).max(1) as f64
}

fn sorted(v: &[f32]) -> Vec<f32> {
    let mut s: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

/// Area under the ROC curve = P(genuine distance < impostor distance), ties counting ½.
pub fn auc(genuine: &[f32], impostor: &[f32]) -> f64 {
    let (g, i) = (sorted(genuine), sorted(impostor));
    if g.is_empty() || i.is_empty() {
        return f64::NAN;
    }
    let mut total = 0f64;
    let (mut lo, mut hi) = (0usize, 0usize);
    for d in &g {
        while lo < i.len() && i[lo] < *d {
            lo += 1;
        }
        while hi < i.len() && i[hi] <= *d {
            hi += 1;
        }
        // impostors strictly greater count 1, equal count ½.
        total += (i.len() - hi) as f64 + 0.5 * (hi - lo) as f64;
    }
    total / (g.len() as f64 * i.len() as f64)
}

/// Equal error rate and the threshold where it occurs (midway to the next distance).
pub fn eer(genuine: &[f32], impostor: &[f32]) -> (f64, f32) {
    let mut all = sorted(&[genuine, impostor].concat());
    all.dedup();
    if all.is_empty() || genuine.is_empty() || impostor.is_empty() {
        return (f64::NAN, f32::NAN);
    }
    let (g, i) = (sorted(genuine), sorted(impostor));
    let (mut best, mut best_gap, mut best_t) = (1.0f64, f64::INFINITY, all[0]);
    // Also consider accepting nothing (threshold below the smallest distance).
    let mut cands = vec![all[0] - 1.0];
    for k in 0..all.len() {
        let t = if k + 1 < all.len() { 0.5 * (all[k] + all[k + 1]) } else { all[k] };
        cands.push(t);
    }
    for t in cands {
        let far = i.partition_point(|d| *d <= t) as f64 / i.len() as f64;
        let frr = (g.len() - g.partition_point(|d| *d <= t)) as f64 / g.len() as f64;
        let gap = (far - frr).abs();
        if gap < best_gap || (gap == best_gap && (far + frr) / 2.0 < best) {
            best_gap = gap;
            best = (far + frr) / 2.0;
            best_t = t;
        }
    }
    (best, best_t)
}

/// Largest threshold whose FAR is at most `far`, and the TAR there.
pub fn threshold_at_far(genuine: &[f32], impostor: &[f32], far: f64) -> (f32, f64) {
    let i = sorted(impostor);
    if i.is_empty() {
        return (f32::NAN, f64::NAN);
    }
    let allowed = (far * i.len() as f64).floor() as usize;
    let t = if allowed >= i.len() {
        i[i.len() - 1]
    } else {
        // Just below the first impostor we may not accept.
        next_down(i[allowed])
    };
    let tar = genuine.iter().filter(|d| **d <= t).count() as f64 / genuine.len().max(1) as f64;
    (t, tar)
}

fn next_down(x: f32) -> f32 {
    if x > 0.0 {
        f32::from_bits(x.to_bits() - 1)
    } else if x == 0.0 {
        -f32::MIN_POSITIVE
    } else {
        f32::from_bits(x.to_bits() + 1)
    }
}

/// All the summary figures for one metric.
pub fn summarize(genuine: &[f32], impostor: &[f32]) -> Summary {
    let (e, et) = eer(genuine, impostor);
    let (tf, tar) = threshold_at_far(genuine, impostor, 1e-3);
    Summary {
        auc: auc(genuine, impostor),
        eer: e,
        eer_threshold: et,
        threshold_far_1e3: tf,
        tar_far_1e3: tar,
        genuine: genuine.len(),
        impostor: impostor.len(),
    }
}

/// ROC points (FAR, TAR), from accepting nothing to accepting everything.
pub fn roc(genuine: &[f32], impostor: &[f32]) -> Vec<(f64, f64)> {
    let mut all = sorted(&[genuine, impostor].concat());
    all.dedup();
    let (g, i) = (sorted(genuine), sorted(impostor));
    let mut pts = vec![(0.0, 0.0)];
    for t in all {
        let far = i.partition_point(|d| *d <= t) as f64 / i.len().max(1) as f64;
        let tar = g.partition_point(|d| *d <= t) as f64 / g.len().max(1) as f64;
        pts.push((far, tar));
    }
    pts
}

/// Fit `P(same | d) = σ(a + b·d)` by Newton's method, each class weighted to half the total so the
/// score does not depend on how many impostor pairs there were; a small ridge keeps the slope finite when
/// the classes separate perfectly.
pub fn fit_logistic(genuine: &[f32], impostor: &[f32]) -> ScoreMap {
    let xs: Vec<(f64, f64, f64)> = genuine
        .iter()
        .map(|d| (*d as f64, 1.0, 0.5 / genuine.len() as f64))
        .chain(impostor.iter().map(|d| (*d as f64, 0.0, 0.5 / impostor.len() as f64)))
        .collect();
    let mean = xs.iter().map(|(d, _, w)| d * w).sum::<f64>();
    let var = xs.iter().map(|(d, _, w)| w * (d - mean).powi(2)).sum::<f64>();
    let sd = var.sqrt().max(1e-9);
    let (mut a, mut b) = (0.0f64, -1.0f64);
    let ridge = 1e-3;
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (d, y, w) in &xs {
            let x = (d - mean) / sd;
            let p = 1.0 / (1.0 + (-(a + b * x)).exp());
            let r = w * (p - y);
            ga += r;
            gb += r * x;
            let s = w * p * (1.0 - p);
            haa += s;
            hab += s * x;
            hbb += s * x * x;
        }
        gb += ridge * b;
        hbb += ridge;
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() + db.abs() < 1e-10 {
            break;
        }
    }
    ScoreMap { a: a - b * mean / sd, b: b / sd }
}

fn register_font() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ =
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draw ROC curves (one per named series) to a PNG, FAR on a log axis.
pub fn plot_roc(path: &Path, title: &str, series: &[(&str, Vec<(f64, f64)>)]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    register_font();
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((1e-4f64..1.0f64).log_scale(), 0f64..1.0f64)?;
    chart
        .configure_mesh()
        .x_desc("false accept rate")
        .y_desc("true accept rate")
        .label_style(("sans-serif", 14))
        .draw()?;
    let colours = [BLUE, RED, GREEN, MAGENTA];
    for (k, (name, pts)) in series.iter().enumerate() {
        let c = colours[k % colours.len()];
        // Earlier series drawn wider, so coinciding curves (unit-length embeddings make the two metrics
        // rank pairs identically) stay visible.
        let w = 2 + 3 * (series.len() - 1 - k) as u32;
        let style = c.mix(if k == 0 && series.len() > 1 { 0.5 } else { 1.0 }).stroke_width(w);
        chart
            .draw_series(LineSeries::new(pts.iter().map(|(f, t)| (f.max(1e-4), *t)), style))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    finish_chart(chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}

/// Draw genuine vs impostor distance histograms and the threshold to a PNG.
pub fn plot_distances(
    path: &Path,
    title: &str,
    genuine: &[f32],
    impostor: &[f32],
    threshold: f32,
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    register_font();
    let all: Vec<f32> = genuine.iter().chain(impostor).copied().filter(|x| x.is_finite()).collect();
    let max = all.iter().copied().fold(threshold, f32::max) as f64 * 1.05 + 1e-6;
    let bins = 50usize;
    let w = max / bins as f64;
    let hist = |v: &[f32]| {
        let mut h = vec![0f64; bins];
        for d in v {
            let b = ((*d as f64 / w) as usize).min(bins - 1);
            h[b] += 1.0 / v.len().max(1) as f64;
        }
        h
    };
    let (hg, hi) = (hist(genuine), hist(impostor));
    let ymax = hg.iter().chain(&hi).copied().fold(0.0, f64::max) * 1.1 + 1e-9;
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..max, 0f64..ymax)?;
    chart.configure_mesh().x_desc("distance").y_desc("fraction of pairs").label_style(("sans-serif", 14)).draw()?;
    for (h, c, name) in [(&hg, BLUE, "genuine"), (&hi, RED, "impostor")] {
        chart
            .draw_series(
                h.iter().enumerate().map(|(k, v)| {
                    Rectangle::new([(k as f64 * w, 0.0), ((k + 1) as f64 * w, *v)], c.mix(0.45).filled())
                }),
            )?
            .label(format!("{name} ({})", if name == "genuine" { genuine.len() } else { impostor.len() }))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.mix(0.45).filled()));
    }
    chart
        .draw_series(LineSeries::new(vec![(threshold as f64, 0.0), (threshold as f64, ymax)], BLACK.stroke_width(2)))?
        .label(format!("threshold {threshold:.4}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    finish_chart(chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

/// The legend box both plots share.
fn finish_chart<'a, DB: plotters::prelude::DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    mut chart: plotters::prelude::ChartContext<'a, DB, CT>,
    position: plotters::prelude::SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
