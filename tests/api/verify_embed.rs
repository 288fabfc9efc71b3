//! The happy paths of /v1/verify and /v1/embed, and the operational endpoints.

use crate::common::{encode, SyntheticIdentity};
use crate::helpers::{b64, spawn_app};
use futures_util::StreamExt;
use image::ImageFormat;

#[tokio::test]
async fn verify_multipart_of_the_same_image_is_distance_zero_and_verified() {
    let app = spawn_app().await;
    let img = encode(&SyntheticIdentity::new(1).sample(0, 92, 112), ImageFormat::Png);
    let resp = app.verify_multipart(img.clone(), img, &[]).await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["verified"], true, "{v}");
    assert!(v["distance"].as_f64().unwrap() < 1e-5, "{v}");
    assert_eq!(v["metric"], "euclidean");
    assert_eq!(v["model"]["id"], "face-att-small-v1");
    assert!(v["model"]["version"].as_u64().is_some());
    assert!(v["threshold"].as_f64().unwrap() > 0.0);
    let s = v["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&s) && s > 0.5, "score {s}");
    for k in ["decode_ms", "queue_ms", "inference_ms", "total_ms"] {
        assert!(v["timings"][k].as_f64().is_some(), "timings.{k} in {v}");
    }
}

#[tokio::test]
async fn verify_returns_what_the_encoder_saw_only_when_asked() {
    let app = spawn_app().await;
    let img = SyntheticIdentity::new(4).sample(0, 92, 112);
    let png = encode(&img, ImageFormat::Png);
    let plain: serde_json::Value = app.verify_multipart(png.clone(), png.clone(), &[]).await.json().await.unwrap();
    assert!(plain.get("chips").is_none(), "{plain}");
    let v: serde_json::Value =
        app.verify_multipart(png.clone(), png.clone(), &[("chips", "true")]).await.json().await.unwrap();
    for side in ["image_a", "image_b"] {
        let url = v["chips"][side].as_str().unwrap_or_else(|| panic!("chips.{side} in {v}"));
        let b64 = url.strip_prefix("data:image/png;base64,").expect("a PNG data URL");
        use base64::Engine;
        let chip = image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
        // The small AT&T model sees the whole image, grey, at its 46 × 56 input size.
        assert_eq!((chip.width(), chip.height()), (46, 56));
        let want = image::imageops::resize(&img, 46, 56, image::imageops::FilterType::Triangle);
        let diff =
            chip.to_luma8().pixels().zip(want.pixels()).map(|(a, b)| (a.0[0] as i32 - b.0[0] as i32).abs()).max();
        assert!(diff.unwrap() <= 1, "the chip is the resized input (max difference {diff:?})");
    }
    let r = app.verify_multipart(png.clone(), png, &[("chips", "maybe")]).await;
    crate::helpers::assert_problem(r, 400, "invalid_field").await;
}

