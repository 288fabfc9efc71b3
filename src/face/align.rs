//! Alignment: a least-squares similarity transform from a landmark template (in chip pixels) to the
//! detected landmarks, then the chip sampled bilinearly as dlib does (a sample whose 2×2 neighbourhood
//! leaves the image is 0; values truncated, not rounded). Faces much larger than the chip are first
//! halved (2×2 box average) until the chip samples at most 2 image pixels per chip pixel.

use image::RgbImage;

/// `x' = a·x − b·y + tx`, `y' = b·x + a·y + ty` (rotation, uniform scale, translation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [self.a * p[0] - self.b * p[1] + self.tx, self.b * p[0] + self.a * p[1] + self.ty]
    }

    pub fn scale(&self) -> f64 {
        (self.a * self.a + self.b * self.b).sqrt()
    }

    pub fn inverse(&self) -> Similarity {
        let d = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / d, -self.b / d);
        Similarity { a, b, tx: -(a * self.tx - b * self.ty), ty: -(b * self.tx + a * self.ty) }
    }

    /// Least-squares fit mapping `src[i]` onto `dst[i]` (Umeyama's method, restricted to no reflection).
    pub fn fit(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Similarity {
        let n = src.len().min(dst.len()) as f64;
        let mean = |p: &[[f64; 2]]| {
            let s = p.iter().fold([0.0, 0.0], |acc, q| [acc[0] + q[0], acc[1] + q[1]]);
            [s[0] / n, s[1] / n]
        };
        let (ms, md) = (mean(src), mean(dst));
        let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy, dx, dy) = (s[0] - ms[0], s[1] - ms[1], d[0] - md[0], d[1] - md[1]);
            num_a += sx * dx + sy * dy;
            num_b += sx * dy - sy * dx;
            den += sx * sx + sy * sy;
        }
        let (a, b) = if den > 0.0 { (num_a / den, num_b / den) } else { (1.0, 0.0) };
        Similarity { a, b, tx: md[0] - (a * ms[0] - b * ms[1]), ty: md[1] - (b * ms[0] + a * ms[1]) }
    }
}

fn halve(img: &RgbImage) -> RgbImage {
    let (w, h) = ((img.width() / 2).max(1), (img.height() / 2).max(1));
    RgbImage::from_fn(w, h, |x, y| {
        let mut s = [0u32; 3];
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let p = img.get_pixel((2 * x + dx).min(img.width() - 1), (2 * y + dy).min(img.height() - 1));
            for (sc, pc) in s.iter_mut().zip(p.0) {
                *sc += pc as u32;
            }
        }
        image::Rgb([(s[0] / 4) as u8, (s[1] / 4) as u8, (s[2] / 4) as u8])
    })
}

/// Sample a `size × size` chip: chip pixel (x, y) comes from image point `chip_to_image(x, y)`.
pub fn extract_chip(img: &RgbImage, chip_to_image: Similarity, size: u32) -> RgbImage {
    let t = chip_to_image;
    if t.scale() > 2.0 && img.width() > 1 && img.height() > 1 {
        let half = halve(img);
        return extract_chip(&half, Similarity { a: t.a / 2.0, b: t.b / 2.0, tx: t.tx / 2.0, ty: t.ty / 2.0 }, size);
    }
    let src = img;
    let (w, h) = (src.width() as i64, src.height() as i64);
    RgbImage::from_fn(size, size, |x, y| {
        let p = t.apply([x as f64, y as f64]);
        let (x0, y0) = (p[0].floor() as i64, p[1].floor() as i64);
        if x0 < 0 || y0 < 0 || x0 + 1 >= w || y0 + 1 >= h {
            return image::Rgb([0, 0, 0]);
        }
        let (fx, fy) = (p[0] - x0 as f64, p[1] - y0 as f64);
        let g = |xx: i64, yy: i64| src.get_pixel(xx as u32, yy as u32).0;
        let (tl, tr, bl, br) = (g(x0, y0), g(x0 + 1, y0), g(x0, y0 + 1), g(x0 + 1, y0 + 1));
        let mut out = [0u8; 3];
        for c in 0..3 {
            let top = tl[c] as f64 * (1.0 - fx) + tr[c] as f64 * fx;
            let bot = bl[c] as f64 * (1.0 - fx) + br[c] as f64 * fx;
            out[c] = (top * (1.0 - fy) + bot * fy) as u8;
        }
        image::Rgb(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_known_similarity() {
        let t = Similarity { a: 1.2 * 0.3f64.cos(), b: 1.2 * 0.3f64.sin(), tx: 14.0, ty: -3.0 };
        let src = [[0.0, 0.0], [10.0, 2.0], [3.0, 9.0], [7.0, 7.0], [1.0, 5.0]];
        let dst: Vec<[f64; 2]> = src.iter().map(|p| t.apply(*p)).collect();
        let f = Similarity::fit(&src, &dst);
        assert!((f.a - t.a).abs() < 1e-9 && (f.b - t.b).abs() < 1e-9 && (f.tx - t.tx).abs() < 1e-9);
        let back = f.inverse().apply(f.apply([3.0, 4.0]));
        assert!((back[0] - 3.0).abs() < 1e-9 && (back[1] - 4.0).abs() < 1e-9);
    }

    #[test]
    fn identity_chip_copies_pixels_and_blanks_outside() {
        let img = RgbImage::from_fn(20, 20, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let c = extract_chip(&img, Similarity { a: 1.0, b: 0.0, tx: 5.0, ty: 5.0 }, 20);
        assert_eq!(c.get_pixel(0, 0).0, [5, 5, 7]);
        assert_eq!(c.get_pixel(19, 19).0, [0, 0, 0]);
    }
}
