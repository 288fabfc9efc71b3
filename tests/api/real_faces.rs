//! On real faces through HTTP with the default face model (what `make run` serves): AT&T s36–s40 pairs —
//! same-subject pairs verify, different-subject pairs do not, at least 9 of 10 random pairs of each kind —
//! and raw LFW photos through the face pipeline.

use crate::common::real_data;
use crate::helpers::{b64, spawn_app_with, Options};
use rand::{Rng, SeedableRng};

#[tokio::test]
async fn att_test_subjects_verify_through_http() {
    let Some(att) = real_data("att_faces", "att_test_subjects_verify_through_http") else { return };
    let app = spawn_app_with(Options { default_model: None, ..Options::default() }).await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let img = |s: u32, k: u32| std::fs::read(att.join(format!("s{s}/{k}.pgm"))).unwrap();
    let (mut same_ok, mut diff_ok) = (0, 0);
    for _ in 0..10 {
        let s = rng.gen_range(36..=40);
        let (i, mut j) = (rng.gen_range(1..=10), rng.gen_range(1..=10));
        while j == i {
            j = rng.gen_range(1..=10);
        }
        let v: serde_json::Value = app
            .verify_json(serde_json::json!({"image_a": b64(&img(s, i)), "image_b": b64(&img(s, j))}))
            .await
            .json()
            .await
            .unwrap();
        same_ok += (v["verified"] == true) as u32;
        let (s1, mut s2) = (rng.gen_range(36..=40), rng.gen_range(36..=40));
        while s2 == s1 {
            s2 = rng.gen_range(36..=40);
        }
        let v: serde_json::Value = app
            .verify_multipart(img(s1, rng.gen_range(1..=10)), img(s2, rng.gen_range(1..=10)), &[])
            .await
            .json()
            .await
            .unwrap();
        diff_ok += (v["verified"] == false) as u32;
    }
    eprintln!("AT&T s36–s40 over HTTP: {same_ok}/10 same-subject pairs verified, {diff_ok}/10 different-subject pairs rejected");
    assert!(same_ok >= 9, "same-subject pairs verified: {same_ok}/10");
    assert!(diff_ok >= 9, "different-subject pairs rejected: {diff_ok}/10");
}

/// LFW View 1 photos through the default face model (MTCNN → alignment → dlib encoder): two photos of one
/// person verify with the faces' boxes in the answer; `faces=all` embeds every face; a blank image is 422
/// `no_face` naming the image.
#[tokio::test]
async fn raw_lfw_photos_verify_through_the_face_pipeline() {
    use crate::helpers::assert_problem;
    let Some(lfw) = real_data("lfw-view1", "raw_lfw_photos_verify_through_the_face_pipeline") else { return };
    let app = spawn_app_with(Options { default_model: None, ..Options::default() }).await;
    let photo = |name: &str, k: u32| std::fs::read(lfw.join(format!("lfw/{name}/{name}_{k:04}.jpg"))).unwrap();
    // A pair from pairsDevTest.txt's "same" half.
    let v: serde_json::Value =
        app.verify_multipart(photo("Abdullah_Gul", 13), photo("Abdullah_Gul", 14), &[]).await.json().await.unwrap();
    assert_eq!(v["model"]["id"], "face-dlib-r29-v1", "{v}");
    assert_eq!(v["verified"], true, "{v}");
    for k in ["image_a", "image_b"] {
        let b = v["faces"][k]["box"].as_array().unwrap_or_else(|| panic!("faces.{k}.box in {v}"));
        assert_eq!(b.len(), 4);
        assert!(b[2].as_f64().unwrap() > b[0].as_f64().unwrap());
        assert_eq!(v["faces"][k]["landmarks"].as_array().unwrap().len(), 5);
    }
    // Different people are rejected.
    let v: serde_json::Value =
        app.verify_multipart(photo("Abdullah_Gul", 13), photo("AJ_Cook", 1), &[]).await.json().await.unwrap();
    assert_eq!(v["verified"], false, "{v}");
    // A generated blank image has no face.
    let blank =
        crate::common::encode(&image::GrayImage::from_pixel(200, 200, image::Luma([128])), image::ImageFormat::Png);
    let r = app.verify_multipart(photo("AJ_Cook", 1), blank, &[]).await;
    let p = assert_problem(r, 422, "no_face").await;
    assert_eq!(p["field"], "image_b");
    // embed: one entry per face with its box.
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(photo("AJ_Cook", 1)).file_name("a.jpg"))
        .text("faces", "all");
    let e: serde_json::Value =
        app.client.post(app.url("/v1/embed")).multipart(form).send().await.unwrap().json().await.unwrap();
    let embs = e["embeddings"].as_array().unwrap();
    assert!(!embs.is_empty() && embs.iter().all(|x| x["face"]["box"].is_array() && x["index"] == 0), "{e}");
    assert_eq!(embs[0]["vector"].as_array().unwrap().len(), 128);
}

