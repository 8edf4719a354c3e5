//! The worker side: serves the workers of an `EmbeddedRequestPlane` to frontends over HTTP/2.

use crate::{EmbeddedRequestPlane, RuntimeError};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use turbine_protocols::{InstanceId, PreprocessedRequest};

/// Most engine outputs sent in one HTTP/2 DATA frame.
const MAX_LINES_PER_FRAME: usize = 64;

/// Serves `plane`'s workers on `listener` (HTTP/2 only) until `shutdown` completes. Open
/// connections and their streams are left to end on their own; callers drain first.
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
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait, do not die.
                Err(err) => {
                    tracing::warn!("request plane: accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = socket.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(std::time::Duration::from_millis(500))
                .keep_alive_timeout(std::time::Duration::from_secs(1))
                .serve_connection(TokioIo::new(socket), service);
            if let Err(err) = connection.await {
                tracing::debug!(%peer, "request plane connection ended: {err}");
            }
        });
    }
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
    // Outputs already waiting go out together, one DATA frame for many lines.
    let lines = stream.ready_chunks(MAX_LINES_PER_FRAME).map(|items| {
        let mut frame = Vec::new();
        for item in items {
            if serde_json::to_writer(&mut frame, &item).is_ok() {
                frame.push(b'\n');
            }
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(frame))
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
