//! The HTTP edge: axum router, handlers, problem+json errors, OpenAPI, Prometheus metrics.
//! Everything below this module works with plain Rust types.

mod docs;
pub mod error;
pub mod handlers;
mod input;

pub use error::{ApiError, Problem};
pub use handlers::{EmbedResponse, VerifyResponse};

use crate::preprocess::DecodeLimits;
use crate::runtime::ModelRegistry;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use prometheus::{HistogramVec, IntCounterVec};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Instant;
use tokio::net::TcpListener;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Most images in one request.
    pub max_images: usize,
    pub decode: DecodeLimits,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { max_body_bytes: 16 << 20, max_images: 32, decode: DecodeLimits::default() }
    }
}

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct AppState {
    /// The loaded models; swapped whole when models change (a request keeps the snapshot it started with).
    registry: Arc<RwLock<Arc<ModelRegistry>>>,
    /// Set once models are loaded and warmed up (`/readyz`).
    ready: Arc<AtomicBool>,
    pub limits: ServerLimits,
}

impl AppState {
    pub fn new(limits: ServerLimits) -> Self {
        AppState {
            registry: Arc::new(RwLock::new(Arc::new(ModelRegistry::default()))),
            ready: Arc::new(AtomicBool::new(false)),
            limits,
        }
    }

    /// Install a loaded registry and declare the service ready.
    pub fn set_registry(&self, reg: ModelRegistry) {
        // std Mutex/RwLock: held only to swap or clone an Arc, never across an await.
        *self.registry.write().expect("registry lock") = Arc::new(reg);
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn registry(&self) -> Result<Arc<ModelRegistry>, ApiError> {
        if !self.ready.load(Ordering::SeqCst) {
            return Err(ApiError::NotReady);
        }
        Ok(self.registry.read().expect("registry lock").clone())
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

/// The whole router.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/v1/verify", post(handlers::verify))
        .route("/v1/embed", post(handlers::embed))
        .route("/v1/models", get(handlers::models))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/docs", get(docs::docs_page))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(record))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal("handler panicked".into()))
        }))
        .with_state(state)
}

/// Serve on `listener` until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
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
