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

/// Clients that hang up in the middle of an enrolment or an erasure: whatever the database committed is
/// what the in-memory index holds (no invisible sample, no erased subject still matchable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_cut_off_by_the_client_leave_database_and_index_agreeing() {
    use rand::{Rng, SeedableRng};
    let app = spawn_app().await;
    let c = &app.client;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let png = |k: u64| encode(&SyntheticIdentity::new(500 + k).sample(0, 92, 112), ImageFormat::Png);
    let upload = |subject: String, img: Vec<u8>| {
        let form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(img).file_name("a.png"));
        c.post(app.url(&format!("/v1/collections/faces/subjects/{subject}/samples"))).multipart(form).send()
    };
    let n = 48u64;
    for k in 0..n {
        let r = c
            .post(app.url("/v1/collections/faces/subjects"))
            .json(&serde_json::json!({"name": format!("p{k}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Uploads abandoned after 0-25 ms, then erasures abandoned the same way.
    for k in 0..n {
        let wait = std::time::Duration::from_micros(rng.gen_range(0..25_000));
        let _ = tokio::time::timeout(wait, upload(format!("p{k}"), png(k))).await;
    }
    for k in (0..n).step_by(2) {
        let wait = std::time::Duration::from_micros(rng.gen_range(0..25_000));
        let _ =
            tokio::time::timeout(wait, c.delete(app.url(&format!("/v1/collections/faces/subjects/p{k}"))).send()).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // The database's view, through the API's listings (rows), against the index's.
    let mut stored = 0usize;
    let mut with_samples = 0usize;
    for k in 0..n {
        let r = c.get(app.url(&format!("/v1/collections/faces/subjects/p{k}/samples"))).send().await.unwrap();
        if r.status() == 404 {
            continue;
        }
        let v: serde_json::Value = r.json().await.unwrap();
        let m = v["samples"].as_array().unwrap().len();
        stored += m;
        with_samples += (m > 0) as usize;
    }
    let col = app.state.galleries.collection("faces").await.unwrap();
    let (indexed, subjects) = app.state.galleries.stats(&col.id).unwrap();
    assert_eq!((indexed, subjects), (stored, with_samples), "index (samples, subjects) against the database's");
}

/// An upload racing the erasure of its subject: each file is stored before the erasure (and erased with
/// the subject) or refused as `subject_not_found`, never an internal error, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_racing_the_erasure_of_their_subject_are_refused_cleanly() {
    use rand::{Rng, SeedableRng};
    let app = std::sync::Arc::new(spawn_app().await);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for k in 0..24u64 {
        let name = format!("race{k}");
        let r = app
            .client
            .post(app.url("/v1/collections/faces/subjects"))
            .json(&serde_json::json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let img = encode(&SyntheticIdentity::new(700 + k).sample(0, 92, 112), ImageFormat::Png);
        let form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(img).file_name("a.png"));
        let up =
            app.client.post(app.url(&format!("/v1/collections/faces/subjects/{name}/samples"))).multipart(form).send();
        let (a, n) = (app.clone(), name.clone());
        let wait = std::time::Duration::from_micros(rng.gen_range(0..15_000));
        let del = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            a.client.delete(a.url(&format!("/v1/collections/faces/subjects/{n}"))).send().await.unwrap().status()
        });
        let up = up.await.unwrap();
        let status = up.status().as_u16();
        let body: serde_json::Value = up.json().await.unwrap();
        assert_eq!(del.await.unwrap(), 204);
        let code = match status {
            201 => "stored".to_string(),
            _ => body["results"][0]["error"]["code"].as_str().or(body["code"].as_str()).unwrap_or("?").to_string(),
        };
        *codes.entry(code).or_default() += 1;
    }
    assert!(codes.keys().all(|c| c == "stored" || c == "subject_not_found"), "{codes:?}");
    let col = app.state.galleries.collection("faces").await.unwrap();
    assert_eq!(app.state.galleries.stats(&col.id).unwrap(), (0, 0), "every subject is erased with its samples");
    eprintln!("upload outcomes racing erasure: {codes:?}");
}

/// A gallery reload (what a replica does when its database connection comes back) while enrolments go on:
/// no enrolment acknowledged meanwhile is missing from the reloaded index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolments_during_a_gallery_reload_are_not_lost() {
    let app = std::sync::Arc::new(spawn_app().await);
    let c = &app.client;
    for k in 0..4 {
        let r = c
            .post(app.url("/v1/collections/faces/subjects"))
            .json(&serde_json::json!({"name": format!("r{k}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Enough rows that a reload takes a while.
    for b in 0..10u64 {
        let mut form = reqwest::multipart::Form::new();
        for k in 0..32u64 {
            let img = encode(&SyntheticIdentity::new(5000 + b * 32 + k).sample(0, 92, 112), ImageFormat::Png);
            form = form.part("image", reqwest::multipart::Part::bytes(img).file_name("a.png"));
        }
        let r = c.post(app.url("/v1/collections/faces/subjects/r0/samples")).multipart(form).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reloader = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                app.state.galleries.load_all().await.unwrap();
                n += 1;
            }
            n
        })
    };
    let mut uploads = Vec::new();
    for k in 0..40u64 {
        let img = encode(&SyntheticIdentity::new(900 + k).sample(0, 92, 112), ImageFormat::Png);
        let form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(img).file_name("a.png"));
        uploads.push(
            c.post(app.url(&format!("/v1/collections/faces/subjects/r{}/samples", k % 4))).multipart(form).send(),
        );
    }
    for r in futures_util::future::join_all(uploads).await {
        assert_eq!(r.unwrap().status(), 201);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reloads = reloader.await.unwrap();
    let col = app.state.galleries.collection("faces").await.unwrap();
    assert_eq!(app.state.galleries.stats(&col.id).unwrap().0, 320 + 40, "after {reloads} reloads");
}

/// A batch waits for company only while another request for the model is being prepared: a request alone
/// is not held for the batching window (here a whole second), while concurrent ones still share passes.
#[tokio::test]
async fn a_lone_request_is_not_held_for_the_batching_window() {
    let mut o = crate::helpers::Options::default();
    o.batch.max_wait = std::time::Duration::from_secs(1);
    let app = Arc::new(crate::helpers::spawn_app_with(o).await);
    let png = |k: u64| encode(&SyntheticIdentity::new(k).sample(0, 92, 112), ImageFormat::Png);
    for k in 0..3 {
        let v: serde_json::Value = app.verify_multipart(png(k), png(k + 50), &[]).await.json().await.unwrap();
        let queued = v["timings"]["queue_ms"].as_f64().unwrap();
        assert!(queued < 500.0, "a lone request waited {queued} ms for company that was not coming");
    }
    let tasks: Vec<_> = (0..16u64)
        .map(|k| {
            let app = app.clone();
            let (a, b) = (png(200 + k), png(300 + k));
            tokio::spawn(
                async move { app.verify_multipart(a, b, &[]).await.json::<serde_json::Value>().await.unwrap() },
            )
        })
        .collect();
    let mut shared = 0;
    for t in tasks {
        if t.await.unwrap()["timings"]["batch_images"].as_u64().unwrap() > 2 {
            shared += 1;
        }
    }
    assert!(shared > 0, "16 concurrent requests never shared a forward pass");
}
