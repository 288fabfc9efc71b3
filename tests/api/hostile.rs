//! A corpus of hostile requests against the real server: broken and malicious images (truncated, corrupt,
//! decompression bombs, oversized canvases, 1×1), bodies over the limit on every route family, wrong
//! content types, bad UTF-8 and invisible names, NaN/huge embeddings, bad numbers, unknown fields, too many
//! images. Each gets its documented status and stable `code` as problem+json (or its documented success),
//! no 5xx, and nothing in the database or the in-memory galleries changes because of a refused request.

use crate::common::{encode, SyntheticIdentity};
use crate::helpers::{spawn_app_with, Options, TestApp};
use image::ImageFormat;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

fn face(seed: u64) -> Vec<u8> {
    encode(&SyntheticIdentity::new(seed).sample(0, 92, 112), ImageFormat::Png)
}

fn file(b: Vec<u8>) -> Part {
    Part::bytes(b).file_name("x.bin")
}

/// A PNG whose header claims `w × h` (grey), with no usable pixel data.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let crc = crc32(b"IHDR", &ihdr);
    p.extend_from_slice(&13u32.to_be_bytes());
    p.extend_from_slice(b"IHDR");
    p.extend_from_slice(&ihdr);
    p.extend_from_slice(&crc.to_be_bytes());
    p
}

