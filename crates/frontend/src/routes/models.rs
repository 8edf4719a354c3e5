//! `GET /v1/models` and `GET /v1/models/{model}`: what discovery says is served now.

use crate::error::ApiError;
use crate::registry::ModelEntry;
use crate::server::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use turbine_protocols::openai::{ModelList, ModelObject};

fn object(entry: &ModelEntry) -> ModelObject {
    ModelObject {
        id: entry.card.name.clone(),
        object: "model",
        created: entry.created,
        owned_by: "turbine",
        max_model_len: entry.card.context_length,
    }
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: state.registry.list().iter().map(|e| object(e)).collect(),
    })
}

pub async fn retrieve(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    match state.registry.get(&model) {
        Some(entry) => Json(object(&entry)).into_response(),
        None => ApiError::model_not_found(&model).into_response(),
    }
}
