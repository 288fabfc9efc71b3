//! Every error code of the API: status, problem+json body, stable code — and nothing else changes.

use crate::common::{encode, SyntheticIdentity};
use crate::helpers::{assert_problem, b64, spawn_app, spawn_app_with, Options};
use image::ImageFormat;

fn png(seed: u64) -> Vec<u8> {
    encode(&SyntheticIdentity::new(seed).sample(0, 92, 112), ImageFormat::Png)
}

#[tokio::test]
async fn undecodable_image_is_image_decode_failed_and_names_the_field() {
    let app = spawn_app().await;
    let v = assert_problem(
        app.verify_multipart(png(1), b"not an image at all".to_vec(), &[]).await,
        422,
        "image_decode_failed",
    )
    .await;
    assert_eq!(v["field"], "image_b");
    // A truncated PNG: a known format whose data ends early.
    let mut cut = png(1);
    cut.truncate(cut.len() / 2);
    let v = assert_problem(app.verify_multipart(cut, png(2), &[]).await, 422, "image_decode_failed").await;
    assert_eq!(v["field"], "image_a");
    assert_problem(app.verify_multipart(Vec::new(), png(2), &[]).await, 422, "image_decode_failed").await;
}

#[tokio::test]
async fn image_over_the_dimension_limit_is_image_too_large() {
    let app = spawn_app().await; // limit: 2048 px per side
    let wide = image::GrayImage::from_pixel(3000, 8, image::Luma([128]));
    let v = assert_problem(
        app.verify_multipart(encode(&wide, ImageFormat::Png), png(1), &[]).await,
        413,
        "image_too_large",
    )
    .await;
    assert_eq!(v["field"], "image_a");
}

#[tokio::test]
async fn body_over_the_limit_is_payload_too_large() {
    let mut o = Options::default();
    o.limits.max_body_bytes = 64 << 10;
    let app = spawn_app_with(o).await;
    let big = vec![7u8; 200 << 10];
    assert_problem(app.verify_multipart(big.clone(), png(1), &[]).await, 413, "payload_too_large").await;
    let body = serde_json::json!({"image_a": b64(&big), "image_b": b64(&png(1))});
    assert_problem(app.verify_json(body).await, 413, "payload_too_large").await;
}

