//! The request plane: how a frontend sends a [`PreprocessedRequest`] to a chosen worker and gets
//! its [`EngineOutput`] stream back.
//!
//! Cancellation contract: dropping the returned [`EngineStream`] cancels the request on the worker
//! (the worker's [`CancellationToken`] fires), whether the client went away or the frontend stopped
//! early on a stop string.

use crate::RuntimeError;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use turbine_protocols::{EngineOutput, InstanceId, InstanceRecord, KvReplay, PreprocessedRequest};

/// A worker's output for one request, ending after the item with a finish reason.
pub type EngineStream = BoxStream<'static, Result<EngineOutput, RuntimeError>>;

/// What a worker serves on the request plane.
pub trait Generate: Send + Sync {
    /// Starts a request. The engine stops work on it when `cancel` fires.
    fn generate(&self, request: PreprocessedRequest, cancel: CancellationToken) -> EngineStream;

    /// KV events after `after_id` (or the whole cache), for a router catching up. Workers that
    /// publish no KV events keep this default.
    fn kv_catch_up(&self, after_id: u64) -> BoxFuture<'static, Result<KvReplay, RuntimeError>> {
        let _ = after_id;
        Box::pin(async {
            Err(RuntimeError::Unsupported(
                "this worker publishes no KV events".into(),
            ))
        })
    }
}

/// The frontend's side: reach a worker by its instance record.
pub trait RequestPlane: Send + Sync {
    fn generate(
        &self,
        instance: &InstanceRecord,
        request: PreprocessedRequest,
    ) -> BoxFuture<'_, Result<EngineStream, RuntimeError>>;

    /// Asks a worker for the KV events a router missed (see [`Generate::kv_catch_up`]).
    fn kv_catch_up(
        &self,
        instance: &InstanceRecord,
        after_id: u64,
    ) -> BoxFuture<'static, Result<KvReplay, RuntimeError>>;
}

/// Request plane inside one process: a table of workers' handlers, called directly.
#[derive(Default)]
pub struct EmbeddedRequestPlane {
    handlers: RwLock<HashMap<InstanceId, Arc<dyn Generate>>>,
}

impl EmbeddedRequestPlane {
    pub fn serve(&self, id: InstanceId, handler: Arc<dyn Generate>) {
        self.handlers.write().insert(id, handler);
    }

    pub fn remove(&self, id: InstanceId) {
        self.handlers.write().remove(&id);
    }

    /// Starts a request on the worker `id` serves; dropping the stream cancels it.
    pub fn start(
        &self,
        id: InstanceId,
        request: PreprocessedRequest,
    ) -> Result<EngineStream, RuntimeError> {
        let handler = self
            .handlers
            .read()
            .get(&id)
            .cloned()
            .ok_or(RuntimeError::Unreachable(id))?;
        let cancel = CancellationToken::new();
        let stream = handler.generate(request, cancel.clone());
        // The guard lives as long as the stream: dropping the stream cancels the request.
        let guard = cancel.drop_guard();
        Ok(stream
            .map(move |item| {
                let _keep_alive = &guard;
                item
            })
            .boxed())
    }

    /// The worker `id`'s answer to a KV catch-up.
    pub fn catch_up(
        &self,
        id: InstanceId,
        after_id: u64,
    ) -> BoxFuture<'static, Result<KvReplay, RuntimeError>> {
        match self.handlers.read().get(&id) {
            Some(handler) => handler.kv_catch_up(after_id),
            None => Box::pin(async move { Err(RuntimeError::Unreachable(id)) }),
        }
    }
}

impl RequestPlane for EmbeddedRequestPlane {
    fn generate(
        &self,
        instance: &InstanceRecord,
        request: PreprocessedRequest,
    ) -> BoxFuture<'_, Result<EngineStream, RuntimeError>> {
        let started = self.start(instance.id, request);
        Box::pin(async move { started })
    }

    fn kv_catch_up(
        &self,
        instance: &InstanceRecord,
        after_id: u64,
    ) -> BoxFuture<'static, Result<KvReplay, RuntimeError>> {
        self.catch_up(instance.id, after_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turbine_protocols::{ModelCard, WorkerRole};

    struct Watcher(tokio::sync::mpsc::UnboundedSender<CancellationToken>);

    impl Generate for Watcher {
        fn generate(&self, _: PreprocessedRequest, cancel: CancellationToken) -> EngineStream {
            let _ = self.0.send(cancel);
            futures::stream::pending().boxed()
        }
    }

    #[tokio::test]
    async fn dropping_the_stream_cancels_the_worker() {
        let plane = EmbeddedRequestPlane::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        plane.serve(InstanceId(7), Arc::new(Watcher(tx)));
        let record = InstanceRecord {
            id: InstanceId(7),
            role: WorkerRole::Aggregated,
            endpoint: "local".into(),
            model: ModelCard {
                name: "m".into(),
                source: "s".into(),
                context_length: 8,
                block_size: 4,
            },
        };
        let request = PreprocessedRequest {
            request_id: "r".into(),
            token_ids: vec![1],
            sampling: Default::default(),
            stop: turbine_protocols::StopConditions {
                max_tokens: 1,
                stop_token_ids: vec![],
            },
            priority: 0,
        };
        let stream = plane
            .generate(&record, request.clone())
            .await
            .expect("reachable");
        let cancel = rx.recv().await.expect("handler called");
        assert!(!cancel.is_cancelled());
        drop(stream);
        assert!(cancel.is_cancelled());

        plane.remove(InstanceId(7));
        assert!(matches!(
            plane.generate(&record, request).await,
            Err(RuntimeError::Unreachable(_))
        ));
    }
}
