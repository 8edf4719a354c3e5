//! The worker side: serves the workers of an `EmbeddedRequestPlane` to frontends over HTTP/2.

use crate::{EmbeddedRequestPlane, RuntimeError};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use turbine_protocols::{InstanceId, PreprocessedRequest};

/// Serves `plane`'s workers on `listener` until `shutdown` completes. In-flight streams are
/// left to end on their own; callers drain before shutting down.
pub async fn serve_request_plane(
    listener: TcpListener,
    plane: Arc<EmbeddedRequestPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/v1/instances/{id}/generate", post(generate))
        .route("/v1/instances/{id}/kv_catch_up", post(catch_up))
        .route("/health", get(|| async { "ok" }))
        .with_state(plane);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, err: &RuntimeError) -> Response {
    let body = serde_json::to_vec(err).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn generate(
    State(plane): State<Arc<EmbeddedRequestPlane>>,
    Path(id): Path<u64>,
    body: Bytes,
) -> Response {
    let request: PreprocessedRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            let err = RuntimeError::Engine(format!("malformed generate request: {err}"));
            return error(StatusCode::BAD_REQUEST, &err);
        }
    };
    let stream = match plane.start(InstanceId(id), request) {
        Ok(stream) => stream,
        Err(err) => return error(StatusCode::NOT_FOUND, &err),
    };
    let lines = stream.map(|item| {
        let mut line = serde_json::to_vec(&item).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

#[derive(Deserialize)]
struct After {
    after: u64,
}

async fn catch_up(
    State(plane): State<Arc<EmbeddedRequestPlane>>,
    Path(id): Path<u64>,
    Query(After { after }): Query<After>,
) -> Response {
    match plane.catch_up(InstanceId(id), after).await {
        Ok(replay) => axum::Json(replay).into_response(),
        Err(err @ RuntimeError::Unreachable(_)) => error(StatusCode::NOT_FOUND, &err),
        Err(err @ RuntimeError::Unsupported(_)) => error(StatusCode::NOT_IMPLEMENTED, &err),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err),
    }
}
