//! Operations: liveness, readiness, Prometheus metrics, and the answers for unknown routes and methods.

use super::error::ApiError;
use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: models loaded and warmed up, and every model and detector thread running with its last batch
/// a success (503 `models_failing` names the ones that are not; a thread whose batch panicked checks itself
/// every second and is ready again once a forward pass succeeds).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, body = super::Problem, description = "not_ready, models_failing")))]
pub async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let reg = state.registry()?;
    let mut threads: Vec<(String, crate::runtime::HealthReport)> =
        reg.iter().map(|h| (h.card().id.clone(), h.health())).collect();
    if let Some(d) = reg.detector() {
        threads.push((d.id.clone(), d.health()));
    }
    let bad: Vec<String> = threads
        .iter()
        .filter(|(_, h)| !h.alive || h.failing)
        .map(|(id, h)| format!("{id} ({})", if h.alive { "its last batch panicked" } else { "its thread stopped" }))
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::ModelsFailing(bad.join(", ")));
    }
    let panics: serde_json::Map<String, serde_json::Value> =
        threads.iter().map(|(id, h)| (id.clone(), h.panics.into())).collect();
    Ok(Json(serde_json::json!({
        "status": "ready",
        "models": reg.iter().map(|h| h.card().id.clone()).collect::<Vec<_>>(),
        "panics": panics,
    })))
}

static HEAP: std::sync::LazyLock<prometheus::IntGaugeVec> = std::sync::LazyLock::new(|| {
    let g = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "siamese_memory_bytes",
            "Process memory: resident, and the C heap's bytes in use and held free (glibc)",
        ),
        &["kind"],
    )
    .expect("metric");
    prometheus::register(Box::new(g.clone())).ok();
    g
});

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics() -> impl IntoResponse {
    if let Some(h) = crate::heap::stats() {
        HEAP.with_label_values(&["in_use"]).set(h.in_use as i64);
        HEAP.with_label_values(&["free"]).set(h.free as i64);
    }
    if let Some(r) = crate::heap::resident_bytes() {
        HEAP.with_label_values(&["resident"]).set(r as i64);
    }
    let mut buf = String::new();
    let enc = prometheus::TextEncoder::new();
    if let Err(e) = enc.encode_utf8(&prometheus::gather(), &mut buf) {
        return ApiError::Internal(e.to_string()).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response()
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
