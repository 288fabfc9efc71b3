//! Enrolment quality control and anomaly detection over HTTP on real photos (needs `SIAMESE_DATA`), with the
//! default face model: a photo of another person among a subject's references is flagged `inconsistent`, a
//! re-upload `duplicate` (in another subject: a likely mislabel), the `refuse` policy stores nothing
//! flagged, the audit lists what was flagged; and the anomaly endpoint tells enrolled people's new photos
//! from people never enrolled (same camera, and LFW), characters and signatures (AUCs printed; the closing
//! note quotes them).

use crate::common::real_data;
use crate::helpers::{assert_problem, spawn_app_with, Options};
use serde_json::{json, Value};
use std::path::Path;

fn verdicts(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["quality"]["verdict"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[tokio::test]
async fn quality_control_flags_another_person_and_duplicates_and_refuses_them_on_request() {
    let Some(att) = real_data("att_faces", "quality_control_flags_another_person_and_duplicates") else { return };
    let app = spawn_app_with(Options { default_model: None, ..Options::default() }).await;
    let img = |s: u32, k: u32| std::fs::read(att.join(format!("s{s}/{k}.pgm"))).unwrap();

    // Flag (the default policy): s31's five references, one of them a photo of s32.
    assert_eq!(app.create_subject("faces", "s31").await.status(), 201);
    let r = app.add_samples("faces", "s31", vec![img(31, 1), img(31, 2), img(32, 1), img(31, 3), img(31, 4)]).await;
    assert_eq!(r.status(), 201, "flagged files are stored under the flag policy");
    let v: Value = r.json().await.unwrap();
    assert_eq!(verdicts(&v), ["ok", "ok", "inconsistent", "ok", "ok"], "{v:#}");
    let odd = &v["results"][2];
    assert!(odd["quality"]["subject_distance"].as_f64().unwrap() > odd["quality"]["threshold"].as_f64().unwrap());
    assert_eq!(odd["sample"]["quality"]["verdict"], "inconsistent", "the verdict is kept with the sample");
    let odd_id = odd["sample"]["id"].as_str().unwrap().to_string();

    // The same photo again: a duplicate of the sample already enrolled.
    let v: Value = app.add_samples("faces", "s31", vec![img(31, 1)]).await.json().await.unwrap();
    assert_eq!(verdicts(&v), ["duplicate"], "{v:#}");
    assert_eq!(v["results"][0]["quality"]["duplicate_of"]["same_subject"], true);
    // Under another subject: a likely mislabel.
    assert_eq!(app.create_subject("faces", "s33").await.status(), 201);
    let v: Value = app.add_samples("faces", "s33", vec![img(33, 1), img(31, 2)]).await.json().await.unwrap();
    assert!(v["results"][1]["quality"]["flags"].as_array().unwrap().iter().any(|f| f == "duplicate"), "{v:#}");
    assert_eq!(v["results"][1]["quality"]["duplicate_of"]["subject"], "s31");
    assert_eq!(v["results"][1]["quality"]["duplicate_of"]["same_subject"], false);

    // The audit lists the odd photo first and s31 among the disagreeing subjects.
    let a = app.get_json("/v1/collections/faces/audit").await;
    assert_eq!(a["samples"][0]["sample_id"], odd_id.as_str(), "{a:#}");
    assert_eq!(a["samples"][0]["quality"]["verdict"], "inconsistent");
    assert!(a["samples"].as_array().unwrap().iter().any(|s| s["quality"]["verdict"] == "duplicate"), "{a:#}");
    assert!(a["subjects"].as_array().unwrap().iter().any(|s| s["subject"] == "s31"), "{a:#}");

    // Refuse: a collection that stores nothing flagged.
    let c = app.client.post(app.url("/v1/collections"));
    let r = c.json(&json!({"name": "strict", "modality": "face", "quality_policy": "refuse"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["quality_policy"], "refuse");
    assert_eq!(app.create_subject("strict", "s31").await.status(), 201);
    assert_eq!(app.add_samples("strict", "s31", (1..=4).map(|k| img(31, k)).collect()).await.status(), 201);
    let count = || async { app.get_json("/v1/collections/strict/subjects/s31").await["samples"].as_i64().unwrap() };
    let r = app.add_samples("strict", "s31", vec![img(32, 1)]).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"][0]["error"]["code"], "inconsistent", "{v:#}");
    assert!(v["results"][0]["error"]["message"].as_str().unwrap().contains("beyond the threshold"));
    assert_eq!(count().await, 4, "nothing stored");
    let v: Value = app.add_samples("strict", "s31", vec![img(31, 2)]).await.json().await.unwrap();
    assert_eq!(v["results"][0]["error"]["code"], "duplicate", "{v:#}");
    let r = app.add_samples("strict", "s31", vec![img(31, 5), img(32, 2)]).await;
    assert_eq!(r.status(), 207);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["results"][0]["status"].as_str(), v["results"][1]["error"]["code"].as_str()),
        (Some("stored"), Some("inconsistent"))
    );
    assert_eq!(count().await, 5);

    // The policy changes with PATCH (admin); a bad one is refused.
    let r = app
        .client
        .patch(app.url("/v1/collections/strict"))
        .json(&json!({"quality_policy": "flag"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["quality_policy"], "flag");
    assert_eq!(app.add_samples("strict", "s31", vec![img(32, 3)]).await.status(), 201);
    let r = app
        .client
        .patch(app.url("/v1/collections/strict"))
        .json(&json!({"quality_policy": "maybe"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid_field").await;
}

/// Area under the ROC curve with the library's own function: the chance that an anomaly scores above a
/// normal probe (ties a half). A `no_face` answer (infinite score) counts as the largest score.
fn auc(normal: &[f64], anomalies: &[f64]) -> f64 {
    let finite =
        |v: &[f64]| -> Vec<f32> { v.iter().map(|x| if x.is_finite() { *x as f32 } else { f32::MAX }).collect() };
    siamese::metrics::auc(&finite(normal), &finite(anomalies))
}

fn files(dir: &Path, take: usize, ext: &[&str]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries.into_iter().rev() {
            if p.is_dir() {
                stack.push(p);
            } else if ext.iter().any(|e| p.extension().is_some_and(|x| x.eq_ignore_ascii_case(e))) {
                out.push(p);
            }
        }
    }
    // Evenly spread over the listing, so that many identities, alphabets or writers are used.
    let step = (out.len() / take).max(1);
    out.into_iter().step_by(step).take(take).collect()
}

#[tokio::test]
async fn the_anomaly_score_tells_enrolled_people_from_strangers_characters_and_signatures() {
    let Some(att) = real_data("att_faces", "the_anomaly_score_tells_enrolled_people_from_strangers") else { return };
    let data = att.parent().unwrap().to_path_buf();
    let app = spawn_app_with(Options { default_model: None, ..Options::default() }).await;
    let img = |s: u32, k: u32| std::fs::read(att.join(format!("s{s}/{k}.pgm"))).unwrap();
    for s in 1..=30 {
        let name = format!("s{s}");
        assert_eq!(app.create_subject("faces", &name).await.status(), 201);
        assert_eq!(app.add_samples("faces", &name, (1..=5).map(|k| img(s, k)).collect()).await.status(), 201);
    }
    let score = |v: &Value| v["score"].as_f64().unwrap_or(f64::INFINITY);
    let app = &app;
    let anomaly = |s: u32, k: u32| async move {
        let r = app.probe("/v1/collections/faces/anomaly", img(s, k), &[]).await;
        assert_eq!(r.status(), 200);
        score(&r.json().await.unwrap())
    };
    let mut known = Vec::new();
    for s in 1..=30 {
        for k in 6..=10 {
            known.push(anomaly(s, k).await);
        }
    }
    let mut strangers = Vec::new();
    for s in 31..=40 {
        for k in 1..=10 {
            strangers.push(anomaly(s, k).await);
        }
    }
    let mut sets: Vec<(&str, Vec<f64>, usize)> = vec![("AT&T people never enrolled (s31–s40)", strangers, 0)];
    for (label, dir, n, ext) in [
        ("LFW people never enrolled", data.join("lfw-view1/lfw"), 200, &["jpg"][..]),
        ("Omniglot characters", data.join("omniglot/images_background_small1"), 100, &["png"][..]),
        ("CEDAR signatures", data.join("cedar-dev/full_org"), 50, &["png"][..]),
    ] {
        let mut scores = Vec::new();
        let mut no_face = 0;
        for p in files(&dir, n, ext) {
            let r = app.probe("/v1/collections/faces/anomaly", std::fs::read(&p).unwrap(), &[]).await;
            assert_eq!(r.status(), 200, "{}", p.display());
            let v: Value = r.json().await.unwrap();
            no_face += (v["reason"] == "no_face") as usize;
            scores.push(score(&v));
        }
        sets.push((label, scores, no_face));
    }
    let flagged = |x: &[f64]| 100.0 * x.iter().filter(|s| **s > 1.0).count() as f64 / x.len() as f64;
    eprintln!(
        "anomaly over HTTP, AT&T s1–s30 enrolled (5 photos each, face-dlib-r29-v1): their other {} photos flagged {:.1}%",
        known.len(),
        flagged(&known)
    );
    for (label, scores, no_face) in &sets {
        eprintln!(
            "  {label}: {} probes, AUC {:.4}, flagged {:.1}% (no face found: {no_face})",
            scores.len(),
            auc(&known, scores),
            flagged(scores)
        );
    }
    assert!(flagged(&known) <= 10.0, "enrolled people's new photos must mostly pass");
    for (label, scores, _) in &sets {
        let bar = if label.starts_with("AT&T") { 0.9 } else { 0.95 };
        assert!(auc(&known, scores) >= bar, "{label}: AUC {}", auc(&known, scores));
    }
    // A collection with fewer than two samples cannot say what is normal.
    let c = app.client.post(app.url("/v1/collections"));
    assert_eq!(c.json(&json!({"name": "tiny", "modality": "face"})).send().await.unwrap().status(), 201);
    assert_problem(app.probe("/v1/collections/tiny/anomaly", img(1, 1), &[]).await, 422, "too_few_samples").await;
}
