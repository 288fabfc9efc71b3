//! A JSON body → the image routes' parser (base64 images, data URLs, text fields) and the typed bodies
//! (`JobParams`, subject, collection) with their name rules.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let _ = rt.block_on(siamese::api::fuzz::parse_image_body("application/json", data.to_vec(), 1 << 20));
    let _ = serde_json::from_slice::<siamese::jobs::JobParams>(data);
    if let Ok(s) = serde_json::from_slice::<siamese::api::subjects::CreateSubject>(data) {
        let _ = siamese::gallery::names::SubjectName::parse(&s.name);
    }
    if let Ok(c) = serde_json::from_slice::<siamese::api::collections::CreateCollection>(data) {
        let _ = siamese::gallery::names::CollectionName::parse(&c.name);
        let _ = c.modality.parse::<siamese::model::Modality>();
    }
});
