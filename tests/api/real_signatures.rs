//! Signature verification end to end over HTTP (needs `SIAMESE_DATA`), with the shipped signature model
//! (`signature-cedar-v1`, the `signature` modality's default): for each validation writer of CEDAR (w41–w45,
//! never seen in training) enrol its first 10 genuine signatures, then verify its other 14 genuine ones
//! (must be accepted) and its 24 skilled forgeries (must be rejected). Prints the rates (the closing note
//! quotes them) and identifies every genuine probe among the five writers.

use crate::common::real_data;
use crate::enrolment::urlencode;
use crate::helpers::{spawn_app_with, Options};
use serde_json::Value;

#[tokio::test]
async fn cedar_validation_writers_enrolled_over_http_reject_skilled_forgeries() {
    let Some(cedar) = real_data("cedar-dev", "cedar_validation_writers_enrolled_over_http_reject_skilled_forgeries")
    else {
        return;
    };
    let app =
        spawn_app_with(Options { collections: vec!["signatures=signature".parse().unwrap()], ..Options::default() })
            .await;
    let info: Value = app.get_json("/v1/collections/signatures").await;
    assert_eq!(info["model"]["id"], "signature-cedar-v1", "the signature modality's default model: {info}");
    let card: Value = serde_json::from_slice(
        &std::fs::read(crate::common::models_dir().join("signature-cedar-v1/model.json")).unwrap(),
    )
    .unwrap();
    let genuine = |w: u32, k: u32| std::fs::read(cedar.join(format!("full_org/original_{w}_{k}.png"))).unwrap();
    let forgery = |w: u32, k: u32| std::fs::read(cedar.join(format!("full_forg/forgeries_{w}_{k}.png"))).unwrap();
    let writers: Vec<u32> = (41..=45).collect();
    for &w in &writers {
        assert_eq!(app.create_subject("signatures", &format!("w{w}")).await.status(), 201);
        let r = app.add_samples("signatures", &format!("w{w}"), (1..=10).map(|k| genuine(w, k)).collect()).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let (mut gen, mut gen_ok, mut forg, mut forg_ok, mut rank1) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for &w in &writers {
        let path = format!("/v1/collections/signatures/subjects/{}/verify", urlencode(&format!("w{w}")));
        for k in 11..=24 {
            let v: Value = app.probe(&path, genuine(w, k), &[]).await.json().await.unwrap();
            // The card's subject calibration is the default.
            assert_eq!(v["rule"], card["subject"]["rule"], "{v}");
            assert_eq!(v["threshold"], card["subject"]["thresholds"]["euclidean"]["value"], "{v}");
            gen += 1;
            gen_ok += v["verified"].as_bool().expect("verdict") as u32;
            let id: Value =
                app.probe("/v1/collections/signatures/identify", genuine(w, k), &[]).await.json().await.unwrap();
            rank1 += (id["candidates"][0]["subject"] == format!("w{w}")) as u32;
        }
        for k in 1..=24 {
            let v: Value = app.probe(&path, forgery(w, k), &[]).await.json().await.unwrap();
            forg += 1;
            forg_ok += !v["verified"].as_bool().expect("verdict") as u32;
        }
    }
    let pct = |a: u32, b: u32| 100.0 * a as f64 / b as f64;
    eprintln!(
        "CEDAR w41–w45 over HTTP (signature-cedar-v1, 10 enrolled genuine each, card's subject rule and threshold): \
         genuine accepted {gen_ok}/{gen} ({:.1}%, FRR {:.1}%), skilled forgeries rejected {forg_ok}/{forg} \
         ({:.1}%, FAR {:.1}%), identify rank-1 of genuine probes {rank1}/{gen}",
        pct(gen_ok, gen),
        100.0 - pct(gen_ok, gen),
        pct(forg_ok, forg),
        100.0 - pct(forg_ok, forg),
    );
    assert!(pct(gen_ok, gen) >= MIN_GENUINE_ACCEPTED, "genuine acceptance");
    assert!(pct(forg_ok, forg) >= MIN_FORGERIES_REJECTED, "skilled-forgery rejection");
}

/// Regression bars for the rates above, a few points under what `signature-cedar-v1` (version 4) measures with
/// its card's subject calibration (rule `mean3`, threshold 0.3377): 67/70 genuine accepted, 115/120 forgeries
/// rejected (version 3: 66/70 and 114/120; version 2: 63/70 and 108/120; version 1: 61/70 and 105/120).
/// Issue 5's bar (EER ≤ 5 %, 4.23 % with 10 references) is held by `tests/cli.rs`.
const MIN_GENUINE_ACCEPTED: f64 = 92.0;
const MIN_FORGERIES_REJECTED: f64 = 92.0;
