//! `siamese import`, `ensemble` and `fit-template`: making model directories.

use super::ModelOutput;
use crate::preprocess::{self, DecodeLimits};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use tch::Device;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Source format; only `dlib` (dlib's face recognition ResNet `.dat`).
    #[arg(value_parser = ["dlib"])]
    pub format: String,
    pub file: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Model id (default: the output directory's name).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct EnsembleArgs {
    /// Member model directories (two or more).
    #[arg(long = "member", required = true, num_args = 1)]
    pub members: Vec<PathBuf>,
    /// Test-time augmentation for the ensemble's card: a JSON list of fixed warps, e.g.
    /// `[{"rotate_deg":3},{"rotate_deg":-3}]` (fields rotate_deg, scale, shear, aspect, shift_x, shift_y).
    #[arg(long)]
    pub tta: Option<String>,
    #[command(flatten)]
    pub output: ModelOutput,
}

#[derive(Args, Debug)]
pub struct FitTemplateArgs {
    /// `chips.json` from `scripts/dlib_reference.py chips` (image paths and dlib's 5 landmarks).
    #[arg(long)]
    pub dlib_landmarks: PathBuf,
    /// The face model directory whose card gets the template.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, env = "SIAMESE_DETECTOR", default_value = "models/mtcnn-v1")]
    pub detector: PathBuf,
    /// How the photos were chosen, for the card.
    #[arg(long, default_value = "")]
    pub note: String,
}

pub fn fit_template(a: FitTemplateArgs) -> Result<()> {
    let det = crate::face::Mtcnn::load(&a.detector, Device::Cpu)?;
    let meta: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&a.dlib_landmarks)?)?;
    let mut pairs = Vec::new();
    let mut skipped = 0;
    for m in &meta {
        let path = m["image"].as_str().context("image")?;
        let lm: Vec<[f64; 2]> = m["landmarks"]
            .as_array()
            .context("landmarks")?
            .iter()
            .map(|p| [p[0].as_f64().unwrap_or(0.0), p[1].as_f64().unwrap_or(0.0)])
            .collect();
        let img = preprocess::decode(&std::fs::read(path)?, DecodeLimits::default())?.to_rgb8();
        let faces = det.detect(img.as_raw(), img.width() as usize, img.height() as usize);
        // The MTCNN face whose box holds dlib's nose point.
        let nose = lm[4];
        let face = faces.iter().find(|f| {
            f.bbox[0] as f64 <= nose[0]
                && nose[0] <= f.bbox[2] as f64
                && f.bbox[1] as f64 <= nose[1]
                && nose[1] <= f.bbox[3] as f64
        });
        match face {
            Some(f) if lm.len() == 5 => pairs.push(([lm[0], lm[1], lm[2], lm[3], lm[4]], f.landmarks)),
            _ => skipped += 1,
        }
    }
    let mut card = crate::model::ModelCard::load(&a.model)?;
    let size = card.input.width;
    let (template, spread) = crate::face::fit_template(&pairs, size);
    card.input.preprocess = crate::model::Preprocess::FaceChip { template };
    card.training["alignment"] = serde_json::json!({
        "template": "MTCNN's 5 landmarks in chip pixels: per-point median, over the photos, of the MTCNN landmarks mapped into dlib's chip by the similarity that takes dlib's 5-point template onto dlib's own landmarks (dlib-bin 20.0.1: frontal detector, shape_predictor_5_face_landmarks, get_face_chip size 150 padding 0.25)",
        "photos": pairs.len(),
        "skipped_no_matching_face": skipped,
        "median_spread_px": spread,
        "data": a.note,
        "command": "siamese fit-template",
    });
    card.save(&a.model)?;
    println!(
        "template (chip px) {template:?}; median spread per point {spread:?} px; {} photos, {skipped} skipped",
        pairs.len()
    );
    Ok(())
}

pub fn import(a: ImportArgs) -> Result<()> {
    let id = a.id.clone().or_else(|| a.out.file_name().map(|n| n.to_string_lossy().into_owned()));
    let id = id.context("--id is needed when --out has no final component")?;
    let card = crate::dlib::import(&a.file, &a.out, &id)?;
    println!("imported {} ({}) into {}", card.id, a.format, a.out.display());
    Ok(())
}

pub fn ensemble(a: EnsembleArgs) -> Result<()> {
    let o = &a.output;
    let tta: Vec<crate::model::TtaWarp> = match &a.tta {
        Some(t) => serde_json::from_str(t).context("--tta: a JSON list of warps")?,
        None => vec![],
    };
    let card = crate::model::combine_ensemble(&a.members, &o.out, &o.id(), o.version, &tta)?;
    println!(
        "wrote {} ({} members, embedding {}); calibrate it with `siamese eval --calibrate`",
        o.out.display(),
        a.members.len(),
        card.embedding_size
    );
    Ok(())
}
