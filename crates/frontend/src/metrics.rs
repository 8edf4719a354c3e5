//! `turbine_frontend_*` metrics: what operators watch (traffic, errors, latency, token counts,
//! preprocessing cost) and the [`RequestTracker`] that records one request's share of them.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::time::{Duration, Instant};

pub struct FrontendMetrics {
    requests: IntCounterVec,
    inflight: IntGaugeVec,
    pub queued: IntGauge,
    ttft: HistogramVec,
    itl: HistogramVec,
    duration: HistogramVec,
    input_tokens: HistogramVec,
    output_tokens: HistogramVec,
    pub template_seconds: Histogram,
    pub tokenize_seconds: Histogram,
    migrations: IntCounterVec,
    migration_seconds: HistogramVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
    120.0,
];
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 8.0, 32.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0,
    131072.0,
];
const PREPROCESS_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
];

impl FrontendMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["model"],
            )
        };
        let preprocess = HistogramVec::new(
            HistogramOpts::new(
                "turbine_frontend_preprocess_seconds",
                "Time to render chat templates and tokenize",
            )
            .buckets(PREPROCESS_BUCKETS.to_vec()),
            &["stage"],
        )?;
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "turbine_frontend_requests_total",
                    "Requests answered, by model, endpoint and status",
                ),
                &["model", "endpoint", "status"],
            )?,
            inflight: IntGaugeVec::new(
                Opts::new(
                    "turbine_frontend_inflight_requests",
                    "Requests being served",
                ),
                &["model"],
            )?,
            queued: IntGauge::new(
                "turbine_frontend_queued_requests",
                "Requests waiting for admission",
            )?,
            ttft: histogram(
                "turbine_frontend_time_to_first_token_seconds",
                "Time to first token",
                LATENCY_BUCKETS,
            )?,
            itl: histogram(
                "turbine_frontend_inter_token_latency_seconds",
                "Time between tokens",
                LATENCY_BUCKETS,
            )?,
            duration: histogram(
                "turbine_frontend_request_duration_seconds",
                "Request duration",
                LATENCY_BUCKETS,
            )?,
            input_tokens: histogram(
                "turbine_frontend_input_tokens",
                "Prompt tokens per request",
                TOKEN_BUCKETS,
            )?,
            output_tokens: histogram(
                "turbine_frontend_output_tokens",
                "Generated tokens per request",
                TOKEN_BUCKETS,
            )?,
            template_seconds: preprocess.with_label_values(&["template"]),
            tokenize_seconds: preprocess.with_label_values(&["tokenize"]),
            migrations: IntCounterVec::new(
                Opts::new(
                    "turbine_frontend_migrations_total",
                    "Requests moved to another worker after theirs was lost mid-stream",
                ),
                &["model"],
            )?,
            migration_seconds: histogram(
                "turbine_frontend_migration_seconds",
                "From losing a request's worker to the first token from the next one",
                LATENCY_BUCKETS,
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.inflight.clone()))?;
        registry.register(Box::new(metrics.queued.clone()))?;
        registry.register(Box::new(metrics.ttft.clone()))?;
        registry.register(Box::new(metrics.itl.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.input_tokens.clone()))?;
        registry.register(Box::new(metrics.output_tokens.clone()))?;
        registry.register(Box::new(preprocess))?;
        registry.register(Box::new(metrics.migrations.clone()))?;
        registry.register(Box::new(metrics.migration_seconds.clone()))?;
        Ok(metrics)
    }

    pub fn migrated(&self, model: &str) {
        self.migrations.with_label_values(&[model]).inc();
    }

    /// A migrated request's first token from its new worker, `gap` after the old one was lost.
    pub fn resumed(&self, model: &str, gap: std::time::Duration) {
        self.migration_seconds
            .with_label_values(&[model])
            .observe(gap.as_secs_f64());
    }

    /// Counts a request that ended before generation started (bad input, unknown model, overload).
    pub fn rejected(&self, model: &str, endpoint: &str, status: u16) {
        self.requests
            .with_label_values(&[model, endpoint, status_label(status)])
            .inc();
    }

    /// Starts tracking a request that reached generation.
    pub fn track(
        &self,
        model: &str,
        endpoint: &'static str,
        input_tokens: usize,
    ) -> RequestTracker {
        let inflight = self.inflight.with_label_values(&[model]);
        inflight.inc();
        self.input_tokens
            .with_label_values(&[model])
            .observe(input_tokens as f64);
        RequestTracker {
            model: model.to_string(),
            endpoint,
            start: Instant::now(),
            last_token: None,
            output_tokens: 0,
            status: 499,
            inflight,
            ttft: self.ttft.with_label_values(&[model]),
            itl: self.itl.with_label_values(&[model]),
            requests: self.requests.clone(),
            duration: self.duration.with_label_values(&[model]),
            output_hist: self.output_tokens.with_label_values(&[model]),
        }
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        404 => "404",
        413 => "413",
        499 => "499",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// One request's metrics. Dropped without [`RequestTracker::finish`], it counts as status 499:
/// the client went away.
pub struct RequestTracker {
    model: String,
    endpoint: &'static str,
    start: Instant,
    last_token: Option<Instant>,
    output_tokens: usize,
    status: u16,
    inflight: IntGauge,
    ttft: Histogram,
    itl: Histogram,
    requests: IntCounterVec,
    duration: Histogram,
    output_hist: Histogram,
}

impl RequestTracker {
    /// Records `count` tokens arriving together now.
    pub fn tokens(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        let now = Instant::now();
        match self.last_token {
            None => {
                self.ttft
                    .observe(now.duration_since(self.start).as_secs_f64());
                self.observe_gaps(Duration::ZERO, count - 1);
            }
            Some(last) => self.observe_gaps(now.duration_since(last), count),
        }
        self.last_token = Some(now);
        self.output_tokens += count;
    }

    /// Tokens that arrive together share the gap since the previous arrival.
    fn observe_gaps(&self, gap: Duration, count: usize) {
        if count > 0 {
            let each = gap.as_secs_f64() / count as f64;
            for _ in 0..count {
                self.itl.observe(each);
            }
        }
    }

    pub fn finish(&mut self, status: u16) {
        self.status = status;
    }
}

impl Drop for RequestTracker {
    fn drop(&mut self) {
        self.inflight.dec();
        self.duration.observe(self.start.elapsed().as_secs_f64());
        self.output_hist.observe(self.output_tokens as f64);
        self.requests
            .with_label_values(&[
                self.model.as_str(),
                self.endpoint,
                status_label(self.status),
            ])
            .inc();
    }
}
