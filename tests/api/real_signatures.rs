//! Signature verification end to end over HTTP (needs `SIAMESE_DATA`), with the `signature` modality's default
//! model and the served defaults: for each **test** writer of the three signature sets (`scripts/signature_folds.env`:
//! writers no model or threshold was chosen on) enrol its first 10 genuine signatures, then verify its other
//! genuine ones (should be accepted) and its skilled forgeries (should be rejected), and identify each genuine
//! probe among all enrolled writers. Prints FAR and FRR per set at the served threshold (the closing note and the
//! model card quote them) and holds each set to a regression bar.

use crate::common::real_data;
use crate::enrolment::urlencode;
use crate::helpers::{spawn_app_with, Options};
use serde_json::Value;
use siamese::dataset::Dataset;
use std::collections::HashMap;

/// The folds of `scripts/signature_folds.env`: `NAME_TEST` / `NAME_VAL` → writer numbers.
fn folds() -> HashMap<String, Vec<u32>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/signature_folds.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("NAME=1,2,3");
            (k.to_string(), v.split(',').map(|w| w.trim().parse().expect("writer number")).collect())
        })
        .collect()
}

/// (set, folder under `SIAMESE_DATA`, most FAR and FRR accepted at the served threshold, in %): regression bars
/// about 4 points above what the default model measures with `siamese eval` on the same folds (`signature-cedar-v1`
/// version 5, `evaluation.test_folds` of its card: CEDAR FAR 2.1 % / FRR 21.4 %, BHSig 19.7 % / 19.9 %, SigComp
/// 13.8 % / 33.3 %). They record where the service stands, not where it should be: the accuracy issue asks for
/// FAR ≤ 5 % and FRR ≤ 10 % on each set.
const SETS: [(&str, &str, f64, f64); 3] = [
    ("CEDAR", "cedar-dev", 6.0, 26.0),
    ("BHSIG", "bhsig-bengali", 24.0, 24.0),
    ("SIGCOMP", "sigcomp2011-dutch", 18.0, 38.0),
];

#[tokio::test]
async fn test_writers_of_three_signature_sets_enrolled_over_http_reject_skilled_forgeries() {
    let name = "test_writers_of_three_signature_sets_enrolled_over_http_reject_skilled_forgeries";
    let mut roots = Vec::new();
    for (set, folder, ..) in SETS {
        let Some(root) = real_data(folder, name) else { return };
        roots.push((set, Dataset::open(&root).unwrap()));
    }
    let folds = folds();
    let app =
        spawn_app_with(Options { collections: vec!["signatures=signature".parse().unwrap()], ..Options::default() })
            .await;
    let info: Value = app.get_json("/v1/collections/signatures").await;
    let model = info["model"]["id"].as_str().expect("the collection's model").to_string();
    let card: Value =
        serde_json::from_slice(&std::fs::read(crate::common::models_dir().join(&model).join("model.json")).unwrap())
            .unwrap();
    let k = 10;
    // Enrol every test writer of every set in one collection.
    let mut writers = Vec::new();
    for (set, ds) in &roots {
        for w in &folds[&format!("{set}_TEST")] {
            let id = ds.identities.iter().find(|i| i.name == format!("w{w}")).expect("test writer in the set");
            let subject = format!("{}-w{w}", set.to_lowercase());
            assert_eq!(app.create_subject("signatures", &subject).await.status(), 201);
            let refs = id.images[..k].iter().map(|p| std::fs::read(p).unwrap()).collect();
            let r = app.add_samples("signatures", &subject, refs).await;
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            writers.push((*set, subject, id.clone()));
        }
    }
    // Per set: (genuine, genuine accepted, forgeries, forgeries rejected, rank-1 identifications).
    let mut tally: HashMap<&str, [u32; 5]> = HashMap::new();
    for (set, subject, id) in &writers {
        let path = format!("/v1/collections/signatures/subjects/{}/verify", urlencode(subject));
        let t = tally.entry(set).or_default();
        for p in &id.images[k..] {
            let v: Value = app.probe(&path, std::fs::read(p).unwrap(), &[]).await.json().await.unwrap();
            // The card's subject calibration is the default.
            assert_eq!(v["rule"], card["subject"]["rule"], "{v}");
            assert_eq!(v["threshold"], card["subject"]["thresholds"]["euclidean"]["value"], "{v}");
            t[0] += 1;
            t[1] += v["verified"].as_bool().expect("verdict") as u32;
            let found: Value = app
                .probe("/v1/collections/signatures/identify", std::fs::read(p).unwrap(), &[])
                .await
                .json()
                .await
                .unwrap();
            t[4] += (found["candidates"][0]["subject"] == subject.as_str()) as u32;
        }
        for p in &id.forgeries {
            let v: Value = app.probe(&path, std::fs::read(p).unwrap(), &[]).await.json().await.unwrap();
            t[2] += 1;
            t[3] += !v["verified"].as_bool().expect("verdict") as u32;
        }
    }
    let pct = |a: u32, b: u32| 100.0 * a as f64 / b.max(1) as f64;
    let mut failures = Vec::new();
    for (set, _, max_far, max_frr) in SETS {
        let [gen, gen_ok, forg, forg_ok, rank1] = tally[set];
        let (far, frr) = (100.0 - pct(forg_ok, forg), 100.0 - pct(gen_ok, gen));
        eprintln!(
            "{set} test writers over HTTP ({model} v{}, {k} enrolled genuine each, served rule and threshold): \
             genuine accepted {gen_ok}/{gen} (FRR {frr:.1}%), skilled forgeries rejected {forg_ok}/{forg} \
             (FAR {far:.1}%), identify rank-1 of genuine probes {rank1}/{gen}",
            card["version"],
        );
        if far > max_far || frr > max_frr {
            failures.push(format!("{set}: FAR {far:.1}% (bar {max_far}%), FRR {frr:.1}% (bar {max_frr}%)"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
