//! Development check: our chip sampling with dlib's own landmarks and template vs dlib's chip PNGs
//! (`scripts/dlib_reference.py chips` output). Usage: chip_check CHIPS_DIR
use siamese::face::{extract_chip, half_pixel, Similarity, DLIB_TEMPLATE};

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("chips dir"));
    let meta: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(dir.join("chips.json")).unwrap()).unwrap();
    let chip_pts: Vec<[f64; 2]> =
        DLIB_TEMPLATE.iter().map(|p| [(0.25 + p[0]) / 1.5 * 150.0, (0.25 + p[1]) / 1.5 * 150.0]).collect();
    let (mut total, mut n) = (0f64, 0usize);
    for m in meta.iter().take(50) {
        let img = image::open(m["image"].as_str().unwrap()).unwrap().to_rgb8();
        let lm: Vec<[f64; 2]> = m["landmarks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
            .collect();
        let t = Similarity::fit(&chip_pts, &lm);
        let ours = extract_chip(&img, half_pixel(t), 150);
        let theirs = image::open(dir.join(m["chip"].as_str().unwrap())).unwrap().to_rgb8();
        let diff: f64 =
            ours.pixels().zip(theirs.pixels()).map(|(a, b)| (a.0[0] as f64 - b.0[0] as f64).abs()).sum::<f64>()
                / (150.0 * 150.0);
        let mut best = (f64::MAX, 0.0, 0.0);
        for dx in [0.25, 0.5, 0.75] {
            for dy in [0.25, 0.5, 0.75] {
                let t2 = if std::env::var("CHIP_SPACE").is_ok() {
                    Similarity { tx: t.tx + t.a * dx - t.b * dy, ty: t.ty + t.b * dx + t.a * dy, ..t }
                } else {
                    Similarity { tx: t.tx + dx, ty: t.ty + dy, ..t }
                };
                let o2 = extract_chip(&img, t2, 150);
                let d: f64 =
                    o2.pixels().zip(theirs.pixels()).map(|(a, b)| (a.0[0] as f64 - b.0[0] as f64).abs()).sum::<f64>()
                        / 22500.0;
                if d < best.0 {
                    best = (d, dx, dy);
                }
            }
        }
        total += diff;
        n += 1;
        if n <= 5 {
            println!("{}: mean |diff| {diff:.2}; best shift {:?}", m["chip"], best);
        }
    }
    println!("mean abs pixel diff over {n} chips: {:.3}", total / n as f64);
}
