//! Image decoding with limits, and conversion into the tensor layout a model card asks for.
//!
//! Decoding refuses, before allocating, images whose declared size exceeds [`DecodeLimits`]; formats are
//! recognised by content (JPEG, PNG, PGM/PNM, BMP, GIF, TIFF, WebP), never by file name.

use crate::model::InputSpec;
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};
use std::io::Cursor;

/// Limits applied to every decode.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest width or height accepted, in pixels.
    pub max_dimension: u32,
    /// Most memory a single decode may allocate, in bytes.
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_dimension: 8192, max_alloc_bytes: 256 << 20 }
    }
}

/// Why an image could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the data is not an image in a supported format (JPEG, PNG, PGM/PNM, BMP, GIF, TIFF, WebP)")]
    UnknownFormat,
    #[error("the image could not be decoded: {0}")]
    Decode(String),
    #[error("the image is {width}x{height}; the limit is {limit} pixels on each side")]
    TooLarge { width: u32, height: u32, limit: u32 },
    #[error("decoding the image would need more than {0} bytes of memory")]
    TooMuchMemory(u64),
    #[error("the image is empty")]
    Empty,
}

/// Decode bytes into an image, refusing anything over the limits before it is allocated.
pub fn decode(bytes: &[u8], limits: DecodeLimits) -> Result<DynamicImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| ImageError::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(ImageError::UnknownFormat);
    }
    // Check the declared dimensions first: a small file may claim a huge canvas.
    let (w, h) = reader.into_dimensions().map_err(map_decode_err(limits))?;
    if w > limits.max_dimension || h > limits.max_dimension {
        return Err(ImageError::TooLarge { width: w, height: h, limit: limits.max_dimension });
    }
    if w == 0 || h == 0 {
        return Err(ImageError::Empty);
    }
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| ImageError::Decode(e.to_string()))?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_dimension);
    l.max_image_height = Some(limits.max_dimension);
    l.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(l);
    reader.decode().map_err(map_decode_err(limits))
}

fn map_decode_err(limits: DecodeLimits) -> impl Fn(image::ImageError) -> ImageError {
    move |e| match e {
        image::ImageError::Limits(_) => ImageError::TooMuchMemory(limits.max_alloc_bytes),
        image::ImageError::Unsupported(u) => ImageError::Decode(u.to_string()),
        other => ImageError::Decode(other.to_string()),
    }
}

/// Resize an image to `spec`'s size and channels; returns `C × H × W` values in [0, 1], channel-major.
pub fn to_planes(img: &DynamicImage, spec: &InputSpec) -> Vec<f32> {
    let (w, h) = (spec.width, spec.height);
    let mut out = Vec::with_capacity(spec.len());
    if spec.channels == 1 {
        let g = img.to_luma8();
        let g = if g.dimensions() == (w, h) { g } else { image::imageops::resize(&g, w, h, FilterType::Triangle) };
        out.extend(g.pixels().map(|p| p.0[0] as f32 / 255.0));
    } else {
        let rgb = img.to_rgb8();
        let rgb =
            if rgb.dimensions() == (w, h) { rgb } else { image::imageops::resize(&rgb, w, h, FilterType::Triangle) };
        for c in 0..3 {
            out.extend(rgb.pixels().map(|p| p.0[c] as f32 / 255.0));
        }
    }
    out
}

/// Apply the card's per-channel mean and standard deviation to planes in [0, 1], in place.
pub fn normalize(planes: &mut [f32], spec: &InputSpec) {
    let per = (spec.width * spec.height) as usize;
    for (c, chunk) in planes.chunks_mut(per).enumerate() {
        let (m, s) = (spec.mean[c], spec.std[c]);
        chunk.iter_mut().for_each(|v| *v = (*v - m) / s);
    }
}

/// Resize and normalise an image as `spec` says; returns `C × H × W` values, channel-major.
pub fn prepare(img: &DynamicImage, spec: &InputSpec) -> Vec<f32> {
    let mut p = to_planes(img, spec);
    normalize(&mut p, spec);
    p
}

/// Decode and prepare in one step.
pub fn decode_and_prepare(bytes: &[u8], limits: DecodeLimits, spec: &InputSpec) -> Result<Vec<f32>, ImageError> {
    Ok(prepare(&decode(bytes, limits)?, spec))
}
