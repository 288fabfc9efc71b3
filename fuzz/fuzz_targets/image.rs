//! Bytes → the server's decode (its limits) → the preparation of a whole-image face model, the signature
//! model (Otsu, ink box, fit) and a colour model; and the header-only size estimate of the decode budget.
#![no_main]
use libfuzzer_sys::fuzz_target;
use siamese::model::{InputSpec, Preprocess, SignatureFit};
use siamese::preprocess::{declared_decode_bytes, decode, normalize, to_planes, DecodeLimits};
use std::sync::LazyLock;

static SPECS: LazyLock<Vec<InputSpec>> = LazyLock::new(|| {
    let base = InputSpec {
        width: 46,
        height: 56,
        channels: 1,
        mean: vec![0.5],
        std: vec![0.5],
        mirror_average: false,
        tta: vec![],
        preprocess: Preprocess::Resize,
    };
    let sig = InputSpec {
        width: 220,
        height: 155,
        preprocess: Preprocess::Signature { margin: 0.05, fit: SignatureFit::default() },
        ..base.clone()
    };
    let rgb = InputSpec { channels: 3, mean: vec![0.5; 3], std: vec![0.5; 3], ..base.clone() };
    vec![base, sig, rgb]
});

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits { max_dimension: 1024, max_alloc_bytes: 16 << 20 };
    let _ = declared_decode_bytes(data, limits);
    if let Ok(img) = decode(data, limits) {
        for s in SPECS.iter() {
            let mut planes = to_planes(&img, s);
            normalize(&mut planes, s);
            assert_eq!(planes.len(), s.len());
        }
    }
});
