//! The HTTP edge: axum router, handlers, problem+json errors, OpenAPI, Prometheus metrics.
//! Everything below this module works with plain Rust types.

mod admin;
mod auth;
mod docs;
pub mod enrol;
pub mod error;
pub mod handlers;
mod input;
pub mod prepare;
pub mod reembed;

pub use error::{ApiError, Problem};
pub use handlers::{EmbedResponse, VerifyResponse};

use crate::auth::Auth;
use crate::gallery::{Galleries, GalleryError};
use crate::preprocess::DecodeLimits;
use crate::runtime::{ModelRegistry, SharedRegistry};
use crate::store::{Backend, Store, StoreError};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use prometheus::{HistogramVec, IntCounterVec};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
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
    /// The loaded models (swapped whole; a request keeps the snapshot it started with).
    registry: SharedRegistry,
    /// Set once models are loaded and warmed up and galleries are loaded (`/readyz`).
    ready: Arc<AtomicBool>,
    pub limits: ServerLimits,
    pub galleries: Arc<Galleries>,
    pub auth: Auth,
}

/// A collection the server creates at start-up when it does not exist (`--collection faces=face`).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSpec {
    pub name: String,
    pub modality: String,
    pub model: Option<String>,
}

impl std::str::FromStr for CollectionSpec {
    type Err = String;
    /// `NAME=MODALITY` or `NAME=MODALITY:MODEL`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s.split_once('=').ok_or_else(|| format!("'{s}': expected NAME=MODALITY[:MODEL]"))?;
        let (modality, model) = match rest.split_once(':') {
            Some((m, id)) => (m, Some(id.to_string())),
            None => (rest, None),
        };
        if name.is_empty() || modality.is_empty() {
            return Err(format!("'{s}': expected NAME=MODALITY[:MODEL]"));
        }
        Ok(CollectionSpec { name: name.into(), modality: modality.into(), model })
    }
}

impl AppState {
    pub fn new(limits: ServerLimits, store: Store) -> Self {
        Self::with_precision(limits, store, crate::gallery::Precision::F32)
    }

    /// As [`AppState::new`], with the galleries' in-memory precision.
    pub fn with_precision(limits: ServerLimits, store: Store, precision: crate::gallery::Precision) -> Self {
        let registry = SharedRegistry::default();
        let galleries = Arc::new(Galleries::new(store.clone(), Arc::new(registry.clone()), precision));
        AppState { registry, ready: Arc::new(AtomicBool::new(false)), limits, galleries, auth: Auth::new(store) }
    }

    /// Install loaded models, create the configured collections, load every gallery (with PostgreSQL, start
    /// the replica listener first), then declare the service ready.
    pub async fn start(
        &self,
        reg: ModelRegistry,
        collections: &[CollectionSpec],
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), String> {
        self.registry.set(reg);
        for c in collections {
            let model = match &c.model {
                Some(m) => m.clone(),
                None => self
                    .registry
                    .get()
                    .default_for(&c.modality)
                    .ok_or_else(|| format!("collection '{}': no model of modality '{}' is loaded", c.name, c.modality))?
                    .to_string(),
            };
            match self.galleries.create_collection(&c.name, &c.modality, &model).await {
                Ok(_) => tracing::info!(collection = %c.name, model = %model, "collection created"),
                Err(GalleryError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => return Err(format!("creating collection '{}': {e}", c.name)),
            }
        }
        let store = self.galleries.store();
        if store.backend() == Backend::Postgres {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(crate::gallery::sync::listen(self.galleries.clone(), store.url().to_string(), tx, shutdown));
            rx.await.map_err(|_| "gallery listener stopped".to_string())??;
        } else {
            self.galleries.load_all().await.map_err(|e| e.to_string())?;
        }
        self.ready.store(true, Ordering::SeqCst);
        // Samples enrolled under another version of their collection's model: embed them again, in the
        // background (the service answers meanwhile; those samples join the gallery as they are done).
        let state = self.clone();
        tokio::spawn(async move {
            match reembed::reembed_missing(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(samples = n, "re-embedding finished"),
                Err(e) => tracing::error!(error = %e, "re-embedding stopped"),
            }
        });
        Ok(())
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

/// The rule for open mode: without an active API key the server may only listen on loopback.
pub fn check_bind_policy(addr: std::net::SocketAddr, keys_enforced: bool) -> Result<(), String> {
    if keys_enforced || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "refusing to listen on {addr} without API keys: anyone could enrol and query. Create one with \
             `siamese keys create --name admin --scopes admin`, or bind 127.0.0.1"
        ))
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
        .route("/v1/collections", post(enrol::create_collection).get(enrol::list_collections))
        .route("/v1/collections/{c}", get(enrol::get_collection).delete(enrol::delete_collection))
        .route("/v1/collections/{c}/identify", post(enrol::identify))
        .route("/v1/collections/{c}/subjects", post(enrol::create_subject).get(enrol::list_subjects))
        .route(
            "/v1/collections/{c}/subjects/{s}",
            get(enrol::get_subject).patch(enrol::update_subject).delete(enrol::delete_subject),
        )
        .route("/v1/collections/{c}/subjects/{s}/verify", post(enrol::verify_subject))
        .route("/v1/collections/{c}/subjects/{s}/samples", post(enrol::add_samples).get(enrol::list_samples))
        .route("/v1/collections/{c}/subjects/{s}/samples/{id}", get(enrol::get_sample).delete(enrol::delete_sample))
        .route("/v1/collections/{c}/subjects/{s}/samples/{id}/image", get(enrol::sample_image))
        .route("/v1/admin/keys", post(admin::create_key).get(admin::list_keys))
        .route("/v1/admin/keys/{id}", axum::routing::delete(admin::revoke_key))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/docs", get(docs::docs_page))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_key))
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
