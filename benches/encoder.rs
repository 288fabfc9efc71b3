//! Encoder forward pass at batch 1 and 16 (the shipped face model, CPU), and the distance functions.
//! Run: `make bench` (or `cargo bench --bench encoder`).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use siamese::distance::{cosine, euclidean};
use siamese::model::LoadedModel;
use std::path::Path;

fn encoder(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/face-att-small-v1");
    let model = LoadedModel::load(&dir, tch::Device::Cpu).expect("shipped model");
    let n = model.card.input.len();
    let mut g = c.benchmark_group("encoder_forward");
    for batch in [1usize, 16] {
        let input: Vec<f32> = (0..n * batch).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("face-att-small-v1", batch), &batch, |b, &batch| {
            b.iter(|| model.embed_flat(black_box(&input), batch).unwrap())
        });
    }
    g.finish();
}

fn distances(c: &mut Criterion) {
    let a: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..128).map(|i| (i as f32 * 0.11).cos()).collect();
    let mut g = c.benchmark_group("distance_128d");
    g.bench_function("euclidean", |bench| bench.iter(|| euclidean(black_box(&a), black_box(&b))));
    g.bench_function("cosine", |bench| bench.iter(|| cosine(black_box(&a), black_box(&b))));
    g.finish();
}

criterion_group!(benches, encoder, distances);
criterion_main!(benches);
