//! `turbine_worker_*` metrics, registered once per process and labelled by worker instance.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use turbine_protocols::InstanceId;

#[derive(Clone)]
pub struct WorkerMetrics {
    requests: IntCounterVec,
    active: IntGaugeVec,
    waiting: IntGaugeVec,
    running: IntGaugeVec,
    kv_usage: GaugeVec,
    kv_blocks: IntGaugeVec,
    prefix_queried: IntCounterVec,
    prefix_hits: IntCounterVec,
    preemptions: IntCounterVec,
    batch_size: HistogramVec,
    batch_tokens: HistogramVec,
    step_seconds: HistogramVec,
}

/// One worker's handles into [`WorkerMetrics`].
#[derive(Clone)]
pub struct WorkerHandles {
    pub finished: IntCounter,
    pub cancelled: IntCounter,
    pub failed: IntCounter,
    /// Requests the worker holds (waiting or running).
    pub active: IntGauge,
    pub waiting: IntGauge,
    pub running: IntGauge,
    /// Fraction of KV blocks held by requests.
    pub kv_usage: Gauge,
    pub kv_blocks_total: IntGauge,
    pub prefix_queried_tokens: IntCounter,
    pub prefix_hit_tokens: IntCounter,
    pub preemptions: IntCounter,
    pub batch_size: Histogram,
    pub batch_tokens: Histogram,
    pub step_seconds: Histogram,
}

const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 8.0, 32.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
const STEP_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

impl WorkerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let w = &["worker"];
        let counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), w);
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), w);
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), w)
        };
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "turbine_worker_requests_total",
                    "Requests a worker ended, by outcome",
                ),
                &["worker", "outcome"],
            )?,
            active: gauge(
                "turbine_worker_active_requests",
                "Requests a worker holds, waiting or running",
            )?,
            waiting: gauge(
                "turbine_worker_waiting_requests",
                "Requests waiting to be scheduled (queue depth)",
            )?,
            running: gauge(
                "turbine_worker_running_requests",
                "Requests in the running batch",
            )?,
            kv_usage: GaugeVec::new(
                Opts::new(
                    "turbine_worker_kv_usage_ratio",
                    "Fraction of KV blocks held by requests",
                ),
                w,
            )?,
            kv_blocks: gauge("turbine_worker_kv_blocks_total", "KV blocks in the pool")?,
            prefix_queried: counter(
                "turbine_worker_prefix_cache_queried_tokens_total",
                "Prompt tokens looked up in the prefix cache",
            )?,
            prefix_hits: counter(
                "turbine_worker_prefix_cache_hit_tokens_total",
                "Prompt tokens found in the prefix cache",
            )?,
            preemptions: counter(
                "turbine_worker_preemptions_total",
                "Sequences preempted for lack of KV blocks",
            )?,
            batch_size: histogram(
                "turbine_worker_batch_size",
                "Sequences per step",
                SIZE_BUCKETS,
            )?,
            batch_tokens: histogram(
                "turbine_worker_batch_tokens",
                "Tokens computed per step",
                TOKEN_BUCKETS,
            )?,
            step_seconds: histogram(
                "turbine_worker_step_seconds",
                "Duration of an engine step",
                STEP_BUCKETS,
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.active.clone()))?;
        registry.register(Box::new(metrics.waiting.clone()))?;
        registry.register(Box::new(metrics.running.clone()))?;
        registry.register(Box::new(metrics.kv_usage.clone()))?;
        registry.register(Box::new(metrics.kv_blocks.clone()))?;
        registry.register(Box::new(metrics.prefix_queried.clone()))?;
        registry.register(Box::new(metrics.prefix_hits.clone()))?;
        registry.register(Box::new(metrics.preemptions.clone()))?;
        registry.register(Box::new(metrics.batch_size.clone()))?;
        registry.register(Box::new(metrics.batch_tokens.clone()))?;
        registry.register(Box::new(metrics.step_seconds.clone()))?;
        Ok(metrics)
    }

    pub fn for_worker(&self, id: InstanceId) -> WorkerHandles {
        let worker = id.to_string();
        let label = [worker.as_str()];
        let outcome = |o: &str| self.requests.with_label_values(&[worker.as_str(), o]);
        WorkerHandles {
            finished: outcome("finished"),
            cancelled: outcome("cancelled"),
            failed: outcome("failed"),
            active: self.active.with_label_values(&label),
            waiting: self.waiting.with_label_values(&label),
            running: self.running.with_label_values(&label),
            kv_usage: self.kv_usage.with_label_values(&label),
            kv_blocks_total: self.kv_blocks.with_label_values(&label),
            prefix_queried_tokens: self.prefix_queried.with_label_values(&label),
            prefix_hit_tokens: self.prefix_hits.with_label_values(&label),
            preemptions: self.preemptions.with_label_values(&label),
            batch_size: self.batch_size.with_label_values(&label),
            batch_tokens: self.batch_tokens.with_label_values(&label),
            step_seconds: self.step_seconds.with_label_values(&label),
        }
    }
}
