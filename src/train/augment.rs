//! Augmentation for invariance: random rotation, shift, scale, and optionally shear and width (one affine
//! warp, bilinear, edges replicated), optional horizontal flip, brightness and contrast, and optionally
//! stroke width (a blend toward a 3×3 dilation or erosion) and edge softness (a blend toward a 3×3 blur).
//! Works on `C × H × W` planes in [0, 1].

use crate::model::warp::inverse_map;
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
    /// Largest horizontal shear (x += shear · y, y from the centre), either way (a signature's slant).
    #[serde(default)]
    pub shear: f32,
    /// Largest relative change of the width alone (0.1 = 0.9× .. 1.1× as wide).
    #[serde(default)]
    pub aspect: f32,
    /// Largest brightness offset (in [0, 1] pixel units).
    pub brightness: f32,
    /// Largest relative contrast change.
    pub contrast: f32,
    /// Mirror left-right half the time (faces: yes; signatures: no).
    pub hflip: bool,
    /// Largest stroke-width change: a blend of up to this weight toward the 3×3 maximum (thicker, when
    /// drawn positive) or minimum (thinner, negative) of each pixel's neighbourhood.
    #[serde(default)]
    pub stroke: f32,
    /// Largest edge softening: a blend of up to this weight toward a 3×3 binomial blur.
    #[serde(default)]
    pub blur: f32,
}

impl Augment {
    pub const NONE: Augment = Augment {
        rotate_deg: 0.0,
        shift: 0.0,
        scale: 0.0,
        shear: 0.0,
        aspect: 0.0,
        brightness: 0.0,
        contrast: 0.0,
        hflip: false,
        stroke: 0.0,
        blur: 0.0,
    };

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
        // Drawn last, and only when asked for, so that runs without them draw what they always did.
        let shear = sym(rng, self.shear);
        let aspect = 1.0 + sym(rng, self.aspect);
        let stroke = sym(rng, self.stroke);
        let blur = if self.blur > 0.0 { rng.gen_range(0.0..=self.blur) } else { 0.0 };
        Warp { theta, scale, tx, ty, flip, bright, contrast, shear, aspect, stroke, blur }
    }
}

/// One drawn change: rotation (radians), scale, shift (fractions of the size), flip, brightness, contrast,
/// shear, width factor, stroke-width blend and blur blend.
#[derive(Debug, Clone, Copy)]
pub struct Warp {
    theta: f32,
    scale: f32,
    shear: f32,
    aspect: f32,
    tx: f32,
    ty: f32,
    flip: bool,
    bright: f32,
    contrast: f32,
    stroke: f32,
    blur: f32,
}

impl Warp {
    /// Apply to `src` (`c` planes of `w × h`): one affine warp, bilinear, edges replicated.
    pub fn warp(&self, src: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
        let (tx, ty) = (self.tx * w as f32, self.ty * h as f32);
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        // Forward map about the centre: scale · rotation · shear · width; sampled through its inverse
        // (written out for rotation and scale alone, so that those warps stay bit for bit what they were).
        let (i00, i01, i10, i11) = if self.shear == 0.0 && self.aspect == 1.0 {
            let (cos, sin) = (self.theta.cos() / self.scale, self.theta.sin() / self.scale);
            (cos, sin, -sin, cos)
        } else {
            inverse_map(self.theta, self.scale, self.shear, self.aspect)
        };
        let mut out = vec![0f32; src.len()];
        for ch in 0..c {
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let mean = plane.iter().sum::<f32>() / plane.len() as f32;
            for y in 0..h {
                for x in 0..w {
                    // Inverse map: output pixel → source position.
                    let xo = if self.flip { (w - 1 - x) as f32 } else { x as f32 } - cx - tx;
                    let yo = y as f32 - cy - ty;
                    let xs = i00 * xo + i01 * yo + cx;
                    let ys = i10 * xo + i11 * yo + cy;
                    let v = bilinear(plane, w, h, xs, ys);
                    out[ch * h * w + y * w + x] = ((v - mean) * self.contrast + mean + self.bright).clamp(0.0, 1.0);
                }
            }
            let plane = &mut out[ch * h * w..(ch + 1) * h * w];
            if self.stroke != 0.0 {
                // Thicker: the neighbourhood's maximum; thinner: its minimum.
                let pick: fn(f32, f32) -> f32 = if self.stroke > 0.0 { f32::max } else { f32::min };
                let m = neighbourhood(plane, w, h, |n| n[1..].iter().copied().fold(n[0], pick));
                let t = self.stroke.abs();
                plane.iter_mut().zip(&m).for_each(|(p, m)| *p += t * (m - *p));
            }
            if self.blur > 0.0 {
                const K: [f32; 9] = [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0];
                let b = neighbourhood(plane, w, h, |n| n.iter().zip(K).map(|(v, k)| v * k).sum::<f32>() / 16.0);
                plane.iter_mut().zip(&b).for_each(|(p, b)| *p += self.blur * (b - *p));
            }
        }
        out
    }
}

