//! Admission control: at most `max_concurrent_requests` run at once, at most `max_queued_requests`
//! wait for a slot, and the rest are turned away with 503 and `Retry-After`.

use crate::error::ApiError;
use crate::metrics::FrontendMetrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Admission {
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
    retry_after_secs: u64,
    metrics: Arc<FrontendMetrics>,
}

/// Held for as long as a request is served, including its whole stream.
pub type AdmissionPermit = OwnedSemaphorePermit;

impl Admission {
    pub fn new(
        max_concurrent: usize,
        max_queued: usize,
        retry_after_secs: u64,
        metrics: Arc<FrontendMetrics>,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            queued: AtomicUsize::new(0),
            max_queued,
            retry_after_secs,
            metrics,
        }
    }

    pub async fn admit(&self) -> Result<AdmissionPermit, ApiError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let overloaded = || {
            ApiError::overloaded(
                "The server is at capacity; retry later.",
                self.retry_after_secs,
            )
        };
        // Reserve a queue place first so the bound holds under races.
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded());
        }
        self.metrics.queued.inc();
        // Decrement even if this future is dropped while waiting (client went away).
        let _leave_queue = QueueGuard(self);
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| overloaded())
    }
}

struct QueueGuard<'a>(&'a Admission);

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.queued.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queues_then_rejects() {
        let metrics =
            Arc::new(FrontendMetrics::register(&prometheus::Registry::new()).expect("metrics"));
        let admission = Arc::new(Admission::new(1, 1, 3, metrics.clone()));
        let first = admission.admit().await.expect("slot");
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await.map(drop) }
        });
        while metrics.queued.get() == 0 {
            tokio::task::yield_now().await;
        }
        let rejected = admission.admit().await.expect_err("queue full");
        assert_eq!(rejected.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rejected.retry_after, Some(3));
        drop(first);
        waiter.await.expect("join").expect("admitted after release");
        assert_eq!(metrics.queued.get(), 0);
    }
}
