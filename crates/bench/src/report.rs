//! Latency and throughput summary of a run: percentiles over requests, totals over the wall clock,
//! goodput under SLOs, errors by kind. Built from [`RequestRecord`]s, so a simulator's virtual-time
//! records give the same report as a live run.

use crate::record::RequestRecord;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Errors whose message is kept in the report.
const FIRST_ERRORS: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    /// Of values in milliseconds; `None` when there are none.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
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

/// Service-level objectives; a request is good when it completed and meets every one given.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Slo {
    /// Most time to first token, in ms.
    pub ttft_ms: Option<f64>,
    /// Most mean inter-token latency of a request (its TPOT), in ms.
    pub itl_ms: Option<f64>,
}

impl Slo {
    pub fn met(&self, record: &RequestRecord) -> bool {
        let within = |limit: Option<f64>, value: Option<Duration>| match (limit, value) {
            (Some(limit), Some(value)) => ms(value) <= limit,
            (Some(_), None) => false,
            (None, _) => true,
        };
        record.error.is_none()
            && within(self.ttft_ms, record.ttft)
            // A one-token answer has no inter-token latency to miss.
            && (record.output_tokens <= 1 || within(self.itl_ms, record.tpot()))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What drove the load, e.g. `concurrency 16` or `Poisson 20 req/s`.
    pub load: String,
    /// How the workload was made (scaling, seed).
    pub workload: String,
    pub requests: usize,
    pub completed: usize,
    pub errors: usize,
    pub errors_by_kind: BTreeMap<String, usize>,
    pub first_errors: Vec<String>,
    pub wall_seconds: f64,
    /// Prompt tokens of completed requests, as the server counted them (`usage`); `None` when it
    /// did not say for every one.
    pub input_tokens: Option<u64>,
    pub output_tokens: u64,
    pub requests_per_second: f64,
    pub output_tokens_per_second: f64,
    pub slo: Slo,
    /// Completed requests that met every SLO.
    pub good_requests: usize,
    pub goodput_requests_per_second: f64,
    pub ttft_ms: Option<Percentiles>,
    /// Per request: `(e2e - ttft) / (output tokens - 1)`.
    pub tpot_ms: Option<Percentiles>,
    /// Per chunk: the gap between successive chunks that carried text.
    pub itl_ms: Option<Percentiles>,
    pub e2e_ms: Option<Percentiles>,
    /// How late requests were sent against their schedule: the generator keeping up (open loop).
    pub send_lag_ms: Option<Percentiles>,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Report {
    pub fn new(
        load: String,
        workload: String,
        records: &[RequestRecord],
        wall: Duration,
        slo: Slo,
    ) -> Self {
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.error.is_none()).collect();
        let mut errors_by_kind = BTreeMap::new();
        for error in records.iter().filter_map(|r| r.error.as_ref()) {
            *errors_by_kind.entry(error.kind()).or_insert(0) += 1;
        }
        let output_tokens = ok.iter().map(|r| r.output_tokens).sum();
        let good_requests = ok.iter().filter(|r| slo.met(r)).count();
        let wall_seconds = wall.as_secs_f64().max(1e-9);
        let percentiles =
            |values: &mut dyn Iterator<Item = Duration>| Percentiles::of(values.map(ms).collect());
        Self {
            load,
            workload,
            requests: records.len(),
            completed: ok.len(),
            errors: records.len() - ok.len(),
            errors_by_kind,
            first_errors: records
                .iter()
                .filter_map(|r| r.error.as_ref().map(ToString::to_string))
                .take(FIRST_ERRORS)
                .collect(),
            wall_seconds,
            input_tokens: ok.iter().map(|r| r.prompt_tokens).sum(),
            output_tokens,
            requests_per_second: ok.len() as f64 / wall_seconds,
            output_tokens_per_second: output_tokens as f64 / wall_seconds,
            slo,
            good_requests,
            goodput_requests_per_second: good_requests as f64 / wall_seconds,
            ttft_ms: percentiles(&mut ok.iter().filter_map(|r| r.ttft)),
            tpot_ms: percentiles(&mut ok.iter().filter_map(|r| r.tpot())),
            itl_ms: percentiles(&mut ok.iter().flat_map(|r| r.itl.iter().copied())),
            e2e_ms: percentiles(&mut ok.iter().map(|r| r.e2e)),
            send_lag_ms: percentiles(&mut records.iter().filter_map(|r| r.lag)),
        }
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let row = |name: &str, p: &Option<Percentiles>| match p {
            Some(p) => format!(
                "{name:<10}{:>11.3}{:>11.3}{:>11.3}{:>11.3}\n",
                p.mean, p.p50, p.p90, p.p99
            ),
            None => format!("{name:<10}{:>11}\n", "-"),
        };
        let mut out = format!("workload: {}\nload: {}\n", self.workload, self.load);
        let errors: Vec<String> = self
            .errors_by_kind
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        out.push_str(&format!(
            "requests {} completed {} errors {}{} in {:.2} s\n",
            self.requests,
            self.completed,
            self.errors,
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join(", "))
            },
            self.wall_seconds
        ));
        out.push_str(&format!(
            "throughput {:.2} req/s, {:.1} output tok/s ({} output tokens{})\n",
            self.requests_per_second,
            self.output_tokens_per_second,
            self.output_tokens,
            match self.input_tokens {
                Some(n) => format!(", {n} prompt tokens"),
                None => String::new(),
            }
        ));
        if self.slo.ttft_ms.is_some() || self.slo.itl_ms.is_some() {
            let limit = |name: &str, v: Option<f64>| v.map(|v| format!(" {name} <= {v} ms"));
            out.push_str(&format!(
                "goodput {:.2} req/s ({} of {} requests within SLO:{}{})\n",
                self.goodput_requests_per_second,
                self.good_requests,
                self.requests,
                limit("ttft", self.slo.ttft_ms).unwrap_or_default(),
                limit("itl", self.slo.itl_ms).unwrap_or_default(),
            ));
        }
        out.push_str(&format!(
            "{:<10}{:>11}{:>11}{:>11}{:>11}\n",
            "ms", "mean", "p50", "p90", "p99"
        ));
        out.push_str(&row("ttft", &self.ttft_ms));
        out.push_str(&row("tpot", &self.tpot_ms));
        out.push_str(&row("itl", &self.itl_ms));
        out.push_str(&row("e2e", &self.e2e_ms));
        if self.send_lag_ms.is_some() {
            out.push_str(&row("send lag", &self.send_lag_ms));
        }
        for error in &self.first_errors {
            out.push_str(&format!("error: {error}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RequestError;

    #[test]
    fn percentiles_totals_goodput_and_errors() {
        let records: Vec<RequestRecord> = (1..=100)
            .map(|i| RequestRecord {
                id: i as usize,
                ttft: Some(Duration::from_millis(i)),
                e2e: Duration::from_millis(i + 90),
                itl: vec![Duration::from_millis(10); 9],
                prompt_tokens: Some(5),
                output_tokens: 10,
                ..Default::default()
            })
            .chain([
                RequestRecord {
                    error: Some(RequestError::Http {
                        status: 404,
                        body: "no such model".into(),
                    }),
                    ..Default::default()
                },
                RequestRecord {
                    error: Some(RequestError::Timeout),
                    ..Default::default()
                },
            ])
            .collect();
        let slo = Slo {
            ttft_ms: Some(50.0),
            itl_ms: Some(10.0),
        };
        let report = Report::new(
            "test".into(),
            "w".into(),
            &records,
            Duration::from_secs(2),
            slo,
        );
        assert_eq!(
            (report.requests, report.completed, report.errors),
            (102, 100, 2)
        );
        assert_eq!(report.errors_by_kind["http_404"], 1);
        assert_eq!(report.errors_by_kind["timeout"], 1);
        assert_eq!(report.output_tokens, 1000);
        assert_eq!(report.input_tokens, Some(500));
        assert_eq!(report.output_tokens_per_second, 500.0);
        assert_eq!(report.good_requests, 50);
        assert_eq!(report.goodput_requests_per_second, 25.0);
        let ttft = report.ttft_ms.as_ref().expect("ttft");
        assert_eq!((ttft.p50, ttft.p99), (51.0, 99.0));
        assert_eq!(report.tpot_ms.as_ref().expect("tpot").mean, 10.0);
        assert!(report.send_lag_ms.is_none());
        let table = report.table();
        assert!(table.contains("http_404 1, timeout 1"), "{table}");
        assert!(table.contains("goodput 25.00 req/s"), "{table}");
    }
}
