//! Load per worker, as the router sees it: its own bookkeeping of the requests it sent (blocks
//! and prompt tokens still to prefill), corrected by the workers' load reports.
//!
//! A report is the truth at the moment it was made; what the router did since is added on top:
//! `effective = reported + (own now − own when the report arrived)`. So requests other frontends
//! sent, preemptions and finished prefills show up with the next report, while this router's own
//! decisions count at once.

use parking_lot::Mutex;
use std::collections::HashMap;
use turbine_protocols::{InstanceId, LoadReport};

/// A worker's load at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    /// KV blocks held by requests in flight.
    pub active_blocks: u64,
    /// Prompt tokens still to be computed.
    pub prefill_tokens: u64,
    /// Requests this router has in flight there.
    pub requests: u64,
    /// The worker's KV capacity, once it has reported.
    pub total_blocks: Option<u64>,
}

impl Load {
    /// Blocks of work: held blocks plus the prefill queue in blocks.
    pub fn blocks_of_work(&self, block_size: usize) -> f64 {
        self.active_blocks as f64 + self.prefill_tokens as f64 / block_size.max(1) as f64
    }

    /// Share of the KV cache in use, once known.
    pub fn usage(&self) -> Option<f64> {
        self.total_blocks
            .map(|t| self.active_blocks as f64 / t.max(1) as f64)
    }
}

#[derive(Debug, Default)]
struct Tracked {
    own_blocks: i64,
    own_prefill: i64,
    own_requests: i64,
    report: Option<(LoadReport, i64, i64)>,
}

impl Tracked {
    fn load(&self) -> Load {
        let (blocks, prefill, total) = match &self.report {
            Some((report, blocks_then, prefill_then)) => (
                report.active_blocks as i64 + self.own_blocks - blocks_then,
                report.queued_prefill_tokens as i64 + self.own_prefill - prefill_then,
                Some(report.total_blocks),
            ),
            None => (self.own_blocks, self.own_prefill, None),
        };
        Load {
            active_blocks: blocks.max(0) as u64,
            prefill_tokens: prefill.max(0) as u64,
            requests: self.own_requests.max(0) as u64,
            total_blocks: total,
        }
    }
}

#[derive(Default)]
pub struct LoadTracker {
    workers: Mutex<HashMap<InstanceId, Tracked>>,
}

impl LoadTracker {
    pub fn load(&self, worker: InstanceId) -> Load {
        self.workers
            .lock()
            .get(&worker)
            .map(Tracked::load)
            .unwrap_or_default()
    }

    pub fn loads(&self, workers: &[InstanceId]) -> Vec<Load> {
        let tracked = self.workers.lock();
        workers
            .iter()
            .map(|w| tracked.get(w).map(Tracked::load).unwrap_or_default())
            .collect()
    }

    /// Adds (or with negative numbers takes away) this router's own load on `worker`.
    pub fn add(&self, worker: InstanceId, blocks: i64, prefill_tokens: i64, requests: i64) -> Load {
        let mut tracked = self.workers.lock();
        let t = tracked.entry(worker).or_default();
        t.own_blocks += blocks;
        t.own_prefill += prefill_tokens;
        t.own_requests += requests;
        t.load()
    }

    pub fn report(&self, worker: InstanceId, report: LoadReport) -> Load {
        let mut tracked = self.workers.lock();
        let t = tracked.entry(worker).or_default();
        t.report = Some((report, t.own_blocks, t.own_prefill));
        t.load()
    }

    pub fn forget(&self, worker: InstanceId) {
        self.workers.lock().remove(&worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_correct_the_router_s_own_count() {
        let tracker = LoadTracker::default();
        let w = InstanceId(1);
        tracker.add(w, 10, 100, 1);
        assert_eq!(tracker.load(w).active_blocks, 10);
        assert_eq!(tracker.load(w).total_blocks, None);
        // The worker also serves another frontend's requests: 30 blocks in all.
        let report = LoadReport {
            active_blocks: 30,
            total_blocks: 1000,
            queued_prefill_tokens: 40,
            ..Default::default()
        };
        tracker.report(w, report);
        tracker.add(w, 5, 16, 1);
        let load = tracker.load(w);
        assert_eq!((load.active_blocks, load.prefill_tokens), (35, 56));
        assert_eq!(load.usage(), Some(0.035));
        // Our first request ends before the next report: never below zero.
        tracker.add(w, -10, -100, -1);
        assert_eq!(tracker.load(w).prefill_tokens, 0);
        assert_eq!(tracker.load(w).active_blocks, 25);
    }
}
