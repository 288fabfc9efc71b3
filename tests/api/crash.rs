//! Crash safety: `kill -9` of a server in the middle of a stream of enrolments, then a restart on the same
//! database. Every sample the server acknowledged (201) is there with its image and its embedding, and
//! nothing half-written exists (a sample without its image or embedding, an image or embedding without
//! its sample). SQLite and PostgreSQL.

use crate::common::{encode, fresh_postgres, SyntheticIdentity};
use crate::replicas::ServerProcess;
use image::ImageFormat;
use serde_json::{json, Value};
use sha2::Digest;
use siamese::store::Store;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn kill9_during_enrolment_keeps_every_acknowledged_sample(url: &str) {
    let work = tempfile::tempdir().unwrap();
    let flags = ["--work-dir", work.path().to_str().unwrap(), "--collection", "faces=face:face-att-small-v1"];
    let c = reqwest::Client::new();
    let a = ServerProcess::start_with(url, &flags);
    a.wait_ready(&c).await;
    for k in 0..8 {
        let r = c
            .post(format!("{}/v1/collections/faces/subjects", a.base))
            .json(&json!({"name": format!("w{k}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Four writers upload one image per request, as fast as the server takes them.
    let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (c, base, acked) = (c.clone(), a.base.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for k in 0.. {
                let subject = format!("w{}", (w * 2 + k % 2));
                let img = encode(&SyntheticIdentity::new(1000 + w * 1000 + k).sample(k, 92, 112), ImageFormat::Png);
                let sha = hex::encode(sha2::Sha256::digest(&img));
                let form = reqwest::multipart::Form::new()
                    .part("image", reqwest::multipart::Part::bytes(img).file_name("a.png"));
                let Ok(r) = c
                    .post(format!("{base}/v1/collections/faces/subjects/{subject}/samples"))
                    .multipart(form)
                    .send()
                    .await
                else {
                    return; // the server is gone
                };
                if r.status() != 201 {
                    continue;
                }
                let Ok(v) = r.json::<Value>().await else { return };
                let id = v["results"][0]["sample"]["id"].as_str().unwrap().to_string();
                acked.lock().unwrap().push((subject, id, sha));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 8, "the stream was under way when the server died ({} acknowledged)", acked.len());

    let b = ServerProcess::start_with(url, &flags);
    b.wait_ready(&c).await;
    for (subject, id, sha) in &acked {
        let base = format!("{}/v1/collections/faces/subjects/{subject}/samples/{id}", b.base);
        let info: Value = c.get(&base).send().await.unwrap().json().await.unwrap();
        assert_eq!(info["sha256"], sha.as_str(), "acknowledged sample {id}: {info}");
        let bytes = c.get(format!("{base}/image")).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), *sha, "the image of {id}");
    }
    // Nothing half-written, and every stored sample is in the restarted server's index.
    let store = Store::connect(url).await.unwrap();
    let pool = store.pool();
    let q = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap() };
    let samples = q("SELECT COUNT(*) FROM samples").await;
    assert!(samples >= acked.len() as i64);
    assert_eq!(
        q("SELECT COUNT(*) FROM samples s WHERE NOT EXISTS (SELECT 1 FROM sample_images i WHERE i.sample_id = s.id)")
            .await,
        0,
        "samples without an image"
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM samples s WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.sample_id = s.id)")
            .await,
        0,
        "samples without an embedding"
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM sample_images i WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.id = i.sample_id)")
            .await,
        0,
        "orphan images"
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM embeddings e WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.id = e.sample_id)")
            .await,
        0,
        "orphan embeddings"
    );
    let col: Value = c.get(format!("{}/v1/collections/faces", b.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(col["samples"], samples, "the index holds every stored sample: {col}");
    eprintln!(
        "kill -9 during enrolment ({:?}): {} acknowledged, {samples} stored, all intact",
        store.backend(),
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_enrolment_loses_no_acknowledged_sample_sqlite() {
    let d = tempfile::tempdir().unwrap();
    kill9_during_enrolment_keeps_every_acknowledged_sample(&format!("sqlite://{}", d.path().join("s.db").display()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_enrolment_loses_no_acknowledged_sample_postgres() {
    let Some(url) = fresh_postgres("kill9_during_enrolment_loses_no_acknowledged_sample_postgres").await else {
        return;
    };
    kill9_during_enrolment_keeps_every_acknowledged_sample(&url).await;
}
