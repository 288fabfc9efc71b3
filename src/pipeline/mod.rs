//! From uploaded bytes to an encoder input — the one preparation pipeline. HTTP requests, the command line
//! (`embed`, `verify`, `bench`), training, evaluation and background re-embedding all go through it:
//!
//! ```text
//! bytes ─ decode (limits) ─┬─ face model, detect=true: detect (MTCNN) → choose face(s) → align → chip ─┐
//!                          └─ otherwise: the whole image (resize, or signature: ink on paper) ──────────┴─ planes → normalise
//! ```
//!
//! The steps are [`start`] (decode; finishes at once when no face has to be found) and
//! [`PendingFaces::finish`] (choose, align, sample the chip). Detection sits between them, and there are two
//! ways to run it, so two drivers share the steps:
//! - [`prepare`]: synchronous, with a detector the caller owns (command line, training, evaluation);
//! - [`prepare_files`]: the server's, with decoding on tokio's blocking pool and detection on the detector's
//!   own thread ([`crate::runtime::DetectorHandle`]), where concurrent requests are batched.
//!
//! A face model that finds no face refuses the image with [`PipelineError::NoFace`]; evaluation protocols
//! that must score every listed pair ask for [`NoFace::WholeImage`] instead and count such images.

use crate::face::{chip_for, Face, FaceSelect, Mtcnn, Template};
use crate::model::{InputSpec, Preprocess};
use crate::preprocess::{self, DecodeLimits, ImageError};
use crate::runtime::{DetectorHandle, RuntimeError};
use image::{DynamicImage, RgbImage};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of the preparation pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("no face was found in the image")]
    NoFace,
    #[error("the model aligns faces but no face detector is loaded")]
    NoDetector,
    #[error("face detection: {0}")]
    Detector(#[from] RuntimeError),
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("loading the face detector from {0}: {1}")]
    LoadDetector(PathBuf, crate::face::DetectorError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("a preparation task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the request's images would take {needed} MiB once decoded; the limit per request is {limit} MiB")]
    RequestTooLarge { needed: u64, limit: u64 },
    #[error("images being decoded already use the service's decoding memory; retry shortly")]
    DecodeBusy,
}

/// Memory for decoded images: at most `per_request` bytes for one request's images, and at most
/// `in_flight` bytes across all requests at once (counted from the images' headers before any pixel is
/// decoded, held until the request's inputs are prepared).
#[derive(Debug, Clone)]
pub struct DecodeBudget {
    per_request: u64,
    in_flight_mib: u32,
    permits: Arc<tokio::sync::Semaphore>,
}

const MIB: u64 = 1 << 20;

impl DecodeBudget {
    pub fn new(per_request: u64, in_flight: u64) -> Self {
        let in_flight_mib = (in_flight / MIB).clamp(1, u32::MAX as u64) as u32;
        DecodeBudget {
            per_request,
            in_flight_mib,
            permits: Arc::new(tokio::sync::Semaphore::new(in_flight_mib as usize)),
        }
    }

    /// Admit images of `bytes` decoded bytes in all: refused when over the per-request limit, or (at once,
    /// without waiting) when the service's budget is taken by requests in flight.
    pub fn admit(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit, PipelineError> {
        if bytes > self.per_request {
            return Err(PipelineError::RequestTooLarge { needed: bytes.div_ceil(MIB), limit: self.per_request / MIB });
        }
        let n = (bytes.div_ceil(MIB) as u32).clamp(1, self.in_flight_mib);
        self.permits.clone().try_acquire_many_owned(n).map_err(|_| PipelineError::DecodeBusy)
    }

    /// MiB of the in-flight budget free now.
    pub fn available_mib(&self) -> usize {
        self.permits.available_permits()
    }
}

/// Most faces taken from one image with `all_faces` (the largest ones).
pub const MAX_FACES: usize = 32;

/// What a face model does when an image has no face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoFace {
    /// Refuse the image ([`PipelineError::NoFace`]): what the service and the command line do.
    #[default]
    Refuse,
    /// Use the whole image, resized, and say so ([`Prepared::no_face`]): for evaluation protocols that must
    /// score every listed pair, and for training sets with the odd face-less photo.
    WholeImage,
}

/// How an image is prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Run the detector for face models (else an image is taken as a ready chip, resized if needed).
    pub detect: bool,
    /// Which face of a photo (the service's rule, [`FaceSelect::default`], unless a request or an evaluation asks
    /// for another).
    pub select: FaceSelect,
    /// Every face of the image instead of the selected one.
    pub all_faces: bool,
    pub no_face: NoFace,
    /// Apply the card's mean and standard deviation. Training turns it off: it augments planes in [0, 1]
    /// and normalises afterwards.
    pub normalize: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            detect: true,
            select: FaceSelect::default(),
            all_faces: false,
            no_face: NoFace::Refuse,
            normalize: true,
        }
    }
}

