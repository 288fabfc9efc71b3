//! 32 concurrent verify requests are all answered, each with the answer it gets when sent alone, and some
//! of them share a forward pass (batching groups requests but must never mix their results up).

use crate::common::{encode, SyntheticIdentity};
use crate::helpers::spawn_app;
use image::ImageFormat;
use std::sync::Arc;

#[tokio::test]
async fn thirty_two_concurrent_verifies_are_all_answered_correctly() {
    let app = Arc::new(spawn_app().await);
    // 32 distinct pairs: half of the same synthetic identity, half of different ones.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..32u64)
        .map(|k| {
            let a = SyntheticIdentity::new(k).sample(0, 92, 112);
            let b = if k % 2 == 0 {
                SyntheticIdentity::new(k).sample(1, 92, 112)
            } else {
                SyntheticIdentity::new(k + 100).sample(0, 92, 112)
            };
            (encode(&a, ImageFormat::Png), encode(&b, ImageFormat::Png))
        })
        .collect();
    let mut alone = Vec::new();
    for (a, b) in &pairs {
        let v: serde_json::Value = app.verify_multipart(a.clone(), b.clone(), &[]).await.json().await.unwrap();
        alone.push(v);
    }
    let tasks: Vec<_> = pairs
        .iter()
        .cloned()
        .map(|(a, b)| {
            let app = app.clone();
            tokio::spawn(async move {
                let r = app.verify_multipart(a, b, &[]).await;
                assert_eq!(r.status(), 200);
                r.json::<serde_json::Value>().await.unwrap()
            })
        })
        .collect();
    let mut batched = 0;
    for (k, t) in tasks.into_iter().enumerate() {
        let v = t.await.unwrap();
        let (d1, d0) = (v["distance"].as_f64().unwrap(), alone[k]["distance"].as_f64().unwrap());
        assert!((d1 - d0).abs() < 1e-4, "pair {k}: concurrent {d1} vs alone {d0}");
        assert_eq!(v["verified"], alone[k]["verified"], "pair {k}");
        if v["timings"]["batch_images"].as_u64().unwrap() > 2 {
            batched += 1;
        }
    }
    eprintln!("{batched}/32 concurrent requests shared a forward pass with another request");
    // 32 requests in flight at once and a 5 ms batching window: some must have been grouped.
    assert!(batched > 0, "no request shared a forward pass: batching did not happen");
}
