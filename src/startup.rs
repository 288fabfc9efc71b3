//! Start-up: the one place that turns [`Settings`] into a running service. `siamese serve` and the
//! integration tests both go through [`Application::build`] and [`Application::run_until_stopped`].
//!
//! 1. `build`: open the database (migrations run), decide open mode (no API key yet → loopback only), bind.
//! 2. `run_until_stopped`: answer `/healthz` at once; meanwhile load and warm up the models (one OS thread
//!    each), create the configured collections, load every gallery (with PostgreSQL, the replica listener
//!    first), then declare ready (`/readyz`) and re-embed, in the background, samples enrolled under another
//!    version of their collection's model.
//! 3. On shutdown: stop accepting, finish requests in flight, stop the background tasks (replica listener,
//!    re-embedding, the job runner: a training job stops after its current step and is recorded
//!    `interrupted`), then drop the models, which joins their threads, and close the database.

use crate::api::{self, AppState, ServerLimits};
use crate::catalog::{Catalog, CatalogParts};
use crate::gallery::{CollectionName, GalleryError, Precision};
use crate::jobs::{JobSettings, Jobs};
use crate::model::Modality;
use crate::runtime::{BatchConfig, ModelRegistry, RuntimeError};
use crate::store::{Backend, Store, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Everything the service is started with (the command line's `serve` flags, or a test's choice).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST:PORT` to listen on (port 0: any free port).
    pub bind: String,
    /// The folder of model directories.
    pub models_dir: PathBuf,
    pub device: tch::Device,
    /// The model for requests that name none (default: as the cards say, else the first face model).
    pub default_model: Option<String>,
    pub batch: BatchConfig,
    pub limits: ServerLimits,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    pub gallery_precision: Precision,
    /// Collections created at start-up when missing.
    pub collections: Vec<CollectionSpec>,
    /// Retrain jobs' folders and unpacked model versions.
    pub work_dir: PathBuf,
    /// Datasets named by retrain jobs must lie under this folder (`None`: jobs train on collections only).
    pub data_root: Option<PathBuf>,
}

/// A collection the server creates at start-up when it does not exist (`--collection faces=face`).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSpec {
    pub name: CollectionName,
    pub modality: Modality,
    /// The model (default: the modality's default model).
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
        let name = CollectionName::parse(name).map_err(|e| format!("'{s}': collection name: {e}"))?;
        Ok(CollectionSpec { name, modality: modality.parse().map_err(|e| format!("'{s}': {e}"))?, model })
    }
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("opening the database: {0}")]
    Store(#[from] StoreError),
    #[error("binding {0}: {1}")]
    Bind(String, std::io::Error),
    #[error(
        "refusing to listen on {0} without API keys: anyone could enrol and query. Create one with \
         `siamese keys create --name admin --scopes admin`, or bind 127.0.0.1"
    )]
    OpenOnNetwork(SocketAddr),
    #[error("loading models from {0}: {1}")]
    Models(PathBuf, Box<RuntimeError>),
    #[error("no model directories (with model.json) under {0}")]
    NoModels(PathBuf),
    #[error("collection '{0}': no model of modality '{1}' is loaded")]
    NoModelForCollection(String, Modality),
    #[error("loading galleries: {0}")]
    Gallery(#[from] GalleryError),
    #[error("the server: {0}")]
    Serve(std::io::Error),
    #[error("a start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("model versions: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// The rule for open mode: without an active API key the server may only listen on loopback.
pub fn check_bind_policy(addr: SocketAddr, keys_enforced: bool) -> Result<(), StartupError> {
    if keys_enforced || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(StartupError::OpenOnNetwork(addr))
    }
}

/// A bound, not yet serving service.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    store: Store,
    settings: Settings,
    /// Whether API keys are enforced (some key exists) at start-up.
    pub keys_enforced: bool,
}

impl Application {
    /// Open the database, check the bind policy and bind the listener. Models load in
    /// [`Application::run_until_stopped`], while the port already answers `/healthz`.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = Store::connect(&settings.database_url).await?;
        let mut state = AppState::new(settings.limits, store.clone(), settings.gallery_precision);
        let catalog = Arc::new(Catalog::new(CatalogParts {
            store: store.clone(),
            models_dir: settings.models_dir.clone(),
            work_dir: settings.work_dir.clone(),
            device: settings.device,
            batch: settings.batch,
            registry: state.shared_registry(),
            galleries: state.galleries.clone(),
            limits: settings.limits.decode,
        }));
        let job_settings = JobSettings {
            work_dir: settings.work_dir.clone(),
            data_root: settings.data_root.clone(),
            models_dir: settings.models_dir.clone(),
            device: settings.device,
        };
        state.jobs = Some(Arc::new(Jobs::new(
            store.clone(),
            catalog,
            state.galleries.clone(),
            state.shared_registry(),
            job_settings,
        )));
        let keys_enforced = state.auth.enforced().await.map_err(|e| match e {
            crate::auth::AuthError::Store(s) => StartupError::Store(s),
            other => StartupError::Store(StoreError::Corrupt(other.to_string())),
        })?;
        let listener =
            TcpListener::bind(&settings.bind).await.map_err(|e| StartupError::Bind(settings.bind.clone(), e))?;
        let addr = listener.local_addr().map_err(|e| StartupError::Bind(settings.bind.clone(), e))?;
        check_bind_policy(addr, keys_enforced)?;
        Ok(Application { listener, addr, state, store, settings, keys_enforced })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The HTTP layer's state (tests read readiness and the galleries through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` resolves, loading models and galleries meanwhile (see the module docs). Every
    /// task started here is stopped, and every model thread joined, before this returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let Application { listener, state, store, settings, .. } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut stopping = stop_rx.clone();
        let server = tokio::spawn(api::serve(listener, state.clone(), async move {
            let _ = stopping.wait_for(|s| *s).await;
        }));
        // Background tasks started on the way (replica listener, re-embedding), stopped on shutdown.
        let mut background = JoinSet::new();
        let load = load(&state, &settings, &store, stop_rx, &mut background);
        tokio::pin!(shutdown);
        let loaded = tokio::select! {
            r = load => Some(r),
            _ = &mut shutdown => None,
        };
        let result = match loaded {
            Some(Err(e)) => Err(e),
            Some(Ok(())) => {
                tracing::info!("ready");
                shutdown.await;
                Ok(())
            }
            None => Ok(()),
        };
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop_tx.send(true);
        let served = server.await?.map_err(StartupError::Serve);
        // Background tasks watch the stop signal (a training job stops after its current step and is
        // recorded `interrupted`); what is still running after a grace period is aborted.
        let grace = async { while background.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), grace).await;
        background.abort_all();
        while background.join_next().await.is_some() {}
        // The last handles of the models: their threads finish their queues and are joined.
        tokio::task::spawn_blocking(move || state.install(ModelRegistry::default())).await?;
        store.close().await;
        result.and(served)
    }
}

