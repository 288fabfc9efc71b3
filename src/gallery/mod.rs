//! Enrolment galleries: the store's collections kept in memory as one [`GalleryIndex`] per collection (under
//! the collection's model and the loaded version of it), updated on every enrol and delete, and — with
//! PostgreSQL — on every change another replica makes ([`sync`]).
//!
//! Queries and enrolments take embeddings made by the runtime; only [`reembed`] (after a model changes
//! version) prepares stored images itself, through [`crate::pipeline`].

pub mod anomaly;
pub mod index;
mod kernels;
pub mod names;
pub mod quality;
pub mod reembed;
pub mod sync;

pub use crate::distance::{Rule, DEFAULT_RULE};
pub use index::{GalleryIndex, Precision, SampleDistance, SubjectMatch};
pub use names::{CollectionName, NameError, SubjectName};

use crate::store::{Change, Collection, EmbeddingRow, NewSample, Sample, Store, StoreError, Subject};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Errors of the gallery layer.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model '{0}' of this collection is not loaded")]
    ModelNotLoaded(String),
    #[error("the embedding has {got} values; this collection's model makes {expected}")]
    Dimension { got: usize, expected: usize },
    #[error("subject '{0}' has no samples to compare with")]
    EmptySubject(String),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("replica sync: {0}")]
    Sync(String),
    #[error("a gallery task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The collection switched to another model version after the embedding was made: embed again.
    #[error("the collection's model changed from version {made} to {now}; embed again")]
    VersionChanged { made: i64, now: i64 },
}

/// The model a collection's embeddings belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelKey {
    pub id: String,
    pub version: i64,
    pub dim: usize,
}

/// Tells the gallery which version of a model is loaded and its embedding size (the runtime registry).
pub trait ModelLookup: Send + Sync {
    fn lookup(&self, model_id: &str) -> Option<ModelKey>;
}

struct Live {
    model: ModelKey,
    index: RwLock<GalleryIndex>,
    /// The anomaly reference ([`anomaly::anomaly_reference`]) for an index generation and metric.
    anomaly: std::sync::Mutex<Option<((u64, crate::distance::Metric), f32)>>,
}

/// Every collection's index, and the store behind them.
pub struct Galleries {
    store: Store,
    models: Arc<dyn ModelLookup>,
    live: RwLock<HashMap<String, Arc<Live>>>,
    /// Serialises this process's gallery writes so that the store's order and the index's order agree
    /// (an enrol into a subject racing that subject's deletion cannot leave a stale row in memory).
    writes: tokio::sync::Mutex<()>,
    /// How the in-memory matrices hold embeddings.
    precision: Precision,
}

impl Galleries {
    pub fn new(store: Store, models: Arc<dyn ModelLookup>, precision: Precision) -> Self {
        Galleries { store, models, live: RwLock::new(HashMap::new()), writes: tokio::sync::Mutex::new(()), precision }
    }

    /// The store behind the galleries, for start-up and replica sync; requests go through the methods
    /// below (one door for reads and writes).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The model of a collection, as loaded.
    pub fn model_of(&self, c: &Collection) -> Result<ModelKey, GalleryError> {
        self.models.lookup(&c.model_id).ok_or_else(|| GalleryError::ModelNotLoaded(c.model_id.clone()))
    }

    /// (Re)build every collection's index from the store. Holds the write lock: an enrolment committed
    /// during the reload would otherwise go into the index being replaced and be lost from memory.
    pub async fn load_all(&self) -> Result<(), GalleryError> {
        let _w = self.writes.lock().await;
        let cols = self.store.collections().await?;
        let mut fresh = HashMap::new();
        for c in cols {
            if let Some(l) = self.build(&c).await? {
                fresh.insert(c.id.clone(), l);
            }
        }
        *self.live.write().expect("gallery lock") = fresh;
        Ok(())
    }

    async fn build(&self, c: &Collection) -> Result<Option<Arc<Live>>, GalleryError> {
        let Some(model) = self.models.lookup(&c.model_id) else {
            tracing::warn!(collection = %c.name, model = %c.model_id, "the collection's model is not loaded; skipped");
            return Ok(None);
        };
        let rows = self.store.embeddings(&c.id, &model.id, model.version).await?;
        let mut g = GalleryIndex::with_precision(model.dim, self.precision);
        for r in &rows {
            g.insert(&r.sample_id, &r.subject_id, &r.subject_name, &r.vector);
        }
        let missing = self.store.samples_missing_embedding(&c.id, &model.id, model.version).await?.len();
        tracing::info!(collection = %c.name, model = %model.id, version = model.version, samples = g.len(),
            missing_embeddings = missing, "gallery loaded");
        Ok(Some(Arc::new(Live { model, index: RwLock::new(g), anomaly: Default::default() })))
    }

