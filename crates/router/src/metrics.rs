//! `turbine_router_*` metrics, registered once per process and labelled by model (one router
//! per model) and, for loads, by worker.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use turbine_protocols::InstanceId;

#[derive(Clone)]
pub struct RouterMetrics {
    decision_seconds: HistogramVec,
    overlap_blocks: HistogramVec,
    prompt_blocks: IntCounterVec,
    hit_blocks: IntCounterVec,
    queue_depth: IntGaugeVec,
    rejected: IntCounterVec,
    events_applied: IntCounterVec,
    recoveries: IntCounterVec,
    indexed_blocks: IntGaugeVec,
    worker_blocks: IntGaugeVec,
    worker_prefill: IntGaugeVec,
    worker_requests: IntGaugeVec,
}

/// One model's router handles into [`RouterMetrics`].
#[derive(Clone)]
pub struct RouterHandles {
    model: String,
    metrics: RouterMetrics,
    pub decision_seconds: Histogram,
    pub overlap_blocks: Histogram,
    pub prompt_blocks: IntCounter,
    pub hit_blocks: IntCounter,
    pub queue_depth: IntGauge,
    pub rejected: IntCounter,
    pub events_applied: IntCounter,
    pub indexed_blocks: IntGauge,
}

const DECISION_BUCKETS: &[f64] = &[
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 1e-2,
];
const BLOCK_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];

impl RouterMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = &["model"];
        let mw = &["model", "worker"];
        let counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), m);
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), m)
        };
        let metrics = Self {
            decision_seconds: histogram(
                "turbine_router_decision_seconds",
                "Time to choose a worker (hashing, index lookup, cost)",
                DECISION_BUCKETS,
            )?,
            overlap_blocks: histogram(
                "turbine_router_overlap_blocks",
                "Prompt blocks already cached on the chosen worker",
                BLOCK_BUCKETS,
            )?,
            prompt_blocks: counter(
                "turbine_router_prompt_blocks_total",
                "Full prompt blocks routed",
            )?,
            hit_blocks: counter(
                "turbine_router_predicted_hit_blocks_total",
                "Prompt blocks predicted cached on the chosen worker (hit rate = this / prompt blocks)",
            )?,
            queue_depth: gauge(
                "turbine_router_queue_depth",
                "Requests waiting in the router because every worker is busy",
                m,
            )?,
            rejected: counter(
                "turbine_router_rejected_total",
                "Requests refused because the router's queue was full",
            )?,
            events_applied: counter(
                "turbine_router_kv_events_applied_total",
                "KV events applied to the index",
            )?,
            recoveries: IntCounterVec::new(
                Opts::new(
                    "turbine_router_kv_recoveries_total",
                    "Catch-ups after a gap in a worker's KV events, by how (events, snapshot, failed)",
                ),
                &["model", "how"],
            )?,
            indexed_blocks: gauge(
                "turbine_router_indexed_blocks",
                "Distinct KV blocks in the router's index",
                m,
            )?,
            worker_blocks: gauge(
                "turbine_router_worker_active_blocks",
                "KV blocks in use per worker, as the router estimates",
                mw,
            )?,
            worker_prefill: gauge(
                "turbine_router_worker_prefill_tokens",
                "Prompt tokens waiting to be prefilled per worker, as the router estimates",
                mw,
            )?,
            worker_requests: gauge(
                "turbine_router_worker_requests",
                "Requests this router has in flight per worker",
                mw,
            )?,
        };
        registry.register(Box::new(metrics.decision_seconds.clone()))?;
        registry.register(Box::new(metrics.overlap_blocks.clone()))?;
        registry.register(Box::new(metrics.prompt_blocks.clone()))?;
        registry.register(Box::new(metrics.hit_blocks.clone()))?;
        registry.register(Box::new(metrics.queue_depth.clone()))?;
        registry.register(Box::new(metrics.rejected.clone()))?;
        registry.register(Box::new(metrics.events_applied.clone()))?;
        registry.register(Box::new(metrics.recoveries.clone()))?;
        registry.register(Box::new(metrics.indexed_blocks.clone()))?;
        registry.register(Box::new(metrics.worker_blocks.clone()))?;
        registry.register(Box::new(metrics.worker_prefill.clone()))?;
        registry.register(Box::new(metrics.worker_requests.clone()))?;
        Ok(metrics)
    }

    /// Metrics that go nowhere (a simulator, a test).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry has no duplicates")
    }

    pub fn for_model(&self, model: &str) -> RouterHandles {
        let m = &[model];
        RouterHandles {
            model: model.to_string(),
            metrics: self.clone(),
            decision_seconds: self.decision_seconds.with_label_values(m),
            overlap_blocks: self.overlap_blocks.with_label_values(m),
            prompt_blocks: self.prompt_blocks.with_label_values(m),
            hit_blocks: self.hit_blocks.with_label_values(m),
            queue_depth: self.queue_depth.with_label_values(m),
            rejected: self.rejected.with_label_values(m),
            events_applied: self.events_applied.with_label_values(m),
            indexed_blocks: self.indexed_blocks.with_label_values(m),
        }
    }
}

impl RouterHandles {
    pub fn recovery(&self, how: &str) {
        self.metrics
            .recoveries
            .with_label_values(&[self.model.as_str(), how])
            .inc();
    }

    pub fn worker_load(&self, worker: InstanceId, load: &crate::Load) {
        let labels = [self.model.as_str(), &worker.to_string()];
        let m = &self.metrics;
        m.worker_blocks
            .with_label_values(&labels)
            .set(load.active_blocks as i64);
        m.worker_prefill
            .with_label_values(&labels)
            .set(load.prefill_tokens as i64);
        m.worker_requests
            .with_label_values(&labels)
            .set(load.requests as i64);
    }

    pub fn forget_worker(&self, worker: InstanceId) {
        let labels = [self.model.as_str(), &worker.to_string()];
        let m = &self.metrics;
        let _ = m.worker_blocks.remove_label_values(&labels);
        let _ = m.worker_prefill.remove_label_values(&labels);
        let _ = m.worker_requests.remove_label_values(&labels);
    }
}
