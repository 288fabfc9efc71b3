//! Our dlib encoder against dlib itself (PyPI `dlib-bin`) on the same 100 aligned chips, in one run:
//! milliseconds per face for each and the ratio (goal: ours ≤ 0.5 × dlib's on CPU). Chips are dlib's own
//! chips of LFW View 1 photos when `SIAMESE_DATA` is set, else generated 150×150 images.
//!
//! `cargo bench --bench face` (or `make bench`). Needs the bootstrap's venv (`VIRTUAL_ENV`, dlib-bin) and
//! `SIAMESE_FACE_MODELS`; without them it times our encoder alone and says so.

#[path = "../tests/common/mod.rs"]
mod common;

use siamese::model::LoadedModel;
use siamese::pipeline;
use siamese::preprocess::DecodeLimits;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 4 } else { 100 };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let py = std::env::var_os("VIRTUAL_ENV").map(|v| PathBuf::from(v).join("bin/python")).filter(|p| p.exists());
    let dat = std::env::var_os("SIAMESE_FACE_MODELS").map(PathBuf::from);
    let script = root.join("scripts/dlib_reference.py");
    let mut chips: Vec<PathBuf> = Vec::new();
    if let (Some(py), Some(dat), Some(data)) = (&py, &dat, std::env::var_os("SIAMESE_DATA")) {
        let lfw = PathBuf::from(data).join("lfw-view1/lfw");
        let photos = common::lfw_images(lfw.parent().unwrap(), n + 10);
        let out = tmp.path().join("chips");
        let st = Command::new(py)
            .arg(&script)
            .args(["chips", "--models"])
            .arg(dat)
            .arg("--out")
            .arg(&out)
            .args(&photos)
            .status()
            .unwrap();
        assert!(st.success());
        let meta: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(out.join("chips.json")).unwrap()).unwrap();
        chips.extend(meta.iter().take(n).map(|m| out.join(m["chip"].as_str().unwrap())));
    }
    for k in chips.len()..n {
        let img = image::RgbImage::from_fn(150, 150, |x, y| {
            image::Rgb([((x * 3 + y * k as u32) % 256) as u8, ((x * y) % 256) as u8, ((y + 7 * k as u32) % 256) as u8])
        });
        let p = tmp.path().join(format!("gen{k}.png"));
        img.save(&p).unwrap();
        chips.push(p);
    }
    let mut model = LoadedModel::load(&root.join("models/face-dlib-r29-v1"), tch::Device::Cpu)
        .expect("make build imports the dlib model");
    // dlib's compute_face_descriptor makes one pass per chip: compare like with like.
    model.card.input.mirror_average = false;
    let inputs: Vec<Vec<f32>> = chips
        .iter()
        .map(|c| {
            let chip = pipeline::Options { detect: false, ..Default::default() };
            pipeline::prepare(&std::fs::read(c).unwrap(), DecodeLimits::default(), &model.card.input, chip, None)
                .unwrap()
                .remove(0)
                .input
        })
        .collect();
    model.embed_flat(&inputs[0], 1).unwrap();
    let time = |batch: usize| {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            for group in inputs.chunks(batch) {
                let flat: Vec<f32> = group.concat();
                std::hint::black_box(model.embed_flat(&flat, group.len()).unwrap());
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        best * 1e3 / inputs.len() as f64
    };
    let (ours1, ours16) = (time(1), time(16));
    println!("face encoder, {} chips ({}), {} torch threads: ours {ours1:.2} ms/face at batch 1, {ours16:.2} ms/face at batch 16",
        inputs.len(), if chips.iter().any(|c| c.to_string_lossy().contains("gen")) { "generated" } else { "dlib chips of LFW View 1" }, tch::get_num_threads());
    match (&py, &dat) {
        (Some(py), Some(dat)) => {
            let out = Command::new(py).arg(&script).args(["time", "--models"]).arg(dat).args(&chips).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let dlib_ms = v["seconds"].as_f64().unwrap() * 1e3 / inputs.len() as f64;
            println!("dlib-bin 20.0.1 on the same chips: {dlib_ms:.2} ms/face (one at a time)");
            println!(
                "ratio ours/dlib: {:.2} at batch 1, {:.2} at batch 16 (goal ≤ 0.5)",
                ours1 / dlib_ms,
                ours16 / dlib_ms
            );
        }
        _ => println!("dlib-bin not available (run through `make bench`): no ratio"),
    }
}
