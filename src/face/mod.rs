//! Faces: detection (MTCNN), choosing a face, and alignment to the encoder's chip. The steps are put together
//! by [`crate::pipeline`].
//!
//! - [`mtcnn`]: the detector (three small networks in `tch` plus facenet-pytorch's glue).
//! - [`align`]: similarity transform from a landmark template to the detected landmarks; chip sampling.
//!
//! The template maps MTCNN's five points (left eye, right eye, nose, mouth corners) into the dlib encoder's
//! 150×150 chip; it lives in the encoder's card (`input.preprocess.face_chip`) with how it was fitted.

pub mod align;
pub mod mtcnn;

pub use align::{extract_chip, Similarity};
pub use mtcnn::{DetectorError, Face, Mtcnn, MtcnnConfig};

/// The detector's model directory name, beside the encoders in the models folder.
pub const DETECTOR_ID: &str = "mtcnn-v1";

/// Where MTCNN's five landmarks fall in an aligned chip, in chip pixels.
pub type Template = [[f32; 2]; 5];

/// The chip of `face` in `img` for a `template` of a `size`-pixel chip.
///
/// Template coordinates follow dlib: chip pixel `(x, y)` is sampled at template-frame point
/// `(x + ½, y + ½)` (dlib centres the chip rectangle on frame point `size/2`, which is pixel `(size−1)/2`).
/// Measured against dlib's own chips (same landmarks, same template): mean absolute pixel difference 3.1
/// grey levels without the half-pixel offset, 0.3–0.5 with it.
pub fn chip_for(img: &image::RgbImage, face: &Face, template: &Template, size: u32) -> image::RgbImage {
    let src: Vec<[f64; 2]> = template.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
    let dst: Vec<[f64; 2]> = face.landmarks.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
    extract_chip(img, half_pixel(Similarity::fit(&src, &dst)), size)
}

/// `t` composed with a shift of half a chip pixel in both axes.
pub fn half_pixel(t: Similarity) -> Similarity {
    Similarity { tx: t.tx + 0.5 * (t.a - t.b), ty: t.ty + 0.5 * (t.b + t.a), ..t }
}

/// dlib's 5-point template (outer/inner corner of the image-right eye, outer/inner corner of the image-left
/// eye, nose base), normalised; in chip pixels `p' = (0.25 + p) / 1.5 · size`.
pub const DLIB_TEMPLATE: [[f64; 2]; 5] = [
    [0.8595674596, 0.2134981538],
    [0.6460604764, 0.2289674388],
    [0.1205750621, 0.2137274527],
    [0.3340850614, 0.2290642403],
    [0.4901123136, 0.6277975316],
];

/// One photo's dlib landmarks (image pixels, f64) and MTCNN landmarks.
pub type LandmarkPair = ([[f64; 2]; 5], [[f32; 2]; 5]);

/// Fit the MTCNN→chip template: for each photo, the similarity that maps dlib's template onto dlib's own
/// landmarks places the photo's MTCNN landmarks in chip coordinates; the template is the per-coordinate
/// median over all photos. Returns the template and each point's median distance from it (chip pixels).
pub fn fit_template(pairs: &[LandmarkPair], size: u32) -> (Template, [f32; 5]) {
    let chip: Vec<[f64; 2]> =
        DLIB_TEMPLATE.iter().map(|p| [(0.25 + p[0]) / 1.5 * size as f64, (0.25 + p[1]) / 1.5 * size as f64]).collect();
    let mut per: Vec<Vec<[f64; 2]>> = vec![Vec::new(); 5];
    for (dlib_pts, mtcnn_pts) in pairs {
        let to_image = Similarity::fit(&chip, dlib_pts);
        let inv = to_image.inverse();
        for (k, m) in mtcnn_pts.iter().enumerate() {
            per[k].push(inv.apply([m[0] as f64, m[1] as f64]));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            0.0
        } else {
            v[v.len() / 2]
        }
    };
    let mut t = [[0f32; 2]; 5];
    let mut spread = [0f32; 5];
    for k in 0..5 {
        let (mx, my) = (median(per[k].iter().map(|p| p[0]).collect()), median(per[k].iter().map(|p| p[1]).collect()));
        t[k] = [mx as f32, my as f32];
        spread[k] = median(per[k].iter().map(|p| ((p[0] - mx).powi(2) + (p[1] - my).powi(2)).sqrt()).collect()) as f32;
    }
    (t, spread)
}

/// Which face of a photo to use. (`clap::ValueEnum` so that `siamese eval --select` takes it as it is.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FaceSelect {
    /// The largest face.
    Largest,
    /// The service's default: the face nearest the image centre among those at least a quarter of the largest
    /// one's area — the person a photo is taken of, not a larger face at its edge or a small one in the background
    /// (chosen on LFW View 1 DevTrain: 98.64 % against 97.55 % for the largest face; docs/face-model.md).
    #[default]
    Central,
}

impl FaceSelect {
    /// Pick from faces sorted largest first.
    pub fn pick<'a>(&self, faces: &'a [Face], width: u32, height: u32) -> Option<&'a Face> {
        let first = faces.first()?;
        match self {
            FaceSelect::Largest => Some(first),
            FaceSelect::Central => {
                let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
                let d = |f: &Face| {
                    let (x, y) = ((f.bbox[0] + f.bbox[2]) / 2.0, (f.bbox[1] + f.bbox[3]) / 2.0);
                    (x - cx).powi(2) + (y - cy).powi(2)
                };
                faces.iter().filter(|f| f.area() >= 0.25 * first.area()).min_by(|a, b| d(a).total_cmp(&d(b)))
            }
        }
    }
}
