//! The face pipeline: detect (MTCNN) → choose a face → align to the encoder's chip → encode.
//!
//! - [`mtcnn`]: the detector (three small networks in `tch` plus facenet-pytorch's glue).
//! - [`align`]: similarity transform from a landmark template to the detected landmarks; chip sampling.
//!
//! The template maps MTCNN's five points (left eye, right eye, nose, mouth corners) into the dlib encoder's
//! 150×150 chip; it lives in the encoder's card (`input.preprocess.face_chip`) with how it was fitted.

pub mod align;
pub mod mtcnn;

pub use align::{extract_chip, Similarity};
pub use mtcnn::{Face, Mtcnn, MtcnnConfig};

/// Where MTCNN's five landmarks fall in an aligned chip, in chip pixels.
pub type Template = [[f32; 2]; 5];

/// The chip of `face` in `img` for a `template` of a `size`-pixel chip.
pub fn chip_for(img: &image::RgbImage, face: &Face, template: &Template, size: u32) -> image::RgbImage {
    let src: Vec<[f64; 2]> = template.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
    let dst: Vec<[f64; 2]> = face.landmarks.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
    extract_chip(img, Similarity::fit(&src, &dst), size)
}
