//! Helpers shared by the integration tests: synthetic identities (images the tests generate, so the
//! tests run anywhere) and the real-data switch.
#![allow(dead_code)]

use image::{GrayImage, Luma};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// The shipped models directory.
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// `$SIAMESE_DATA/<sub>` when real data is configured. Without it: panics when `SIAMESE_REQUIRE_DATA=1`
/// (CI), otherwise says loudly that the test is skipped and returns `None`.
pub fn real_data(sub: &str, test: &str) -> Option<PathBuf> {
    match std::env::var_os("SIAMESE_DATA").filter(|v| !v.is_empty()) {
        Some(root) => {
            let p = PathBuf::from(root).join(sub);
            assert!(p.exists(), "SIAMESE_DATA is set but {} does not exist", p.display());
            Some(p)
        }
        None => {
            if std::env::var("SIAMESE_REQUIRE_DATA").as_deref() == Ok("1") {
                panic!("{test}: SIAMESE_REQUIRE_DATA=1 but SIAMESE_DATA is not set");
            }
            eprintln!("SKIPPED {test}: needs real data; set SIAMESE_DATA to the datasets folder (see README)");
            // The test harness hides a passing test's output: `make test` counts skips from this file.
            if let Some(log) = std::env::var_os("SIAMESE_SKIP_LOG") {
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
                    let _ = writeln!(f, "{test}");
                }
            }
            None
        }
    }
}

/// One synthetic identity: a fixed layout of shapes. Samples of it differ by shift, scale, brightness,
/// contrast, noise and a random distractor blob, so raw pixels are a poor guide and a network must learn.
#[derive(Debug, Clone)]
pub struct SyntheticIdentity {
    shapes: Vec<(f32, f32, f32, f32, f32)>, // cx, cy, rx, ry, intensity
    background: f32,
}

impl SyntheticIdentity {
    pub fn new(seed: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed * 7919 + 13);
        let shapes = (0..4)
            .map(|_| {
                (
                    r.gen_range(0.2..0.8),
                    r.gen_range(0.2..0.8),
                    r.gen_range(0.06..0.2),
                    r.gen_range(0.06..0.2),
                    r.gen_range(0.0..1.0),
                )
            })
            .collect();
        SyntheticIdentity { shapes, background: r.gen_range(0.3..0.7) }
    }

    /// Render sample `k` at `w × h`.
    pub fn sample(&self, k: u64, w: u32, h: u32) -> GrayImage {
        let mut r = ChaCha8Rng::seed_from_u64(k.wrapping_mul(104729) ^ (self.background.to_bits() as u64));
        let (dx, dy) = (r.gen_range(-0.08..0.08f32), r.gen_range(-0.08..0.08f32));
        let s = r.gen_range(0.9..1.1f32);
        let (gain, bias) = (r.gen_range(0.6..1.4f32), r.gen_range(-0.25..0.25f32));
        let distractor =
            (r.gen_range(0.1..0.9f32), r.gen_range(0.1..0.9f32), r.gen_range(0.05..0.15f32), r.gen_range(0.0..1.0f32));
        GrayImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            let mut val = self.background;
            for (cx, cy, rx, ry, c) in &self.shapes {
                let (ex, ey) = ((u - (cx * s + dx)) / (rx * s), (v - (cy * s + dy)) / (ry * s));
                if ex * ex + ey * ey <= 1.0 {
                    val = *c;
                }
            }
            let (ex, ey) = ((u - distractor.0) / distractor.2, (v - distractor.1) / distractor.2);
            if ex * ex + ey * ey <= 1.0 {
                val = distractor.3;
            }
            let noise: f32 = r.gen_range(-0.08..0.08);
            Luma([(((val - 0.5) * gain + 0.5 + bias + noise).clamp(0.0, 1.0) * 255.0) as u8])
        })
    }
}

/// Write `ids` identities × `per` samples as PNG files in a folder-per-identity layout.
pub fn write_synthetic_dataset(dir: &Path, first_id: u64, ids: u64, per: u64) {
    for i in first_id..first_id + ids {
        let id = SyntheticIdentity::new(i);
        let d = dir.join(format!("id{i}"));
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..per {
            id.sample(k, 92, 112).save(d.join(format!("{k}.png"))).unwrap();
        }
    }
}

/// Encode an image in a format.
pub fn encode(img: &GrayImage, fmt: image::ImageFormat) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let dynamic = image::DynamicImage::ImageLuma8(img.clone());
    // GIF and WebP encoders take colour only.
    let dynamic = match fmt {
        image::ImageFormat::Gif => image::DynamicImage::ImageRgba8(dynamic.to_rgba8()),
        image::ImageFormat::WebP => image::DynamicImage::ImageRgb8(dynamic.to_rgb8()),
        _ => dynamic,
    };
    dynamic.write_to(&mut buf, fmt).unwrap();
    buf.into_inner()
}

/// A fresh, empty PostgreSQL database for one test, as a URL. The server comes from `DATABASE_URL_TEST`
/// (`.ci/run` sets it and starts PostgreSQL). Without it: panics in CI (`SIAMESE_REQUIRE_DATA=1`),
/// otherwise says loudly that the test is skipped and returns `None`. Databases left by earlier runs
/// (named with their creation time) are dropped after an hour.
pub async fn fresh_postgres(test: &str) -> Option<String> {
    use sqlx::{Connection, Executor, Row};
    let Some(base) = std::env::var("DATABASE_URL_TEST").ok().filter(|v| !v.is_empty()) else {
        if std::env::var("SIAMESE_REQUIRE_DATA").as_deref() == Ok("1") {
            panic!("{test}: CI needs PostgreSQL but DATABASE_URL_TEST is not set");
        }
        eprintln!("SKIPPED {test}: needs PostgreSQL; set DATABASE_URL_TEST=postgres://postgres@127.0.0.1:5432/test");
        return None;
    };
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("{test}: DATABASE_URL_TEST={base} is set but PostgreSQL is unreachable: {e}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let old: Vec<String> = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'siamese_t_%'")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .filter(|n| n.split('_').nth(2).and_then(|t| t.parse::<u64>().ok()).is_some_and(|t| t + 3600 < now))
        .collect();
    for n in old {
        let _ = conn.execute(format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)").as_str()).await;
    }
    let name = format!("siamese_t_{now}_{:08x}", rand::random::<u32>());
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await.unwrap();
    let (prefix, _) = base.rsplit_once('/').expect("DATABASE_URL_TEST ends with /DBNAME");
    Some(format!("{prefix}/{name}"))
}

/// The first image of the first `n` people (sorted) of LFW View 1.
pub fn lfw_images(lfw: &Path, n: usize) -> Vec<PathBuf> {
    let mut people: Vec<PathBuf> = std::fs::read_dir(lfw.join("lfw")).unwrap().map(|e| e.unwrap().path()).collect();
    people.sort();
    people
        .iter()
        .filter_map(|p| {
            let mut f: Vec<PathBuf> = std::fs::read_dir(p).ok()?.map(|e| e.unwrap().path()).collect();
            f.sort();
            f.into_iter().next()
        })
        .take(n)
        .collect()
}
