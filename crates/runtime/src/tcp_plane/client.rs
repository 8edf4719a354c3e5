//! The frontend side: reaches workers by their endpoint over pooled HTTP/2 connections.

use crate::{EngineStream, RequestPlane, RuntimeError};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use http_body_util::{BodyExt, BodyStream, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use turbine_protocols::{EngineOutput, InstanceRecord, KvReplay, PreprocessedRequest};

/// Longest wait for a connection and a response head; a live worker answers at once (tokens
/// follow in the body).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings: a peer silent this long after a ping is gone.
const PING_INTERVAL: Duration = Duration::from_millis(500);
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest frame accepted from a worker: a line that grows beyond it is garbage.
const MAX_LINE: usize = 16 << 20;

/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct TcpRequestPlane {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for TcpRequestPlane {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .http2_keep_alive_interval(PING_INTERVAL)
            .http2_keep_alive_timeout(PING_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build(connector);
        Self { client }
    }
}

impl TcpRequestPlane {
    async fn post(
        &self,
        instance: &InstanceRecord,
        path: &str,
        body: Vec<u8>,
    ) -> Result<hyper::Response<Incoming>, RuntimeError> {
        let uri = format!(
            "{}/v1/instances/{}/{path}",
            instance.endpoint.trim_end_matches('/'),
            instance.id.0
        );
        let request = Request::builder()
            .method(Method::POST)
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            // Only an endpoint that is not a URL gets here.
            .map_err(|_| RuntimeError::Unreachable(instance.id))?;
        match tokio::time::timeout(HEAD_TIMEOUT, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => {
                tracing::debug!(worker = %instance.id, %uri, "request plane: {err}");
                Err(RuntimeError::Unreachable(instance.id))
            }
            Err(_) => Err(RuntimeError::Unreachable(instance.id)),
        }
    }
}

/// The error a worker sent instead of a success, or a description of what came back.
async fn failure(response: hyper::Response<Incoming>) -> RuntimeError {
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => return RuntimeError::Disconnected(err.to_string()),
    };
    serde_json::from_slice(&body).unwrap_or_else(|_| {
        RuntimeError::Engine(format!(
            "worker answered {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    })
}

impl RequestPlane for TcpRequestPlane {
    fn generate(
        &self,
        instance: &InstanceRecord,
        request: PreprocessedRequest,
    ) -> BoxFuture<'_, Result<EngineStream, RuntimeError>> {
        let instance = instance.clone();
        Box::pin(async move {
            let body = serde_json::to_vec(&request)
                .map_err(|e| RuntimeError::Engine(format!("cannot encode the request: {e}")))?;
            let response = self.post(&instance, "generate", body).await?;
            match response.status() {
                StatusCode::OK => Ok(decode(response.into_body())),
                StatusCode::NOT_FOUND => Err(RuntimeError::Unreachable(instance.id)),
                _ => Err(failure(response).await),
            }
        })
    }

    fn kv_catch_up(
        &self,
        instance: &InstanceRecord,
        after_id: u64,
    ) -> BoxFuture<'static, Result<KvReplay, RuntimeError>> {
        let instance = instance.clone();
        let plane = self.clone();
        Box::pin(async move {
            let path = format!("kv_catch_up?after={after_id}");
            let response = plane.post(&instance, &path, Vec::new()).await?;
            if response.status() != StatusCode::OK {
                return Err(failure(response).await);
            }
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| RuntimeError::Disconnected(e.to_string()))?
                .to_bytes();
            serde_json::from_slice(&body)
                .map_err(|e| RuntimeError::Disconnected(format!("malformed catch-up answer: {e}")))
        })
    }
}

/// Turns a newline-delimited JSON body into the engine stream. A broken connection, a malformed
/// or oversized line, or a body that ends mid-line ends the stream with `Disconnected`.
fn decode(body: Incoming) -> EngineStream {
    struct State {
        body: BodyStream<Incoming>,
        buffer: BytesMut,
        done: bool,
    }
    let state = State {
        body: BodyStream::new(body),
        buffer: BytesMut::new(),
        done: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return None;
            }
            if let Some(end) = state.buffer.iter().position(|&b| b == b'\n') {
                let line = state.buffer.split_to(end + 1);
                let item: Result<Result<EngineOutput, RuntimeError>, _> =
                    serde_json::from_slice(&line[..end]);
                let item = item.unwrap_or_else(|e| {
                    state.done = true;
                    Err(RuntimeError::Disconnected(format!(
                        "malformed frame from the worker: {e}"
                    )))
                });
                return Some((item, state));
            }
            if state.buffer.len() > MAX_LINE {
                state.done = true;
                let err = RuntimeError::Disconnected("oversized frame from the worker".into());
                return Some((Err(err), state));
            }
            match state.body.next().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        state.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(err)) => {
                    state.done = true;
                    return Some((Err(RuntimeError::Disconnected(err.to_string())), state));
                }
                None if state.buffer.is_empty() => return None,
                None => {
                    state.done = true;
                    let err = RuntimeError::Disconnected("truncated frame from the worker".into());
                    return Some((Err(err), state));
                }
            }
        }
    })
    .boxed()
}
