//! The model catalog: every version of every model, kept in the database, and activation of a version.
//!
//! At start-up the `models/` folder seeds one version per model (the card's `version`; the weights stay in
//! the folder, which every replica ships). A retrain job registers its candidate as the next version, card
//! and weights in the database, so every replica on one database can load any version. A version is
//! unpacked into `work_dir/versions/<id>-v<N>/` to be loaded.
//!
//! Activation never mixes versions: the new version is loaded beside the old one (its own model thread),
//! every enrolled sample of the collections that use the model is embedded with it from the stored original
//! (as enrolment prepared it) while the old version keeps answering, then, under the galleries' write lock,
//! the stragglers enrolled meanwhile are embedded too and the runtime and the indexes switch in one step
//! ([`Galleries::switch_model`]). The active version is recorded in the database and announced; other
//! replicas follow it with the embeddings already stored.

use crate::gallery::{reembed, Galleries, GalleryError, ModelKey};
use crate::model::{LoadedModel, ModelCard, ModelError, CARD_FILE, WEIGHTS_FILE};
use crate::preprocess::DecodeLimits;
use crate::runtime::{BatchConfig, EncoderHandle, RuntimeError, SharedRegistry};
use crate::store::{Store, StoreError, VersionRecord};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("no model '{0}' is loaded")]
    UnknownModel(String),
    #[error("model '{0}' has no version {1}")]
    UnknownVersion(String, i64),
    #[error("version {1} of '{0}' came from a models folder that no longer holds it")]
    MissingWeights(String, i64),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("a catalog task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Versions of the served models and the switch between them.
pub struct Catalog {
    store: Store,
    models_dir: PathBuf,
    work_dir: PathBuf,
    device: tch::Device,
    batch: BatchConfig,
    registry: SharedRegistry,
    galleries: Arc<Galleries>,
    limits: DecodeLimits,
    /// One activation at a time.
    activating: tokio::sync::Mutex<()>,
}

/// Everything the catalog works with.
pub struct CatalogParts {
    pub store: Store,
    pub models_dir: PathBuf,
    pub work_dir: PathBuf,
    pub device: tch::Device,
    pub batch: BatchConfig,
    pub registry: SharedRegistry,
    pub galleries: Arc<Galleries>,
    pub limits: DecodeLimits,
}

impl Catalog {
    pub fn new(p: CatalogParts) -> Self {
        Catalog {
            store: p.store,
            models_dir: p.models_dir,
            work_dir: p.work_dir,
            device: p.device,
            batch: p.batch,
            registry: p.registry,
            galleries: p.galleries,
            limits: p.limits,
            activating: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The version of `model_id` being served.
    pub fn served_version(&self, model_id: &str) -> Option<i64> {
        self.registry.get().get(Some(model_id)).ok().map(|h| h.card().version as i64)
    }

    /// Record the loaded (folder) versions, then load the version the database says is active where it
    /// differs (a restart after an activation). Call before the galleries load.
    pub async fn seed_and_restore(&self) -> Result<(), CatalogError> {
        let reg = self.registry.get();
        let cards: Vec<ModelCard> = reg.iter().map(|h| h.card().clone()).collect();
        for card in &cards {
            let json = serde_json::to_string(card).expect("card serialises");
            self.store.seed_version(&card.id, card.version as i64, &json).await?;
        }
        for card in cards {
            if let Some(v) = self.store.active_version(&card.id).await? {
                if v != card.version as i64 {
                    tracing::info!(model = %card.id, version = v, "loading the active version");
                    let h = self.load(&card.id, v).await?;
                    self.registry.set(self.registry.get().with_version(h));
                }
            }
        }
        Ok(())
    }

    pub async fn versions(&self, model_id: &str) -> Result<Vec<VersionRecord>, CatalogError> {
        Ok(self.store.versions(model_id).await?)
    }

    /// The directory holding version `v` of `model_id`: the models folder's own, or unpacked from the
    /// database into the work directory.
    pub async fn model_dir(&self, model_id: &str, v: i64) -> Result<PathBuf, CatalogError> {
        if let Some(dir) = self.folder_dir(model_id, v) {
            return Ok(dir);
        }
        let dir = self.work_dir.join("versions").join(format!("{model_id}-v{v}"));
        if dir.join(CARD_FILE).exists() && dir.join(WEIGHTS_FILE).exists() {
            return Ok(dir);
        }
        let rec = self.store.version(model_id, v).await.map_err(|e| match e {
            StoreError::NotFound { .. } => CatalogError::UnknownVersion(model_id.into(), v),
            other => other.into(),
        })?;
        let weights =
            self.store.model_weights(model_id, v).await?.ok_or(CatalogError::MissingWeights(model_id.into(), v))?;
        let io = |p: &Path, e| CatalogError::Io(p.to_path_buf(), e);
        let tmp = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        let card = serde_json::to_string_pretty(&rec.card).expect("card serialises");
        std::fs::write(tmp.join(CARD_FILE), card).map_err(|e| io(&tmp, e))?;
        std::fs::write(tmp.join(WEIGHTS_FILE), weights).map_err(|e| io(&tmp, e))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
        link_detector(&self.models_dir, dir.parent().unwrap_or(&self.work_dir))?;
        Ok(dir)
    }

    /// The models folder's directory of `model_id` when its card has version `v`.
    fn folder_dir(&self, model_id: &str, v: i64) -> Option<PathBuf> {
        let entries = std::fs::read_dir(&self.models_dir).ok()?;
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|d| ModelCard::load(d).is_ok_and(|c| c.id == model_id && c.version as i64 == v))
    }

    /// Version `v` of `model_id` loaded on its own model thread.
    pub async fn load(&self, model_id: &str, v: i64) -> Result<EncoderHandle, CatalogError> {
        let dir = self.model_dir(model_id, v).await?;
        let (device, batch) = (self.device, self.batch);
        let h = tokio::task::spawn_blocking(move || -> Result<EncoderHandle, CatalogError> {
            let m = LoadedModel::load(&dir, device)?;
            Ok(EncoderHandle::spawn(m, batch)?)
        })
        .await??;
        Ok(h)
    }

    /// Make version `v` of `model_id` the served one (see the module docs); returns how many samples were
    /// embedded with it. Activating the served version does nothing.
    pub async fn activate(&self, model_id: &str, v: i64) -> Result<usize, CatalogError> {
        let _one = self.activating.lock().await;
        if self.registry.get().get(Some(model_id)).is_err() {
            return Err(CatalogError::UnknownModel(model_id.into()));
        }
        if self.served_version(model_id) == Some(v) {
            self.store.set_active_version(model_id, v).await?;
            return Ok(0);
        }
        let h = self.load(model_id, v).await?;
        let embedded = self.switch(model_id, h).await?;
        self.store.set_active_version(model_id, v).await?;
        tracing::info!(model = %model_id, version = v, embedded, "model version activated");
        Ok(embedded)
    }

    /// Another replica activated version `v`: load it and switch, embedding only what is still missing.
    pub async fn follow(&self, model_id: &str, v: i64) -> Result<(), CatalogError> {
        let _one = self.activating.lock().await;
        if self.registry.get().get(Some(model_id)).is_err() || self.served_version(model_id) == Some(v) {
            return Ok(());
        }
        let h = self.load(model_id, v).await?;
        self.switch(model_id, h).await?;
        tracing::info!(model = %model_id, version = v, "following another replica's activation");
        Ok(())
    }

    async fn switch(&self, model_id: &str, h: EncoderHandle) -> Result<usize, CatalogError> {
        let key = ModelKey {
            id: model_id.to_string(),
            version: h.card().version as i64,
            dim: h.card().embedding_size as usize,
        };
        // While the old version answers: embed everything with the new one; then, under the write lock,
        // what was enrolled meanwhile, and the switch.
        let embedded = self.embed_missing(model_id, &h).await?;
        let registry = self.registry.clone();
        let h2 = h.clone();
        let catch_up = || self.embed_missing(model_id, &h2);
        let late =
            self.galleries.switch_model(&key, catch_up, move || registry.set(registry.get().with_version(h))).await?;
        Ok(embedded + late)
    }

    /// Embed with `h` every sample of the model's collections that lacks an embedding of its version.
    async fn embed_missing(&self, model_id: &str, h: &EncoderHandle) -> Result<usize, GalleryError> {
        let detector = self.registry.get().detector().cloned();
        let mut n = 0;
        for c in self.galleries.collections().await?.into_iter().filter(|c| c.model_id == model_id) {
            n += reembed::embed_missing(&self.galleries, &c, h, detector.as_ref(), self.limits).await?;
        }
        Ok(n)
    }
}

/// Face models find their detector beside their directory: link `<dir>/mtcnn-v1` to the models folder's.
pub fn link_detector(models_dir: &Path, dir: &Path) -> Result<(), CatalogError> {
    let link = dir.join(crate::face::DETECTOR_ID);
    let target = models_dir.join(crate::face::DETECTOR_ID);
    if link.exists() || !target.exists() {
        return Ok(());
    }
    let target = std::fs::canonicalize(&target).map_err(|e| CatalogError::Io(target.clone(), e))?;
    std::fs::create_dir_all(dir).map_err(|e| CatalogError::Io(dir.to_path_buf(), e))?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).map_err(|e| CatalogError::Io(link.clone(), e))
}
