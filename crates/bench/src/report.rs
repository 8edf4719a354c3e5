//! Latency and throughput summary of a run: percentiles over requests, totals over the wall clock.

use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct RequestRecord {
    pub ttft: Option<Duration>,
    pub e2e: Duration,
    /// Gaps between successive text chunks.
    pub chunk_gaps: Vec<Duration>,
    pub output_tokens: u64,
    pub error: Option<String>,
}

impl RequestRecord {
    pub fn failed(error: String) -> Self {
        Self {
            error: Some(error),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    /// Of values in milliseconds; `None` when there are none.
    fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Some(Self {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub requests: usize,
    pub errors: usize,
    pub first_errors: Vec<String>,
    pub wall_seconds: f64,
    pub output_tokens: u64,
    pub output_tokens_per_second: f64,
    pub requests_per_second: f64,
    pub ttft_ms: Option<Percentiles>,
    pub chunk_gap_ms: Option<Percentiles>,
    pub e2e_ms: Option<Percentiles>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Report {
    pub fn new(records: Vec<RequestRecord>, wall: Duration) -> Self {
        let (ok, failed): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| r.error.is_none());
        let output_tokens = ok.iter().map(|r| r.output_tokens).sum();
        let wall_seconds = wall.as_secs_f64().max(1e-9);
        Self {
            requests: ok.len() + failed.len(),
            errors: failed.len(),
            first_errors: failed
                .iter()
                .take(5)
                .filter_map(|r| r.error.clone())
                .collect(),
            wall_seconds,
            output_tokens,
            output_tokens_per_second: output_tokens as f64 / wall_seconds,
            requests_per_second: ok.len() as f64 / wall_seconds,
            ttft_ms: Percentiles::of(ok.iter().filter_map(|r| r.ttft).map(ms).collect()),
            chunk_gap_ms: Percentiles::of(
                ok.iter()
                    .flat_map(|r| r.chunk_gaps.iter().copied())
                    .map(ms)
                    .collect(),
            ),
            e2e_ms: Percentiles::of(ok.iter().map(|r| ms(r.e2e)).collect()),
        }
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let row = |name: &str, p: &Option<Percentiles>| match p {
            Some(p) => format!(
                "{name:<14}{:>10.3}{:>10.3}{:>10.3}{:>10.3}\n",
                p.mean, p.p50, p.p90, p.p99
            ),
            None => format!("{name:<14}{:>10}\n", "-"),
        };
        let mut out = format!(
            "requests {} (errors {}) in {:.2} s: {:.1} req/s, {:.0} output tok/s ({} tokens)\n",
            self.requests,
            self.errors,
            self.wall_seconds,
            self.requests_per_second,
            self.output_tokens_per_second,
            self.output_tokens
        );
        out.push_str(&format!(
            "{:<14}{:>10}{:>10}{:>10}{:>10}\n",
            "ms", "mean", "p50", "p90", "p99"
        ));
        out.push_str(&row("ttft", &self.ttft_ms));
        out.push_str(&row("chunk gap", &self.chunk_gap_ms));
        out.push_str(&row("e2e", &self.e2e_ms));
        for error in &self.first_errors {
            out.push_str(&format!("error: {error}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_totals() {
        let records = (1..=100)
            .map(|i| RequestRecord {
                ttft: Some(Duration::from_millis(i)),
                e2e: Duration::from_millis(i * 2),
                chunk_gaps: vec![],
                output_tokens: 10,
                error: None,
            })
            .chain([RequestRecord::failed("boom".into())])
            .collect();
        let report = Report::new(records, Duration::from_secs(2));
        assert_eq!(report.requests, 101);
        assert_eq!(report.errors, 1);
        assert_eq!(report.output_tokens, 1000);
        assert_eq!(report.output_tokens_per_second, 500.0);
        let ttft = report.ttft_ms.expect("ttft");
        assert_eq!(ttft.p50, 51.0);
        assert_eq!(ttft.p99, 99.0);
        assert!(report.chunk_gap_ms.is_none());
    }
}
