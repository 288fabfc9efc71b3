//! 1:N identify over a gallery of random unit-length 128-d embeddings (5 per subject): the exact matrix
//! pass plus top-5 subject selection, as the server runs it. Prints p50/p99 latency per query.
//!
//! `cargo bench --bench identify` (or `make bench`); `SIAMESE_BENCH_SIZES=100000,1000000` picks sizes.

use rand::{Rng, SeedableRng};
use siamese::distance::Metric;
use siamese::gallery::{GalleryIndex, Precision, Rule};
use std::time::Instant;

fn unit(r: &mut impl Rng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| r.gen_range(-1.0f32..1.0)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a tiny size then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("SIAMESE_BENCH_SIZES") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) if quick => vec![2_000],
        Err(_) => vec![100_000, 1_000_000],
    };
    let dim = 128;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for (n, precision) in sizes.iter().flat_map(|n| [(*n, Precision::F32), (*n, Precision::F16)]) {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
        let t = Instant::now();
        let mut g = GalleryIndex::with_precision(dim, precision);
        for i in 0..n {
            let s = i / 5;
            g.insert(&format!("smp_{i:08}"), &format!("sub_{s:08}"), &format!("subject {s}"), &unit(&mut r, dim));
        }
        let build_s = t.elapsed().as_secs_f64();
        let queries: Vec<Vec<f32>> = (0..if quick { 5 } else { 200 }).map(|_| unit(&mut r, dim)).collect();
        for q in queries.iter().take(3) {
            std::hint::black_box(g.nearest_subjects(q, Metric::Euclidean, Rule::Min, 5));
        }
        {
            let mut ms: Vec<f64> = queries
                .iter()
                .map(|q| {
                    let t = Instant::now();
                    std::hint::black_box(g.distances(q, Metric::Euclidean));
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            println!(
                "matrix pass alone n={n:>8} {precision:?}: p50 {:7.2} ms  p99 {:7.2} ms",
                percentile(&ms, 0.5),
                percentile(&ms, 0.99)
            );
        }
        for (metric, rule) in [(Metric::Euclidean, Rule::Min), (Metric::Cosine, Rule::Min)] {
            let mut ms: Vec<f64> = queries
                .iter()
                .map(|q| {
                    let t = Instant::now();
                    let top = g.nearest_subjects(q, metric, rule, 5);
                    assert_eq!(top.len(), 5);
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            println!(
                "identify n={n:>8} {precision:?} dim={dim} top-5 {metric:<9} rule={}: p50 {:7.2} ms  p99 {:7.2} ms  ({} queries, {threads} threads, matrix {:.0} MiB, built in {build_s:.1} s)",
                rule.name(),
                percentile(&ms, 0.5),
                percentile(&ms, 0.99),
                ms.len(),
                (n * dim * if precision == Precision::F16 { 2 } else { 4 }) as f64 / (1 << 20) as f64,
            );
        }
    }
}
