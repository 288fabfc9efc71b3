//! Enrolment over HTTP on a real database: SQLite always, PostgreSQL when configured (mandatory in CI).
//! Subjects, per-file sample results, stored images, verify against a subject, identify with "unknown",
//! rename, erasure, and a failed enrolment that leaves nothing behind.

use crate::common::{encode, fresh_postgres, SyntheticIdentity};
use crate::helpers::{assert_problem, spawn_app_with, Options, TestApp};
use image::ImageFormat;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use siamese::store::{EmbeddingRow, NewSample};

fn png(id: u64, k: u64) -> Vec<u8> {
    encode(&SyntheticIdentity::new(id).sample(k, 92, 112), ImageFormat::Png)
}

impl TestApp {
    pub async fn create_subject(&self, coll: &str, name: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/collections/{coll}/subjects")))
            .json(&json!({"name": name, "metadata": {"note": "test"}}))
            .send()
            .await
            .unwrap()
    }

    /// POST images as multipart `image` fields to a subject's samples.
    pub async fn add_samples(&self, coll: &str, subject: &str, images: Vec<Vec<u8>>) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new();
        for (k, b) in images.into_iter().enumerate() {
            form = form.part("image", reqwest::multipart::Part::bytes(b).file_name(format!("{k}.png")));
        }
        let path = format!("/v1/collections/{coll}/subjects/{}/samples", urlencode(subject));
        self.client.post(self.url(&path)).multipart(form).send().await.unwrap()
    }

    pub async fn probe(&self, path: &str, image: Vec<u8>, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(image).file_name("p.png"));
        for (k, v) in extra {
            form = form.text(k.to_string(), v.to_string());
        }
        self.client.post(self.url(path)).multipart(form).send().await.unwrap()
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The whole life of a subject, on whichever database `app` uses.
async fn subject_lifecycle(app: &TestApp) {
    // A name with a space and a slash exercises URL encoding.
    let alice = "Alice Smith/1";
    assert_eq!(app.create_subject("faces", alice).await.status(), 201);
    assert_problem(app.create_subject("faces", alice).await, 409, "subject_exists").await;
    assert_eq!(app.create_subject("faces", "bob").await.status(), 201);

    // Three files: two images and one that is not an image. Each gets its own result; the bad one loses nothing.
    let resp = app.add_samples("faces", alice, vec![png(1, 0), b"not an image".to_vec(), png(1, 1)]).await;
    assert_eq!(resp.status(), 207);
    let up: Value = resp.json().await.unwrap();
    assert_eq!((up["stored"].as_u64(), up["failed"].as_u64()), (Some(2), Some(1)), "{up}");
    assert_eq!(up["results"][1]["status"], "failed");
    assert_eq!(up["results"][1]["error"]["code"], "image_decode_failed");
    let first = up["results"][0]["sample"].clone();
    assert_eq!(first["sha256"], hex::encode(Sha256::digest(png(1, 0))));
    assert_eq!(first["content_type"], "image/png");
    assert_eq!(app.add_samples("faces", "bob", vec![png(2, 0), png(2, 1)]).await.status(), 201);

    // The stored original comes back byte for byte.
    let enc = urlencode(alice);
    let sid = first["id"].as_str().unwrap();
    let img = app
        .client
        .get(app.url(&format!("/v1/collections/faces/subjects/{enc}/samples/{sid}/image")))
        .send()
        .await
        .unwrap();
    assert_eq!(img.headers()["content-type"], "image/png");
    assert_eq!(img.bytes().await.unwrap().to_vec(), png(1, 0));
    let list: Value = app.get_json(&format!("/v1/collections/faces/subjects/{enc}/samples?limit=1")).await;
    assert_eq!(list["samples"].as_array().unwrap().len(), 1);
    assert!(list["next_cursor"].is_string(), "{list}");
    let subj: Value = app.get_json(&format!("/v1/collections/faces/subjects/{enc}")).await;
    assert_eq!(subj["samples"], 2);
    assert_eq!(subj["metadata"]["note"], "test");
    let page: Value = app.get_json("/v1/collections/faces/subjects?prefix=Ali").await;
    assert_eq!(page["subjects"].as_array().unwrap().len(), 1, "{page}");

    // An enrolled image verifies against its subject at distance ~0, with per-sample distances.
    let path = format!("/v1/collections/faces/subjects/{enc}/verify");
    let v: Value = app.probe(&path, png(1, 0), &[("rule", "min")]).await.json().await.unwrap();
    assert_eq!(v["verified"], true, "{v}");
    // ~0 (a half-precision gallery rounds stored embeddings: ≈ 2e-4 there).
    assert!(v["distance"].as_f64().unwrap() < 1e-3, "{v}");
    assert_eq!(v["samples"].as_array().unwrap().len(), 2);
    assert_eq!(v["samples"][0]["sample_id"], sid);
    assert_eq!(v["rule"], "min");
    // The default rule is the mean over the subject's samples.
    let v: Value = app.probe(&path, png(1, 0), &[]).await.json().await.unwrap();
    assert_eq!(v["rule"], "mean");
    let mean = (v["samples"][0]["distance"].as_f64().unwrap() + v["samples"][1]["distance"].as_f64().unwrap()) / 2.0;
    assert!((v["distance"].as_f64().unwrap() - mean).abs() < 1e-5, "{v}");

    // Identify finds it first; a far threshold override makes the same probe unknown.
    let id: Value =
        app.probe("/v1/collections/faces/identify", png(1, 0), &[("top_k", "2")]).await.json().await.unwrap();
    assert_eq!(id["match"]["subject"], alice, "{id}");
    assert_eq!(id["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(id["searched"], 4);
    let id: Value = app
        .probe("/v1/collections/faces/identify", png(2, 5), &[("threshold", "0.0000001")])
        .await
        .json()
        .await
        .unwrap();
    assert!(id["match"].is_null(), "{id}");
    assert!(id["candidates"][0]["subject"].is_string());

    // Rename: the index follows at once.
    let r = app
        .client
        .patch(app.url(&format!("/v1/collections/faces/subjects/{enc}")))
        .json(&json!({"name": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id: Value = app.probe("/v1/collections/faces/identify", png(1, 0), &[]).await.json().await.unwrap();
    assert_eq!(id["match"]["subject"], "alice", "{id}");
    let r = app
        .client
        .patch(app.url("/v1/collections/faces/subjects/alice"))
        .json(&json!({"name": "bob"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "subject_exists").await;

    // Delete one sample, then erase the subject: no row, image or embedding of it is left, and the index forgets it.
    let r = app
        .client
        .delete(app.url(&format!("/v1/collections/faces/subjects/alice/samples/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let ids: Vec<String> =
        up["results"].as_array().unwrap().iter().filter_map(|r| r["sample"]["id"].as_str().map(String::from)).collect();
    let c = app.store.collection("faces").await.unwrap();
    let subject_id = app.store.subject(&c.id, "alice").await.unwrap().id;
    assert_eq!(app.client.delete(app.url("/v1/collections/faces/subjects/alice")).send().await.unwrap().status(), 204);
    assert_eq!(app.store.residue(&subject_id, &ids).await.unwrap(), 0, "erasure left rows behind");
    assert_problem(
        app.client.get(app.url("/v1/collections/faces/subjects/alice")).send().await.unwrap(),
        404,
        "subject_not_found",
    )
    .await;
    let id: Value = app.probe("/v1/collections/faces/identify", png(1, 0), &[]).await.json().await.unwrap();
    assert_eq!(id["searched"], 2, "{id}");
    assert_ne!(id["candidates"][0]["subject"], "alice");
}

#[tokio::test]
async fn a_subject_lives_and_is_erased_on_sqlite() {
    let app = spawn_app_with(Options::default()).await;
    subject_lifecycle(&app).await;
}

#[tokio::test]
async fn a_subject_lives_and_is_erased_with_a_half_precision_gallery() {
    let app =
        spawn_app_with(Options { gallery_precision: siamese::gallery::Precision::F16, ..Options::default() }).await;
    subject_lifecycle(&app).await;
}

#[tokio::test]
async fn a_subject_lives_and_is_erased_on_postgres() {
    let Some(url) = fresh_postgres("a_subject_lives_and_is_erased_on_postgres").await else { return };
    let app = spawn_app_with(Options { database_url: Some(url), ..Options::default() }).await;
    subject_lifecycle(&app).await;
}

#[tokio::test]
async fn enrolment_errors_are_problems_and_change_nothing() {
    let app = spawn_app_with(Options::default()).await;
    assert_problem(app.create_subject("nope", "x").await, 404, "collection_not_found").await;
    assert_problem(app.create_subject("faces", "  ").await, 400, "invalid_field").await;
    assert_problem(app.add_samples("faces", "ghost", vec![png(1, 0)]).await, 404, "subject_not_found").await;
    app.create_subject("faces", "carol").await;
    // All files bad: 422 with per-file codes, and the subject still has no samples.
    let r = app.add_samples("faces", "carol", vec![vec![], b"GIF89a garbage".to_vec()]).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["stored"], 0);
    assert_problem(
        app.probe("/v1/collections/faces/subjects/carol/verify", png(1, 0), &[]).await,
        422,
        "subject_has_no_samples",
    )
    .await;
    app.add_samples("faces", "carol", vec![png(3, 0)]).await;
    assert_problem(
        app.probe("/v1/collections/faces/subjects/carol/verify", png(1, 0), &[("rule", "median")]).await,
        400,
        "invalid_field",
    )
    .await;
    assert_problem(
        app.probe("/v1/collections/faces/identify", png(1, 0), &[("top_k", "0")]).await,
        400,
        "invalid_field",
    )
    .await;
    assert_problem(
        app.probe("/v1/collections/faces/identify", png(1, 0), &[("metric", "hamming")]).await,
        400,
        "invalid_metric",
    )
    .await;
    assert_problem(
        app.probe("/v1/collections/faces/identify", b"junk".to_vec(), &[]).await,
        422,
        "image_decode_failed",
    )
    .await;
    // A ready embedding of the wrong size.
    let r = app
        .client
        .post(app.url("/v1/collections/faces/identify"))
        .json(&json!({"embedding": [0.1, 0.2]}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid_field").await;
    // A ready embedding of the right size works like an image.
    let e: Value = app
        .client
        .post(app.url("/v1/embed"))
        .json(&json!({"images": [crate::helpers::b64(&png(3, 0))]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r: Value = app
        .client
        .post(app.url("/v1/collections/faces/identify"))
        .json(&json!({"embedding": e["embeddings"][0]["vector"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["match"]["subject"], "carol", "{r}");
    // Collections: bad names, unknown modality, duplicates.
    let post = |b: Value| app.client.post(app.url("/v1/collections")).json(&b).send();
    assert_problem(post(json!({"name": "a b", "modality": "face"})).await.unwrap(), 400, "invalid_field").await;
    assert_problem(post(json!({"name": "x", "modality": "iris"})).await.unwrap(), 400, "invalid_field").await;
    assert_problem(post(json!({"name": "faces", "modality": "face"})).await.unwrap(), 409, "collection_exists").await;
    assert_problem(
        post(json!({"name": "y", "modality": "face", "model": "nope"})).await.unwrap(),
        404,
        "unknown_model",
    )
    .await;
    assert_eq!(post(json!({"name": "staff", "modality": "face"})).await.unwrap().status(), 201);
    let all: Value = app.get_json("/v1/collections").await;
    assert_eq!(all["collections"].as_array().unwrap().len(), 2);
    assert_eq!(all["collections"][0]["samples"], 1, "{all}");
}

/// A failure between storing the image and storing the embedding: here the database itself refuses the
/// embedding row (its declared size disagrees with its bytes), after the sample and image rows went in.
async fn failed_enrolment_leaves_nothing(app: &TestApp) {
    app.create_subject("faces", "dave").await;
    let c = app.store.collection("faces").await.unwrap();
    let s = app.store.subject(&c.id, "dave").await.unwrap();
    let new = NewSample {
        forgery: false,
        image: png(4, 0),
        sha256: "x".into(),
        content_type: "image/png".into(),
        width: 92,
        height: 112,
        detect: true,
        quality: None,
    };
    let mut bad = EmbeddingRow::new("face-att-small-v1", 1, &[0.5; 128]);
    bad.dim = 127;
    assert!(app.store.add_sample(&c.id, &s.id, &new, &bad).await.is_err(), "the embedding insert must fail");
    let subj: Value = app.get_json("/v1/collections/faces/subjects/dave").await;
    assert_eq!(subj["samples"], 0, "a half-enrolled sample was left: {subj}");
    assert_eq!(app.store.residue(&s.id, &[]).await.unwrap(), 1, "only the subject row remains");
    let n: i64 =
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sample_images").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(n, 0, "an orphan image was left");
    // The good path still works afterwards.
    assert_eq!(app.add_samples("faces", "dave", vec![png(4, 0)]).await.status(), 201);
}

#[tokio::test]
async fn a_failed_enrolment_leaves_no_half_sample_on_sqlite() {
    failed_enrolment_leaves_nothing(&spawn_app_with(Options::default()).await).await;
}

#[tokio::test]
async fn a_failed_enrolment_leaves_no_half_sample_on_postgres() {
    let Some(url) = fresh_postgres("a_failed_enrolment_leaves_no_half_sample_on_postgres").await else { return };
    failed_enrolment_leaves_nothing(&spawn_app_with(Options { database_url: Some(url), ..Options::default() }).await)
        .await;
}

/// Copy the shipped model `id` into `dir`, its card's version raised by one (the same network under a new
/// version, as `siamese train --version` would write it); returns the shipped version.
fn copy_model(dir: &std::path::Path, id: &str) -> u64 {
    copy_model_with(dir, id, |card| {
        let v = card["version"].as_u64().unwrap();
        card["version"] = (v + 1).into();
        v
    })
}

/// Copy the shipped model `id` into `dir`, its card changed by `edit`.
fn copy_model_with<T>(dir: &std::path::Path, id: &str, edit: impl FnOnce(&mut Value) -> T) -> T {
    let (src, dst) = (crate::common::models_dir().join(id), dir.join(id));
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(src.join("weights.safetensors"), dst.join("weights.safetensors")).unwrap();
    let mut card: Value = serde_json::from_slice(&std::fs::read(src.join("model.json")).unwrap()).unwrap();
    let out = edit(&mut card);
    std::fs::write(dst.join("model.json"), serde_json::to_vec_pretty(&card).unwrap()).unwrap();
    out
}

/// A card with a subject calibration (rule and thresholds for that rule) sets subject verification's and
/// identification's defaults; a request naming another rule gets the pair thresholds.
#[tokio::test]
async fn the_cards_subject_calibration_sets_the_default_rule_and_thresholds() {
    let models = tempfile::tempdir().unwrap();
    let pair = copy_model_with(models.path(), "face-att-small-v1", |card| {
        let mut subject = card["thresholds"].clone();
        for m in ["euclidean", "cosine"] {
            subject[m]["value"] = 0.123.into();
            subject[m]["at_far_1e-3"] = 0.045.into();
        }
        card["subject"] = json!({"rule": "min", "references": 5, "thresholds": subject});
        card["thresholds"]["euclidean"].clone()
    });
    let app = spawn_app_with(Options { models_dir: Some(models.path().to_path_buf()), ..Options::default() }).await;
    assert_eq!(app.create_subject("faces", "fay").await.status(), 201);
    assert_eq!(app.add_samples("faces", "fay", vec![png(7, 0), png(7, 1)]).await.status(), 201);
    let verify = "/v1/collections/faces/subjects/fay/verify";
    let v: Value = app.probe(verify, png(7, 2), &[]).await.json().await.unwrap();
    assert_eq!((v["rule"].as_str(), v["threshold"].as_f64()), (Some("min"), Some(0.123)), "{v}");
    assert_eq!(v["verified"], v["distance"].as_f64().unwrap() <= 0.123, "{v}");
    let v: Value = app.probe(verify, png(7, 2), &[("rule", "mean")]).await.json().await.unwrap();
    assert_eq!((v["rule"].as_str(), v["threshold"].as_f64()), (Some("mean"), pair["value"].as_f64()), "{v}");
    let v: Value = app.probe("/v1/collections/faces/identify", png(7, 2), &[]).await.json().await.unwrap();
    assert_eq!((v["rule"].as_str(), v["threshold"].as_f64()), (Some("min"), Some(0.045)), "{v}");
}

/// The collection's description once it reports `n` samples (re-embedding runs in the background), or as
/// it stands after 20 s.
async fn samples_reach(app: &TestApp, collection: &str, n: u64) -> Value {
    let mut info = Value::Null;
    for _ in 0..400 {
        info = app.get_json(&format!("/v1/collections/{collection}")).await;
        if info["samples"] == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    info
}

/// A collection's model retrained under a new version: the next start embeds the stored samples again from
/// their original images (in the background), and verification works against the new embeddings.
#[tokio::test]
async fn samples_are_re_embedded_when_the_collection_model_changes_version() {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("s.db").display());
    let mut a = spawn_app_with(Options { database_url: Some(url.clone()), ..Options::default() }).await;
    assert_eq!(a.create_subject("faces", "carol").await.status(), 201);
    assert_eq!(a.add_samples("faces", "carol", vec![png(5, 0), png(5, 1), png(5, 2)]).await.status(), 201);
    a.shut_down().await.unwrap();
    drop(a);
    let models = tempfile::tempdir().unwrap();
    let v = copy_model(models.path(), "face-att-small-v1");
    let b = spawn_app_with(Options {
        database_url: Some(url),
        models_dir: Some(models.path().to_path_buf()),
        ..Options::default()
    })
    .await;
    let info = samples_reach(&b, "faces", 3).await;
    assert_eq!(info["model"]["version"], v + 1, "{info}");
    assert_eq!(info["samples"], 3, "every stored sample re-embedded under the new version: {info}");
    let r: Value = b.probe("/v1/collections/faces/subjects/carol/verify", png(5, 0), &[]).await.json().await.unwrap();
    assert_eq!(r["verified"], true, "{r}");
    let nearest = r["samples"].as_array().unwrap().iter().map(|s| s["distance"].as_f64().unwrap()).fold(9.0, f64::min);
    assert!(nearest < 1e-4, "the enrolled image itself is one of the re-embedded samples: {r}");
    // The old version's embeddings stay (a rollback finds them); the new ones sit beside them.
    let c = b.store.collections().await.unwrap().into_iter().find(|c| c.name == "faces").unwrap();
    for version in [v, v + 1] {
        let missing = b.store.samples_missing_embedding(&c.id, "face-att-small-v1", version as i64).await.unwrap();
        assert!(missing.is_empty(), "version {version}: {missing:?}");
    }
}

/// Pre-aligned chips enrolled with `detect=false` into a collection of the detecting face model are
/// re-embedded the same way (no detection) after the model changes version. The generated images hold no
/// face: run through detection they would be dropped.
#[tokio::test]
async fn chips_enrolled_without_detection_are_re_embedded_without_it() {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("s.db").display());
    let mut a =
        spawn_app_with(Options { database_url: Some(url.clone()), default_model: None, ..Options::default() }).await;
    assert_eq!(a.create_subject("faces", "erin").await.status(), 201);
    let mut form = reqwest::multipart::Form::new().text("detect", "false");
    for k in 0..3 {
        form = form.part("image", reqwest::multipart::Part::bytes(png(6, k)).file_name(format!("{k}.png")));
    }
    let r = a.client.post(a.url("/v1/collections/faces/subjects/erin/samples")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"][0]["sample"]["detect"], false, "{body}");
    // With detection, these images have no face (so only detect=false could have enrolled them).
    let r = a.probe("/v1/collections/faces/subjects/erin/verify", png(6, 0), &[]).await;
    assert_eq!(r.status(), 422);
    a.shut_down().await.unwrap();
    drop(a);
    let models = tempfile::tempdir().unwrap();
    let v = copy_model(models.path(), "face-dlib-r29-v1");
    let mtcnn = models.path().join("mtcnn-v1");
    std::fs::create_dir_all(&mtcnn).unwrap();
    for f in ["detector.json", "weights.safetensors"] {
        std::fs::copy(crate::common::models_dir().join("mtcnn-v1").join(f), mtcnn.join(f)).unwrap();
    }
    let b = spawn_app_with(Options {
        database_url: Some(url),
        default_model: None,
        models_dir: Some(models.path().to_path_buf()),
        ..Options::default()
    })
    .await;
    let info = samples_reach(&b, "faces", 3).await;
    assert_eq!(info["model"]["version"], v + 1, "{info}");
    assert_eq!(info["samples"], 3, "every chip re-embedded under the new version, without detection: {info}");
    let r: Value = b
        .probe("/v1/collections/faces/subjects/erin/verify", png(6, 0), &[("detect", "false")])
        .await
        .json()
        .await
        .unwrap();
    let nearest = r["samples"].as_array().unwrap().iter().map(|s| s["distance"].as_f64().unwrap()).fold(9.0, f64::min);
    assert!(nearest < 1e-4, "the enrolled chip itself is one of the re-embedded samples: {r}");
}

/// A database made by the first schema (migration 0001 only, as the first release left it) with a sample in
/// it: the current service migrates it at start-up, keeps the sample (enrolled with detection, so `detect` is
/// true), and the upgraded collection accepts new samples.
async fn upgrade_from_the_first_schema(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    let mut first = sqlx::migrate!("./migrations");
    first.migrations = std::borrow::Cow::Owned(first.migrations.iter().filter(|m| m.version == 1).cloned().collect());
    first.run(&pool).await.unwrap();
    for sql in [
        "INSERT INTO collections (id, name, modality, model_id, created_at) \
         VALUES ('col_old', 'faces', 'face', 'face-att-small-v1', 1)",
        "INSERT INTO subjects (id, collection_id, name, created_at) VALUES ('sub_old', 'col_old', 'olga', 1)",
        "INSERT INTO samples (id, subject_id, collection_id, sha256, content_type, width, height, byte_size, created_at) \
         VALUES ('smp_old', 'sub_old', 'col_old', 'x', 'image/png', 92, 112, 3, 1)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let app = spawn_app_with(Options { database_url: Some(url.to_string()), ..Options::default() }).await;
    let listed: Value = app.get_json("/v1/collections/faces/subjects/olga/samples").await;
    assert_eq!(listed["samples"][0]["id"], "smp_old", "{listed}");
    assert_eq!(listed["samples"][0]["detect"], true, "{listed}");
    assert_eq!(app.add_samples("faces", "olga", vec![png(8, 0)]).await.status(), 201);
    let listed: Value = app.get_json("/v1/collections/faces/subjects/olga/samples").await;
    assert_eq!(listed["samples"].as_array().map(Vec::len), Some(2), "{listed}");
}

#[tokio::test]
async fn a_first_schema_database_upgrades_on_sqlite() {
    let db = tempfile::tempdir().unwrap();
    upgrade_from_the_first_schema(&format!("sqlite://{}?mode=rwc", db.path().join("s.db").display())).await;
}

#[tokio::test]
async fn a_first_schema_database_upgrades_on_postgres() {
    let Some(url) = fresh_postgres("a_first_schema_database_upgrades_on_postgres").await else { return };
    upgrade_from_the_first_schema(&url).await;
}

/// Every file of the database folder, read whole (the database, its write-ahead log, its shared memory).
fn database_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("siamese.db"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Erasure reaches the disk: after a subject is erased, no file of the SQLite database (its write-ahead
/// log included) holds any part of the enrolled image's bytes.
#[tokio::test]
async fn an_erased_image_is_in_no_file_of_the_sqlite_database() {
    let app = spawn_app_with(Options::default()).await;
    let img = png(77, 3);
    app.create_subject("faces", "erin").await;
    assert_eq!(app.add_samples("faces", "erin", vec![img.clone()]).await.status(), 201);
    // Windows from the middle of the compressed image data.
    let windows: Vec<&[u8]> = (1..4).map(|k| &img[k * img.len() / 4..k * img.len() / 4 + 48]).collect();
    let holds = |files: &[(String, Vec<u8>)]| -> Vec<String> {
        files
            .iter()
            .filter(|(_, bytes)| windows.iter().any(|w| bytes.windows(w.len()).any(|x| x == *w)))
            .map(|(n, _)| n.clone())
            .collect()
    };
    assert!(!holds(&database_files(app.db_dir())).is_empty(), "the image should be stored before erasure");
    let r = app.client.delete(app.url("/v1/collections/faces/subjects/erin")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let left = holds(&database_files(app.db_dir()));
    assert!(left.is_empty(), "erased image bytes survive in {left:?}");
}

/// Names are compared as Unicode NFC (composed and decomposed spellings are one subject), invisible-only
/// or zero-width-padded names are refused, `.`/`..` are no collection names, and metadata is bounded.
#[tokio::test]
async fn look_alike_and_invisible_names_and_oversized_metadata_are_refused() {
    let app = spawn_app_with(Options::default()).await;
    assert_eq!(app.create_subject("faces", "Zo\u{00EB}").await.status(), 201);
    assert_problem(app.create_subject("faces", "Zoe\u{0308}").await, 409, "subject_exists").await;
    let r =
        app.client.get(app.url(&format!("/v1/collections/faces/subjects/{}", urlencode("Zoe\u{0308}")))).send().await;
    let v: Value = r.unwrap().json().await.unwrap();
    assert_eq!(v["name"], "Zo\u{00EB}", "{v}");
    for bad in ["\u{200B}", "\u{FEFF}", "ann\u{200B}", "\u{202E}eve"] {
        let p = assert_problem(app.create_subject("faces", bad).await, 400, "invalid_field").await;
        assert_eq!(p["field"], "name", "{bad:?}");
    }
    assert_eq!(app.create_subject("faces", &"é".repeat(256)).await.status(), 201);
    let big = json!({"name": "meta", "metadata": {"note": "x".repeat(17 << 10)}});
    let r = app.client.post(app.url("/v1/collections/faces/subjects")).json(&big).send().await.unwrap();
    let p = assert_problem(r, 400, "invalid_field").await;
    assert_eq!(p["field"], "metadata");
    for bad in [".", ".."] {
        let r = app
            .client
            .post(app.url("/v1/collections"))
            .json(&json!({"name": bad, "modality": "face"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    // Nothing half-made: the subjects are the two created.
    let list: Value =
        app.client.get(app.url("/v1/collections/faces/subjects")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["subjects"].as_array().unwrap().len(), 2, "{list}");
}