    async fn live(&self, c: &Collection) -> Result<Arc<Live>, GalleryError> {
        if let Some(l) = self.live.read().expect("gallery lock").get(&c.id).cloned() {
            return Ok(l);
        }
        let l = self.build(c).await?.ok_or_else(|| GalleryError::ModelNotLoaded(c.model_id.clone()))?;
        self.live.write().expect("gallery lock").entry(c.id.clone()).or_insert(l.clone());
        Ok(l)
    }

    /// Apply a change announced by a replica (or by this process): idempotent.
    pub async fn apply(&self, ch: &Change) -> Result<(), GalleryError> {
        let get = |id: &str| self.live.read().expect("gallery lock").get(id).cloned();
        match ch {
            Change::SampleAdded { collection, sample } => {
                if let Some(l) = get(collection) {
                    if !l.index.read().expect("index lock").contains(sample) {
                        let e = self.store.embedding(collection, &l.model.id, l.model.version, sample).await?;
                        if let Some(e) = e {
                            l.index.write().expect("index lock").insert(
                                &e.sample_id,
                                &e.subject_id,
                                &e.subject_name,
                                &e.vector,
                            );
                        }
                    }
                } else if let Some(c) = self.store.collection_by_id(collection).await? {
                    self.live(&c).await?;
                }
            }
            Change::SampleRemoved { collection, sample } => {
                if let Some(l) = get(collection) {
                    l.index.write().expect("index lock").remove_sample(sample);
                }
            }
            Change::SubjectRemoved { collection, subject } => {
                if let Some(l) = get(collection) {
                    l.index.write().expect("index lock").remove_subject(subject);
                }
            }
            Change::SubjectRenamed { collection, subject, name } => {
                if let Some(l) = get(collection) {
                    l.index.write().expect("index lock").rename_subject(subject, name);
                }
            }
            Change::CollectionAdded { collection } => {
                if let Some(c) = self.store.collection_by_id(collection).await? {
                    if get(collection).is_none() {
                        if let Some(l) = self.build(&c).await? {
                            self.live.write().expect("gallery lock").entry(c.id.clone()).or_insert(l);
                        }
                    }
                }
            }
            Change::CollectionRemoved { collection } => {
                self.live.write().expect("gallery lock").remove(collection);
            }
            // Handled by the model catalog, which switches the galleries itself.
            Change::ModelActivated { .. } => {}
        }
        Ok(())
    }

    // ---- writes: store first, then this process's index ----
    //
    // Each write runs as its own task: a client that hangs up cancels its handler, never a write between
    // the database's commit and the index update (which would leave a committed sample invisible, or an
    // erased subject matchable, until a restart).

    pub async fn create_collection(
        self: &Arc<Self>,
        name: &CollectionName,
        modality: crate::model::Modality,
        model_id: &str,
        policy: crate::store::QualityPolicy,
    ) -> Result<Collection, GalleryError> {
        let (me, name, model_id) = (self.clone(), name.clone(), model_id.to_string());
        detached(async move { me.create_collection_now(&name, modality, &model_id, policy).await }).await
    }

    pub async fn delete_collection(self: &Arc<Self>, name: &str) -> Result<Collection, GalleryError> {
        let (me, name) = (self.clone(), name.to_string());
        detached(async move { me.delete_collection_now(&name).await }).await
    }

