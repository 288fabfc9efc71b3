//! OpenAPI description (`/openapi.json`) and a self-contained docs page (`/docs`, no external scripts).

use super::{admin, collections, common, jobs, models, ops, quality, samples, search, subjects, verify};
use axum::response::{Html, IntoResponse};
use axum::Json;
use std::sync::LazyLock;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Siamese",
        description = "Face and signature verification with a shared-weight encoder. Errors are application/problem+json with a stable `code`."
    ),
    paths(
        verify::verify, verify::embed, models::models, ops::healthz, ops::readyz, ops::metrics,
        collections::create_collection, collections::list_collections, collections::get_collection,
        collections::delete_collection, collections::update_collection, quality::audit, quality::anomaly,
        subjects::create_subject, subjects::list_subjects, subjects::get_subject, subjects::update_subject,
        subjects::delete_subject,
        samples::add_samples, samples::list_samples, samples::get_sample, samples::sample_image,
        samples::delete_sample,
        search::verify_subject, search::identify,
        admin::create_key, admin::list_keys, admin::revoke_key,
        jobs::submit, jobs::list, jobs::get_job, jobs::cancel, jobs::resume, jobs::events, jobs::report,
        jobs::report_file, jobs::versions, jobs::activate
    ),
    components(schemas(
        super::Problem,
        verify::VerifyJson,
        verify::VerifyResponse,
        verify::EmbedJson,
        verify::EmbedResponse,
        models::ModelsResponse,
        models::ModelInfo,
        verify::Timings,
        common::ModelRef,
        common::FaceInfo,
        verify::PairFaces,
        verify::PairChips,
        verify::Embedding,
        crate::model::Modality,
        collections::CreateCollection, collections::CollectionInfo, collections::CollectionList,
        subjects::CreateSubject, subjects::UpdateSubject, subjects::SubjectInfo, subjects::SubjectList,
        samples::SampleInfo, samples::SampleList, samples::SampleUpload, samples::SampleResult, samples::FileError,
        quality::AuditResponse, quality::AnomalyResponse, collections::UpdateCollection,
        crate::gallery::quality::Quality, crate::gallery::quality::Verdict, crate::gallery::quality::DuplicateOf,
        crate::gallery::quality::FaceMeasures, crate::gallery::quality::AuditSample,
        crate::gallery::quality::AuditSubject, crate::store::QualityPolicy,
        search::SubjectVerdict, search::SampleDistanceInfo, search::IdentifyResponse, search::Candidate,
        admin::CreateKey, admin::KeyInfo, admin::KeyList, admin::NewKey, crate::auth::Scope,
        crate::jobs::JobParams, crate::jobs::AugmentParams, crate::jobs::PkParams, jobs::JobInfo, jobs::JobList, jobs::VersionInfo,
        jobs::VersionList, jobs::Activated
    )),
    modifiers(&ApiKeyScheme),
    security(("api_key" = []))
)]
pub struct ApiDoc;

/// Declares the `x-api-key` header (enforced once any key exists; scopes per route in the README).
struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let comps = api.components.get_or_insert_with(Default::default);
        comps.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
    }
}

static SPEC: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::to_value(ApiDoc::openapi()).expect("openapi serialises"));

pub async fn openapi_json() -> impl IntoResponse {
    Json(SPEC.clone())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

static PAGE: LazyLock<String> = LazyLock::new(|| {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>Siamese API</title><style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}\
         h2{border-bottom:1px solid #ccc}code,pre{background:#f4f4f4;padding:2px 4px}pre{padding:8px;overflow:auto}.m{font-weight:bold;text-transform:uppercase}</style></head><body>\
         <h1>Siamese API</h1><p>Machine-readable description: <a href=\"/openapi.json\">/openapi.json</a>. Errors are <code>application/problem+json</code> with a stable <code>code</code>.</p>",
    );
    if let Some(paths) = SPEC["paths"].as_object() {
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                html += &format!("<h2><span class=m>{}</span> <code>{}</code></h2>", esc(method), esc(path));
                if let Some(s) = op["summary"].as_str() {
                    html += &format!("<p>{}</p>", esc(s));
                }
                if let Some(d) = op["requestBody"]["description"].as_str() {
                    html += &format!("<p><b>Body:</b> {}</p>", esc(d));
                }
                for (code, r) in op["responses"].as_object().into_iter().flatten() {
                    html += &format!("<p><b>{}</b> {}</p>", esc(code), esc(r["description"].as_str().unwrap_or("")));
                }
            }
        }
    }
    html += "<h2>Schemas</h2>";
    for (name, schema) in SPEC["components"]["schemas"].as_object().into_iter().flatten() {
        html += &format!(
            "<h3>{}</h3><pre>{}</pre>",
            esc(name),
            esc(&serde_json::to_string_pretty(schema).unwrap_or_default())
        );
    }
    html + "</body></html>"
});

pub async fn docs_page() -> impl IntoResponse {
    Html(PAGE.as_str())
}
