//! The HTTP edge: the axum router, request parsing, problem+json errors, the API-key gate, OpenAPI and
//! Prometheus metrics. Handlers parse a request, call the layers below with plain Rust types, and shape the
//! JSON answer; nothing below this module knows about HTTP.
//!
//! | file | routes |
//! |---|---|
//! | [`verify`] | `POST /v1/verify`, `POST /v1/embed` |
//! | [`models`] | `GET /v1/models` |
//! | [`jobs`] | `/v1/jobs[/{id}[/resume|/events|/report[/{file}]]]`, `/v1/models/{id}/versions[/{v}/activate]` |
//! | [`collections`] | `/v1/collections`, `/v1/collections/{c}` |
//! | [`subjects`] | `/v1/collections/{c}/subjects[/{s}]` |
//! | [`samples`] | `/v1/collections/{c}/subjects/{s}/samples[/{id}[/image]]` |
//! | [`search`] | `…/subjects/{s}/verify`, `/v1/collections/{c}/identify` |
//! | `admin` | `/v1/admin/keys` |
//! | `ops`, `docs` | `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/docs`, fallbacks |
//! | `ui` | `/` and `/ui/…`: the web console (embedded files) |
//! | `common`, `input`, `auth`, [`error`] | shared request parsing, bodies, the key gate, problem+json |

mod admin;
mod auth;
pub mod collections;
mod common;
mod docs;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
mod input;
pub mod jobs;
pub mod models;
mod ops;
mod quality;
pub mod samples;
pub mod search;
pub mod subjects;
mod ui;
pub mod verify;

pub use common::{FaceInfo, ModelRef};
pub use error::{ApiError, Problem};
pub use verify::{EmbedResponse, VerifyResponse};

use crate::auth::Auth;
use crate::gallery::Galleries;
use crate::preprocess::DecodeLimits;
use crate::runtime::{ModelRegistry, SharedRegistry};
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use prometheus::{HistogramVec, IntCounterVec};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Most images in one request.
    pub max_images: usize,
    pub decode: DecodeLimits,
    pub timeouts: Timeouts,
    /// Most bytes one request's images may take once decoded (413 `images_too_large`).
    pub max_request_decode_bytes: u64,
    /// Most bytes of decoded images across all requests in flight (429 `overloaded` beyond).
    pub max_inflight_decode_bytes: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 16 << 20,
            max_images: 32,
            decode: DecodeLimits::default(),
            timeouts: Timeouts::default(),
            max_request_decode_bytes: 1 << 30,
            max_inflight_decode_bytes: 2 << 30,
        }
    }
}

/// How long a client may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the connection's first byte (or the previous request) to the end of the request's headers;
    /// past it the connection is closed.
    pub header: Duration,
    /// From the end of the headers to the answer's headers, body upload included: past it 504 `timeout`.
    /// Event streams are bounded by it only until their first byte.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { header: Duration::from_secs(10), request: Duration::from_secs(60) }
    }
}

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct AppState {
    /// The loaded models (swapped whole; a request keeps the snapshot it started with).
    registry: SharedRegistry,
    /// Set once models are loaded and warmed up and galleries are loaded (`/readyz`).
    ready: Arc<AtomicBool>,
    pub limits: ServerLimits,
    pub galleries: Arc<Galleries>,
    pub auth: Auth,
    /// Retrain jobs and model versions (set at start-up).
    pub jobs: Option<Arc<crate::jobs::Jobs>>,
    /// Memory for decoded images, per request and across requests.
    pub decode_budget: crate::pipeline::DecodeBudget,
}

impl AppState {
    /// State over `store`, with galleries held in memory at `precision`; no models until [`AppState::install`].
    pub fn new(limits: ServerLimits, store: Store, precision: crate::gallery::Precision) -> Self {
        let registry = SharedRegistry::default();
        let galleries = Arc::new(Galleries::new(store.clone(), Arc::new(registry.clone()), precision));
        AppState {
            registry,
            ready: Arc::new(AtomicBool::new(false)),
            limits,
            galleries,
            auth: Auth::new(store),
            jobs: None,
            decode_budget: crate::pipeline::DecodeBudget::new(
                limits.max_request_decode_bytes,
                limits.max_inflight_decode_bytes,
            ),
        }
    }

