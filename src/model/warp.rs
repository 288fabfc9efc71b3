//! The geometry of a warp about the canvas centre — scale · rotation · shear · width, then a shift — in one
//! place: training's random augmentation ([`crate::train::augment`]) and the encoder's fixed test-time warps
//! ([`TtaWarp`]) both use [`inverse_map`], so a warp means the same thing in both.

use super::TtaWarp;
use tch::Tensor;

/// The inverse of the forward map scale · rotation(`theta`, radians) · shear · width, as `(i00, i01, i10, i11)`:
/// output offset from the centre → source offset (training's warps and the encoder's test-time warps).
pub fn inverse_map(theta: f32, scale: f32, shear: f32, aspect: f32) -> (f32, f32, f32, f32) {
    let (c, sn) = (theta.cos() * scale, theta.sin() * scale);
    // [[c, −sn], [sn, c]] · [[aspect, shear], [0, 1]]
    let (m00, m01, m10, m11) = (c * aspect, c * shear - sn, sn * aspect, sn * shear + c);
    let det = m00 * m11 - m01 * m10;
    (m11 / det, -m01 / det, -m10 / det, m00 / det)
}

impl TtaWarp {
    /// The `[2, 3]` matrix that `affine_grid` takes (normalised coordinates, corners aligned) for an input
    /// of `w × h`: output position → source position, the inverse of scale · rotation · shear · width.
    fn theta(&self, w: i64, h: i64) -> [f32; 6] {
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let (i00, i01, i10, i11) = inverse_map(self.rotate_deg.to_radians(), self.scale, self.shear, self.aspect);
        let (tx, ty) = (self.shift_x * w as f32, self.shift_y * h as f32);
        // Pixel x = cx · (u + 1): source = I · (out − c − t) + c, written in u, v ∈ [−1, 1].
        [i00, i01 * cy / cx, -(i00 * tx + i01 * ty) / cx, i10 * cx / cy, i11, -(i10 * tx + i11 * ty) / cy]
    }

    /// `x` (`[N, C, H, W]`) warped.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        let t = Tensor::from_slice(&self.theta(s[3], s[2])).view([1, 2, 3]).to_device(x.device()).to_kind(x.kind());
        let grid = Tensor::affine_grid_generator(&t.expand([s[0], 2, 3], false), s.as_slice(), true);
        // Bilinear (0), border padding (1), corners aligned.
        x.grid_sampler(&grid, 0, 1, true)
    }
}
