//! Seed corpora for the fuzz targets in `fuzz/` (`image`, `multipart`, `json`): small valid images of every
//! decoded format, multipart and JSON bodies as clients send them, typed JSON bodies.
//!
//! ```sh
//! cargo run --release --example fuzz_seeds -- fuzz/corpus
//! ```

use std::io::Cursor;

fn encode(img: &image::DynamicImage, f: image::ImageFormat) -> Vec<u8> {
    let mut c = Cursor::new(Vec::new());
    img.write_to(&mut c, f).expect("seed encodes");
    c.into_inner()
}

fn image_seeds() -> Vec<Vec<u8>> {
    let grey = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(48, 40, |x, y| {
        image::Luma([((x * 5 + y * 3) % 256) as u8 ^ if (x / 8 + y / 8) % 2 == 0 { 0 } else { 200 }])
    }));
    let rgb = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 32, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 7) as u8, ((x + y) * 3) as u8])
    }));
    let rgba = image::DynamicImage::ImageRgba8(rgb.to_rgba8());
    use image::ImageFormat::*;
    vec![
        encode(&grey, Png),
        encode(&rgb, Png),
        encode(&rgba, Png),
        encode(&rgb, Jpeg),
        encode(&grey, Jpeg),
        encode(&rgba, Gif),
        encode(&rgba, WebP),
        encode(&rgb, Bmp),
        encode(&rgb, Tiff),
        encode(&grey, Pnm),
        encode(&image::DynamicImage::ImageRgb16(rgb.to_rgb16()), Png),
    ]
}

fn multipart_seeds(imgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let part = |name: &str, file: Option<&[u8]>, text: &str| {
        let mut p = format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"").into_bytes();
        match file {
            Some(b) => {
                p.extend_from_slice(b"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n");
                p.extend_from_slice(b);
            }
            None => {
                p.extend_from_slice(b"\r\n\r\n");
                p.extend_from_slice(text.as_bytes());
            }
        }
        p.extend_from_slice(b"\r\n");
        p
    };
    let end = b"--XyZ--\r\n".to_vec();
    vec![
        [
            part("image_a", Some(&imgs[0]), ""),
            part("image_b", Some(&imgs[1]), ""),
            part("metric", None, "cosine"),
            end.clone(),
        ]
        .concat(),
        [part("image", Some(&imgs[3]), ""), part("image", Some(&imgs[9]), ""), part("faces", None, "all"), end.clone()]
            .concat(),
        [part("image_a", Some(&imgs[2]), ""), part("threshold", None, "0.5"), part("chips", None, "true"), end]
            .concat(),
    ]
}

fn json_seeds(imgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    vec![
        serde_json::json!({"image_a": b64(&imgs[0]), "image_b": format!("data:image/png;base64,{}", b64(&imgs[1])), "metric": "euclidean", "threshold": 0.4}).to_string().into_bytes(),
        serde_json::json!({"images": [b64(&imgs[3]), b64(&imgs[9])], "model": "face-att-small-v1", "detect": false}).to_string().into_bytes(),
    ]
}

fn typed_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"collection": "faces", "epochs": 3, "lr": 0.0001, "margin": 1.0, "freeze": ["stage0"], "lr_mult": {"stage1": 0.1}, "augment": {"rotation_deg": 10, "shift": 0.05, "scale": 0.1, "brightness": 0.1, "contrast": 0.1, "mirror": true}, "pk": {"p": 8, "k": 4}, "val_subjects": ["a", "b"], "seed": 3}"#.to_vec(),
        r#"{"name": "Zoë Ångström", "metadata": {"badge": 7, "tags": ["x", "y"]}}"#.as_bytes().to_vec(),
        br#"{"name": "staff-badges", "modality": "face", "model": "face-dlib-r29-v1"}"#.to_vec(),
    ]
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let imgs = image_seeds();
    let mut typed = json_seeds(&imgs);
    typed.extend(typed_seeds());
    for (target, seeds) in [("image", imgs.clone()), ("multipart", multipart_seeds(&imgs)), ("json", typed)] {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).expect("corpus folder");
        for (k, seed) in seeds.iter().enumerate() {
            std::fs::write(d.join(format!("seed-{k}")), seed).expect("seed written");
        }
        println!("{}: {} seeds in {}", target, seeds.len(), d.display());
    }
}
