//! Feeds each model's router from the event plane: KV events and load reports in, catch-ups
//! (a worker's replay or snapshot, over the request plane) when the router reports a gap.
//!
//! One task handles every worker's events in arrival order; a catch-up is awaited inline (with a
//! deadline), so events that arrive meanwhile wait in the subscription and are applied, or
//! skipped as already seen, afterwards.

use crate::registry::ModelRegistry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use turbine_protocols::InstanceRecord;
use turbine_router::{CatchUpError, Ingest, KvRouter};
use turbine_runtime::{EventPlane, RequestPlane, RuntimeError};

/// Longest wait for a worker's catch-up answer.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs until the event plane closes.
pub async fn follow(
    registry: Arc<ModelRegistry>,
    events: Arc<dyn EventPlane>,
    plane: Arc<dyn RequestPlane>,
) {
    let mut kv = events.subscribe_kv();
    let mut load = events.subscribe_load();
    loop {
        tokio::select! {
            event = kv.recv() => match event {
                Ok(event) => {
                    if let Some(router) = registry.router_of(event.worker_id) {
                        let ingest = router.apply_event(&event, Instant::now());
                        resolve(&registry, &router, plane.as_ref(), ingest).await;
                    }
                }
                // Each worker's next event (or load report) shows its own gap.
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the router fell behind the KV event stream; catching up per worker");
                }
                Err(RecvError::Closed) => return,
            },
            report = load.recv() => match report {
                Ok(report) => {
                    if let Some(router) = report.worker_id.and_then(|w| registry.router_of(w)) {
                        let ingest = router.apply_load(&report, Instant::now());
                        resolve(&registry, &router, plane.as_ref(), ingest).await;
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

async fn resolve(
    registry: &ModelRegistry,
    router: &KvRouter,
    plane: &dyn RequestPlane,
    ingest: Ingest,
) {
    if let Ingest::Gap { worker, after } = ingest
        && let Some(instance) = registry.instance(worker)
    {
        catch_up(router, plane, &instance, after).await;
    }
}

/// Asks `instance` for its KV events after `after` (its whole cache if they are gone) and hands
/// the answer, or the failure, to the router.
pub async fn catch_up(
    router: &KvRouter,
    plane: &dyn RequestPlane,
    instance: &InstanceRecord,
    after: u64,
) {
    let answer =
        match tokio::time::timeout(CATCH_UP_TIMEOUT, plane.kv_catch_up(instance, after)).await {
            Ok(Ok(replay)) => Ok(replay),
            Ok(Err(RuntimeError::Unsupported(_))) => Err(CatchUpError::Unsupported),
            Ok(Err(err)) => Err(CatchUpError::Failed(err.to_string())),
            Err(_) => Err(CatchUpError::Failed(format!(
                "no answer within {CATCH_UP_TIMEOUT:?}"
            ))),
        };
    router.apply_catch_up(instance.id, answer, Instant::now());
}