    pub async fn rename_subject(
        self: &Arc<Self>,
        c: &Collection,
        name: &str,
        new_name: Option<&SubjectName>,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Subject, GalleryError> {
        let (me, c, name, new_name, metadata) =
            (self.clone(), c.clone(), name.to_string(), new_name.cloned(), metadata.cloned());
        detached(async move { me.rename_subject_now(&c, &name, new_name.as_ref(), metadata.as_ref()).await }).await
    }

    pub async fn delete_subject(self: &Arc<Self>, c: &Collection, name: &str) -> Result<Subject, GalleryError> {
        let (me, c, name) = (self.clone(), c.clone(), name.to_string());
        detached(async move { me.delete_subject_now(&c, &name).await }).await
    }

    /// Enrol one sample: image, row and embedding in one transaction, then into the index. `version` is
    /// the model version that made `embedding` ([`GalleryError::VersionChanged`] when the collection has
    /// switched since).
    pub async fn enrol(
        self: &Arc<Self>,
        c: &Collection,
        subject: &Subject,
        new: &NewSample,
        embedding: &[f32],
        version: i64,
    ) -> Result<Sample, GalleryError> {
        let (me, c, subject, new, embedding) =
            (self.clone(), c.clone(), subject.clone(), new.clone(), embedding.to_vec());
        detached(async move { me.enrol_now(&c, &subject, &new, &embedding, version).await }).await
    }

    pub async fn delete_sample(
        self: &Arc<Self>,
        c: &Collection,
        subject: &Subject,
        sample_id: &str,
    ) -> Result<Sample, GalleryError> {
        let (me, c, subject, id) = (self.clone(), c.clone(), subject.clone(), sample_id.to_string());
        detached(async move { me.delete_sample_now(&c, &subject, &id).await }).await
    }

    async fn create_collection_now(
        &self,
        name: &CollectionName,
        modality: crate::model::Modality,
        model_id: &str,
        policy: crate::store::QualityPolicy,
    ) -> Result<Collection, GalleryError> {
        let _w = self.writes.lock().await;
        let c = self.store.create_collection(name.as_str(), modality, model_id, policy).await?;
        self.apply(&Change::CollectionAdded { collection: c.id.clone() }).await?;
        Ok(c)
    }

    async fn delete_collection_now(&self, name: &str) -> Result<Collection, GalleryError> {
        let _w = self.writes.lock().await;
        let c = self.store.delete_collection(name).await?;
        self.apply(&Change::CollectionRemoved { collection: c.id.clone() }).await?;
        Ok(c)
    }

    async fn rename_subject_now(
        &self,
        c: &Collection,
        name: &str,
        new_name: Option<&SubjectName>,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Subject, GalleryError> {
        let _w = self.writes.lock().await;
        let s = self
            .store
            .update_subject(&c.id, &names::normalize(name), new_name.map(SubjectName::as_str), metadata)
            .await?;
        let ch = Change::SubjectRenamed { collection: c.id.clone(), subject: s.id.clone(), name: s.name.clone() };
        self.apply(&ch).await?;
        Ok(s)
    }

    async fn delete_subject_now(&self, c: &Collection, name: &str) -> Result<Subject, GalleryError> {
        let _w = self.writes.lock().await;
        let s = self.store.delete_subject(&c.id, &names::normalize(name)).await?;
        self.apply(&Change::SubjectRemoved { collection: c.id.clone(), subject: s.id.clone() }).await?;
        Ok(s)
    }

    async fn enrol_now(
        &self,
        c: &Collection,
        subject: &Subject,
        new: &NewSample,
        embedding: &[f32],
        version: i64,
    ) -> Result<Sample, GalleryError> {
        let _w = self.writes.lock().await;
        // Read under the write lock: an activation switches collections while holding it.
        let l = self.live(c).await?;
        check_version(&l, Some(version))?;
        if embedding.len() != l.model.dim {
            return Err(GalleryError::Dimension { got: embedding.len(), expected: l.model.dim });
        }
        let row = EmbeddingRow::new(&l.model.id, l.model.version, embedding);
        let s = self.store.add_sample(&c.id, &subject.id, new, &row).await.map_err(|e| match e {
            // Erased meanwhile: say so by the name the caller knows.
            StoreError::NotFound { kind: "subject", .. } => {
                StoreError::NotFound { kind: "subject", name: subject.name.clone() }
            }
            e => e,
        })?;
        // A forgery is kept for training, never searched.
        if !new.forgery {
            l.index.write().expect("index lock").insert(&s.id, &subject.id, &subject.name, embedding);
        }
        Ok(s)
    }

    async fn delete_sample_now(
        &self,
        c: &Collection,
        subject: &Subject,
        sample_id: &str,
    ) -> Result<Sample, GalleryError> {
        let _w = self.writes.lock().await;
        let s = self.store.delete_sample(&c.id, &subject.id, sample_id).await?;
        self.apply(&Change::SampleRemoved { collection: c.id.clone(), sample: sample_id.into() }).await?;
        Ok(s)
    }

    /// Enrol a subject with no samples yet (nothing changes in the index until it has one).
    pub async fn create_subject(
        &self,
        c: &Collection,
        name: &SubjectName,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Subject, GalleryError> {
        Ok(self.store.create_subject(&c.id, name.as_str(), metadata).await?)
    }

    // ---- reads ----

    pub async fn collection(&self, name: &str) -> Result<Collection, GalleryError> {
        Ok(self.store.collection(name).await?)
    }

    pub async fn collections(&self) -> Result<Vec<Collection>, GalleryError> {
        Ok(self.store.collections().await?)
    }

    pub async fn subject(&self, c: &Collection, name: &str) -> Result<Subject, GalleryError> {
        Ok(self.store.subject(&c.id, &names::normalize(name)).await?)
    }

    /// Subjects by name after `cursor`, those starting with `prefix` when given.
    pub async fn subjects(
        &self,
        c: &Collection,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Subject>, GalleryError> {
        Ok(self.store.subjects(&c.id, prefix, cursor, limit).await?)
    }

    pub async fn samples(&self, s: &Subject, cursor: Option<&str>, limit: i64) -> Result<Vec<Sample>, GalleryError> {
        Ok(self.store.samples(&s.id, cursor, limit).await?)
    }

    pub async fn sample(&self, s: &Subject, id: &str) -> Result<Sample, GalleryError> {
        Ok(self.store.sample(&s.id, id).await?)
    }

    /// The stored original image of a sample, byte for byte.
    pub async fn sample_image(&self, sample: &Sample) -> Result<Vec<u8>, GalleryError> {
        Ok(self.store.sample_image(&sample.id).await?)
    }

    /// Compare a probe embedding with one subject's samples. `version`: the model version that made the
    /// probe (`None` for an embedding a client sent).
    pub async fn verify_subject(
        &self,
        c: &Collection,
        subject: &Subject,
        probe: &[f32],
        version: Option<i64>,
        metric: crate::distance::Metric,
        rule: Rule,
    ) -> Result<(f32, Vec<SampleDistance>), GalleryError> {
        let l = self.live(c).await?;
        check_version(&l, version)?;
        if probe.len() != l.model.dim {
            return Err(GalleryError::Dimension { got: probe.len(), expected: l.model.dim });
        }
        let g = l.index.read().expect("index lock");
        g.verify_subject(probe, &subject.id, metric, rule)
            .ok_or_else(|| GalleryError::EmptySubject(subject.name.clone()))
    }

    /// The `top_k` nearest subjects of a collection. Runs the matrix pass on the calling thread: call it
    /// from a blocking context for large galleries.
    pub async fn identify(
        &self,
        c: &Collection,
        probe: Vec<f32>,
        version: Option<i64>,
        metric: crate::distance::Metric,
        rule: Rule,
        top_k: usize,
    ) -> Result<(Vec<SubjectMatch>, usize), GalleryError> {
        let l = self.live(c).await?;
        check_version(&l, version)?;
        if probe.len() != l.model.dim {
            return Err(GalleryError::Dimension { got: probe.len(), expected: l.model.dim });
        }
        let out = tokio::task::spawn_blocking(move || {
            let g = l.index.read().expect("index lock");
            (g.nearest_subjects(&probe, metric, rule, top_k), g.len())
        })
        .await?;
        Ok(out)
    }

    /// Switch every collection of model `key.id` to the version `key.version` in one step, with the write
    /// lock held: `catch_up` first embeds (under the lock, so no enrolment slips past) what still lacks an
    /// embedding of that version, then the indexes are built from the store and `swap` installs the model
    /// version in the runtime just before the indexes replace the old ones. Until then every query used the
    /// old version; afterwards only the new one. Returns what `catch_up` embedded.
    pub async fn switch_model<F, Fut>(
        &self,
        key: &ModelKey,
        catch_up: F,
        swap: impl FnOnce(),
    ) -> Result<usize, GalleryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<usize, GalleryError>>,
    {
        let _w = self.writes.lock().await;
        let caught_up = catch_up().await?;
        let mut fresh = Vec::new();
        for c in self.store.collections().await?.into_iter().filter(|c| c.model_id == key.id) {
            let rows = self.store.embeddings(&c.id, &key.id, key.version).await?;
            let mut g = GalleryIndex::with_precision(key.dim, self.precision);
            for r in &rows {
                g.insert(&r.sample_id, &r.subject_id, &r.subject_name, &r.vector);
            }
            fresh.push((
                c.id,
                Arc::new(Live { model: key.clone(), index: RwLock::new(g), anomaly: Default::default() }),
            ));
        }
        swap();
        let mut live = self.live.write().expect("gallery lock");
        for (id, l) in fresh {
            live.insert(id, l);
        }
        Ok(caught_up)
    }

    /// Size of a collection's index (embeddings, subjects), if loaded.
    pub fn stats(&self, collection_id: &str) -> Option<(usize, usize)> {
        let l = self.live.read().expect("gallery lock").get(collection_id).cloned()?;
        let g = l.index.read().expect("index lock");
        Some((g.len(), g.subject_count()))
    }
}

/// Run `f` to the end as its own task, whatever happens to the caller.
async fn detached<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T, GalleryError>> + Send + 'static,
) -> Result<T, GalleryError> {
    tokio::spawn(f).await?
}

fn check_version(l: &Live, version: Option<i64>) -> Result<(), GalleryError> {
    match version {
        Some(v) if v != l.model.version => Err(GalleryError::VersionChanged { made: v, now: l.model.version }),
        _ => Ok(()),
    }
}

impl ModelLookup for crate::runtime::SharedRegistry {
    fn lookup(&self, model_id: &str) -> Option<ModelKey> {
        let reg = self.get();
        let c = reg.get(Some(model_id)).ok()?.card();
        Some(ModelKey { id: c.id.clone(), version: c.version as i64, dim: c.embedding_size as usize })
    }
}
