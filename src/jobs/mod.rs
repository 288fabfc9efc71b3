//! Retrain jobs: contrastive fine-tuning of a model on enrolled subjects and/or a dataset folder, judged
//! against the active model on identities neither saw, registered as the model's next version, and
//! activated when asked (or automatically when better).
//!
//! [`Jobs::submit`] checks a job's parameters completely (before anything is queued) and stores it
//! `queued`. One runner per process ([`Jobs::run`]) takes jobs in order, one at a time; the trainer runs on
//! its own OS thread ([`runner`]) with its own variables, so serving never waits for it. Every epoch and
//! every state change is stored and published ([`Jobs::subscribe`]). A job found `running` at start-up was
//! interrupted; [`Jobs::resume`] queues it again and it goes on from its last per-epoch checkpoint.

mod params;
mod runner;

pub use params::{AugmentParams, JobParams, PkParams, Resolved};

use crate::catalog::Catalog;
use crate::gallery::Galleries;
use crate::runtime::SharedRegistry;
use crate::store::{JobRecord, Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, Notify};

/// Errors of the jobs layer.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The parameters cannot make a job (what is wrong, in words).
    #[error("{0}")]
    Invalid(String),
    #[error("no model '{0}' is loaded")]
    UnknownModel(String),
    #[error("no collection '{0}'")]
    UnknownCollection(String),
    #[error("'{0}' is outside the data root")]
    OutsideDataRoot(String),
    #[error("no job '{0}'")]
    NotFound(String),
    #[error("job '{id}' is {state}; {action} needs {needs}")]
    WrongState { id: String, state: String, action: &'static str, needs: &'static str },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind: "job", name } => JobError::NotFound(name),
            other => JobError::Store(other),
        }
    }
}

/// Something that happened to a job: an epoch ended (`epoch`) or its state changed (`state`).
#[derive(Debug, Clone, Serialize)]
pub struct JobEvent {
    pub job: String,
    /// `epoch` or `state`.
    pub kind: &'static str,
    pub data: serde_json::Value,
}

/// Where jobs keep their files and read their data.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Per-job folders (laid-out data, checkpoints, the candidate) under `work_dir/jobs/`.
    pub work_dir: PathBuf,
    /// Datasets named by jobs must lie under this folder (`None`: jobs cannot name datasets).
    pub data_root: Option<PathBuf>,
    /// The models folder (for the face detector).
    pub models_dir: PathBuf,
    pub device: tch::Device,
}

/// The job service of one process.
pub struct Jobs {
    store: Store,
    catalog: Arc<Catalog>,
    galleries: Arc<Galleries>,
    registry: SharedRegistry,
    settings: JobSettings,
    wake: Notify,
    events: broadcast::Sender<JobEvent>,
    /// Cancellation flags of the job running here.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

/// A running job whose heartbeat is older than this (ms) belongs to a process that stopped.
pub const STALE_MS: i64 = 60_000;

/// The states a job ends in.
pub const FINAL_STATES: [&str; 3] = ["succeeded", "failed", "cancelled"];

impl Jobs {
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        galleries: Arc<Galleries>,
        registry: SharedRegistry,
        settings: JobSettings,
    ) -> Self {
        Jobs {
            store,
            catalog,
            galleries,
            registry,
            settings,
            wake: Notify::new(),
            events: broadcast::channel(1024).0,
            running: Mutex::new(HashMap::new()),
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Check `params` and queue the job.
    pub async fn submit(&self, params: JobParams) -> Result<JobRecord, JobError> {
        let resolved = params::resolve(&params, self).await?;
        let id = crate::store::new_id("job");
        let mut stored = serde_json::to_value(&params).expect("params serialise");
        stored["resolved"] = serde_json::to_value(&resolved).expect("split serialises");
        let job = self.store.insert_job(&id, &resolved.base, &stored).await?;
        self.publish_state(&job.id, "queued", None);
        self.wake.notify_one();
        Ok(job)
    }

    pub async fn get(&self, id: &str) -> Result<JobRecord, JobError> {
        Ok(self.store.job(id).await?)
    }

    /// Jobs, newest first, after the job `cursor`.
    pub async fn list(&self, cursor: Option<&str>, limit: i64) -> Result<Vec<JobRecord>, JobError> {
        Ok(self.store.jobs(cursor, limit).await?)
    }

    /// Cancel a queued job, or stop a running one after its current step (its checkpoint stays).
    pub async fn cancel(&self, id: &str) -> Result<JobRecord, JobError> {
        let job = self.store.job(id).await?;
        match job.state.as_str() {
            "queued" | "interrupted" => {
                if self.store.set_job_state(id, &["queued", "interrupted"], "cancelled").await? {
                    self.publish_state(id, "cancelled", None);
                }
            }
            "running" => {
                let flag = self.running.lock().expect("jobs lock").get(id).cloned();
                match flag {
                    Some(f) => f.store(true, std::sync::atomic::Ordering::SeqCst),
                    // Running in another replica: it sees the state at its next epoch.
                    None => {
                        self.store.set_job_state(id, &["running"], "cancelled").await?;
                    }
                }
            }
            other => {
                return Err(JobError::WrongState {
                    id: id.into(),
                    state: other.into(),
                    action: "cancel",
                    needs: "a queued or running job",
                })
            }
        }
        Ok(self.store.job(id).await?)
    }

    /// Queue an interrupted or cancelled job again; it goes on from its last checkpoint.
    pub async fn resume(&self, id: &str) -> Result<JobRecord, JobError> {
        let job = self.store.job(id).await?;
        if !self.store.set_job_state(id, &["interrupted", "cancelled"], "queued").await? {
            return Err(JobError::WrongState {
                id: id.into(),
                state: job.state,
                action: "resume",
                needs: "an interrupted or cancelled job",
            });
        }
        self.publish_state(id, "queued", None);
        self.wake.notify_one();
        Ok(self.store.job(id).await?)
    }

    /// Events of every job from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// A file of a job's report (`roc.png`, `distances-candidate.png`, `distances-active.png`).
    pub async fn file(&self, id: &str, name: &str) -> Result<(String, Vec<u8>), JobError> {
        self.store.job(id).await?;
        self.store.job_file(id, name).await.map_err(|e| match e {
            StoreError::NotFound { .. } => JobError::NotFound(format!("{id}/report/{name}")),
            other => other.into(),
        })
    }

    fn publish(&self, job: &str, kind: &'static str, data: serde_json::Value) {
        let _ = self.events.send(JobEvent { job: job.to_string(), kind, data });
    }

    fn publish_state(&self, job: &str, state: &str, error: Option<&str>) {
        self.publish(job, "state", serde_json::json!({ "state": state, "error": error }));
    }

    /// Run queued jobs one at a time until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            // A job whose process stopped renewing its heartbeat was interrupted.
            match self.store.interrupt_running_jobs(STALE_MS).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(jobs = n, "jobs of a stopped process marked interrupted"),
                Err(e) => tracing::error!(error = %e, "checking for interrupted jobs failed"),
            }
            loop {
                if *stop.borrow() {
                    return;
                }
                match self.store.claim_next_job().await {
                    Ok(Some(job)) => runner::run(&self, job, &mut stop).await,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the job queue failed");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
