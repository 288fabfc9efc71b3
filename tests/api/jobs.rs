//! Retrain jobs over HTTP on the real server: refusals before queueing, a job's life (history, events,
//! report, candidate version), serving while a job trains, activation without mixing versions and
//! rollback, and a job that survives SIGKILL of its server. Training data: generated identities (a
//! folder-per-identity dataset under the data root, or enrolled samples), on the small AT&T model.

use crate::common::{encode, fresh_postgres, write_synthetic_dataset, SyntheticIdentity};
use crate::helpers::{assert_problem, spawn_app_with, Options, TestApp};
use crate::replicas::ServerProcess;
use image::ImageFormat;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MODEL: &str = "face-att-small-v1";

fn options(data_root: &std::path::Path) -> Options {
    Options {
        collections: vec![format!("faces=face:{MODEL}").parse().unwrap()],
        data_root: Some(data_root.to_path_buf()),
        ..Options::default()
    }
}

fn png(id: u64, k: u64) -> Vec<u8> {
    encode(&SyntheticIdentity::new(id).sample(k, 92, 112), ImageFormat::Png)
}

async fn post_job(base: &str, c: &reqwest::Client, body: Value) -> reqwest::Response {
    c.post(format!("{base}/v1/jobs")).json(&body).send().await.unwrap()
}