fn crc32(kind: &[u8], data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in kind.iter().chain(data) {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// Everything a refused request must leave alone: row counts and the galleries' sizes.
async fn snapshot(app: &TestApp) -> Value {
    let mut out = serde_json::Map::new();
    for t in ["collections", "subjects", "samples", "sample_images", "embeddings", "api_keys", "jobs"] {
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}")).fetch_one(app.store.pool()).await.unwrap();
        out.insert(t.into(), n.into());
    }
    let col = app.state.galleries.collection("faces").await.unwrap();
    out.insert("index".into(), format!("{:?}", app.state.galleries.stats(&col.id)).into());
    Value::Object(out)
}

enum Body {
    Multipart(Form),
    Json(Value),
    Raw(&'static str, Vec<u8>),
    Empty,
}

struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    body: Body,
    status: u16,
    /// The problem's code (`None`: a success).
    code: Option<&'static str>,
}

fn case(name: &'static str, method: &str, path: &str, body: Body, status: u16, code: Option<&'static str>) -> Case {
    Case { name, method: method.parse().unwrap(), path: path.into(), body, status, code }
}

fn verify_with(bad: Vec<u8>) -> Body {
    Body::Multipart(Form::new().part("image_a", file(face(1))).part("image_b", file(bad)))
}

fn corpus() -> Vec<Case> {
    use Body::*;
    let good = face(1);
    let big = vec![b'a'; 5 << 20];
    let big_json = format!("{{\"name\": \"{}\"}}", "a".repeat(5 << 20)).into_bytes();
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageLuma8(SyntheticIdentity::new(2).sample(0, 92, 112))
        .write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    let mut webp = Vec::new();
    image::DynamicImage::ImageRgba8(image::RgbaImage::new(64, 64))
        .write_to(&mut std::io::Cursor::new(&mut webp), ImageFormat::WebP)
        .unwrap();
    // 2000 × 2000 RGB, 16 bits per channel, all zero: about 24 MB decoded from a small file.
    let bomb = {
        let img: image::ImageBuffer<image::Rgb<u16>, Vec<u16>> = image::ImageBuffer::new(2000, 2000);
        let mut b = Vec::new();
        image::DynamicImage::ImageRgb16(img).write_to(&mut std::io::Cursor::new(&mut b), ImageFormat::Png).unwrap();
        b
    };
    let one_px = encode(&image::GrayImage::new(1, 1), ImageFormat::Png);
    let emb = |v: &str| Multipart(Form::new().text("embedding", v.to_string()));
    let s = "/v1/collections/faces/subjects/alice";
    let mut v = vec![
        // Images.
        case(
            "truncated PNG",
            "POST",
            "/v1/verify",
            verify_with(good[..good.len() / 2].to_vec()),
            422,
            Some("image_decode_failed"),
        ),
        // A JPEG missing its end still decodes (as in browsers); one cut inside its headers does not.
        case(
            "JPEG missing its last third",
            "POST",
            "/v1/verify",
            verify_with(jpeg[..jpeg.len() * 2 / 3].to_vec()),
            200,
            None,
        ),
        case(
            "JPEG cut in its headers",
            "POST",
            "/v1/verify",
            verify_with(jpeg[..120].to_vec()),
            422,
            Some("image_decode_failed"),
        ),
        case(
            "GIF claiming 65535 x 65535, then garbage",
            "POST",
            "/v1/verify",
            verify_with(b"GIF89a\xff\xff\xff\xff garbage".to_vec()),
            413,
            Some("image_too_large"),
        ),
        case(
            "truncated WebP",
            "POST",
            "/v1/verify",
            verify_with(webp[..webp.len().min(30)].to_vec()),
            422,
            Some("image_decode_failed"),
        ),
        case("random bytes", "POST", "/v1/verify", verify_with(vec![0x5a; 4096]), 422, Some("image_decode_failed")),
        case("empty file", "POST", "/v1/verify", verify_with(Vec::new()), 422, Some("image_decode_failed")),
        case(
            "8193-px side",
            "POST",
            "/v1/verify",
            verify_with(encode(&image::GrayImage::new(8193, 1), ImageFormat::Png)),
            413,
            Some("image_too_large"),
        ),
        case(
            "over the dimension limit",
            "POST",
            "/v1/verify",
            verify_with(encode(&image::GrayImage::new(3000, 3000), ImageFormat::Png)),
            413,
            Some("image_too_large"),
        ),
        case(
            "GIF cut in its header",
            "POST",
            "/v1/verify",
            verify_with(b"GIF89a\xff\xff\xff\xff\x00\x00\x00".to_vec()),
            422,
            Some("image_decode_failed"),
        ),
        case("decompression bomb", "POST", "/v1/verify", verify_with(bomb), 413, Some("image_too_large")),
        case(
            "header only PNG",
            "POST",
            "/v1/verify",
            verify_with(png_claiming(64, 64)),
            422,
            Some("image_decode_failed"),
        ),
        case(
            "1x1 on the face detector",
            "POST",
            "/v1/verify",
            Multipart(
                Form::new()
                    .part("image_a", file(face(1)))
                    .part("image_b", file(one_px.clone()))
                    .text("model", "face-dlib-r29-v1"),
            ),
            422,
            Some("no_face"),
        ),
        case("1x1 on a whole-image model", "POST", "/v1/verify", verify_with(one_px), 200, None),
        case(
            "33 images",
            "POST",
            "/v1/embed",
            Multipart((0..33).fold(Form::new(), |f, k| f.part("image", file(face(k))))),
            400,
            Some("too_many_images"),
        ),
        case(
            "no image",
            "POST",
            "/v1/embed",
            Multipart(Form::new().text("model", "face-att-small-v1")),
            400,
            Some("missing_field"),
        ),
        case(
            "base64 that is not",
            "POST",
            "/v1/verify",
            Json(json!({"image_a": "@@@@", "image_b": "!!"})),
            400,
            Some("invalid_field"),
        ),
        // Bodies over the limit, every route family.
        case(
            "5 MiB verify",
            "POST",
            "/v1/verify",
            Raw("multipart/form-data; boundary=x", big.clone()),
            413,
            Some("payload_too_large"),
        ),
        case(
            "5 MiB embed JSON",
            "POST",
            "/v1/embed",
            Raw("application/json", big_json.clone()),
            413,
            Some("payload_too_large"),
        ),
        case(
            "5 MiB collection",
            "POST",
            "/v1/collections",
            Raw("application/json", big_json.clone()),
            413,
            Some("payload_too_large"),
        ),
        case(
            "5 MiB subject",
            "POST",
            "/v1/collections/faces/subjects",
            Raw("application/json", big_json.clone()),
            413,
            Some("payload_too_large"),
        ),
        case(
            "5 MiB samples",
            "POST",
            &format!("{s}/samples"),
            Raw("application/json", big_json.clone()),
            413,
            Some("payload_too_large"),
        ),
        case(
            "5 MiB identify",
            "POST",
            "/v1/collections/faces/identify",
            Raw("application/json", big_json.clone()),
            413,
            Some("payload_too_large"),
        ),
        case(
            "5 MiB subject verify",
            "POST",
            &format!("{s}/verify"),
            Raw("application/json", big_json.clone()),
            413,
            Some("payload_too_large"),
        ),
        case(
            "5 MiB job",
            "POST",
            "/v1/jobs",
            Raw("application/json", big_json.clone()),
            413,
            Some("payload_too_large"),
        ),
        case("5 MiB key", "POST", "/v1/admin/keys", Raw("application/json", big_json), 413, Some("payload_too_large")),
        // Content types and syntax.
        case(
            "text/plain verify",
            "POST",
            "/v1/verify",
            Raw("text/plain", b"hello".to_vec()),
            415,
            Some("unsupported_media_type"),
        ),
        case("no content type", "POST", "/v1/embed", Raw("", b"{}".to_vec()), 415, Some("unsupported_media_type")),
        case(
            "XML collection",
            "POST",
            "/v1/collections",
            Raw("application/xml", b"<c/>".to_vec()),
            415,
            Some("unsupported_media_type"),
        ),
        case(
            "multipart without boundary",
            "POST",
            "/v1/verify",
            Raw("multipart/form-data", b"--x\r\n".to_vec()),
            400,
            Some("invalid_multipart"),
        ),
        case(
            "broken JSON",
            "POST",
            "/v1/collections/faces/subjects",
            Raw("application/json", b"{\"name\": ".to_vec()),
            400,
            Some("invalid_json"),
        ),
        case(
            "JSON of the wrong type",
            "POST",
            "/v1/collections/faces/subjects",
            Json(json!({"name": 5})),
            400,
            Some("invalid_json"),
        ),
        case(
            "unknown JSON field",
            "POST",
            "/v1/jobs",
            Json(json!({"dataset": "x", "epoch": 3})),
            400,
            Some("invalid_json"),
        ),
        // Names and paths.
        case(
            "invisible subject name",
            "POST",
            "/v1/collections/faces/subjects",
            Json(json!({"name": "\u{200b}\u{200d}"})),
            400,
            Some("invalid_field"),
        ),
        case(
            "257-character subject name",
            "POST",
            "/v1/collections/faces/subjects",
            Json(json!({"name": "é".repeat(257)})),
            400,
            Some("invalid_field"),
        ),
        case(
            "NUL in a subject name",
            "POST",
            "/v1/collections/faces/subjects",
            Json(json!({"name": "a\u{0}b"})),
            400,
            Some("invalid_field"),
        ),
        case(
            "collection named ..",
            "POST",
            "/v1/collections",
            Json(json!({"name": "..", "modality": "face"})),
            400,
            Some("invalid_field"),
        ),
        case(
            "metadata over 16 KiB",
            "POST",
            "/v1/collections/faces/subjects",
            Json(json!({"name": "m", "metadata": {"x": "y".repeat(17 << 10)}})),
            400,
            Some("invalid_field"),
        ),
        case("bad UTF-8 in a path", "GET", "/v1/collections/%FF%FE", Empty, 400, Some("invalid_path")),
        case("unknown subject", "GET", "/v1/collections/faces/subjects/nobody", Empty, 404, Some("subject_not_found")),
        case(
            "unknown collection",
            "POST",
            "/v1/collections/nope/identify",
            Multipart(Form::new().part("image", file(face(3)))),
            404,
            Some("collection_not_found"),
        ),
        // Embeddings.
        case("NaN embedding", "POST", "/v1/collections/faces/identify", emb("[NaN, 1]"), 400, Some("invalid_field")),
        case(
            "infinite embedding",
            "POST",
            "/v1/collections/faces/identify",
            emb(&format!("[{}]", ["1e39"; 128].join(","))),
            400,
            Some("invalid_field"),
        ),
        case(
            "embedding of the wrong size",
            "POST",
            "/v1/collections/faces/identify",
            emb("[0.1, 0.2]"),
            400,
            Some("invalid_field"),
        ),
        case(
            "embedding that is not a list",
            "POST",
            "/v1/collections/faces/identify",
            emb("{\"a\": 1}"),
            400,
            Some("invalid_field"),
        ),
        // Numbers.
        case("negative limit", "GET", "/v1/collections/faces/subjects?limit=-5", Empty, 400, Some("invalid_field")),
        case(
            "huge limit",
            "GET",
            "/v1/collections/faces/subjects?limit=99999999999999999999",
            Empty,
            400,
            Some("invalid_query"),
        ),
        case("non-numeric limit", "GET", "/v1/jobs?limit=ten", Empty, 400, Some("invalid_query")),
        case(
            "top_k 0",
            "POST",
            "/v1/collections/faces/identify",
            Multipart(Form::new().part("image", file(face(3))).text("top_k", "0")),
            400,
            Some("invalid_field"),
        ),
        case(
            "top_k text",
            "POST",
            "/v1/collections/faces/identify",
            Multipart(Form::new().part("image", file(face(3))).text("top_k", "many")),
            400,
            Some("invalid_field"),
        ),
        case(
            "negative threshold",
            "POST",
            "/v1/verify",
            Multipart(
                Form::new().part("image_a", file(face(1))).part("image_b", file(face(2))).text("threshold", "-1"),
            ),
            400,
            Some("invalid_field"),
        ),
        case(
            "NaN threshold",
            "POST",
            "/v1/verify",
            Multipart(
                Form::new().part("image_a", file(face(1))).part("image_b", file(face(2))).text("threshold", "NaN"),
            ),
            400,
            Some("invalid_field"),
        ),
        case(
            "threshold 1e39",
            "POST",
            "/v1/verify",
            Multipart(
                Form::new().part("image_a", file(face(1))).part("image_b", file(face(2))).text("threshold", "1e39"),
            ),
            400,
            Some("invalid_field"),
        ),
        case(
            "unknown metric",
            "POST",
            "/v1/verify",
            Multipart(
                Form::new().part("image_a", file(face(1))).part("image_b", file(face(2))).text("metric", "manhattan"),
            ),
            400,
            Some("invalid_metric"),
        ),
        case(
            "faces=maybe",
            "POST",
            "/v1/embed",
            Multipart(Form::new().part("image", file(face(1))).text("faces", "maybe")),
            400,
            Some("invalid_field"),
        ),
        case(
            "negative epochs",
            "POST",
            "/v1/jobs",
            Json(json!({"collection": "faces", "epochs": -1})),
            422,
            Some("invalid_job"),
        ),
        // Routes and methods.
        case("PUT verify", "PUT", "/v1/verify", Empty, 405, Some("method_not_allowed")),
        case("unknown route", "GET", "/v1/../../etc/passwd", Empty, 404, Some("not_found")),
        case(
            "unknown model",
            "POST",
            "/v1/verify",
            Multipart(
                Form::new().part("image_a", file(face(1))).part("image_b", file(face(2))).text("model", "../../model"),
            ),
            404,
            Some("unknown_model"),
        ),
    ];
    // Unsized garbage in a second multipart field name.
    v.push(case(
        "field name of 10 KB",
        "POST",
        "/v1/embed",
        Multipart(Form::new().part("x".repeat(10_000), file(face(1)))),
        400,
        Some("missing_field"),
    ));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hostile_corpus_gets_documented_answers_and_changes_nothing() {
    let mut o = Options::default();
    o.limits.decode.max_alloc_bytes = 16 << 20;
    let app = spawn_app_with(o).await;
    // A subject with one sample, so that searches have something to search.
    let r = app
        .client
        .post(app.url("/v1/collections/faces/subjects"))
        .json(&json!({"name": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let form = Form::new().part("image", Part::bytes(face(9)).file_name("a.png"));
    let r =
        app.client.post(app.url("/v1/collections/faces/subjects/alice/samples")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let before = snapshot(&app).await;
    let cases = corpus();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for c in cases {
        let mut req = app.client.request(c.method.clone(), app.url(&c.path));
        req = match c.body {
            Body::Multipart(f) => req.multipart(f),
            Body::Json(v) => req.json(&v),
            Body::Raw("", b) => req.body(b),
            Body::Raw(ct, b) => req.header("content-type", ct).body(b),
            Body::Empty => req,
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let ok = match c.code {
            Some(code) => {
                status == c.status
                    && ct == "application/problem+json"
                    && body["code"] == code
                    && body["status"] == status
            }
            None => status == c.status,
        };
        assert!(status < 500, "{}: {status} {body}", c.name);
        if !ok {
            wrong.push(format!("{}: got {status} {ct} {body}, want {} {:?}", c.name, c.status, c.code));
        }
    }
    assert!(wrong.is_empty(), "{} answers differ from the documented ones:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(snapshot(&app).await, before, "a refused request changed the database or the galleries");
}
