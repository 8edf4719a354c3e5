//! `turbine_worker_*` metrics, registered once per process and labelled by worker instance.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use turbine_protocols::InstanceId;

#[derive(Clone)]
pub struct WorkerMetrics {
    requests: IntCounterVec,
    active: IntGaugeVec,
}

/// One worker's handles into [`WorkerMetrics`].
#[derive(Clone)]
pub struct WorkerHandles {
    pub finished: prometheus::IntCounter,
    pub cancelled: prometheus::IntCounter,
    pub failed: prometheus::IntCounter,
    pub active: prometheus::IntGauge,
}

impl WorkerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "turbine_worker_requests_total",
                "Requests a worker ended, by outcome",
            ),
            &["worker", "outcome"],
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "turbine_worker_active_requests",
                "Requests a worker is working on",
            ),
            &["worker"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(active.clone()))?;
        Ok(Self { requests, active })
    }

    pub fn for_worker(&self, id: InstanceId) -> WorkerHandles {
        let worker = id.to_string();
        let outcome = |o: &str| self.requests.with_label_values(&[worker.as_str(), o]);
        WorkerHandles {
            finished: outcome("finished"),
            cancelled: outcome("cancelled"),
            failed: outcome("failed"),
            active: self.active.with_label_values(&[worker.as_str()]),
        }
    }
}