/// One encoder input and where it came from.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `C × H × W` values, channel-major, as the card's input says.
    pub input: Vec<f32>,
    /// The face this input is the chip of (face models with detection).
    pub face: Option<Face>,
    /// A face model found no face and the whole image stands in ([`NoFace::WholeImage`]).
    pub no_face: bool,
}

/// After decoding: either done, or waiting for the faces of the image.
pub enum Stage {
    Done(Vec<Prepared>),
    NeedsFaces(Box<PendingFaces>),
}

/// A decoded image waiting for its faces.
pub struct PendingFaces {
    rgb: Arc<RgbImage>,
    /// The decoded image as it came, for [`NoFace::WholeImage`].
    original: Option<DynamicImage>,
    template: Template,
    spec: InputSpec,
    options: Options,
}

/// Decode `bytes` within `limits` and prepare them for `spec`, unless faces have to be found first.
pub fn start(bytes: &[u8], limits: DecodeLimits, spec: &InputSpec, options: Options) -> Result<Stage, PipelineError> {
    let img = preprocess::decode(bytes, limits)?;
    Ok(start_decoded(img, spec, options))
}

/// [`start`] for an image already decoded.
pub fn start_decoded(img: DynamicImage, spec: &InputSpec, options: Options) -> Stage {
    match spec.preprocess {
        Preprocess::FaceChip { template } if options.detect => Stage::NeedsFaces(Box::new(PendingFaces {
            rgb: Arc::new(img.to_rgb8()),
            original: (options.no_face == NoFace::WholeImage).then_some(img),
            template,
            spec: spec.clone(),
            options,
        })),
        _ => Stage::Done(vec![whole_image(&img, spec, options, false)]),
    }
}

fn whole_image(img: &DynamicImage, spec: &InputSpec, options: Options, no_face: bool) -> Prepared {
    let mut input = preprocess::to_planes(img, spec);
    if options.normalize {
        preprocess::normalize(&mut input, spec);
    }
    Prepared { input, face: None, no_face }
}

impl PendingFaces {
    /// The image the detector looks at.
    pub fn image(&self) -> &Arc<RgbImage> {
        &self.rgb
    }

    /// Choose among `faces` (every face the detector found, largest first), align and sample each chosen
    /// face's chip.
    pub fn finish(self: Box<Self>, faces: Vec<Face>) -> Result<Vec<Prepared>, PipelineError> {
        let (w, h) = self.rgb.dimensions();
        let chosen: Vec<Face> = if self.options.all_faces {
            // The largest faces first; a crowd (or a tiled picture) gives at most MAX_FACES inputs.
            faces.into_iter().take(MAX_FACES).collect()
        } else {
            self.options.select.pick(&faces, w, h).cloned().into_iter().collect()
        };
        if chosen.is_empty() {
            return match (self.options.no_face, &self.original) {
                (NoFace::WholeImage, Some(img)) => Ok(vec![whole_image(img, &self.spec, self.options, true)]),
                _ => Err(PipelineError::NoFace),
            };
        }
        Ok(chosen
            .into_iter()
            .map(|f| {
                let chip = chip_for(&self.rgb, &f, &self.template, self.spec.width);
                let mut p = whole_image(&DynamicImage::ImageRgb8(chip), &self.spec, self.options, false);
                p.face = Some(f);
                p
            })
            .collect())
    }
}

/// The synchronous driver: `bytes` prepared for `spec`, with `detector` when the input aligns faces.
pub fn prepare(
    bytes: &[u8],
    limits: DecodeLimits,
    spec: &InputSpec,
    options: Options,
    detector: Option<&Mtcnn>,
) -> Result<Vec<Prepared>, PipelineError> {
    prepare_image(preprocess::decode(bytes, limits)?, spec, options, detector)
}

/// [`prepare`] for an image already decoded.
pub fn prepare_image(
    img: DynamicImage,
    spec: &InputSpec,
    options: Options,
    detector: Option<&Mtcnn>,
) -> Result<Vec<Prepared>, PipelineError> {
    match start_decoded(img, spec, options) {
        Stage::Done(p) => Ok(p),
        Stage::NeedsFaces(pending) => {
            let det = detector.ok_or(PipelineError::NoDetector)?;
            let img = pending.image();
            let faces = det.detect(img.as_raw(), img.width() as usize, img.height() as usize);
            pending.finish(faces)
        }
    }
}