/// Wait until the job is in one of `states` (panics after `limit`).
async fn wait_for(base: &str, c: &reqwest::Client, id: &str, states: &[&str], limit: Duration) -> Value {
    let t = Instant::now();
    loop {
        let j: Value = c.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
        if states.contains(&j["state"].as_str().unwrap_or("")) {
            return j;
        }
        assert!(t.elapsed() < limit, "job never reached {states:?}: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn enrol(app_base: &str, c: &reqwest::Client, subject: &str, images: Vec<Vec<u8>>) {
    let r = c
        .post(format!("{app_base}/v1/collections/faces/subjects"))
        .json(&json!({ "name": subject }))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 201 || r.status() == 409, "{}", r.status());
    let mut form = reqwest::multipart::Form::new();
    for (k, b) in images.into_iter().enumerate() {
        form = form.part("image", reqwest::multipart::Part::bytes(b).file_name(format!("{k}.png")));
    }
    let r = c
        .post(format!("{app_base}/v1/collections/faces/subjects/{subject}/samples"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Identify with the nearest-sample rule: an enrolled image finds its own subject first.
async fn identify(base: &str, c: &reqwest::Client, img: Vec<u8>) -> Value {
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(img).file_name("p.png"))
        .text("rule", "min");
    let r = c.post(format!("{base}/v1/collections/faces/identify")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn job_requests_that_cannot_run_are_refused_before_anything_is_queued() {
    let root = tempfile::tempdir().unwrap();
    write_synthetic_dataset(&root.path().join("six"), 100, 6, 3);
    let app = spawn_app_with(options(root.path())).await;
    let c = &app.client;
    for s in 0..2 {
        enrol(&app.base, c, &format!("p{s}"), vec![png(s, 0), png(s, 1)]).await;
    }
    let p = assert_problem(post_job(&app.base, c, json!({ "collection": "faces" })).await, 422, "invalid_job").await;
    assert_eq!(p["detail"], "needs ≥ 4 subjects with ≥ 2 samples; collection 'faces' has 2", "{p}");
    assert_problem(post_job(&app.base, c, json!({ "collection": "nope" })).await, 404, "collection_not_found").await;
    assert_problem(
        post_job(&app.base, c, json!({ "dataset": "six", "base": "no-such-model" })).await,
        404,
        "unknown_model",
    )
    .await;
    for outside in ["../", "/etc", "six/../../x"] {
        let r = post_job(&app.base, c, json!({ "dataset": outside })).await;
        assert_problem(r, 400, "path_outside_data_root").await;
    }
    let p = assert_problem(post_job(&app.base, c, json!({ "dataset": "six", "epochs": -1 })).await, 422, "invalid_job")
        .await;
    assert!(p["detail"].as_str().unwrap().contains("epochs"), "{p}");
    let p = assert_problem(
        post_job(&app.base, c, json!({ "dataset": "six", "freeze": ["stage9"] })).await,
        422,
        "invalid_job",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("unknown layer group 'stage9'"), "{p}");
    let p = assert_problem(
        post_job(&app.base, c, json!({ "dataset": "six", "lr_mult": {"neck": 0.1} })).await,
        422,
        "invalid_job",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("'neck'"), "{p}");
    assert_problem(post_job(&app.base, c, json!({ "dataset": "six", "loss": "triplet" })).await, 422, "invalid_job")
        .await;
    assert_problem(post_job(&app.base, c, json!({ "dataset": "six", "epochs": "many" })).await, 400, "invalid_json")
        .await;
    assert_problem(post_job(&app.base, c, json!({ "dataset": "six", "epoch": 3 })).await, 400, "invalid_json").await;
    assert_problem(post_job(&app.base, c, json!({})).await, 422, "invalid_job").await;
    // Nothing was queued.
    let list: Value = c.get(app.url("/v1/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0, "{list}");
    for (method, path) in
        [("GET", "/v1/jobs/job_nope"), ("DELETE", "/v1/jobs/job_nope"), ("POST", "/v1/jobs/job_nope/resume")]
    {
        let r = c.request(method.parse().unwrap(), app.url(path)).send().await.unwrap();
        assert_problem(r, 404, "job_not_found").await;
    }
    let r = c.post(app.url(&format!("/v1/models/{MODEL}/versions/99/activate"))).send().await.unwrap();
    assert_problem(r, 404, "version_not_found").await;

    // A job that finishes; then resuming or cancelling it is a conflict.
    let r = post_job(&app.base, c, json!({ "dataset": "six", "epochs": 1, "val_subjects": ["id104", "id105"] })).await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let done = wait_for(&app.base, c, &id, &["succeeded", "failed"], Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let r = c.post(app.url(&format!("/v1/jobs/{id}/resume"))).send().await.unwrap();
    let p = assert_problem(r, 409, "job_state").await;
    assert!(p["detail"].as_str().unwrap().contains("succeeded"), "{p}");
    assert_problem(c.delete(app.url(&format!("/v1/jobs/{id}"))).send().await.unwrap(), 409, "job_state").await;

    // The command line talks to the running server.
    let cli = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_siamese")).args(args).output().unwrap()
        })
    };
    let base = app.base.clone();
    let out = cli(vec!["jobs".into(), "--url".into(), base.clone(), "list".into()]).await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&id) && text.contains("succeeded"), "{text}");
    let out = cli(vec!["jobs".into(), "--url".into(), base.clone(), "show".into(), id.clone()]).await.unwrap();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["id"], id.as_str());
    assert!(shown["report"]["candidate"]["eer"].as_f64().is_some(), "{shown}");
    let out = cli(vec!["jobs".into(), "--url".into(), base, "resume".into(), id.clone()]).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A job's whole life on a dataset: queued with `Location`, per-epoch history, events to a client
/// connected from the start and the history to a late one, the report and its plots, the candidate
/// registered as the next version with its parent, frozen groups bit-identical to the base model.
#[tokio::test]
async fn a_job_trains_reports_every_epoch_and_registers_its_candidate() {
    let root = tempfile::tempdir().unwrap();
    write_synthetic_dataset(&root.path().join("ids"), 200, 8, 4);
    let app = spawn_app_with(options(root.path())).await;
    let c = &app.client;
    let body = json!({
        "dataset": "ids", "epochs": 3, "batch_pairs": 16, "lr": 1e-3, "seed": 3,
        "freeze": ["stage0", "stage1"], "lr_mult": {"stage2": 0.3},
        "augment": {"rotation_deg": 5, "shift": 0.03, "scale": 0.05, "mirror": false}
    });
    let r = post_job(&app.base, c, body).await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["state"], "queued");
    assert_eq!(location, format!("/v1/jobs/{}", job["id"].as_str().unwrap()));
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["params"]["resolved"]["val"].as_array().unwrap().len(), 2, "{job}"); // 20 % of 8, at least 2

    // Events from the start.
    let events = |from: Duration| {
        let (url, c) = (app.url(&format!("/v1/jobs/{id}/events")), c.clone());
        async move {
            tokio::time::sleep(from).await;
            let mut r = c.get(url).send().await.unwrap();
            assert_eq!(r.headers()["content-type"], "text/event-stream");
            let mut text = String::new();
            while let Some(chunk) = tokio::time::timeout(Duration::from_secs(180), r.chunk()).await.unwrap().unwrap() {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            text
        }
    };
    let early = events(Duration::ZERO).await;
    let epochs = early.matches("event: epoch").count();
    assert!(epochs >= 3, "one event per epoch expected:\n{early}");
    assert!(early.contains("\"state\":\"succeeded\""), "{early}");
    // A late client gets the history, then the end.
    let late = events(Duration::ZERO).await;
    assert_eq!(late.matches("event: epoch").count(), 3, "{late}");
    assert!(late.contains("\"state\":\"succeeded\""), "{late}");

    let job: Value = c.get(app.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().json().await.unwrap();
    let history = job["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{job}");
    for (k, h) in history.iter().enumerate() {
        assert_eq!(h["epoch"], k + 1);
        for f in ["train_loss", "val_eer_euclidean", "val_eer_cosine", "val_auc_euclidean", "val_auc_cosine", "seconds"]
        {
            assert!(h[f].as_f64().is_some_and(f64::is_finite), "{f}: {h}");
        }
    }
    assert!(job["seconds"].as_f64().unwrap() > 0.0);
    let v = job["candidate_version"].as_i64().expect("a candidate version");

    let report: Value = c.get(app.url(&format!("/v1/jobs/{id}/report"))).send().await.unwrap().json().await.unwrap();
    for who in ["candidate", "active"] {
        for m in ["euclidean", "cosine"] {
            for f in ["eer", "auc", "tar_at_far_1e-3"] {
                assert!(report[who][m][f].as_f64().is_some(), "{who} {m} {f}: {report}");
            }
        }
    }
    assert_eq!(report["candidate"]["version"], v);
    for file in ["roc.png", "distances-candidate.png", "distances-active.png"] {
        let r = c.get(app.url(&format!("/v1/jobs/{id}/report/{file}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert_eq!(r.headers()["content-type"], "image/png");
        assert!(r.bytes().await.unwrap().starts_with(b"\x89PNG"), "{file}");
    }
    let r = c.get(app.url(&format!("/v1/jobs/{id}/report/nope.png"))).send().await.unwrap();
    assert_problem(r, 404, "job_not_found").await;

    // The candidate is the next version, not active (no auto_promote), with its parent.
    let versions: Value =
        c.get(app.url(&format!("/v1/models/{MODEL}/versions"))).send().await.unwrap().json().await.unwrap();
    let list = versions["versions"].as_array().unwrap();
    let cand = list.iter().find(|x| x["version"] == v).expect("candidate listed");
    let parent = cand["parent_version"].as_i64().unwrap();
    assert_eq!(v, parent + 1);
    assert_eq!(versions["active"], parent);
    assert_eq!(cand["active"], false);
    assert_eq!(cand["job"], id.as_str());
    assert_eq!(versions["layer_groups"], json!(["stage0", "stage1", "stage2", "stage3", "head"]));

    // Frozen groups are bit-identical to the base model; the others moved.
    let weights = app.store.model_weights(MODEL, v).await.unwrap().expect("weights stored");
    let dir = tempfile::tempdir().unwrap();
    let cand_file = dir.path().join("cand.safetensors");
    std::fs::write(&cand_file, weights).unwrap();
    let base =
        tch::Tensor::read_safetensors(crate::common::models_dir().join(MODEL).join("weights.safetensors")).unwrap();
    let cand: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(&cand_file).unwrap().into_iter().collect();
    let (mut same, mut moved) = (0, 0);
    for (name, t) in &base {
        let c = &cand[name];
        let equal = t.equal(c);
        if name.starts_with("stage0.") || name.starts_with("stage1.") {
            assert!(equal, "frozen {name} changed");
            same += 1;
        } else if name.starts_with("stage3.") && !name.contains("running") && !name.contains("num_batches") && !equal {
            moved += 1;
        }
    }
    assert!(same > 0 && moved > 0, "frozen tensors {same}, moved stage3 tensors {moved}");
}

/// `/v1/verify` keeps answering while a job trains; the p99 latency during training is printed.
#[tokio::test]
async fn verify_keeps_answering_while_a_job_trains() {
    let root = tempfile::tempdir().unwrap();
    write_synthetic_dataset(&root.path().join("ids"), 300, 10, 6);
    let app = spawn_app_with(options(root.path())).await;
    let c = &app.client;
    let (a, b) = (png(7, 0), png(7, 1));
    // The same requests with no job, for comparison.
    let mut idle = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        assert_eq!(app.verify_multipart(a.clone(), b.clone(), &[]).await.status(), 200);
        idle.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let r = post_job(&app.base, c, json!({ "dataset": "ids", "epochs": 4, "batch_pairs": 16 })).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    wait_for(&app.base, c, &id, &["running"], Duration::from_secs(30)).await;
    let mut times = Vec::new();
    loop {
        let state = c.get(app.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().json::<Value>().await.unwrap()
            ["state"]
            .as_str()
            .unwrap()
            .to_string();
        if state != "running" {
            assert_eq!(state, "succeeded");
            break;
        }
        let t = Instant::now();
        let r = app.verify_multipart(a.clone(), b.clone(), &[]).await;
        assert_eq!(r.status(), 200, "verify failed during training");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    assert!(times.len() >= 5, "only {} verify requests during training", times.len());
    let pct = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
    };
    let (i50, i99) = (pct(&mut idle, 0.5), pct(&mut idle, 0.99));
    let (t50, t99) = (pct(&mut times, 0.5), pct(&mut times, 0.99));
    eprintln!("verify with no job: {} requests, p50 {i50:.1} ms, p99 {i99:.1} ms", idle.len());
    eprintln!("verify during training: {} requests, p50 {t50:.1} ms, p99 {t99:.1} ms", times.len());
}

async fn train_candidate(app: &TestApp, body: Value) -> i64 {
    let r = post_job(&app.base, &app.client, body).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let j = wait_for(&app.base, &app.client, &id, &["succeeded", "failed"], Duration::from_secs(300)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    j["candidate_version"].as_i64().unwrap()
}

/// Activation: identify answers before, during and after are each computed with one version (the
/// response says which, and the same image always gets the same answer under one version); after the
/// switch every subject is still found; rollback restores the old answers exactly.
#[tokio::test]
async fn activation_switches_versions_without_mixing_them_and_rollback_restores_answers() {
    let app = spawn_app_with(Options {
        collections: vec![format!("faces=face:{MODEL}").parse().unwrap()],
        ..Options::default()
    })
    .await;
    let c = &app.client;
    let subjects: Vec<u64> = (400..408).collect();
    for s in &subjects {
        enrol(&app.base, c, &format!("s{s}"), (0..3).map(|k| png(*s, k)).collect()).await;
    }
    let probe = |s: u64| png(s, 0);
    let mut before = Vec::new();
    for s in &subjects {
        let v = identify(&app.base, c, probe(*s)).await;
        assert_eq!(v["candidates"][0]["subject"], format!("s{s}"), "{v}");
        before.push(v);
    }
    let old = before[0]["model"]["version"].as_i64().unwrap();
    let new = train_candidate(&app, json!({ "collection": "faces", "epochs": 2, "lr": 1e-3, "seed": 5 })).await;

    // Identify continuously while activating.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = {
        let (base, c, stop, img) = (app.base.clone(), c.clone(), stop.clone(), probe(subjects[0]));
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let v = identify(&base, &c, img.clone()).await;
                seen.push((v["model"]["version"].as_i64().unwrap(), v["candidates"][0]["distance"].as_f64().unwrap()));
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c.post(app.url(&format!("/v1/models/{MODEL}/versions/{new}/activate"))).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let act: Value = r.json().await.unwrap();
    assert_eq!(act["embedded"], subjects.len() * 3, "{act}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = during.await.unwrap();
    // Each version gives one answer for the same image: a mixed comparison would give a third.
    let mut per_version: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for (v, d) in &seen {
        per_version.entry(*v).or_default().push(*d);
    }
    assert!(per_version.keys().all(|v| *v == old || *v == new), "{seen:?}");
    for (v, ds) in &per_version {
        assert!(ds.iter().all(|d| (d - ds[0]).abs() < 1e-5), "version {v} gave different answers: {ds:?}");
    }
    assert_eq!(seen.last().unwrap().0, new, "after the switch only the new version answers");
    for s in &subjects {
        let v = identify(&app.base, c, probe(*s)).await;
        assert_eq!(v["model"]["version"], new);
        assert_eq!(v["searched"], subjects.len() * 3);
        assert_eq!(v["candidates"][0]["subject"], format!("s{s}"), "subject s{s} not found after the switch: {v}");
    }
    // Enrolling after the switch embeds with the new version.
    enrol(&app.base, c, "late", vec![png(499, 0), png(499, 1)]).await;
    let v = identify(&app.base, c, png(499, 0)).await;
    assert_eq!(v["candidates"][0]["subject"], "late", "{v}");

    // Rollback: the old answers, exactly.
    let r = c.post(app.url(&format!("/v1/models/{MODEL}/versions/{old}/activate"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for (s, b) in subjects.iter().zip(&before) {
        let v = identify(&app.base, c, probe(*s)).await;
        assert_eq!(v["model"]["version"], old);
        assert_eq!(v["candidates"][0], b["candidates"][0], "rollback changed the answer for s{s}");
    }
    let versions: Value =
        c.get(app.url(&format!("/v1/models/{MODEL}/versions"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(versions["active"], old);
}

/// SIGKILL the server while a job trains; started again, the job is `interrupted`; `resume` finishes it
/// from its checkpoint (the epochs done before the kill are not trained again).
#[tokio::test]
async fn a_job_interrupted_by_sigkill_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    write_synthetic_dataset(&root.join("ids"), 500, 10, 6);
    let work = dir.path().join("work");
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let flags = ["--work-dir", work.to_str().unwrap(), "--data-root", root.to_str().unwrap()];
    let c = reqwest::Client::new();
    let a = ServerProcess::start_with(&url, &flags);
    a.wait_ready(&c).await;
    let r = post_job(&a.base, &c, json!({ "dataset": "ids", "epochs": 6, "batch_pairs": 16, "seed": 2 })).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    let first = loop {
        let j: Value = c.get(format!("{}/v1/jobs/{id}", a.base)).send().await.unwrap().json().await.unwrap();
        let h = j["history"].as_array().unwrap();
        if !h.is_empty() {
            assert_eq!(j["state"], "running", "the job must still be running when killed: {j}");
            break h[0].clone();
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no epoch finished: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    a.kill9();
    let b = ServerProcess::start_with(&url, &flags);
    b.wait_ready(&c).await;
    let j: Value = c.get(format!("{}/v1/jobs/{id}", b.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(j["state"], "interrupted", "{j}");
    let done_before = j["history"].as_array().unwrap().len();
    assert!((1..6).contains(&done_before), "{j}");
    let r = c.post(format!("{}/v1/jobs/{id}/resume", b.base)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let j = wait_for(&b.base, &c, &id, &["succeeded", "failed"], Duration::from_secs(300)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    let h = j["history"].as_array().unwrap();
    assert_eq!(h.len(), 6, "{j}");
    for (k, e) in h.iter().enumerate() {
        assert_eq!(e["epoch"], k + 1);
    }
    // The epoch before the kill was kept, not trained again (same figures).
    for f in ["train_loss", "val_eer_euclidean", "seconds"] {
        let (x, y) = (h[0][f].as_f64().unwrap(), first[f].as_f64().unwrap());
        assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "epoch 1 {f}: {x} then {y}");
    }
    assert!(j["candidate_version"].as_i64().is_some());
}

/// Two replicas on PostgreSQL: a version activated through one is served by the other, with the
/// embeddings the first stored (every subject still found).
#[tokio::test]
async fn an_activation_reaches_the_other_replica() {
    let Some(url) = fresh_postgres("an_activation_reaches_the_other_replica").await else { return };
    let (wa, wb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let collection = format!("faces=face:{MODEL}");
    let a = ServerProcess::start_with(&url, &["--work-dir", wa.path().to_str().unwrap(), "--collection", &collection]);
    let c = reqwest::Client::new();
    a.wait_ready(&c).await;
    let b = ServerProcess::start_with(&url, &["--work-dir", wb.path().to_str().unwrap(), "--collection", &collection]);
    b.wait_ready(&c).await;
    let subjects: Vec<u64> = (600..606).collect();
    for s in &subjects {
        enrol(&a.base, &c, &format!("s{s}"), (0..3).map(|k| png(*s, k)).collect()).await;
    }
    let r = post_job(&a.base, &c, json!({ "collection": "faces", "epochs": 1, "lr": 1e-3 })).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    // Either replica may run it.
    let j = wait_for(&a.base, &c, &id, &["succeeded", "failed"], Duration::from_secs(300)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    let v = j["candidate_version"].as_i64().unwrap();
    let r = c.post(format!("{}/v1/models/{MODEL}/versions/{v}/activate", a.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t = Instant::now();
    loop {
        let x = identify(&b.base, &c, png(subjects[0], 0)).await;
        if x["model"]["version"] == v {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "replica B never switched: {x}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in &subjects {
        let x = identify(&b.base, &c, png(*s, 0)).await;
        assert_eq!(x["model"]["version"], v);
        assert_eq!(x["searched"], subjects.len() * 3, "{x}");
        assert_eq!(x["candidates"][0]["subject"], format!("s{s}"), "s{s} not found on replica B: {x}");
    }
}

/// Samples uploaded as `kind=forgery` are stored for training but never compared with: identify does not
/// search them, a subject with only forgeries has nothing to verify against, and a job trains with them
/// as hard negatives.
#[tokio::test]
async fn forgeries_are_kept_for_training_but_never_searched() {
    let app = spawn_app_with(Options {
        collections: vec![format!("faces=face:{MODEL}").parse().unwrap()],
        ..Options::default()
    })
    .await;
    let c = &app.client;
    let upload = |subject: String, images: Vec<Vec<u8>>, kind: &'static str| {
        let mut form = reqwest::multipart::Form::new().text("kind", kind);
        for (k, b) in images.into_iter().enumerate() {
            form = form.part("image", reqwest::multipart::Part::bytes(b).file_name(format!("{k}.png")));
        }
        c.post(app.url(&format!("/v1/collections/faces/subjects/{subject}/samples"))).multipart(form).send()
    };
    for s in 700..706u64 {
        enrol(&app.base, c, &format!("w{s}"), (0..3).map(|k| png(s, k)).collect()).await;
        let r = upload(format!("w{s}"), vec![png(s + 1000, 0), png(s + 1000, 1)], "forgery").await.unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["results"][0]["sample"]["kind"], "forgery", "{v}");
    }
    let r = upload("w700".into(), vec![png(1, 0)], "copy").await.unwrap();
    assert_problem(r, 400, "invalid_field").await;
    let v = identify(&app.base, c, png(1700, 0)).await;
    assert_eq!(v["searched"], 18, "forgeries must not be searched: {v}");
    assert_ne!(v["candidates"][0]["nearest_distance"].as_f64().unwrap(), 0.0, "{v}");
    let r =
        c.post(app.url("/v1/collections/faces/subjects")).json(&json!({ "name": "forged-only" })).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(upload("forged-only".into(), vec![png(2, 0)], "forgery").await.unwrap().status(), 201);
    let form =
        reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(png(2, 0)).file_name("p.png"));
    let r = c.post(app.url("/v1/collections/faces/subjects/forged-only/verify")).multipart(form).send().await.unwrap();
    assert_problem(r, 422, "subject_has_no_samples").await;

    let body = json!({ "collection": "faces", "epochs": 1, "val_subjects": ["w704", "w705"],
        "pk": {"p": 3, "k": 2, "steps": 4, "forgeries": 1} });
    let r = post_job(&app.base, c, body).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let j = wait_for(&app.base, c, &id, &["succeeded", "failed"], Duration::from_secs(120)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["params"]["resolved"]["forgeries"], true, "{j}");
    let report: Value = c.get(app.url(&format!("/v1/jobs/{id}/report"))).send().await.unwrap().json().await.unwrap();
    // Validation: genuine pairs of w704 and w705 against their forgeries.
    assert!(report["pairs"].to_string().contains("forg"), "{report}");
}

/// `DELETE` stops a running job after its current step; its checkpoint stays, so `resume` goes on from
/// the last finished epoch. Queued jobs wait their turn (one trains at a time) and a queued one is
/// cancelled at once.
#[tokio::test]
async fn a_running_job_is_cancelled_keeps_its_checkpoint_and_resumes() {
    let root = tempfile::tempdir().unwrap();
    write_synthetic_dataset(&root.path().join("ids"), 800, 10, 6);
    let app = spawn_app_with(options(root.path())).await;
    let c = &app.client;
    let r = post_job(&app.base, c, json!({ "dataset": "ids", "epochs": 30, "batch_pairs": 8 })).await;
    let first = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let r = post_job(&app.base, c, json!({ "dataset": "ids", "epochs": 1 })).await;
    let second = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    loop {
        let j: Value = c.get(app.url(&format!("/v1/jobs/{first}"))).send().await.unwrap().json().await.unwrap();
        if !j["history"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The second waits while the first trains.
    let j: Value = c.get(app.url(&format!("/v1/jobs/{second}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(j["state"], "queued", "{j}");
    let r = c.delete(app.url(&format!("/v1/jobs/{second}"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "cancelled");
    let r = c.delete(app.url(&format!("/v1/jobs/{first}"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let j = wait_for(&app.base, c, &first, &["cancelled", "succeeded", "failed"], Duration::from_secs(60)).await;
    assert_eq!(j["state"], "cancelled", "{j}");
    let done = j["history"].as_array().unwrap().len();
    assert!(done < 30, "{j}");
    let r = c.post(app.url(&format!("/v1/jobs/{first}/resume"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // Going on from the checkpoint: the next epoch reported is the one after the last kept.
    let t = Instant::now();
    loop {
        let j: Value = c.get(app.url(&format!("/v1/jobs/{first}"))).send().await.unwrap().json().await.unwrap();
        let h = j["history"].as_array().unwrap();
        if h.len() > done {
            assert_eq!(h[done]["epoch"], done + 1, "{j}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c.delete(app.url(&format!("/v1/jobs/{first}"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    wait_for(&app.base, c, &first, &["cancelled"], Duration::from_secs(60)).await;
}
