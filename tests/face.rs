//! The face pipeline on real photos (needs `SIAMESE_DATA`): our MTCNN against facenet-pytorch's (the
//! reference, run through `scripts/mtcnn_reference.py`) on LFW View 1 photos — boxes IoU ≥ 0.95, landmarks
//! within 2 px.

mod common;

use siamese::face::{Face, Mtcnn};
use std::path::{Path, PathBuf};
use std::process::Command;

fn python(test: &str) -> Option<PathBuf> {
    let py = std::env::var_os("VIRTUAL_ENV").map(|v| PathBuf::from(v).join("bin/python"));
    if let Some(py) = py.filter(|p| p.exists()) {
        if Command::new(&py).args(["-c", "import facenet_pytorch"]).status().is_ok_and(|s| s.success()) {
            return Some(py);
        }
    }
    if std::env::var("SIAMESE_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("{test}: CI needs facenet-pytorch in $VIRTUAL_ENV (make bootstrap)");
    }
    eprintln!("SKIPPED {test}: needs facenet-pytorch; run it through `make test`");
    None
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

#[test]
fn our_mtcnn_matches_facenet_pytorch_on_lfw() {
    let test = "our_mtcnn_matches_facenet_pytorch_on_lfw";
    let Some(lfw) = common::real_data("lfw-view1", test) else { return };
    let Some(py) = python(test) else { return };
    let images = common::lfw_images(&lfw, 30);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mtcnn_reference.py");
    let out = Command::new(&py).arg(&script).args(&images).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference: std::collections::HashMap<String, Vec<serde_json::Value>> =
        serde_json::from_slice(&out.stdout).unwrap();
    let det = Mtcnn::load(&common::models_dir().join("mtcnn-v1"), tch::Device::Cpu)
        .expect("make build converts the MTCNN weights");
    let (mut compared, mut worst_iou, mut worst_px) = (0, 1f32, 0f32);
    for p in &images {
        let img = image::open(p).unwrap().to_rgb8();
        let ours: Vec<Face> = det.detect(img.as_raw(), img.width() as usize, img.height() as usize);
        let refs = &reference[&p.display().to_string()];
        assert_eq!(ours.len(), refs.len(), "{}: {} faces vs facenet's {}", p.display(), ours.len(), refs.len());
        for r in refs {
            let rb: Vec<f32> = r["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let rb = [rb[0], rb[1], rb[2], rb[3]];
            let best = ours.iter().max_by(|a, b| iou(&a.bbox, &rb).total_cmp(&iou(&b.bbox, &rb))).unwrap();
            let o = iou(&best.bbox, &rb);
            let px = r["landmarks"]
                .as_array()
                .unwrap()
                .iter()
                .zip(best.landmarks)
                .map(|(l, m)| {
                    let (x, y) = (l[0].as_f64().unwrap() as f32, l[1].as_f64().unwrap() as f32);
                    ((x - m[0]).powi(2) + (y - m[1]).powi(2)).sqrt()
                })
                .fold(0f32, f32::max);
            assert!(o >= 0.95, "{}: IoU {o}", p.display());
            assert!(px <= 2.0, "{}: landmark off by {px} px", p.display());
            worst_iou = worst_iou.min(o);
            worst_px = worst_px.max(px);
            compared += 1;
        }
    }
    eprintln!(
        "MTCNN fidelity on {} LFW photos: {compared} faces, worst IoU {worst_iou:.4}, worst landmark {worst_px:.3} px",
        images.len()
    );
    assert!(compared >= 20);
}