/// [`prepare`] for a file.
pub fn prepare_file(
    path: &Path,
    limits: DecodeLimits,
    spec: &InputSpec,
    options: Options,
    detector: Option<&Mtcnn>,
) -> Result<Vec<Prepared>, PipelineError> {
    let bytes = std::fs::read(path).map_err(|e| PipelineError::Read(path.to_path_buf(), e))?;
    prepare(&bytes, limits, spec, options, detector)
}

/// The face detector a model directory's input needs: `<models>/mtcnn-v1` beside it, when the card aligns
/// faces (else `None`).
pub fn detector_for(spec: &InputSpec, model_dir: &Path, device: tch::Device) -> Result<Option<Mtcnn>, PipelineError> {
    if !matches!(spec.preprocess, Preprocess::FaceChip { .. }) {
        return Ok(None);
    }
    let dir = model_dir.parent().unwrap_or(Path::new(".")).join(crate::face::DETECTOR_ID);
    Mtcnn::load(&dir, device).map(Some).map_err(|e| PipelineError::LoadDetector(dir, e))
}

/// The server's driver: every file (a name for errors, and its bytes) prepared for `spec`; decoding and
/// alignment on the blocking pool, detection on the detector's thread. Each file gets its own result (one
/// input, or one per face with `all_faces`), so that an upload can go on past a bad file; the outer error is
/// the pipeline's own failure (no detector, detector overloaded, a task that died).
pub async fn prepare_files<N: Send + 'static>(
    files: Vec<(N, bytes::Bytes)>,
    limits: DecodeLimits,
    spec: &InputSpec,
    options: Options,
    detector: Option<&DetectorHandle>,
    budget: Option<&DecodeBudget>,
) -> Result<Vec<(N, Result<Vec<Prepared>, PipelineError>)>, PipelineError> {
    let _permit = match budget {
        Some(b) => Some(b.admit(files.iter().filter_map(|(_, f)| preprocess::declared_decode_bytes(f, limits)).sum())?),
        None => None,
    };
    let spec2 = spec.clone();
    let started: Vec<(N, Result<Stage, PipelineError>)> = tokio::task::spawn_blocking(move || {
        files.into_iter().map(|(name, bytes)| (name, start(&bytes, limits, &spec2, options))).collect()
    })
    .await?;
    let mut out = Vec::with_capacity(started.len());
    for (name, stage) in started {
        let r = match stage {
            Ok(Stage::Done(p)) => Ok(p),
            Err(e) => Err(e),
            Ok(Stage::NeedsFaces(pending)) => {
                let det = detector.ok_or(PipelineError::NoDetector)?;
                let faces = det.detect(pending.image().clone()).await?;
                tokio::task::spawn_blocking(move || pending.finish(faces)).await?
            }
        };
        out.push((name, r));
    }
    Ok(out)
}

/// A model with its own preparation in one thread: the command line, training's test figures and
/// evaluation embed files through it ([`prepare`] with the model's detector, then one forward pass).
pub struct LocalEncoder {
    pub model: crate::model::LoadedModel,
    /// The face detector, when the model aligns faces.
    pub detector: Option<Mtcnn>,
    pub options: Options,
    pub limits: DecodeLimits,
}

impl LocalEncoder {
    /// Load the model directory `dir` (and its detector, when it aligns faces) onto `device`.
    pub fn load(dir: &Path, device: tch::Device, options: Options) -> Result<Self, PipelineError> {
        let model = crate::model::LoadedModel::load(dir, device)?;
        let detector = detector_for(&model.card.input, dir, device)?;
        Ok(LocalEncoder { model, detector, options, limits: DecodeLimits::default() })
    }

    pub fn card(&self) -> &crate::model::ModelCard {
        &self.model.card
    }

    /// A file prepared for this model.
    pub fn prepare_file(&self, path: &Path) -> Result<Vec<Prepared>, PipelineError> {
        prepare_file(path, self.limits, &self.model.card.input, self.options, self.detector.as_ref())
    }

    /// Each file's first input (its chosen face, or the whole image), embedded in one batch.
    pub fn embed_files(&self, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>, PipelineError> {
        let mut flat = Vec::with_capacity(paths.len() * self.model.card.input.len());
        for p in paths {
            let mut prepared = self.prepare_file(p)?;
            flat.extend(prepared.swap_remove(0).input);
        }
        Ok(self.model.embed_flat(&flat, paths.len())?)
    }
}
