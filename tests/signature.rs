//! The shipped signature model (`models/signature-cedar-v1`) on generated signature-like strokes: the same
//! strokes scanned at twice the resolution, or on greyer paper (235 instead of 255), must move the embedding
//! by less than a tenth of the card's decision threshold (issue 5, acceptance 2). Runs anywhere.

mod common;

use image::{DynamicImage, GrayImage, Luma};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use siamese::distance::Metric;
use siamese::model::LoadedModel;
use siamese::pipeline;

/// One pen stroke: start x, length, (amplitude, period, phase) of the sines in y, and a looping term in x.
struct Stroke {
    x0: f32,
    len: f32,
    waves: Vec<(f32, f32, f32)>,
    loop_amp: f32,
    loop_period: f32,
}

/// A pen path: a few smooth random curves (sums of sines) with loops, drawn with a round pen.
struct Strokes {
    strokes: Vec<Stroke>,
}

impl Strokes {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let strokes = (0..rng.gen_range(2..4))
            .map(|_| {
                let x0 = rng.gen_range(20.0..140.0);
                let len = rng.gen_range(100.0..220.0);
                let waves = (0..3)
                    .map(|_| (rng.gen_range(8.0..30.0), rng.gen_range(12.0..60.0), rng.gen_range(0.0..6.3)))
                    .collect();
                Stroke { x0, len, waves, loop_amp: rng.gen_range(0.0..14.0), loop_period: rng.gen_range(8.0..20.0) }
            })
            .collect();
        Strokes { strokes }
    }

    /// Scanned at `scale` × (base canvas 420 × 160 px, pen radius 1.6 px), ink 40 on paper `paper`. Like a
    /// scanner, each pixel integrates the ink over its area (coverage from 4 × 4 sub-pixels), so the same pen
    /// path scanned at twice the resolution has softer, not just thicker, edges.
    fn render(&self, scale: f32, paper: u8) -> GrayImage {
        const SUB: u32 = 4;
        let fine = scale * SUB as f32;
        let (w, h) = ((420.0 * scale) as u32, (160.0 * scale) as u32);
        let (fw, fh) = (w * SUB, h * SUB);
        let mut mask = vec![false; (fw * fh) as usize];
        let r = 1.6 * fine;
        for Stroke { x0, len, waves, loop_amp, loop_period } in &self.strokes {
            let steps = (*len * 2.0 * fine) as usize;
            for i in 0..steps {
                let t = i as f32 / (2.0 * fine);
                let x = x0 + t + loop_amp * (t / loop_period).sin();
                let y = 80.0 + waves.iter().map(|(a, p, ph)| a * (t / p + ph).sin()).sum::<f32>() / 1.5;
                let (cx, cy) = (x * fine, y * fine);
                let (lo_x, hi_x) = ((cx - r).floor().max(0.0) as u32, ((cx + r).ceil() as u32).min(fw - 1));
                let (lo_y, hi_y) = ((cy - r).floor().max(0.0) as u32, ((cy + r).ceil() as u32).min(fh - 1));
                for py in lo_y..=hi_y {
                    for px in lo_x..=hi_x {
                        let (dx, dy) = (px as f32 + 0.5 - cx, py as f32 + 0.5 - cy);
                        if dx * dx + dy * dy <= r * r {
                            mask[(py * fw + px) as usize] = true;
                        }
                    }
                }
            }
        }
        GrayImage::from_fn(w, h, |x, y| {
            let mut covered = 0;
            for sy in 0..SUB {
                for sx in 0..SUB {
                    covered += mask[((y * SUB + sy) * fw + x * SUB + sx) as usize] as u32;
                }
            }
            let cov = covered as f32 / (SUB * SUB) as f32;
            Luma([(paper as f32 - cov * (paper as f32 - 40.0)).round() as u8])
        })
    }
}

fn embed(model: &LoadedModel, img: &GrayImage) -> Vec<f32> {
    let p = pipeline::prepare_image(DynamicImage::ImageLuma8(img.clone()), &model.card.input, Default::default(), None)
        .unwrap()
        .remove(0);
    model.embed_flat(&p.input, 1).unwrap().remove(0)
}

#[test]
fn signature_embedding_ignores_scan_resolution_and_paper_grey() {
    let dir = common::models_dir().join("signature-cedar-v1");
    let model = LoadedModel::load(&dir, tch::Device::Cpu).expect("the shipped signature model loads");
    assert_eq!(model.card.modality, siamese::model::Modality::Signature);
    let metric = model.card.default_metric;
    assert_eq!(metric, Metric::Euclidean);
    let threshold = model.card.thresholds.get(metric).value;
    let (mut worst_res, mut worst_paper, mut nearest_other) = (0f32, 0f32, f32::INFINITY);
    let base: Vec<Vec<f32>> = (0..8).map(|s| embed(&model, &Strokes::new(s).render(1.0, 255))).collect();
    for (s, e) in base.iter().enumerate() {
        let strokes = Strokes::new(s as u64);
        worst_res = worst_res.max(metric.distance(e, &embed(&model, &strokes.render(2.0, 255))));
        worst_paper = worst_paper.max(metric.distance(e, &embed(&model, &strokes.render(1.0, 235))));
        for other in &base[s + 1..] {
            nearest_other = nearest_other.min(metric.distance(e, other));
        }
    }
    eprintln!(
        "signature-cedar-v1 on 8 generated signatures: worst move at 2x resolution {worst_res:.4}, on paper 235 \
         {worst_paper:.4}; threshold {threshold:.4} (bar {:.4}); nearest other signature {nearest_other:.4}",
        0.1 * threshold
    );
    assert!(worst_res < 0.1 * threshold, "2x resolution moved an embedding by {worst_res}");
    assert!(worst_paper < 0.1 * threshold, "paper 235 moved an embedding by {worst_paper}");
    // And the same signature rescanned stays nearer to itself than to any other generated signature.
    assert!(worst_res.max(worst_paper) < nearest_other, "a rescan moved further than another signature is");
}
