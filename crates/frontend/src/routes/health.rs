//! `GET /live` (the process answers), `GET /health` (it can serve: at least one model has a live
//! worker), and `GET /metrics` (Prometheus text).

use crate::server::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

pub async fn live() -> Response {
    axum::Json(json!({"status": "live"})).into_response()
}

pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let models: Vec<String> = state
        .registry
        .list()
        .iter()
        .map(|e| e.card.name.clone())
        .collect();
    let status = if models.is_empty() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let word = if models.is_empty() {
        "unhealthy"
    } else {
        "healthy"
    };
    (
        status,
        axum::Json(json!({"status": word, "models": models})),
    )
        .into_response()
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = String::new();
    let families = state.prometheus.gather();
    if let Err(err) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {err}"),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
