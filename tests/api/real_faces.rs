//! On real faces (AT&T s36–s40, identities the shipped model never saw), through HTTP: same-subject pairs
//! verify, different-subject pairs do not — at least 9 of 10 random pairs of each kind.

use crate::common::real_data;
use crate::helpers::{b64, spawn_app};
use rand::{Rng, SeedableRng};

#[tokio::test]
async fn att_test_subjects_verify_through_http() {
    let Some(att) = real_data("att_faces", "att_test_subjects_verify_through_http") else { return };
    let app = spawn_app().await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let img = |s: u32, k: u32| std::fs::read(att.join(format!("s{s}/{k}.pgm"))).unwrap();
    let (mut same_ok, mut diff_ok) = (0, 0);
    for _ in 0..10 {
        let s = rng.gen_range(36..=40);
        let (i, mut j) = (rng.gen_range(1..=10), rng.gen_range(1..=10));
        while j == i {
            j = rng.gen_range(1..=10);
        }
        let v: serde_json::Value = app
            .verify_json(serde_json::json!({"image_a": b64(&img(s, i)), "image_b": b64(&img(s, j))}))
            .await
            .json()
            .await
            .unwrap();
        same_ok += (v["verified"] == true) as u32;
        let (s1, mut s2) = (rng.gen_range(36..=40), rng.gen_range(36..=40));
        while s2 == s1 {
            s2 = rng.gen_range(36..=40);
        }
        let v: serde_json::Value = app
            .verify_multipart(img(s1, rng.gen_range(1..=10)), img(s2, rng.gen_range(1..=10)), &[])
            .await
            .json()
            .await
            .unwrap();
        diff_ok += (v["verified"] == false) as u32;
    }
    eprintln!("AT&T s36–s40 over HTTP: {same_ok}/10 same-subject pairs verified, {diff_ok}/10 different-subject pairs rejected");
    assert!(same_ok >= 9, "same-subject pairs verified: {same_ok}/10");
    assert!(diff_ok >= 9, "different-subject pairs rejected: {diff_ok}/10");
}