#[tokio::test]
async fn other_content_types_are_unsupported_media_type() {
    let app = spawn_app().await;
    let r = app.post_raw("/v1/verify", "text/plain", "hello").await;
    assert_problem(r, 415, "unsupported_media_type").await;
    let r = app.client.post(app.url("/v1/embed")).body("no content type").send().await.unwrap();
    assert_problem(r, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn absent_images_are_missing_field() {
    let app = spawn_app().await;
    let v =
        assert_problem(app.verify_json(serde_json::json!({"image_a": b64(&png(1))})).await, 400, "missing_field").await;
    assert_eq!(v["field"], "image_b");
    let form =
        reqwest::multipart::Form::new().part("image_b", reqwest::multipart::Part::bytes(png(1)).file_name("b.png"));
    let r = app.client.post(app.url("/v1/verify")).multipart(form).send().await.unwrap();
    assert_eq!(assert_problem(r, 400, "missing_field").await["field"], "image_a");
    let r = app.client.post(app.url("/v1/embed")).json(&serde_json::json!({"images": []})).send().await.unwrap();
    assert_problem(r, 400, "missing_field").await;
}

#[tokio::test]
async fn unknown_metric_is_invalid_metric() {
    let app = spawn_app().await;
    assert_problem(app.verify_multipart(png(1), png(2), &[("metric", "manhattan")]).await, 400, "invalid_metric").await;
    let body = serde_json::json!({"image_a": b64(&png(1)), "image_b": b64(&png(2)), "metric": "hamming"});
    assert_problem(app.verify_json(body).await, 400, "invalid_metric").await;
}

#[tokio::test]
async fn unknown_model_is_unknown_model() {
    let app = spawn_app().await;
    assert_problem(app.verify_multipart(png(1), png(2), &[("model", "no-such-model")]).await, 404, "unknown_model")
        .await;
    let r = app
        .client
        .post(app.url("/v1/embed"))
        .json(&serde_json::json!({"images": [b64(&png(1))], "model": "nope"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "unknown_model").await;
}

#[tokio::test]
async fn malformed_requests_get_their_own_codes() {
    let app = spawn_app().await;
    assert_problem(app.post_raw("/v1/verify", "application/json", "{not json").await, 400, "invalid_json").await;
    let r = app.verify_json(serde_json::json!({"image_a": "%%%not-base64%%%", "image_b": b64(&png(1))})).await;
    assert_eq!(assert_problem(r, 400, "invalid_field").await["field"], "image_a");
    assert_problem(app.verify_multipart(png(1), png(2), &[("threshold", "-1")]).await, 400, "invalid_field").await;
    assert_problem(app.verify_multipart(png(1), png(2), &[("threshold", "abc")]).await, 400, "invalid_field").await;
    assert_problem(app.post_raw("/v1/verify", "multipart/form-data", "x").await, 400, "invalid_multipart").await;
    let many: Vec<String> = (0..33).map(|_| b64(&png(1))).collect();
    let r = app.client.post(app.url("/v1/embed")).json(&serde_json::json!({"images": many})).send().await.unwrap();
    assert_problem(r, 400, "too_many_images").await;
    assert_problem(app.client.get(app.url("/v2/nothing")).send().await.unwrap(), 404, "not_found").await;
    assert_problem(app.client.get(app.url("/v1/verify")).send().await.unwrap(), 405, "method_not_allowed").await;
    // After all that, the service still answers correctly.
    let r = app.verify_multipart(png(1), png(1), &[]).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_full_queue_is_refused_with_429_and_retry_after() {
    // One job may wait; each forward pass carries one job; 48 concurrent 16-image requests must overflow it.
    let mut o = Options::default();
    o.batch.queue_capacity = 1;
    o.batch.max_batch = 1;
    o.batch.max_wait = std::time::Duration::from_millis(0);
    let app = std::sync::Arc::new(spawn_app_with(o).await);
    let imgs: Vec<String> = (0..16).map(|k| b64(&png(k))).collect();
    let mut tasks = Vec::new();
    for _ in 0..48 {
        let (app, imgs) = (app.clone(), imgs.clone());
        tasks.push(tokio::spawn(async move {
            app.client.post(app.url("/v1/embed")).json(&serde_json::json!({"images": imgs})).send().await.unwrap()
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(r.headers().get("retry-after").unwrap(), "1");
                assert_problem(r, 429, "overloaded").await;
                refused += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
}

/// Query strings and path segments that do not parse, and JSON bodies over the limit on routes that take
/// typed JSON: problem+json with a stable code, never axum's plain-text rejection.
#[tokio::test]
async fn bad_query_strings_paths_and_oversized_json_are_problems() {
    let app = spawn_app().await;
    let c = &app.client;
    for q in ["limit=abc", "limit=-1", "limit=99999999999999999999", "limit=1&limit=2"] {
        let r = c.get(app.url(&format!("/v1/collections/faces/subjects?{q}"))).send().await.unwrap();
        let p = assert_problem(r, 400, if q == "limit=-1" { "invalid_field" } else { "invalid_query" }).await;
        assert!(p["detail"].as_str().unwrap().contains("limit"), "{q}: {p}");
    }
    let r = c.get(app.url("/v1/jobs?limit=ten")).send().await.unwrap();
    assert_problem(r, 400, "invalid_query").await;
    // A version that is not a number.
    let r = c.post(app.url("/v1/models/face-att-small-v1/versions/latest/activate")).send().await.unwrap();
    assert_problem(r, 400, "invalid_path").await;
    // 5 MiB of JSON on routes whose limit is 4 MiB.
    let big = format!("{{\"name\": \"x\", \"metadata\": {{\"pad\": \"{}\"}}}}", "a".repeat(5 << 20));
    for path in ["/v1/collections", "/v1/collections/faces/subjects", "/v1/jobs"] {
        let r =
            c.post(app.url(path)).header("content-type", "application/json").body(big.clone()).send().await.unwrap();
        let p = assert_problem(r, 413, "payload_too_large").await;
        assert!(p["detail"].as_str().unwrap().contains(&(4u64 << 20).to_string()), "{path}: {p}");
    }
    let r = c
        .patch(app.url("/v1/collections/faces/subjects/nobody"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, "payload_too_large").await;
}

/// A client that sends its headers or its body a byte at a time, slowly, does not hold a connection (and
/// its buffers) for ever: headers must arrive within the header timeout, the whole request within the
/// request timeout (504 `timeout`, problem+json).
#[tokio::test]
async fn slow_clients_are_cut_off_by_the_header_and_request_timeouts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut o = Options::default();
    o.limits.timeouts = siamese::api::Timeouts {
        header: std::time::Duration::from_millis(500),
        request: std::time::Duration::from_millis(1500),
    };
    let app = spawn_app_with(o).await;
    let addr = app.base.trim_start_matches("http://").to_string();

    // Headers that never end: the server closes the connection.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection is still open after 5 s of unfinished headers");
    assert!(t.elapsed() < std::time::Duration::from_secs(3), "closed after {:?}", t.elapsed());

    // A body that trickles in: 504 timeout once the request deadline passes.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head =
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..50 {
            if w.write_all(b"{").await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let mut buf = vec![0u8; 4096];
    let n =
        tokio::time::timeout(std::time::Duration::from_secs(5), r.read(&mut buf)).await.expect("an answer").unwrap();
    writer.abort();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("application/problem+json") && text.contains("\"code\":\"timeout\""), "{text}");

    // Ordinary requests are unaffected.
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
}

fn grey_png(w: u32, h: u32, v: u8) -> Vec<u8> {
    encode(&image::GrayImage::from_pixel(w, h, image::Luma([v])), ImageFormat::Png)
}

/// Small files that decode to large images: one request may not decode more than its budget (413
/// `images_too_large`, before any pixel is decoded), and requests in flight together may not exceed the
/// service's (429 `overloaded` with `Retry-After`); the budget is returned after every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_image_memory_is_bounded_per_request_and_across_requests() {
    let mut o = Options::default();
    // A grey 2048² PNG (a few KB) is counted as 4 MiB decoded plus a 12 MiB RGB copy: 16 MiB.
    o.limits.max_request_decode_bytes = 40 << 20;
    o.limits.max_inflight_decode_bytes = 40 << 20;
    let app = std::sync::Arc::new(spawn_app_with(o).await);
    let embed = |n: usize| {
        let mut form = reqwest::multipart::Form::new();
        for k in 0..n {
            form = form
                .part("image", reqwest::multipart::Part::bytes(grey_png(2048, 2048, 100 + k as u8)).file_name("g.png"));
        }
        app.client.post(app.url("/v1/embed")).multipart(form).send()
    };
    assert_eq!(embed(2).await.unwrap().status(), 200);
    let p = assert_problem(embed(3).await.unwrap(), 413, "images_too_large").await;
    assert!(
        p["detail"].as_str().unwrap().contains("48 MiB") && p["detail"].as_str().unwrap().contains("40 MiB"),
        "{p}"
    );
    // Sixteen such requests at once: the budget admits one at a time.
    let all: Vec<_> = (0..16).map(|_| embed(2)).collect();
    let mut ok = 0;
    let mut busy = 0;
    for r in futures_util::future::join_all(all).await {
        let r = r.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(r.headers()["retry-after"], "1");
                assert_problem(r, 429, "overloaded").await;
                busy += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "{ok} answered, {busy} refused");
    assert_eq!(app.state.decode_budget.available_mib(), 40, "every request gave its budget back");
}

/// An embed request larger than the model's batch is cut into jobs of at most `max_batch` images, answered
/// in order with the same vectors as alone.
#[tokio::test]
async fn embed_requests_larger_than_a_batch_are_cut_into_batches() {
    let mut o = Options::default();
    o.batch.max_batch = 8;
    let app = spawn_app_with(o).await;
    let imgs: Vec<Vec<u8>> = (0..30).map(png).collect();
    let mut form = reqwest::multipart::Form::new();
    for b in &imgs {
        form = form.part("image", reqwest::multipart::Part::bytes(b.clone()).file_name("a.png"));
    }
    let v: serde_json::Value =
        app.client.post(app.url("/v1/embed")).multipart(form).send().await.unwrap().json().await.unwrap();
    let got = v["embeddings"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(got.len(), 30);
    assert!(v["timings"]["batch_images"].as_u64().unwrap() <= 8, "{}", v["timings"]);
    for k in [0usize, 17, 29] {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(imgs[k].clone()).file_name("a.png"));
        let one: serde_json::Value =
            app.client.post(app.url("/v1/embed")).multipart(form).send().await.unwrap().json().await.unwrap();
        let (a, b) = (got[k]["vector"].as_array().unwrap(), one["embeddings"][0]["vector"].as_array().unwrap());
        let d: f64 =
            a.iter().zip(b).map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).powi(2)).sum::<f64>().sqrt();
        assert!(d < 1e-4, "image {k}: {d}");
        assert_eq!(got[k]["index"], k);
    }
}
