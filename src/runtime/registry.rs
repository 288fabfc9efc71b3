//! The set of loaded models.

use super::{BatchConfig, DetectorHandle, EncoderHandle, RuntimeError};
use crate::model::{LoadedModel, Modality, CARD_FILE};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Device;

/// Every loaded model by id, and which one serves each modality by default.
#[derive(Clone, Default)]
pub struct ModelRegistry {
    models: BTreeMap<String, EncoderHandle>,
    defaults: BTreeMap<Modality, String>,
    default_model: Option<String>,
    /// The face detector, loaded when some model aligns faces (`models_dir/mtcnn-v1`).
    detector: Option<DetectorHandle>,
}

impl ModelRegistry {
    /// Load every `models_dir/*/model.json`. `default_model`, when given, must be among them; otherwise the
    /// first face model (by id) is the default.
    pub fn load_dir(
        models_dir: &Path,
        device: Device,
        cfg: BatchConfig,
        default_model: Option<&str>,
    ) -> Result<Self, RuntimeError> {
        let mut reg = ModelRegistry::default();
        let mut dirs: Vec<_> = std::fs::read_dir(models_dir)
            .map_err(|e| RuntimeError::Model(crate::model::ModelError::Io(models_dir.to_path_buf(), e)))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(CARD_FILE).exists())
            .collect();
        dirs.sort();
        for d in dirs {
            let m = LoadedModel::load(&d, device)?;
            tracing::info!(model = %m.card.id, version = m.card.version, ?device, "model loaded");
            reg.insert(EncoderHandle::spawn(m, cfg)?);
        }
        let needs_detector =
            reg.models.values().any(|h| matches!(h.card().input.preprocess, crate::model::Preprocess::FaceChip { .. }));
        let det_dir = models_dir.join(crate::face::DETECTOR_ID);
        if needs_detector {
            let det =
                crate::face::Mtcnn::load(&det_dir, device).map_err(|e| RuntimeError::Detector(det_dir.clone(), e))?;
            tracing::info!(detector = crate::face::DETECTOR_ID, ?device, "face detector loaded");
            reg.detector = Some(DetectorHandle::spawn(det, crate::face::DETECTOR_ID, cfg)?);
        }
        // Cards may claim the default of their modality.
        let claimed: Vec<(Modality, String)> = reg
            .models
            .values()
            .filter(|h| h.card().default)
            .map(|h| (h.card().modality, h.card().id.clone()))
            .collect();
        for (modality, id) in claimed {
            if modality == Modality::Face {
                reg.default_model = Some(id.clone());
            }
            reg.defaults.insert(modality, id);
        }
        if let Some(id) = default_model {
            if !reg.models.contains_key(id) {
                return Err(RuntimeError::UnknownModel(id.to_string()));
            }
            let modality = reg.models[id].card().modality;
            reg.defaults.insert(modality, id.to_string());
            reg.default_model = Some(id.to_string());
        }
        if reg.default_model.is_none() {
            reg.default_model = reg.defaults.get(&Modality::Face).or_else(|| reg.defaults.values().next()).cloned();
        }
        Ok(reg)
    }

    /// Add a model; the first of each modality becomes that modality's default.
    pub fn insert(&mut self, h: EncoderHandle) {
        let id = h.card().id.clone();
        self.defaults.entry(h.card().modality).or_insert_with(|| id.clone());
        if self.default_model.is_none() {
            self.default_model = Some(id.clone());
        }
        self.models.insert(id, h);
    }

    /// This registry with `h` in place of the model of the same id (another version of it).
    pub fn with_version(&self, h: EncoderHandle) -> ModelRegistry {
        let mut reg = self.clone();
        reg.models.insert(h.card().id.clone(), h);
        reg
    }

    /// The model `id`, or the default model when `id` is `None`.
    pub fn get(&self, id: Option<&str>) -> Result<&EncoderHandle, RuntimeError> {
        let id = match id {
            Some(id) => id,
            None => self.default_model.as_deref().ok_or_else(|| RuntimeError::UnknownModel("(default)".into()))?,
        };
        self.models.get(id).ok_or_else(|| RuntimeError::UnknownModel(id.to_string()))
    }

    pub fn default_id(&self) -> Option<&str> {
        self.default_model.as_deref()
    }

    pub fn default_for(&self, modality: Modality) -> Option<&str> {
        self.defaults.get(&modality).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &EncoderHandle> {
        self.models.values()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The face detector, when a loaded model needs one.
    pub fn detector(&self) -> Option<&DetectorHandle> {
        self.detector.as_ref()
    }
}

/// The registry the server currently serves, swapped whole when models change (a request keeps the
/// snapshot it started with).
#[derive(Clone, Default)]
pub struct SharedRegistry(std::sync::Arc<std::sync::RwLock<std::sync::Arc<ModelRegistry>>>);

impl SharedRegistry {
    pub fn set(&self, reg: ModelRegistry) {
        // std RwLock: held only to swap or clone an Arc, never across an await.
        *self.0.write().expect("registry lock") = std::sync::Arc::new(reg);
    }

    pub fn get(&self) -> std::sync::Arc<ModelRegistry> {
        self.0.read().expect("registry lock").clone()
    }
}
