//! Approximate mode, for workers that publish no KV events: the router indexes its own decisions
//! (a prompt sent to a worker is assumed cached there) and forgets each block `ttl` after it was
//! last sent there, standing in for the eviction it cannot see.

use crate::indexer::KvIndexer;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use turbine_protocols::InstanceId;

pub struct ApproxIndex {
    ttl: Duration,
    /// When each (worker, block) was last sent: the truth for expiry.
    touched: HashMap<(InstanceId, u64), Instant>,
    /// Candidates for expiry in time order; an entry whose block was touched again since is
    /// skipped when it comes up.
    expiries: VecDeque<(Instant, InstanceId, Vec<u64>)>,
}

impl ApproxIndex {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            touched: HashMap::new(),
            expiries: VecDeque::new(),
        }
    }

    /// Records that `hashes` were sent to `worker` at `now`.
    pub fn record(&mut self, index: &KvIndexer, worker: InstanceId, hashes: &[u64], now: Instant) {
        if hashes.is_empty() {
            return;
        }
        for &hash in hashes {
            self.touched.insert((worker, hash), now);
        }
        index.store(worker, hashes.iter().copied());
        self.expiries
            .push_back((now + self.ttl, worker, hashes.to_vec()));
    }

    /// Drops from `index` the blocks not sent anywhere for `ttl`.
    pub fn expire(&mut self, index: &KvIndexer, now: Instant) {
        while let Some((at, _, _)) = self.expiries.front() {
            if *at > now {
                return;
            }
            let Some((_, worker, hashes)) = self.expiries.pop_front() else {
                return;
            };
            let stale: Vec<u64> = hashes
                .into_iter()
                .filter(|&h| {
                    let key = (worker, h);
                    let expired = self.touched.get(&key).is_some_and(|&t| t + self.ttl <= now);
                    if expired {
                        self.touched.remove(&key);
                    }
                    expired
                })
                .collect();
            index.remove(worker, stale);
        }
    }

    /// Forgets `worker` (it left).
    pub fn forget(&mut self, worker: InstanceId) {
        self.touched.retain(|(w, _), _| *w != worker);
        self.expiries.retain(|(_, w, _)| *w != worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_expire_ttl_after_their_last_use() {
        let index = KvIndexer::new();
        let mut approx = ApproxIndex::new(Duration::from_secs(10));
        let w = InstanceId(1);
        let t0 = Instant::now();
        approx.record(&index, w, &[1, 2, 3], t0);
        approx.record(&index, w, &[1, 2], t0 + Duration::from_secs(6));
        approx.expire(&index, t0 + Duration::from_secs(11));
        assert_eq!(index.find_matches(&[1, 2, 3]).get(w), 2);
        approx.expire(&index, t0 + Duration::from_secs(17));
        assert_eq!(index.find_matches(&[1, 2, 3]).get(w), 0);
        assert!(approx.touched.is_empty() && approx.expiries.is_empty());
    }
}