#[tokio::test]
async fn verify_json_and_multipart_agree_and_accept_every_format() {
    let app = spawn_app().await;
    let (a, b) = (SyntheticIdentity::new(2).sample(0, 92, 112), SyntheticIdentity::new(3).sample(0, 92, 112));
    let pa = encode(&a, ImageFormat::Png);
    let pb = encode(&b, ImageFormat::Png);
    let m: serde_json::Value =
        app.verify_multipart(pa.clone(), pb.clone(), &[("metric", "cosine")]).await.json().await.unwrap();
    let j: serde_json::Value = app
        .verify_json(serde_json::json!({"image_a": b64(&pa), "image_b": format!("data:image/png;base64,{}", b64(&pb)), "metric": "cosine"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["metric"], "cosine");
    assert!((m["distance"].as_f64().unwrap() - j["distance"].as_f64().unwrap()).abs() < 1e-5, "{m} vs {j}");
    // Lossless grey formats give the same pixels, so the same distance as PNG; GIF (palette) and WebP
    // (colour) round-trips may move a grey level slightly.
    for fmt in [ImageFormat::Bmp, ImageFormat::Pnm, ImageFormat::Tiff, ImageFormat::Gif, ImageFormat::WebP] {
        let tolerance = if matches!(fmt, ImageFormat::Gif | ImageFormat::WebP) { 0.05 } else { 1e-4 };
        let r: serde_json::Value =
            app.verify_multipart(encode(&a, fmt), encode(&b, fmt), &[("metric", "cosine")]).await.json().await.unwrap();
        assert!((r["distance"].as_f64().unwrap() - m["distance"].as_f64().unwrap()).abs() < tolerance, "{fmt:?}: {r}");
    }
    let r = app.verify_multipart(encode(&a, ImageFormat::Jpeg), encode(&b, ImageFormat::Jpeg), &[]).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_threshold_in_the_request_overrides_the_card() {
    let app = spawn_app().await;
    let a = encode(&SyntheticIdentity::new(4).sample(0, 92, 112), ImageFormat::Png);
    let v: serde_json::Value =
        app.verify_multipart(a.clone(), a.clone(), &[("threshold", "0")]).await.json().await.unwrap();
    assert_eq!(v["threshold"], 0.0);
    assert_eq!(v["threshold_overridden"], true);
    assert_eq!(v["verified"], true, "distance 0 <= 0: {v}");
    let b = encode(&SyntheticIdentity::new(5).sample(0, 92, 112), ImageFormat::Png);
    let v: serde_json::Value = app.verify_multipart(a, b, &[("threshold", "0")]).await.json().await.unwrap();
    assert_eq!(v["verified"], false, "{v}");
}

#[tokio::test]
async fn embed_returns_one_vector_per_image_in_order() {
    let app = spawn_app().await;
    let imgs: Vec<Vec<u8>> =
        (0..3).map(|k| encode(&SyntheticIdentity::new(10 + k).sample(0, 92, 112), ImageFormat::Png)).collect();
    let mut form = reqwest::multipart::Form::new();
    for i in &imgs {
        form = form.part("image", reqwest::multipart::Part::bytes(i.clone()).file_name("x.png"));
    }
    let v: serde_json::Value =
        app.client.post(app.url("/v1/embed")).multipart(form).send().await.unwrap().json().await.unwrap();
    let e = v["embeddings"].as_array().unwrap();
    assert_eq!(e.len(), 3);
    assert_eq!(v["model"]["id"], "face-att-small-v1");
    let vecs: Vec<Vec<f64>> =
        e.iter().map(|x| x["vector"].as_array().unwrap().iter().map(|f| f.as_f64().unwrap()).collect()).collect();
    assert!(vecs.iter().all(|x| x.len() == 128));
    // JSON form, images reversed: the vectors come back reversed.
    let v2 = app
        .post_json("/v1/embed", serde_json::json!({"images": imgs.iter().rev().map(|i| b64(i)).collect::<Vec<_>>()}))
        .await;
    for (k, x) in v2["embeddings"].as_array().unwrap().iter().enumerate() {
        let got: Vec<f64> = x["vector"].as_array().unwrap().iter().map(|f| f.as_f64().unwrap()).collect();
        let want = &vecs[2 - k];
        let d: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        assert!(d < 1e-4, "embedding {k} differs by {d}");
    }
}

#[tokio::test]
async fn operational_endpoints_answer() {
    let app = spawn_app().await;
    let c = &app.client;
    assert_eq!(c.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    let models: serde_json::Value = c.get(app.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let face = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "face-att-small-v1")
        .expect("face-att-small-v1 listed");
    assert_eq!(face["default"], true);
    assert!(face["thresholds"]["euclidean"]["value"].as_f64().is_some());
    assert!(face["thresholds"]["cosine"]["value"].as_f64().is_some());
    let spec: serde_json::Value = c.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(spec["paths"]["/v1/verify"]["post"].is_object());
    let docs = c.get(app.url("/docs")).send().await.unwrap().text().await.unwrap();
    assert!(docs.contains("/v1/verify"));
    // A request first, so the counters exist.
    let img = encode(&SyntheticIdentity::new(1).sample(0, 92, 112), ImageFormat::Png);
    app.verify_multipart(img.clone(), img, &[]).await;
    let metrics = c.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("siamese_http_requests_total"), "{metrics}");
    assert!(metrics.contains("siamese_batch_images"), "{metrics}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_then_stops_listening() {
    let mut app = spawn_app().await;
    let img = b64(&encode(&SyntheticIdentity::new(1).sample(0, 92, 112), ImageFormat::Png));
    let body = serde_json::json!({"image_a": img, "image_b": img}).to_string().into_bytes();
    let (first, rest) = body.split_at(body.len() / 2);
    let (first, rest) = (first.to_vec(), rest.to_vec());
    // The body arrives in two halves 300 ms apart, so the request is surely in flight at shutdown.
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(
        futures_util::stream::once(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            Ok(rest)
        }),
    );
    let req = app
        .client
        .post(app.url("/v1/verify"))
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(reqwest::Body::wrap_stream(stream));
    let in_flight = tokio::spawn(async move { req.send().await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    app.shut_down().await.expect("clean shutdown");
    let r = in_flight.await.unwrap().expect("the in-flight request was answered");
    assert_eq!(r.status(), 200);
    let after = reqwest::Client::new().get(app.url("/healthz")).send().await;
    assert!(after.is_err(), "still listening after shutdown");
}

/// One preparation pipeline: an image without a face is refused the same way by the command line
/// (`siamese embed`) and by HTTP (`POST /v1/embed`), both with the default face model.
#[tokio::test]
async fn a_faceless_image_is_no_face_from_the_command_line_and_over_http() {
    use crate::helpers::{assert_problem, spawn_app_with, Options};
    let app = spawn_app_with(Options { default_model: None, ..Options::default() }).await;
    let png = encode(&SyntheticIdentity::new(5).sample(0, 92, 112), ImageFormat::Png);
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(png.clone()).file_name("blank.png"));
    let r = app.client.post(app.url("/v1/embed")).multipart(form).send().await.unwrap();
    let p = assert_problem(r, 422, "no_face").await;
    assert_eq!(p["field"], "image[0]", "{p}");
    let http = p["detail"].as_str().unwrap().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("blank.png");
    std::fs::write(&file, &png).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_siamese"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SIAMESE_DEVICE", "cpu")
        .arg("embed")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the command line embedded a face-less image");
    let cli = String::from_utf8_lossy(&out.stderr);
    let said = "no face was found in the image";
    assert!(http.contains(said) && cli.contains(said), "HTTP: {http}; command line: {cli}");
}

/// Mirror averaging: with it, an image and its mirror image have the same embedding (each is the mean over
/// both); without it they differ. The request chooses, else the deployment, else the card (the small AT&T
/// model's card says yes).
#[tokio::test]
async fn mirror_averaging_is_the_cards_by_default_and_a_request_or_the_deployment_can_turn_it_off() {
    let img = SyntheticIdentity::new(6).sample(0, 92, 112);
    let flipped = image::imageops::flip_horizontal(&img);
    let (a, b) = (encode(&img, ImageFormat::Png), encode(&flipped, ImageFormat::Png));
    let app = spawn_app().await;
    let on: serde_json::Value = app.verify_multipart(a.clone(), b.clone(), &[]).await.json().await.unwrap();
    assert_eq!(on["mirror_average"], true, "{on}");
    let d_on = on["distance"].as_f64().unwrap();
    assert!(d_on < 1e-3, "mirror-averaged, an image and its mirror embed alike: {on}");
    let off: serde_json::Value =
        app.verify_multipart(a.clone(), b.clone(), &[("mirror_average", "false")]).await.json().await.unwrap();
    assert_eq!(off["mirror_average"], false, "{off}");
    let d_off = off["distance"].as_f64().unwrap();
    assert!(d_off > 20.0 * d_on.max(1e-4), "without averaging they differ: {d_off} vs {d_on}");
    let e = app.post_json("/v1/embed", serde_json::json!({"images": [b64(&a)], "mirror_average": false})).await;
    assert_eq!(e["mirror_average"], false, "{e}");
    let r = app.verify_multipart(a.clone(), b.clone(), &[("mirror_average", "sometimes")]).await;
    crate::helpers::assert_problem(r, 400, "invalid_field").await;

    let mut o = crate::helpers::Options::default();
    o.batch.mirror_average = Some(false);
    let plain = crate::helpers::spawn_app_with(o).await;
    let v: serde_json::Value = plain.verify_multipart(a.clone(), b.clone(), &[]).await.json().await.unwrap();
    assert_eq!(v["mirror_average"], false, "{v}");
    assert!((v["distance"].as_f64().unwrap() - d_off).abs() < 1e-4, "the deployment's off is the request's: {v}");
    let v: serde_json::Value = plain.verify_multipart(a, b, &[("mirror_average", "true")]).await.json().await.unwrap();
    assert!((v["distance"].as_f64().unwrap() - d_on).abs() < 1e-4, "a request can turn it back on: {v}");
}
