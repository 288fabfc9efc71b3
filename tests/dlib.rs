//! Port fidelity of the dlib face encoder: our `tch` network, loaded from the imported model directory,
//! against dlib itself (PyPI `dlib-bin`, run through `scripts/dlib_reference.py`) on the same aligned chips.
//! Chips: dlib's own detector + 5-point landmarks + `get_face_chip` on LFW View 1 photos (with
//! `SIAMESE_DATA`), plus generated images (which run anywhere). Every descriptor component must agree
//! within 1e-4.

mod common;

use siamese::model::LoadedModel;
use siamese::pipeline;
use siamese::preprocess::DecodeLimits;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Ready 150×150 chips: no detection, as `detect=false` takes them.
const CHIPS: pipeline::Options = pipeline::Options {
    detect: false,
    select: siamese::face::FaceSelect::Largest,
    all_faces: false,
    no_face: pipeline::NoFace::Refuse,
    normalize: true,
};

/// The Python with `dlib-bin` (the bootstrap's virtual environment) and dlib's model folder.
fn reference_tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let venv = std::env::var_os("VIRTUAL_ENV").map(PathBuf::from);
    let models = std::env::var_os("SIAMESE_FACE_MODELS").map(PathBuf::from);
    let ok = |p: &Option<PathBuf>, f: &str| p.as_ref().is_some_and(|d| d.join(f).exists());
    if ok(&venv, "bin/python") && ok(&models, "dlib_face_recognition_resnet_model_v1.dat") {
        let py = venv.unwrap().join("bin/python");
        let has_dlib = Command::new(&py).args(["-c", "import dlib, PIL"]).status().is_ok_and(|s| s.success());
        if has_dlib {
            return Some((py, models.unwrap()));
        }
    }
    if std::env::var("SIAMESE_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("{test}: CI needs dlib-bin in $VIRTUAL_ENV and dlib's models in $SIAMESE_FACE_MODELS (make bootstrap)");
    }
    eprintln!("SKIPPED {test}: needs dlib-bin and dlib's model files; run it through `make test`");
    None
}

fn model_dir() -> PathBuf {
    let d = common::models_dir().join("face-dlib-r29-v1");
    assert!(d.join("model.json").exists(), "{} is missing: `make build` imports it", d.display());
    d
}

#[test]
fn our_dlib_encoder_matches_dlib_on_aligned_chips() {
    let Some((py, dat_dir)) = reference_tools("our_dlib_encoder_matches_dlib_on_aligned_chips") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dlib_reference.py");
    let mut chips: Vec<PathBuf> = Vec::new();
    if let Some(lfw) = common::real_data("lfw-view1", "our_dlib_encoder_matches_dlib_on_aligned_chips (LFW chips)") {
        let images = common::lfw_images(&lfw, 24);
        let out = tmp.path().join("lfw");
        let st = Command::new(&py)
            .arg(&script)
            .args(["chips", "--models"])
            .arg(&dat_dir)
            .arg("--out")
            .arg(&out)
            .args(&images)
            .status()
            .unwrap();
        assert!(st.success());
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("chips.json")).unwrap()).unwrap();
        chips.extend(meta.as_array().unwrap().iter().map(|m| out.join(m["chip"].as_str().unwrap())));
        assert!(chips.len() >= 20, "dlib found faces in only {} of 24 LFW photos", chips.len());
    }
    // Generated 150×150 colour images: not faces, but valid inputs; they exercise every layer with other statistics.
    for k in 0..4u32 {
        let img = image::RgbImage::from_fn(150, 150, |x, y| {
            image::Rgb([
                ((x * (k + 1) + y * 3) % 256) as u8,
                ((x * y + 17 * k) % 256) as u8,
                ((255 - x + y * k) % 256) as u8,
            ])
        });
        let p = tmp.path().join(format!("gen{k}.png"));
        img.save(&p).unwrap();
        chips.push(p);
    }
    let out =
        Command::new(&py).arg(&script).args(["describe", "--models"]).arg(&dat_dir).args(&chips).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference: std::collections::HashMap<String, Vec<f32>> = serde_json::from_slice(&out.stdout).unwrap();

    let mut model = LoadedModel::load(&model_dir(), tch::Device::Cpu).unwrap();
    // dlib embeds a chip once; the card's mirror averaging is ours, on top.
    model.card.input.mirror_average = false;
    let mut flat = Vec::new();
    for c in &chips {
        flat.extend(
            pipeline::prepare(&std::fs::read(c).unwrap(), DecodeLimits::default(), &model.card.input, CHIPS, None)
                .unwrap()
                .remove(0)
                .input,
        );
    }
    let ours = model.embed_flat(&flat, chips.len()).unwrap();
    let mut worst = 0f32;
    for (c, e) in chips.iter().zip(&ours) {
        let r = &reference[&c.display().to_string()];
        assert_eq!(r.len(), 128);
        let d = e.iter().zip(r).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        worst = worst.max(d);
        assert!(d < 1e-4, "{}: max component difference {d}", c.display());
    }
    eprintln!("dlib port fidelity: {} chips, max |ours − dlib| per component = {worst:.2e}", chips.len());
}
