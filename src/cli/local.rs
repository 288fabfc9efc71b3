//! `siamese info`, `verify`, `embed`, `detect` and `bench`: a model on this machine, no server. Images are
//! prepared by the same pipeline as the service's ([`crate::pipeline`]).

use super::{device, resolve_model, ModelArgs};
use crate::distance::Metric;
use crate::model::Modality;
use crate::pipeline::{LocalEncoder, Options};
use crate::preprocess::{self, DecodeLimits};
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub image_a: PathBuf,
    pub image_b: PathBuf,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub metric: Option<String>,
    #[arg(long)]
    pub threshold: Option<f32>,
    #[command(flatten)]
    pub m: ModelArgs,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub m: ModelArgs,
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The detector's model directory.
    #[arg(long, env = "SIAMESE_DETECTOR", default_value = "models/mtcnn-v1")]
    pub detector: PathBuf,
    #[arg(long, env = "SIAMESE_DEVICE", default_value = "auto")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model id (default: the default face model).
    #[arg(long)]
    pub model: Option<String>,
    /// Images per forward pass; several values are measured one after another.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub batch: Vec<usize>,
    /// Timed passes per batch size (after `--warmup` untimed ones).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed passes first (at least one; the last one's first embedding is printed, to compare devices).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Mirror averaging: `card` (the model's setting), `on` or `off`.
    #[arg(long, value_enum, default_value = "card")]
    pub mirror: super::Mirror,
    /// Time the network alone: no mirror averaging and no test-time warps (what `bench/compare` compares).
    #[arg(long)]
    pub network_only: bool,
    /// Write the prepared inputs (`inputs.f32`) and their embeddings one image at a time (`outputs.f32`),
    /// raw little-endian f32, into this folder, so another implementation can check parity on them.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Time a training step instead (forward in training mode over `2 × N` images, contrastive loss over
    /// `N` pairs, backward, Adam): N pairs per step; `--batch` is then ignored.
    #[arg(long)]
    pub train_pairs: Option<usize>,
    /// Images to embed (faces are detected and aligned once, before timing); without any, seeded noise.
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub m: ModelArgs,
}

pub fn info() -> Result<()> {
    let cuda = tch::Cuda::is_available();
    println!("siamese {}", env!("CARGO_PKG_VERSION"));
    println!("torch {}", crate::torch_version().as_deref().unwrap_or("unknown"));
    println!("cuda available: {cuda}");
    if cuda {
        println!("cuda devices: {}", tch::Cuda::device_count());
        println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    }
    println!("cpu threads: {}", tch::get_num_threads());
    Ok(())
}

