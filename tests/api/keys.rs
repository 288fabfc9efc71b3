//! API keys: open on loopback while none exists; once one does, every /v1 route needs a key with the right
//! scope (401 without or with a bad key, 403 without the scope); revoked keys stop working.

use crate::common::{encode, SyntheticIdentity};
use crate::helpers::{assert_problem, create_key, spawn_app};
use image::ImageFormat;
use serde_json::{json, Value};

#[tokio::test]
async fn keys_gate_every_route_by_scope_once_one_exists() {
    let app = spawn_app().await;
    let c = &app.client;
    // Open mode: no key needed (the server only binds loopback then).
    assert_eq!(c.get(app.url("/v1/collections")).send().await.unwrap().status(), 200);
    let admin: Value = c
        .post(app.url("/v1/admin/keys"))
        .json(&json!({"name": "root", "scopes": ["admin"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = admin["key"].as_str().expect("key shown once").to_string();
    // From now on keys are enforced.
    assert_problem(c.get(app.url("/v1/collections")).send().await.unwrap(), 401, "unauthorized").await;
    assert_problem(
        c.get(app.url("/v1/collections")).header("x-api-key", "sk_nope_nope").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let wrong = format!("{}x", &admin[..admin.len() - 1]);
    assert_problem(
        c.get(app.url("/v1/collections")).header("x-api-key", wrong).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    // Open routes stay open.
    for p in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(c.get(app.url(p)).send().await.unwrap().status(), 200, "{p}");
    }
    let app = &app;
    let mk = |scopes: &'static str| {
        let admin = admin.clone();
        async move {
            let v: Value = c
                .post(app.url("/v1/admin/keys"))
                .header("x-api-key", admin)
                .json(&json!({"name": scopes, "scopes": scopes}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (v["id"].as_str().unwrap().to_string(), v["key"].as_str().unwrap().to_string())
        }
    };
    let (_, verify_key) = mk("verify").await;
    let (enrol_id, enrol_key) = mk("enrol").await;
    assert_problem(
        c.post(app.url("/v1/admin/keys"))
            .json(&json!({"name": "x", "scopes": ["root"]}))
            .header("x-api-key", &admin)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_field",
    )
    .await;

    // enrol may create subjects and samples; verify may not.
    let subj = |k: &str| {
        c.post(app.url("/v1/collections/faces/subjects"))
            .header("x-api-key", k.to_string())
            .json(&json!({"name": "erin"}))
            .send()
    };
    assert_problem(subj(&verify_key).await.unwrap(), 403, "forbidden").await;
    assert_eq!(subj(&enrol_key).await.unwrap().status(), 201);
    let img = encode(&SyntheticIdentity::new(5).sample(0, 92, 112), ImageFormat::Png);
    let upload = |k: &str| {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(img.clone()).file_name("a.png"));
        c.post(app.url("/v1/collections/faces/subjects/erin/samples"))
            .header("x-api-key", k.to_string())
            .multipart(form)
            .send()
    };
    assert_problem(upload(&verify_key).await.unwrap(), 403, "forbidden").await;
    assert_eq!(upload(&enrol_key).await.unwrap().status(), 201);
    // verify may identify and verify (Bearer works too); enrol may not; neither may manage keys or collections.
    let ident = |k: &str| {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(img.clone()).file_name("p.png"));
        c.post(app.url("/v1/collections/faces/identify"))
            .header("authorization", format!("Bearer {k}"))
            .multipart(form)
            .send()
    };
    let r: Value = ident(&verify_key).await.unwrap().json().await.unwrap();
    assert_eq!(r["match"]["subject"], "erin", "{r}");
    assert_problem(ident(&enrol_key).await.unwrap(), 403, "forbidden").await;
    assert_problem(
        c.get(app.url("/v1/admin/keys")).header("x-api-key", &verify_key).send().await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        c.post(app.url("/v1/collections"))
            .header("x-api-key", &enrol_key)
            .json(&json!({"name": "z", "modality": "face"}))
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    // Listing never shows secrets; revoking stops a key at once.
    let list = c.get(app.url("/v1/admin/keys")).header("x-api-key", &admin).send().await.unwrap().text().await.unwrap();
    assert!(!list.contains(&enrol_key[20..]) && !list.contains("secret"), "{list}");
    let r = c.delete(app.url(&format!("/v1/admin/keys/{enrol_id}"))).header("x-api-key", &admin).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_problem(upload(&enrol_key).await.unwrap(), 401, "unauthorized").await;
}

#[test]
fn without_keys_only_loopback_may_be_bound() {
    use siamese::startup::check_bind_policy;
    assert!(check_bind_policy("127.0.0.1:8080".parse().unwrap(), false).is_ok());
    assert!(check_bind_policy("[::1]:8080".parse().unwrap(), false).is_ok());
    let e = check_bind_policy("0.0.0.0:8080".parse().unwrap(), false).unwrap_err();
    assert!(e.to_string().contains("siamese keys create"), "{e}");
    assert!(check_bind_policy("0.0.0.0:8080".parse().unwrap(), true).is_ok());
}

#[tokio::test]
async fn revoking_the_last_key_locks_the_service_instead_of_opening_it() {
    let app = spawn_app().await;
    let c = &app.client;
    let v = create_key(app.url("/v1/admin/keys"), c, "admin", None).await;
    let (id, key) = (v["id"].as_str().unwrap(), v["key"].as_str().unwrap());
    let r = c.delete(app.url(&format!("/v1/admin/keys/{id}"))).header("x-api-key", key).send().await.unwrap();
    assert_eq!(r.status(), 204);
    // No active key is left, yet nothing is open: admin routes included.
    assert_problem(c.get(app.url("/v1/collections")).send().await.unwrap(), 401, "unauthorized").await;
    let r = c.post(app.url("/v1/admin/keys")).json(&json!({"name": "x", "scopes": ["admin"]})).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
    assert_problem(
        c.get(app.url("/v1/collections")).header("x-api-key", key).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    // And such a database may be served on a non-loopback address (keys are enforced).
    assert!(siamese::auth::Auth::new(app.store.clone()).enforced().await.unwrap());
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let c = &app.client;
    let v = create_key(app.url("/v1/admin/keys"), c, "verify", None).await;
    let key = v["key"].as_str().unwrap();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = c.get(app.url("/v1/collections")).header("authorization", format!("{scheme} {key}")).send().await;
        assert_eq!(r.unwrap().status(), 200, "{scheme}");
    }
    let r = c.get(app.url("/v1/collections")).header("authorization", format!("Basic {key}")).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
}

/// A `verify`-only key cannot rebuild a stored template: no raw-embedding probes, no per-sample distances.
/// A key with `enrol` gets both.
#[tokio::test]
async fn verify_only_keys_get_no_per_sample_distances_and_no_raw_embedding_probes() {
    let app = spawn_app().await;
    let c = &app.client;
    let app = &app;
    // The first key is created in open mode; the others with it.
    let first = create_key(app.url("/v1/admin/keys"), c, "admin", None).await;
    let admin = first["key"].as_str().unwrap().to_string();
    let keys_url = app.url("/v1/admin/keys");
    let mk = |scopes: &'static str| {
        let (admin, url) = (admin.clone(), keys_url.clone());
        async move { create_key(url, c, scopes, Some(&admin)).await["key"].as_str().unwrap().to_string() }
    };
    let (verify, enrol) = (mk("verify").await, mk("enrol").await);
    // Verifying needs `verify`; the details need `enrol` as well.
    let both = mk("verify,enrol").await;
    let img = |k| encode(&SyntheticIdentity::new(5).sample(k, 92, 112), ImageFormat::Png);
    let r = c
        .post(app.url("/v1/collections/faces/subjects"))
        .header("x-api-key", &enrol)
        .json(&json!({"name": "vic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(img(0)).file_name("a.png"))
        .part("image", reqwest::multipart::Part::bytes(img(1)).file_name("b.png"));
    let r = c
        .post(app.url("/v1/collections/faces/subjects/vic/samples"))
        .header("x-api-key", &enrol)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let probe = |key: String| {
        let form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(img(2)).file_name("p.png"));
        c.post(app.url("/v1/collections/faces/subjects/vic/verify")).header("x-api-key", key).multipart(form).send()
    };
    let as_verify: Value = probe(verify.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(as_verify["samples"], json!([]), "{as_verify}");
    assert!(as_verify["distance"].as_f64().is_some());
    let as_enrol: Value = probe(both.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(as_enrol["samples"].as_array().unwrap().len(), 2, "{as_enrol}");
    let identify = |key: String| {
        let form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(img(2)).file_name("p.png"));
        c.post(app.url("/v1/collections/faces/identify")).header("x-api-key", key).multipart(form).send()
    };
    let v: Value = identify(verify.clone()).await.unwrap().json().await.unwrap();
    assert!(
        v["candidates"][0].get("nearest_sample").is_none() && v["candidates"][0].get("nearest_distance").is_none(),
        "{v}"
    );
    let v: Value = identify(both.clone()).await.unwrap().json().await.unwrap();
    assert!(v["candidates"][0]["nearest_distance"].as_f64().is_some(), "{v}");
    // Raw embeddings: enrol yes, verify no.
    let emb = json!({ "embedding": vec![0.0f32; 128] });
    for (k, want) in [(&verify, 403u16), (&both, 200)] {
        let r =
            c.post(app.url("/v1/collections/faces/identify")).header("x-api-key", k).json(&emb).send().await.unwrap();
        assert_eq!(r.status(), want, "{}", r.text().await.unwrap());
    }
}

/// A client guessing keys is slowed down: after 20 failed keys in a row it gets 429 `too_many_failed_keys`
/// (with `Retry-After`) without the database being asked, while a key this server already verified keeps
/// working. A revoked key stops working at once on the server that revoked it.
#[tokio::test]
async fn failed_keys_are_rate_limited_per_client_and_good_keys_are_cached() {
    let app = spawn_app().await;
    let c = &app.client;
    let admin = create_key(app.url("/v1/admin/keys"), c, "admin", None).await["key"].as_str().unwrap().to_string();
    let verify = create_key(app.url("/v1/admin/keys"), c, "verify", Some(&admin)).await;
    let (verify_id, verify) = (verify["id"].as_str().unwrap().to_string(), verify["key"].as_str().unwrap().to_string());
    assert_eq!(c.get(app.url("/v1/models")).header("x-api-key", &verify).send().await.unwrap().status(), 200);
    let guess = |k: usize| format!("sk_{:016x}_{}", k, "0".repeat(64));
    for k in 0..20 {
        let r = c.get(app.url("/v1/models")).header("x-api-key", guess(k)).send().await.unwrap();
        assert_problem(r, 401, "unauthorized").await;
    }
    let r = c.get(app.url("/v1/models")).header("x-api-key", guess(99)).send().await.unwrap();
    assert!(r.headers().get("retry-after").is_some());
    let p = assert_problem(r, 429, "too_many_failed_keys").await;
    assert!(p["detail"].as_str().unwrap().contains("failed"), "{p}");
    // Keys verified before still work from this client; the revoked one stops at once.
    assert_eq!(c.get(app.url("/v1/models")).header("x-api-key", &verify).send().await.unwrap().status(), 200);
    let r = c.delete(app.url(&format!("/v1/admin/keys/{verify_id}"))).header("x-api-key", &admin).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(app.url("/v1/models")).header("x-api-key", &verify).send().await.unwrap();
    assert!(matches!(r.status().as_u16(), 401 | 429), "a revoked key is refused: {}", r.status());
}
