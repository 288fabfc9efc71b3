//! Enrolment on real faces through HTTP (needs `SIAMESE_DATA`), with the default face model (dlib's encoder
//! behind MTCNN detection and alignment): AT&T s31–s40 enrolled with 5 images each; their other 5 images
//! are verified against every enrolled subject and identified; never-enrolled s1–s5 are identified too.
//! Prints the rates (the closing note quotes them) and holds the service to the bars.

use crate::common::real_data;
use crate::enrolment::urlencode;
use crate::helpers::{spawn_app_with, Options};
use serde_json::Value;

#[tokio::test]
async fn att_subjects_enrolled_over_http_verify_and_identify() {
    let Some(att) = real_data("att_faces", "att_subjects_enrolled_over_http_verify_and_identify") else { return };
    let app = spawn_app_with(Options { default_model: None, ..Options::default() }).await;
    let img = |s: u32, k: u32| std::fs::read(att.join(format!("s{s}/{k}.pgm"))).unwrap();
    let enrolled: Vec<u32> = (31..=40).collect();
    for &s in &enrolled {
        assert_eq!(app.create_subject("faces", &format!("s{s}")).await.status(), 201);
        let r = app.add_samples("faces", &format!("s{s}"), (1..=5).map(|k| img(s, k)).collect()).await;
        assert_eq!(r.status(), 201);
    }
    let (mut genuine, mut genuine_ok, mut impostor, mut impostor_ok, mut rank1, mut matched) = (0, 0, 0, 0, 0, 0);
    for &s in &enrolled {
        for k in 6..=10 {
            for &t in &enrolled {
                let path = format!("/v1/collections/faces/subjects/{}/verify", urlencode(&format!("s{t}")));
                let v: Value = app.probe(&path, img(s, k), &[]).await.json().await.unwrap();
                let ok = v["verified"].as_bool().expect("verdict");
                if s == t {
                    genuine += 1;
                    genuine_ok += ok as u32;
                } else {
                    impostor += 1;
                    impostor_ok += !ok as u32;
                }
            }
            let v: Value = app.probe("/v1/collections/faces/identify", img(s, k), &[]).await.json().await.unwrap();
            rank1 += (v["candidates"][0]["subject"] == format!("s{s}")) as u32;
            matched += (v["match"]["subject"] == format!("s{s}")) as u32;
        }
    }
    let (mut unknown, mut unknown_null) = (0, 0);
    for s in 1..=5 {
        for k in 1..=10 {
            let v: Value = app.probe("/v1/collections/faces/identify", img(s, k), &[]).await.json().await.unwrap();
            unknown += 1;
            unknown_null += v["match"].is_null() as u32;
        }
    }
    let pct = |a: u32, b: u32| 100.0 * a as f64 / b as f64;
    eprintln!(
        "AT&T enrolment over HTTP (face-dlib-r29-v1, default rule and thresholds): own subject accepted {genuine_ok}/{genuine} \
         (FRR {:.1}%), other subjects rejected {impostor_ok}/{impostor} (FAR {:.2}%), identify rank-1 {rank1}/{genuine} \
         ({:.1}%), match = right subject {matched}/{genuine}, never-enrolled s1–s5 → match null {unknown_null}/{unknown} ({:.1}%)",
        100.0 - pct(genuine_ok, genuine),
        100.0 - pct(impostor_ok, impostor),
        pct(rank1, genuine),
        pct(unknown_null, unknown)
    );
    assert!(pct(genuine_ok, genuine) >= 95.0, "own-subject acceptance");
    assert!(pct(impostor_ok, impostor) >= 95.0, "other-subject rejection");
    assert_eq!(rank1, genuine, "identify puts the right subject first");
    assert!(pct(unknown_null, unknown) >= 80.0, "never-enrolled people must mostly be unknown");
}
