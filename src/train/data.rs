//! Training data in memory: every image of a split prepared once (through [`crate::pipeline`]) as planes in
//! [0, 1], before augmentation and normalisation.

use super::TrainError;
use crate::dataset::Dataset;
use crate::model::InputSpec;
use crate::pipeline::{self, NoFace, Options};
use crate::preprocess::DecodeLimits;
use std::path::Path;

/// Images of a split: genuine samples first (`labels[i]` is the identity of `planes[i]`), then skilled
/// forgeries (`planes[labels.len() + j]` imitates identity `forgery_of[j]`).
pub(super) struct Split {
    pub planes: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
    pub forgery_of: Vec<usize>,
}

pub(super) fn load_split(
    ds: &Dataset,
    spec: &InputSpec,
    det: Option<&crate::face::Mtcnn>,
) -> Result<Split, TrainError> {
    let (samples, forgeries) = (ds.samples(), ds.forgery_samples());
    let files: Vec<&std::path::Path> = samples.iter().chain(&forgeries).map(|(p, _)| p.as_path()).collect();
    // Face models learn on aligned chips: detect once per image (the service's face choice), align, sample. Without a
    // detector the files are read on all cores (in order).
    let planes = match det {
        Some(_) => files.iter().map(|p| load_file(p, spec, det)).collect::<Result<Vec<_>, _>>()?,
        None => par_map(&files, |p| load_file(p, spec, None)).into_iter().collect::<Result<Vec<_>, _>>()?,
    };
    let labels = samples.iter().map(|(_, l)| *l).collect();
    let forgery_of = forgeries.iter().map(|(_, l)| *l).collect();
    Ok(Split { planes, labels, forgery_of })
}

/// `f` over `items` on all cores, results in order.
pub(super) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    let per = items.len().div_ceil(threads.max(1)).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(per).map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("loader thread")).collect()
    })
}

/// Options for training images: planes in [0, 1] (augmentation comes before normalisation); a face-less
/// photo is used whole, with a warning, rather than dropped from the split.
const TRAINING: Options = Options {
    detect: true,
    select: crate::face::FaceSelect::Central,
    all_faces: false,
    no_face: NoFace::WholeImage,
    normalize: false,
};

/// One image file as planes in [0, 1] at the card's size (the chosen face's chip for a face model).
fn load_file(path: &Path, spec: &InputSpec, det: Option<&crate::face::Mtcnn>) -> Result<Vec<f32>, TrainError> {
    let mut p = pipeline::prepare_file(path, DecodeLimits::default(), spec, TRAINING, det)
        .map_err(|e| TrainError::Input(path.to_path_buf(), Box::new(e)))?
        .swap_remove(0);
    if p.no_face {
        tracing::warn!(file = %path.display(), "no face found; using the whole image");
    }
    Ok(std::mem::take(&mut p.input))
}
