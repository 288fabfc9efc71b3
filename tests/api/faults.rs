//! Faults inside the service: a model or detector thread whose batch panics (libtorch out of memory, say)
//! fails that batch's requests with 500, is reported by `/readyz`, and serves again once a forward pass
//! succeeds, without a restart.

use crate::common::{encode, SyntheticIdentity};
use crate::helpers::{assert_problem, spawn_app};
use image::ImageFormat;
use serde_json::Value;
use std::time::{Duration, Instant};

fn png(seed: u64) -> Vec<u8> {
    encode(&SyntheticIdentity::new(seed).sample(0, 92, 112), ImageFormat::Png)
}

/// Poll `/readyz` until it answers `status` (panics after 10 s); returns the body.
async fn readyz_until(app: &crate::helpers::TestApp, status: u16) -> Value {
    let t = Instant::now();
    loop {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        if r.status().as_u16() == status {
            return r.json().await.unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_panicking_model_thread_fails_its_batch_is_reported_by_readyz_and_recovers() {
    let app = spawn_app().await;
    let (a, b) = (png(1), png(2));
    let before: Value = app.verify_multipart(a.clone(), b.clone(), &[]).await.json().await.unwrap();
    assert_eq!(readyz_until(&app, 200).await["panics"]["face-att-small-v1"], 0);

    // The batch and the self-check right after it panic.
    app.state.models().get(Some("face-att-small-v1")).unwrap().inject_panics(2);
    let r = app.verify_multipart(a.clone(), b.clone(), &[]).await;
    assert_problem(r, 500, "internal").await;
    let p = readyz_until(&app, 503).await;
    assert_eq!(p["code"], "models_failing", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("face-att-small-v1 (its last batch panicked)"), "{p}");
    // Within a second or two the thread checks itself, succeeds, and is ready again, without traffic.
    let ready = readyz_until(&app, 200).await;
    assert_eq!(ready["panics"]["face-att-small-v1"], 2, "{ready}");
    let after: Value = app.verify_multipart(a, b, &[]).await.json().await.unwrap();
    assert_eq!(after["distance"], before["distance"], "the same model answers as before");
}

#[tokio::test]
async fn a_panicking_detector_thread_fails_its_batch_and_recovers() {
    let app = spawn_app().await;
    let detect = |seed| app.verify_multipart(png(seed), png(seed + 1), &[("model", "face-dlib-r29-v1")]);
    // Generated images hold no face: a detection that works answers 422 no_face.
    assert_problem(detect(3).await, 422, "no_face").await;
    let det = app.state.models().detector().cloned().expect("the face detector is loaded");
    // The batch and the self-check right after it panic.
    det.inject_panics(2);
    assert_problem(detect(3).await, 500, "internal").await;
    let p = readyz_until(&app, 503).await;
    assert!(p["detail"].as_str().unwrap().contains(&det.id), "{p}");
    let ready = readyz_until(&app, 200).await;
    assert_eq!(ready["panics"][&det.id], 2, "{ready}");
    assert_problem(detect(3).await, 422, "no_face").await;
}