/// `faces=all` on a picture of many faces (36 AT&T people tiled 6 × 6) takes at most the 32 largest.
#[tokio::test]
async fn faces_all_on_a_crowd_takes_at_most_32_faces() {
    let Some(att) = real_data("att_faces", "faces_all_on_a_crowd_takes_at_most_32_faces") else { return };
    let app = spawn_app_with(Options { default_model: None, ..Options::default() }).await;
    let mut tiles = image::GrayImage::new(92 * 6, 112 * 6);
    for k in 0..36u32 {
        let face = image::open(att.join(format!("s{}/1.pgm", k + 1))).unwrap().to_luma8();
        image::imageops::replace(&mut tiles, &face, (92 * (k % 6)) as i64, (112 * (k / 6)) as i64);
    }
    let png = crate::common::encode(&tiles, image::ImageFormat::Png);
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(png).file_name("crowd.png"))
        .text("faces", "all");
    let v: serde_json::Value =
        app.client.post(app.url("/v1/embed")).multipart(form).send().await.unwrap().json().await.unwrap();
    let n = v["embeddings"].as_array().unwrap_or_else(|| panic!("{v}")).len();
    eprintln!("faces=all on 36 tiled AT&T faces: {n} embeddings");
    assert!((20..=32).contains(&n), "{n} faces taken");
}

/// The face a photo is taken of: by default the face nearest the centre among the large ones, not a larger face at
/// the edge. Two LFW photos on one canvas: one enlarged at the left edge (its face about twice the other's area), one
/// as it is in the middle. `faces=largest` asks for the larger one; an unknown choice is a 400 naming the field.
#[tokio::test]
async fn the_default_face_is_the_central_one_and_faces_largest_takes_the_largest() {
    use crate::helpers::assert_problem;
    let test = "the_default_face_is_the_central_one_and_faces_largest_takes_the_largest";
    let Some(lfw) = real_data("lfw-view1", test) else { return };
    let app = spawn_app_with(Options { default_model: None, ..Options::default() }).await;
    let photo = |name: &str, k: u32| image::open(lfw.join(format!("lfw/{name}/{name}_{k:04}.jpg"))).unwrap().to_luma8();
    let big = image::imageops::resize(&photo("AJ_Cook", 1), 360, 360, image::imageops::FilterType::Triangle);
    let mut canvas = image::GrayImage::from_pixel(1000, 400, image::Luma([128]));
    image::imageops::replace(&mut canvas, &big, 0, 20);
    image::imageops::replace(&mut canvas, &photo("Abdullah_Gul", 13), 375, 75);
    let png = crate::common::encode(&canvas, image::ImageFormat::Png);
    let centre_x = |faces: Option<&'static str>| {
        let (app, png) = (&app, png.clone());
        async move {
            let mut form = reqwest::multipart::Form::new()
                .part("image", reqwest::multipart::Part::bytes(png).file_name("two.png"));
            if let Some(f) = faces {
                form = form.text("faces", f.to_string());
            }
            let v: serde_json::Value =
                app.client.post(app.url("/v1/embed")).multipart(form).send().await.unwrap().json().await.unwrap();
            let b = &v["embeddings"][0]["face"]["box"];
            let (x0, x1) = (b[0].as_f64().unwrap_or_else(|| panic!("{v}")), b[2].as_f64().unwrap());
            eprintln!("faces={faces:?}: box x {x0:.0}..{x1:.0}");
            (x0 + x1) / 2.0
        }
    };
    let default = centre_x(None).await;
    assert!((400.0..600.0).contains(&default), "default face centred at x {default}");
    assert_eq!(centre_x(Some("central")).await, default);
    let largest = centre_x(Some("largest")).await;
    assert!(largest < 360.0, "faces=largest took the face at x {largest}");
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(png.clone()).file_name("two.png"))
        .text("faces", "biggest");
    assert_problem(app.client.post(app.url("/v1/embed")).multipart(form).send().await.unwrap(), 400, "invalid_field")
        .await;
}
