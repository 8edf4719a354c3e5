//! Optional bearer-token authentication for the `/v1` routes.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The accepted keys; a request passes if its `Authorization: Bearer <key>` matches one.
pub struct ApiKeys(Vec<String>);

impl ApiKeys {
    pub fn new(keys: Vec<String>) -> Self {
        Self(keys.into_iter().filter(|k| !k.is_empty()).collect())
    }

    pub fn is_enabled(&self) -> bool {
        !self.0.is_empty()
    }

    fn accepts(&self, presented: &str) -> bool {
        self.0
            .iter()
            .any(|key| constant_time_eq(key.as_bytes(), presented.as_bytes()))
    }
}

/// Compares without an early exit, so timing does not reveal how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn require_api_key(
    State(keys): State<Arc<ApiKeys>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(key) if keys.accepts(key) => next.run(request).await,
        Some(_) => ApiError::unauthorized("Incorrect API key provided.").into_response(),
        None => ApiError::unauthorized(
            "You didn't provide an API key. Provide it in the Authorization header as `Bearer <key>`.",
        )
        .into_response(),
    }
}
