//! `GET /v1/models`: the loaded models, their thresholds and evaluation figures.

use super::error::ApiError;
use super::AppState;
use crate::distance::Metric;
use crate::model::{InputSpec, Modality, Thresholds};
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// A loaded model as `/v1/models` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    pub id: String,
    pub version: u32,
    pub modality: Modality,
    pub embedding_size: i64,
    pub input: InputSpec,
    pub default_metric: Metric,
    pub thresholds: Thresholds,
    /// Whether requests that name no model get this one.
    pub default: bool,
    pub device: String,
    /// Evaluation figures from the model card.
    #[schema(value_type = Object)]
    pub evaluation: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsResponse {
    pub models: Vec<ModelInfo>,
}

/// The loaded models with their cards' thresholds and figures.
#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, body = ModelsResponse)))]
pub async fn models(State(state): State<AppState>) -> Result<Json<ModelsResponse>, ApiError> {
    let registry = state.registry()?;
    let default = registry.default_id().map(str::to_string);
    let models = registry
        .iter()
        .map(|h| {
            let c = h.card();
            ModelInfo {
                id: c.id.clone(),
                version: c.version,
                modality: c.modality,
                embedding_size: c.embedding_size,
                input: c.input.clone(),
                default_metric: c.default_metric,
                thresholds: c.thresholds.clone(),
                default: default.as_deref() == Some(c.id.as_str()),
                device: h.device().to_string(),
                evaluation: c.evaluation.clone(),
            }
        })
        .collect();
    Ok(Json(ModelsResponse { models }))
}