/// `f` of each pixel's 3×3 neighbourhood (row by row, edges replicated).
fn neighbourhood(p: &[f32], w: usize, h: usize, f: impl Fn(&[f32; 9]) -> f32) -> Vec<f32> {
    let mut out = vec![0f32; p.len()];
    let mut n = [0f32; 9];
    for y in 0..h {
        for x in 0..w {
            for (i, dy) in [-1isize, 0, 1].iter().enumerate() {
                let yy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
                for (j, dx) in [-1isize, 0, 1].iter().enumerate() {
                    let xx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
                    n[i * 3 + j] = p[yy * w + xx];
                }
            }
            out[y * w + x] = f(&n);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The change that changes nothing.
    const NO_CHANGE: Warp = Warp {
        theta: 0.0,
        scale: 1.0,
        tx: 0.0,
        ty: 0.0,
        flip: false,
        bright: 0.0,
        contrast: 1.0,
        shear: 0.0,
        aspect: 1.0,
        stroke: 0.0,
        blur: 0.0,
    };

    /// Where the single bright pixel of a warped image lands.
    fn peak(img: &[f32], w: usize) -> (usize, usize) {
        let k = img.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        (k % w, k / w)
    }

    #[test]
    fn shear_and_width_move_a_point_as_the_forward_map_says() {
        let (w, h) = (41, 21);
        let mut src = vec![0f32; w * h];
        // 10 px right of and 5 px below the centre (20, 10).
        src[15 * w + 30] = 1.0;
        let none = NO_CHANGE;
        assert_eq!(none.warp(&src, 1, h, w), src, "no change is the identity");
        // x' = 1.5·x + 0.4·y about the centre: (10, 5) → (17, 5).
        let sheared = Warp { shear: 0.4, aspect: 1.5, ..none };
        assert_eq!(peak(&sheared.warp(&src, 1, h, w), w), (37, 15));
        // Rotation by 90° after the shear: (x, y) → (−y, x) = (−5, 17) → pixel (15, 27) is off the 21-px
        // image, so use a taller one.
        let (w2, h2) = (41, 41);
        let mut src2 = vec![0f32; w2 * h2];
        src2[25 * w2 + 30] = 1.0;
        let turned = Warp { theta: std::f32::consts::FRAC_PI_2, ..sheared };
        assert_eq!(peak(&turned.warp(&src2, 1, h2, w2), w2), (15, 37));
    }

    #[test]
    fn stroke_and_blur_thicken_thin_and_soften_a_line() {
        let (w, h) = (9, 9);
        let mut src = vec![0f32; w * h];
        (0..w).for_each(|x| src[4 * w + x] = 1.0);
        let none = NO_CHANGE;
        let ink = |img: &[f32]| img.iter().sum::<f32>();
        let thick = Warp { stroke: 0.5, ..none }.warp(&src, 1, h, w);
        assert!((thick[3 * w + 4] - 0.5).abs() < 1e-6 && thick[4 * w + 4] == 1.0, "half-way to a 3-px line");
        assert!((ink(&thick) - 2.0 * ink(&src)).abs() < 1e-4);
        let thin = Warp { stroke: -0.5, ..none }.warp(&src, 1, h, w);
        assert!((thin[4 * w + 4] - 0.5).abs() < 1e-6, "a 1-px line half erased");
        let soft = Warp { blur: 1.0, ..none }.warp(&src, 1, h, w);
        assert!((soft[4 * w + 4] - 0.5).abs() < 1e-6 && (soft[3 * w + 4] - 0.25).abs() < 1e-6);
        assert!((ink(&soft) - ink(&src)).abs() < 1e-4, "blur keeps the ink");
    }

    #[test]
    fn a_test_time_warp_on_the_tensor_matches_the_training_warp() {
        let (w, h) = (33usize, 21usize);
        let src: Vec<f32> =
            (0..w * h).map(|k| ((k % w) as f32 * 0.37 + (k / w) as f32 * 0.21).sin() * 0.5 + 0.5).collect();
        let t = crate::model::TtaWarp {
            rotate_deg: 7.0,
            scale: 1.1,
            shear: 0.2,
            aspect: 0.9,
            shift_x: 0.05,
            shift_y: -0.03,
        };
        let theirs =
            Warp { theta: 7f32.to_radians(), scale: 1.1, shear: 0.2, aspect: 0.9, tx: 0.05, ty: -0.03, ..NO_CHANGE }
                .warp(&src, 1, h, w);
        let x = tch::Tensor::from_slice(&src).view([1, 1, h as i64, w as i64]);
        let ours = Vec::<f32>::try_from(t.apply(&x).view([-1])).unwrap();
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "largest difference {worst}");
        let same =
            crate::model::TtaWarp { rotate_deg: 0.0, scale: 1.0, shear: 0.0, aspect: 1.0, shift_x: 0.0, shift_y: 0.0 };
        let back = Vec::<f32>::try_from(same.apply(&x).view([-1])).unwrap();
        assert!(back.iter().zip(&src).all(|(a, b)| (a - b).abs() < 1e-5), "no change is the identity");
    }
}