/// Load the models, create the configured collections, load every gallery, declare ready, and start
/// re-embedding in the background.
async fn load(
    state: &AppState,
    settings: &Settings,
    store: &Store,
    stop: watch::Receiver<bool>,
    background: &mut JoinSet<()>,
) -> Result<(), StartupError> {
    let (dir, device, batch, default) =
        (settings.models_dir.clone(), settings.device, settings.batch, settings.default_model.clone());
    let reg = tokio::task::spawn_blocking(move || {
        let reg = ModelRegistry::load_dir(&dir, device, batch, default.as_deref())
            .map_err(|e| StartupError::Models(dir.clone(), Box::new(e)))?;
        if reg.is_empty() {
            return Err(StartupError::NoModels(dir));
        }
        Ok(reg)
    })
    .await??;
    tracing::info!(default = reg.default_id().unwrap_or("-"), "models ready");
    state.install(reg);
    let jobs = state.jobs.clone().expect("jobs are set up by build");
    // The folder's versions recorded; the active version loaded where an activation changed it.
    jobs.catalog().seed_and_restore().await?;
    let models = state.models();
    for c in &settings.collections {
        let model = match &c.model {
            Some(m) => m.clone(),
            None => models
                .default_for(c.modality)
                .ok_or_else(|| StartupError::NoModelForCollection(c.name.as_str().to_string(), c.modality))?
                .to_string(),
        };
        match state.galleries.create_collection(&c.name, c.modality, &model, Default::default()).await {
            Ok(_) => tracing::info!(collection = %c.name.as_str(), model = %model, "collection created"),
            Err(GalleryError::Store(StoreError::Conflict { .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if store.backend() == Backend::Postgres {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Activations by other replicas: follow them.
        let (act_tx, mut act_rx) = tokio::sync::mpsc::unbounded_channel::<(String, i64)>();
        let catalog = jobs.catalog().clone();
        background.spawn(async move {
            while let Some((model, version)) = act_rx.recv().await {
                if let Err(e) = catalog.follow(&model, version).await {
                    tracing::error!(model = %model, version, error = %e, "following an activation failed");
                }
            }
        });
        background.spawn(crate::gallery::sync::listen(
            state.galleries.clone(),
            store.url().to_string(),
            tx,
            Some(act_tx),
            stop.clone(),
        ));
        match rx.await {
            Ok(r) => r.map_err(|e| StartupError::Gallery(GalleryError::Sync(e)))?,
            Err(_) => return Err(StartupError::Gallery(GalleryError::Sync("the listener stopped".into()))),
        }
    } else {
        state.galleries.load_all().await?;
    }
    tracing::info!("galleries ready");
    // Jobs this process was running when it stopped (with SQLite the only process; with PostgreSQL those
    // whose heartbeat went stale), then the job runner.
    let stale = if store.backend() == Backend::Sqlite { 0 } else { crate::jobs::STALE_MS };
    match store.interrupt_running_jobs(stale).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(jobs = n, "jobs that were running when the service stopped are interrupted"),
        Err(e) => return Err(e.into()),
    }
    background.spawn(jobs.clone().run(stop.clone()));
    // Freed heap memory back to the system every 10 s when there is some to give ([`crate::heap`]).
    let mut trim_stop = stop.clone();
    background.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
                _ = trim_stop.wait_for(|s| *s) => return,
            }
            if crate::heap::stats().is_some_and(|h| h.free > 32 << 20) {
                let _ = tokio::task::spawn_blocking(crate::heap::trim).await;
            }
        }
    });
    state.set_ready();
    // Samples enrolled under another version of their collection's model: embed them again, in the
    // background (the service answers meanwhile; those samples join the gallery as they are done).
    let (galleries, limits, mut stop) = (state.galleries.clone(), settings.limits.decode, stop);
    background.spawn(async move {
        tokio::select! {
            r = crate::gallery::reembed::reembed_missing(&galleries, &models, limits) => match r {
                Ok(0) => {}
                Ok(n) => tracing::info!(samples = n, "re-embedding finished"),
                Err(e) => tracing::error!(error = %e, "re-embedding stopped"),
            },
            _ = stop.wait_for(|s| *s) => {}
        }
    });
    Ok(())
}
