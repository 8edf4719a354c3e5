//! Where one choice's request runs, and how it moves when its worker is lost.
//!
//! `start` routes the request and opens its engine stream, trying other workers while the chosen
//! one cannot be reached (a worker that dies before the first token is just unreachable). When a
//! running stream breaks, the choice calls `start` again with the tokens generated so far: the
//! prompt becomes prompt + generated, `max_tokens` shrinks by as many, and the new worker
//! continues where the old one stopped (mostly from its prefix cache), so the client's stream
//! goes on with no token lost or repeated. Workers that failed this request are avoided.

use crate::error::ApiError;
use crate::metrics::FrontendMetrics;
use crate::registry::ModelEntry;
use std::sync::Arc;
use turbine_protocols::{InstanceId, PreprocessedRequest};
use turbine_router::{RouteError, RouteGuard};
use turbine_runtime::{EngineStream, RequestPlane, RuntimeError};

/// Most times one request moves to another worker after its stream broke.
pub const MAX_MIGRATIONS: u32 = 3;

pub struct Dispatch {
    entry: Arc<ModelEntry>,
    plane: Arc<dyn RequestPlane>,
    metrics: Arc<FrontendMetrics>,
    /// The request as first sent.
    request: PreprocessedRequest,
    /// Workers that failed this request.
    avoid: Vec<InstanceId>,
    migrations: u32,
    retry_after_secs: u64,
}

impl Dispatch {
    pub fn new(
        entry: Arc<ModelEntry>,
        plane: Arc<dyn RequestPlane>,
        metrics: Arc<FrontendMetrics>,
        request: PreprocessedRequest,
        retry_after_secs: u64,
    ) -> Self {
        Self {
            entry,
            plane,
            metrics,
            request,
            avoid: Vec::new(),
            migrations: 0,
            retry_after_secs,
        }
    }

    fn overloaded(&self, message: String) -> ApiError {
        ApiError::overloaded(message, self.retry_after_secs)
    }

    /// Routes and starts the request, continuing after `generated` tokens.
    pub async fn start(
        &mut self,
        generated: &[u32],
    ) -> Result<(EngineStream, RouteGuard), ApiError> {
        let mut request = self.request.clone();
        request.token_ids.extend_from_slice(generated);
        request.stop.max_tokens = request
            .stop
            .max_tokens
            .saturating_sub(generated.len() as u32);
        let model = &self.entry.card.name;
        loop {
            let route = self
                .entry
                .router
                .route(&request.token_ids, &self.avoid)
                .await
                .map_err(|e| match e {
                    RouteError::NoWorkers => {
                        self.overloaded(format!("No worker serves `{model}` right now."))
                    }
                    RouteError::Overloaded => self.overloaded(format!(
                        "Every worker serving `{model}` is busy; try again."
                    )),
                })?;
            let worker = route.worker();
            let Some(instance) = self.entry.instance(worker) else {
                self.avoid.push(worker);
                continue;
            };
            match self.plane.generate(&instance, request.clone()).await {
                Ok(stream) => return Ok((stream, route)),
                Err(err) if err.is_retryable() => {
                    tracing::warn!(%worker, "cannot start a request there: {err}; trying another worker");
                    self.avoid.push(worker);
                }
                Err(err) => return Err(self.overloaded(format!("Cannot reach a worker: {err}"))),
            }
        }
    }

    /// The first token after a move came `gap` after the old worker was lost.
    pub fn resumed(&self, gap: std::time::Duration) {
        self.metrics.resumed(&self.entry.card.name, gap);
    }

    /// After the stream from `worker` broke with `err`: whether to move the request, counting
    /// the move.
    pub fn should_migrate(&mut self, worker: InstanceId, err: &RuntimeError) -> bool {
        if !err.is_retryable() || self.migrations >= MAX_MIGRATIONS {
            return false;
        }
        tracing::warn!(%worker, "lost a request's worker ({err}); moving the request");
        self.avoid.push(worker);
        self.migrations += 1;
        self.metrics.migrated(&self.entry.card.name);
        true
    }
}