    /// Serve these models from now on (requests in flight keep the set they started with).
    pub fn install(&self, reg: ModelRegistry) {
        self.registry.set(reg);
    }

    /// The loaded models and galleries are in place: `/readyz` says ready and `/v1` routes answer.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// The shared registry itself (the model catalog swaps versions in it).
    pub fn shared_registry(&self) -> SharedRegistry {
        self.registry.clone()
    }

    /// The models being served, also before the service is ready (start-up uses them).
    pub fn models(&self) -> Arc<ModelRegistry> {
        self.registry.get()
    }

    pub fn registry(&self) -> Result<Arc<ModelRegistry>, ApiError> {
        if !self.ready.load(Ordering::SeqCst) {
            return Err(ApiError::NotReady);
        }
        Ok(self.registry.get())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        prometheus::Opts::new("siamese_http_requests_total", "HTTP requests by route and status"),
        &["route", "status"],
    )
    .expect("metric");
    prometheus::register(Box::new(c.clone())).ok();
    c
});
static HTTP_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let h = HistogramVec::new(
        prometheus::HistogramOpts::new("siamese_http_request_seconds", "HTTP request duration"),
        &["route"],
    )
    .expect("metric");
    prometheus::register(Box::new(h.clone())).ok();
    h
});

async fn record(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    HTTP_SECONDS.with_label_values(&[&route]).observe(start.elapsed().as_secs_f64());
    HTTP_REQUESTS.with_label_values(&[&route, resp.status().as_str()]).inc();
    resp
}

/// Answer 504 `timeout` when a request (its body included) takes longer than the limit. Cancelling the
/// handler is safe: gallery writes and activations run to the end as their own tasks.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::Timeout(limit)),
    }
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    let request_timeout = state.limits.timeouts.request;
    Router::new()
        .route("/v1/verify", post(verify::verify))
        .route("/v1/embed", post(verify::embed))
        .route("/v1/models", get(models::models))
        .route("/v1/collections", post(collections::create_collection).get(collections::list_collections))
        .route(
            "/v1/collections/{c}",
            get(collections::get_collection)
                .patch(collections::update_collection)
                .delete(collections::delete_collection),
        )
        .route("/v1/collections/{c}/audit", get(quality::audit))
        .route("/v1/collections/{c}/anomaly", post(quality::anomaly))
        .route("/v1/collections/{c}/identify", post(search::identify))
        .route("/v1/collections/{c}/subjects", post(subjects::create_subject).get(subjects::list_subjects))
        .route(
            "/v1/collections/{c}/subjects/{s}",
            get(subjects::get_subject).patch(subjects::update_subject).delete(subjects::delete_subject),
        )
        .route("/v1/collections/{c}/subjects/{s}/verify", post(search::verify_subject))
        .route("/v1/collections/{c}/subjects/{s}/samples", post(samples::add_samples).get(samples::list_samples))
        .route("/v1/collections/{c}/subjects/{s}/samples/{id}", get(samples::get_sample).delete(samples::delete_sample))
        .route("/v1/collections/{c}/subjects/{s}/samples/{id}/image", get(samples::sample_image))
        .route("/v1/models/{id}/versions", get(jobs::versions))
        .route("/v1/models/{id}/versions/{v}/activate", post(jobs::activate))
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get_job).delete(jobs::cancel))
        .route("/v1/jobs/{id}/resume", post(jobs::resume))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/jobs/{id}/report", get(jobs::report))
        .route("/v1/jobs/{id}/report/{file}", get(jobs::report_file))
        .route("/v1/admin/keys", post(admin::create_key).get(admin::list_keys))
        .route("/v1/admin/keys/{id}", axum::routing::delete(admin::revoke_key))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/docs", get(docs::docs_page))
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_key))
        .layer(middleware::from_fn_with_state(request_timeout, deadline))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(record))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal("handler panicked".into()))
        }))
        .with_state(state)
}

/// Serve HTTP/1.1 on `listener` until `shutdown` resolves, then finish in-flight requests. Each connection
/// has the header-read timeout; the peer's address reaches handlers as `ConnectInfo`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let header_timeout = state.limits.timeouts.header;
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let svc = tower::ServiceExt::map_request(app.clone(), move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
