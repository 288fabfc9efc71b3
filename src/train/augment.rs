//! Augmentation for invariance: random rotation, shift, scale (one affine warp, bilinear, edges
//! replicated), optional horizontal flip, brightness and contrast. Works on `C × H × W` planes in [0, 1].

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How strong each random change may be.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Augment {
    /// Largest rotation, degrees either way.
    pub rotate_deg: f32,
    /// Largest shift, as a fraction of the width / height.
    pub shift: f32,
    /// Largest relative scale change (0.1 = 0.9× .. 1.1×).
    pub scale: f32,
    /// Largest brightness offset (in [0, 1] pixel units).
    pub brightness: f32,
    /// Largest relative contrast change.
    pub contrast: f32,
    /// Mirror left-right half the time (faces: yes; signatures: no).
    pub hflip: bool,
}

impl Augment {
    pub const NONE: Augment =
        Augment { rotate_deg: 0.0, shift: 0.0, scale: 0.0, brightness: 0.0, contrast: 0.0, hflip: false };

    /// A randomly changed copy of `src` (`c` planes of `w × h`).
    pub fn apply(&self, src: &[f32], c: usize, h: usize, w: usize, rng: &mut impl Rng) -> Vec<f32> {
        self.draw(rng).warp(src, c, h, w)
    }

    /// Draw one random change (the random numbers are drawn here, in a fixed order, so that warping many
    /// images on several threads gives exactly what warping them one by one would).
    pub fn draw(&self, rng: &mut impl Rng) -> Warp {
        let sym = |r: &mut dyn rand::RngCore, m: f32| if m > 0.0 { r.gen_range(-m..=m) } else { 0.0 };
        let theta = sym(rng, self.rotate_deg).to_radians();
        let scale = 1.0 + sym(rng, self.scale);
        let (tx, ty) = (sym(rng, self.shift), sym(rng, self.shift));
        let flip = self.hflip && rng.gen_bool(0.5);
        let bright = sym(rng, self.brightness);
        let contrast = 1.0 + sym(rng, self.contrast);
        Warp { theta, scale, tx, ty, flip, bright, contrast }
    }
}

/// One drawn change: rotation (radians), scale, shift (fractions of the size), flip, brightness, contrast.
#[derive(Debug, Clone, Copy)]
pub struct Warp {
    theta: f32,
    scale: f32,
    tx: f32,
    ty: f32,
    flip: bool,
    bright: f32,
    contrast: f32,
}

impl Warp {
    /// Apply to `src` (`c` planes of `w × h`): one affine warp, bilinear, edges replicated.
    pub fn warp(&self, src: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
        let (tx, ty) = (self.tx * w as f32, self.ty * h as f32);
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let (cos, sin) = (self.theta.cos() / self.scale, self.theta.sin() / self.scale);
        let mut out = vec![0f32; src.len()];
        for ch in 0..c {
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let mean = plane.iter().sum::<f32>() / plane.len() as f32;
            for y in 0..h {
                for x in 0..w {
                    // Inverse map: output pixel → source position.
                    let xo = if self.flip { (w - 1 - x) as f32 } else { x as f32 } - cx - tx;
                    let yo = y as f32 - cy - ty;
                    let xs = cos * xo + sin * yo + cx;
                    let ys = -sin * xo + cos * yo + cy;
                    let v = bilinear(plane, w, h, xs, ys);
                    out[ch * h * w + y * w + x] = ((v - mean) * self.contrast + mean + self.bright).clamp(0.0, 1.0);
                }
            }
        }
        out
    }
}

/// Warp each `(source, change)` on all cores; the result is in order and independent of the thread count.
pub fn warp_all(jobs: &[(&[f32], Warp)], c: usize, h: usize, w: usize) -> Vec<Vec<f32>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len().max(1));
    if threads <= 1 {
        return jobs.iter().map(|(s, wp)| wp.warp(s, c, h, w)).collect();
    }
    let per = jobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(per)
            .map(|chunk| scope.spawn(move || chunk.iter().map(|(s, wp)| wp.warp(s, c, h, w)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("warp thread")).collect()
    })
}

fn bilinear(p: &[f32], w: usize, h: usize, x: f32, y: f32) -> f32 {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let a = p[y0 * w + x0] * (1.0 - fx) + p[y0 * w + x1] * fx;
    let b = p[y1 * w + x0] * (1.0 - fx) + p[y1 * w + x1] * fx;
    a * (1.0 - fy) + b * fy
}