/// The named model, or the default one: the model whose card claims the default, else the first face model
/// by id; with its detector when it aligns faces, preparing images as the service does.
fn one_model(m: &ModelArgs, id: Option<&str>) -> Result<LocalEncoder> {
    let dev = device(&m.device)?;
    let dir = match id {
        Some(id) => resolve_model(id, &m.models),
        None => {
            let mut cards: Vec<_> = std::fs::read_dir(&m.models)
                .with_context(|| format!("reading {}", m.models.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|d| {
                    crate::model::ModelCard::load(&d).ok().map(|c| (!c.default, c.modality != Modality::Face, c.id, d))
                })
                .collect();
            cards.sort();
            cards.into_iter().next().map(|c| c.3).with_context(|| format!("no models under {}", m.models.display()))?
        }
    };
    Ok(LocalEncoder::load(&dir, dev, Options::default())?)
}

/// An image file as the model's input, through the service's pipeline: for a face model the service's face choice,
/// aligned (`no_face` without one, as over HTTP).
fn read_image(p: &Path, model: &LocalEncoder) -> Result<Vec<f32>> {
    let mut prepared = model.prepare_file(p).with_context(|| p.display().to_string())?;
    Ok(prepared.swap_remove(0).input)
}

pub fn verify(a: VerifyArgs) -> Result<()> {
    let model = one_model(&a.m, a.model.as_deref())?;
    let flat = [read_image(&a.image_a, &model)?, read_image(&a.image_b, &model)?].concat();
    let vectors = model.model.embed_flat(&flat, 2)?;
    let card = model.card();
    let metric = match &a.metric {
        Some(m) => m.parse::<Metric>()?,
        None => card.default_metric,
    };
    let v = card.thresholds.get(metric).decide(metric.distance(&vectors[0], &vectors[1]), a.threshold);
    let out = serde_json::json!({
        "verified": v.verified, "distance": v.distance, "metric": metric, "threshold": v.threshold,
        "threshold_overridden": v.threshold_overridden, "score": v.score,
        "model": {"id": card.id, "version": card.version},
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub fn embed(a: EmbedArgs) -> Result<()> {
    let model = one_model(&a.m, a.model.as_deref())?;
    for p in &a.images {
        let v = model.model.embed_flat(&read_image(p, &model)?, 1)?;
        println!("{}", serde_json::json!({"file": p.display().to_string(), "vector": v[0]}));
    }
    Ok(())
}

pub fn detect(a: DetectArgs) -> Result<()> {
    let det = crate::face::Mtcnn::load(&a.detector, device(&a.device)?)?;
    for p in &a.images {
        let img = preprocess::decode(&std::fs::read(p)?, DecodeLimits::default())?.to_rgb8();
        let faces = det.detect(img.as_raw(), img.width() as usize, img.height() as usize);
        println!("{}", serde_json::json!({"image": p, "faces": faces}));
    }
    Ok(())
}

/// Time `embed_flat` (host buffer in, embeddings back on the host: what a server request pays) per batch size.
pub fn bench(a: BenchArgs) -> Result<()> {
    let local = one_model(&a.m, a.model.as_deref())?;
    let spec = local.card().input.clone();
    let inputs: Vec<Vec<f32>> = if a.images.is_empty() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        (0..8).map(|_| (0..spec.len()).map(|_| rng.gen_range(-1.0f32..1.0)).collect()).collect()
    } else {
        a.images.iter().map(|p| read_image(p, &local)).collect::<Result<_>>()?
    };
    let model = &local.model;
    let device = model.vs.device();
    if let Some(pairs) = a.train_pairs {
        return bench_train_step(&a, model, &inputs, pairs.max(1));
    }
    let mirror = !a.network_only && a.mirror.forced().unwrap_or(spec.mirror_average);
    let tta = !a.network_only;
    let embed = |flat: &[f32], n: usize| model.embed_flat_with(flat, n, mirror, tta);
    if let Some(dir) = &a.dump {
        std::fs::create_dir_all(dir)?;
        let le = |v: &mut dyn Iterator<Item = f32>| v.flat_map(f32::to_le_bytes).collect::<Vec<u8>>();
        std::fs::write(dir.join("inputs.f32"), le(&mut inputs.iter().flatten().copied()))?;
        let mut outs = Vec::new();
        for x in &inputs {
            outs.extend(embed(x, 1)?.swap_remove(0));
        }
        std::fs::write(dir.join("outputs.f32"), le(&mut outs.into_iter()))?;
    }
    for &b in &a.batch {
        let b = b.max(1);
        let flat: Vec<f32> = (0..b).flat_map(|i| inputs[i % inputs.len()].iter().copied()).collect();
        let mut first = Vec::new();
        for _ in 0..a.warmup.max(1) {
            first = embed(&flat, b)?.swap_remove(0);
        }
        let mut ms = Vec::with_capacity(a.iters);
        for _ in 0..a.iters.max(1) {
            let t = std::time::Instant::now();
            embed(&flat, b)?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        let p50 = ms[ms.len() / 2];
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        println!(
            "{}",
            serde_json::json!({
                "model": model.card.id, "device": format!("{device:?}"), "batch": b, "iters": ms.len(),
                "mirror_average": mirror, "tta": tta && !spec.tta.is_empty(),
                "threads": tch::get_num_threads(), "ms_per_batch_p50": p50, "ms_per_batch_mean": mean,
                "ms_per_image": p50 / b as f64, "images_per_second": b as f64 * 1e3 / p50,
                "real_images": !a.images.is_empty(), "first_vector": first,
            })
        );
    }
    Ok(())
}

/// Time a training step of `model`'s network on `pairs` pairs made of `inputs` (pair `i`: inputs `i` and
/// `3i + 1`, cyclically; dissimilar when `i` is odd), learning rate 1e-4, margin 1. Prints the first step's
/// loss too, so another implementation can check it computes the same thing.
fn bench_train_step(a: &BenchArgs, model: &crate::model::LoadedModel, inputs: &[Vec<f32>], pairs: usize) -> Result<()> {
    use tch::nn::{self, OptimizerConfig};
    let card = &model.card;
    let device = model.vs.device();
    let mut vs = nn::VarStore::new(device);
    let net = crate::model::Network::new(&vs.root(), &card.architecture, &card.input);
    vs.load(model.dir.join(crate::model::WEIGHTS_FILE))?;
    let mut opt = nn::Adam::default().build(&vs, 1e-4)?;
    let i = &card.input;
    // Pair i: image i and image 3i + 1 (of the inputs, cyclically): two different images when there are
    // several, so both loss terms are at work.
    let n = inputs.len();
    let order = (0..pairs).map(|k| k % n).chain((0..pairs).map(|k| (3 * k + 1) % n));
    let flat: Vec<f32> = order.flat_map(|k| inputs[k].iter().copied()).collect();
    let x = tch::Tensor::from_slice(&flat)
        .reshape([2 * pairs as i64, i.channels as i64, i.height as i64, i.width as i64])
        .to_device(device);
    let y: Vec<f32> = (0..pairs).map(|k| (k % 2) as f32).collect();
    let y = tch::Tensor::from_slice(&y).to_device(device);
    let loss_fn = crate::train::loss::ContrastiveLoss { margin: 1.0 };
    let b = pairs as i64;
    let mut step = || {
        let e = net.forward(&x, true);
        let loss = loss_fn.forward(&e.narrow(0, 0, b), &e.narrow(0, b, b), &y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        loss.double_value(&[])
    };
    let first_loss = step();
    for _ in 1..a.warmup.max(1) {
        step();
    }
    let mut ms = Vec::with_capacity(a.iters);
    for _ in 0..a.iters.max(1) {
        let t = std::time::Instant::now();
        step();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let p50 = ms[ms.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "model": card.id, "device": format!("{device:?}"), "train_pairs": pairs, "iters": ms.len(),
            "ms_per_step_p50": p50, "pairs_per_second": pairs as f64 * 1e3 / p50, "first_loss": first_loss,
            "threads": tch::get_num_threads(),
        })
    );
    Ok(())
}
