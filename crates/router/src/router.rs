//! `KvRouter`: one model's router. It keeps the KV index in step with the workers' events,
//! tracks their load, and picks a worker for each request; when every worker is busy it queues.
//!
//! The router does no I/O. Its owner feeds it (`set_workers` from discovery, `apply_event` and
//! `apply_load` from the event plane, `apply_catch_up` with a worker's answer when
//! `apply_event` reports a gap) and asks it (`route`, or `select` without admission, as the
//! simulator does in virtual time).
//!
//! Event sequencing per worker: events must arrive with `event_id` = last + 1. A duplicate or
//! older one is skipped; a jump means events were lost: the index for that worker can no longer
//! be trusted, and the owner fetches the missed events (or a snapshot of the worker's cache).
//! A worker that answers that it publishes no events is routed in approximate mode.

use crate::approx::ApproxIndex;
use crate::indexer::{KvIndexer, OverlapScores};
use crate::load::{Load, LoadTracker};
use crate::metrics::RouterHandles;
use crate::policy::{Candidate, CostWeights, Prompt, RoutingPolicy, choose};
use crate::queue::{QueuePolicy, WaitQueue};
use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use turbine_protocols::{InstanceId, KvEvent, KvReplay, LoadReport};
use turbine_tokens::{BLOCK_HASH_SEED, compute_block_hashes};

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub policy: RoutingPolicy,
    pub weights: CostWeights,
    /// Route every worker in approximate mode (index own decisions), even those with events.
    pub approximate: bool,
    /// Approximate mode: how long a block sent to a worker is assumed to stay cached.
    pub approximate_ttl: Duration,
    /// A worker is busy when this share of its KV blocks is in use.
    pub busy_kv_usage: f64,
    /// A worker is also busy with more prompt tokens than this waiting to be prefilled.
    pub busy_prefill_tokens: Option<u64>,
    /// Requests that may wait when every worker is busy; beyond that they are refused.
    pub queue_capacity: usize,
    pub queue_policy: QueuePolicy,
    /// After a failed catch-up, how long before the next try.
    pub resync_backoff: Duration,
    /// Seed of the random choices (ties, `random`, `power-of-two`, softmax).
    pub seed: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            policy: RoutingPolicy::Kv,
            weights: CostWeights::default(),
            approximate: false,
            approximate_ttl: Duration::from_secs(120),
            busy_kv_usage: 0.95,
            busy_prefill_tokens: None,
            queue_capacity: 1024,
            queue_policy: QueuePolicy::Fcfs,
            resync_backoff: Duration::from_secs(1),
            seed: 0,
        }
    }
}

/// What `apply_event` did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    Applied,
    /// Already seen (an older or repeated `event_id`).
    Duplicate,
    /// Events after `after` were lost: fetch them with the worker's catch-up and pass the answer
    /// to `apply_catch_up`.
    Gap {
        worker: InstanceId,
        after: u64,
    },
    /// From a worker this router does not route to, or one waiting out a failed catch-up.
    Ignored,
}

/// Why a request was not routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no worker serves this model right now")]
    NoWorkers,
    #[error("every worker is busy and the router's queue is full")]
    Overloaded,
}

/// A routing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub worker: InstanceId,
    /// Leading prompt blocks the worker is believed to hold.
    pub overlap_blocks: u32,
    /// Full blocks in the prompt.
    pub prompt_blocks: u32,
}

#[derive(Debug, Default)]
struct EventSync {
    /// The last event applied; `None` until the first event or catch-up.
    last: Option<u64>,
    /// After a failed catch-up: events are ignored until then.
    retry_at: Option<Instant>,
    /// The worker said it publishes no KV events: approximate mode.
    silent: bool,
    /// The last event id the previous load report announced.
    announced: u64,
}

pub struct KvRouter {
    config: RouterConfig,
    block_size: usize,
    index: KvIndexer,
    workers: RwLock<Vec<InstanceId>>,
    sync: Mutex<HashMap<InstanceId, EventSync>>,
    approx: Mutex<ApproxIndex>,
    load: LoadTracker,
    queue: WaitQueue,
    round_robin: AtomicUsize,
    rng: Mutex<StdRng>,
    metrics: RouterHandles,
}

impl KvRouter {
    pub fn new(config: RouterConfig, block_size: usize, metrics: RouterHandles) -> Arc<Self> {
        Arc::new(Self {
            block_size: block_size.max(1),
            index: KvIndexer::new(),
            workers: RwLock::new(Vec::new()),
            sync: Mutex::new(HashMap::new()),
            approx: Mutex::new(ApproxIndex::new(config.approximate_ttl)),
            load: LoadTracker::default(),
            queue: WaitQueue::new(config.queue_policy, config.queue_capacity),
            round_robin: AtomicUsize::new(0),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            metrics,
            config,
        })
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn index(&self) -> &KvIndexer {
        &self.index
    }

    pub fn workers(&self) -> Vec<InstanceId> {
        self.workers.read().clone()
    }

    pub fn load(&self, worker: InstanceId) -> Load {
        self.load.load(worker)
    }

    /// Sets the workers to route to. Returns the new ones whose KV state the owner should fetch
    /// (a catch-up from event 0) unless the router runs in approximate mode; workers that left
    /// are dropped from the index.
    pub fn set_workers(&self, workers: &[InstanceId]) -> Vec<InstanceId> {
        let mut next = workers.to_vec();
        next.sort();
        next.dedup();
        let previous = std::mem::replace(&mut *self.workers.write(), next.clone());
        for gone in previous.iter().filter(|w| next.binary_search(w).is_err()) {
            self.index.remove_worker(*gone);
            self.load.forget(*gone);
            self.approx.lock().forget(*gone);
            self.sync.lock().remove(gone);
            self.metrics.forget_worker(*gone);
        }
        let added: Vec<InstanceId> = next
            .iter()
            .copied()
            .filter(|w| previous.binary_search(w).is_err())
            .collect();
        let mut sync = self.sync.lock();
        for w in &added {
            sync.insert(*w, EventSync::default());
        }
        self.metrics
            .indexed_blocks
            .set(self.index.num_blocks() as i64);
        self.release_waiters();
        if self.config.approximate {
            return Vec::new();
        }
        added
    }

    /// Applies one KV event, in order per worker (see the module docs).
    pub fn apply_event(&self, event: &KvEvent, now: Instant) -> Ingest {
        if self.config.approximate {
            return Ingest::Ignored;
        }
        let mut sync = self.sync.lock();
        let Some(state) = sync.get_mut(&event.worker_id) else {
            return Ingest::Ignored;
        };
        if state.retry_at.is_some_and(|t| now < t) {
            return Ingest::Ignored;
        }
        let expected = state.last.map_or(1, |last| last + 1);
        if event.event_id < expected {
            return Ingest::Duplicate;
        }
        if event.event_id > expected {
            return Ingest::Gap {
                worker: event.worker_id,
                after: state.last.unwrap_or(0),
            };
        }
        state.last = Some(event.event_id);
        state.retry_at = None;
        // Still under the lock: a catch-up applied in between would otherwise be overwritten by
        // this older event.
        self.index.apply(event.worker_id, &event.data);
        self.metrics.events_applied.inc();
        self.metrics
            .indexed_blocks
            .set(self.index.num_blocks() as i64);
        Ingest::Applied
    }

    /// Applies a worker's answer to a catch-up (after a gap, or for a new worker). An error
    /// leaves the worker's index empty until a later catch-up succeeds; `Unsupported` switches
    /// it to approximate mode.
    pub fn apply_catch_up(
        &self,
        worker: InstanceId,
        answer: Result<KvReplay, CatchUpError>,
        now: Instant,
    ) {
        let mut sync = self.sync.lock();
        let Some(state) = sync.get_mut(&worker) else {
            return;
        };
        match answer {
            Ok(KvReplay::Snapshot { event_id, .. }) if state.last >= Some(event_id) => {}
            Ok(KvReplay::Snapshot { event_id, stored }) => {
                self.index.clear(worker);
                for data in &stored {
                    self.index.apply(worker, data);
                }
                state.last = Some(event_id);
                state.retry_at = None;
                self.metrics.recovery("snapshot");
            }
            Ok(KvReplay::Events { events }) => {
                let known = state.last.unwrap_or(0);
                let mut last = known;
                for event in events.iter().filter(|e| e.event_id > known) {
                    if event.event_id != last + 1 {
                        self.index.clear(worker);
                        state.last = None;
                        state.retry_at = Some(now + self.config.resync_backoff);
                        self.metrics.recovery("failed");
                        return;
                    }
                    self.index.apply(worker, &event.data);
                    last = event.event_id;
                }
                state.last = Some(last);
                state.retry_at = None;
                self.metrics.recovery("events");
            }
            Err(CatchUpError::Unsupported) => {
                state.silent = true;
                self.index.clear(worker);
            }
            Err(CatchUpError::Failed(reason)) => {
                tracing::warn!(%worker, "cannot catch up on KV events: {reason}; its cache is unknown until the next try");
                self.index.clear(worker);
                state.last = None;
                state.retry_at = Some(now + self.config.resync_backoff);
                self.metrics.recovery("failed");
            }
        }
        drop(sync);
        self.metrics
            .indexed_blocks
            .set(self.index.num_blocks() as i64);
    }

    /// A worker's load report. Its `kv_event_id` reveals events lost at the end of a burst,
    /// which no later event would: if the events a report announced have still not arrived when
    /// the next report comes (load reports and events travel separately, so one report's worth
    /// of delay is normal), that is a gap.
    pub fn apply_load(&self, report: &LoadReport, now: Instant) -> Ingest {
        let Some(worker) = report.worker_id else {
            return Ingest::Ignored;
        };
        if self.workers.read().binary_search(&worker).is_err() {
            return Ingest::Ignored;
        }
        let load = self.load.report(worker, report.clone());
        self.metrics.worker_load(worker, &load);
        self.release_waiters();
        if self.config.approximate {
            return Ingest::Applied;
        }
        let mut sync = self.sync.lock();
        let Some(state) = sync.get_mut(&worker) else {
            return Ingest::Ignored;
        };
        let announced = std::mem::replace(&mut state.announced, report.kv_event_id);
        let last = state.last.unwrap_or(0);
        if state.silent || state.retry_at.is_some_and(|t| now < t) || last >= announced {
            return Ingest::Applied;
        }
        Ingest::Gap {
            worker,
            after: last,
        }
    }

    fn is_busy(&self, load: &Load) -> bool {
        let kv = load.usage().is_some_and(|u| u >= self.config.busy_kv_usage);
        let prefill = self
            .config
            .busy_prefill_tokens
            .is_some_and(|limit| load.prefill_tokens > limit);
        kv || prefill
    }

    /// Whether every worker is busy (false with no workers: that is a different failure).
    pub fn all_busy(&self) -> bool {
        let workers = self.workers.read();
        !workers.is_empty()
            && self
                .load
                .loads(&workers)
                .iter()
                .all(|load| self.is_busy(load))
    }

    /// Routes a request to a worker not in `avoid`, waiting in the queue while every worker is
    /// busy.
    pub async fn route(
        self: &Arc<Self>,
        tokens: &[u32],
        avoid: &[InstanceId],
    ) -> Result<RouteGuard, RouteError> {
        if self.all_busy() || !self.queue.is_empty() {
            let turn = self.queue.join(tokens.len() as u64).map_err(|_| {
                self.metrics.rejected.inc();
                RouteError::Overloaded
            })?;
            self.metrics.queue_depth.set(self.queue.len() as i64);
            // A sender dropped without a turn cannot happen while the router lives.
            let _ = turn.await;
            self.metrics.queue_depth.set(self.queue.len() as i64);
        }
        let routed = self.select(tokens, Instant::now(), avoid);
        // Capacity may remain for the next waiter too.
        self.release_waiters();
        routed
    }

    /// Lets queued requests through while some worker has room.
    fn release_waiters(&self) {
        if !self.queue.is_empty() && !self.all_busy() {
            self.queue.release_one();
        }
    }

    /// Picks a worker not in `avoid` now (no admission) and books the request's load on it.
    pub fn select(
        self: &Arc<Self>,
        tokens: &[u32],
        now: Instant,
        avoid: &[InstanceId],
    ) -> Result<RouteGuard, RouteError> {
        let started = Instant::now();
        let mut workers = self.workers.read().clone();
        workers.retain(|w| !avoid.contains(w));
        if workers.is_empty() {
            return Err(RouteError::NoWorkers);
        }
        let hashes: Vec<u64> = compute_block_hashes(tokens, self.block_size, BLOCK_HASH_SEED)
            .iter()
            .map(|h| h.sequence)
            .collect();
        let approximate = self.approximate_workers(&workers);
        if !approximate.is_empty() {
            self.approx.lock().expire(&self.index, now);
        }
        let overlaps: OverlapScores = self.index.find_matches(&hashes);
        let loads = self.load.loads(&workers);
        let candidates: Vec<Candidate> = workers
            .iter()
            .zip(loads)
            .map(|(&worker, load)| Candidate {
                worker,
                overlap_blocks: overlaps.get(worker),
                load,
            })
            .collect();
        let prompt = Prompt {
            tokens: tokens.len(),
            block_size: self.block_size,
        };
        let i = choose(
            self.config.policy,
            &candidates,
            prompt,
            self.config.weights,
            self.round_robin.fetch_add(1, Ordering::Relaxed),
            &mut *self.rng.lock(),
        );
        let chosen = candidates[i];
        let decision = Decision {
            worker: chosen.worker,
            overlap_blocks: chosen.overlap_blocks,
            prompt_blocks: hashes.len() as u32,
        };
        if approximate.contains(&chosen.worker) {
            self.approx
                .lock()
                .record(&self.index, chosen.worker, &hashes, now);
        }
        let cached = (chosen.overlap_blocks as usize * self.block_size).min(tokens.len());
        // The engine always computes at least the last prompt token.
        let prefill = (tokens.len() - cached).max(1) as i64;
        let blocks = tokens.len().div_ceil(self.block_size) as i64;
        let load = self.load.add(chosen.worker, blocks, prefill, 1);
        let m = &self.metrics;
        m.worker_load(chosen.worker, &load);
        m.prompt_blocks.inc_by(u64::from(decision.prompt_blocks));
        m.hit_blocks.inc_by(u64::from(decision.overlap_blocks));
        m.overlap_blocks.observe(f64::from(decision.overlap_blocks));
        m.decision_seconds.observe(started.elapsed().as_secs_f64());
        Ok(RouteGuard {
            router: self.clone(),
            decision,
            blocks,
            prefill,
            tokens: tokens.len(),
        })
    }

    fn approximate_workers(&self, workers: &[InstanceId]) -> Vec<InstanceId> {
        if self.config.approximate {
            return workers.to_vec();
        }
        let sync = self.sync.lock();
        workers
            .iter()
            .copied()
            .filter(|w| sync.get(w).is_some_and(|s| s.silent))
            .collect()
    }

    fn release(&self, worker: InstanceId, blocks: i64, prefill: i64, requests: i64) {
        let load = self.load.add(worker, -blocks, -prefill, -requests);
        if self.workers.read().binary_search(&worker).is_ok() {
            self.metrics.worker_load(worker, &load);
        }
        self.release_waiters();
    }
}

/// Why a catch-up brought no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUpError {
    /// The worker publishes no KV events.
    Unsupported,
    Failed(String),
}

/// A routed request's load on its worker, kept up to date as it runs and taken off when dropped.
pub struct RouteGuard {
    router: Arc<KvRouter>,
    decision: Decision,
    blocks: i64,
    prefill: i64,
    tokens: usize,
}

impl RouteGuard {
    pub fn decision(&self) -> Decision {
        self.decision
    }

    pub fn worker(&self) -> InstanceId {
        self.decision.worker
    }

    /// The worker produced `n` more tokens: the prompt is computed, and the sequence may have
    /// grown into new blocks.
    pub fn generated(&mut self, n: usize) {
        let worker = self.decision.worker;
        if self.prefill > 0 {
            self.router.release(worker, 0, self.prefill, 0);
            self.prefill = 0;
        }
        self.tokens += n;
        let blocks = self.tokens.div_ceil(self.router.block_size) as i64;
        if blocks > self.blocks {
            self.router.load.add(worker, blocks - self.blocks, 0, 0);
            self.blocks = blocks;
        }
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.router
            .release(self.decision.worker, self.blocks, self.prefill, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RouterMetrics;
    use turbine_protocols::{KvEventData, StorageTier, StoredBlock};

    const BS: usize = 4;

    fn router(config: RouterConfig) -> Arc<KvRouter> {
        KvRouter::new(config, BS, RouterMetrics::unregistered().for_model("m"))
    }

    fn stored(worker: u64, id: u64, tokens: &[u32]) -> KvEvent {
        let blocks = compute_block_hashes(tokens, BS, BLOCK_HASH_SEED)
            .iter()
            .map(|h| StoredBlock {
                seq_hash: h.sequence,
                local_hash: h.local,
            })
            .collect();
        KvEvent {
            worker_id: InstanceId(worker),
            event_id: id,
            data: KvEventData::Stored {
                parent: None,
                blocks,
                tier: StorageTier::Device,
            },
        }
    }

    #[test]
    fn routes_to_the_worker_holding_the_prefix_and_books_its_load() {
        let r = router(RouterConfig::default());
        let now = Instant::now();
        assert_eq!(
            r.set_workers(&[InstanceId(1), InstanceId(2)]),
            vec![InstanceId(1), InstanceId(2)]
        );
        let prompt: Vec<u32> = (0..16).collect();
        assert_eq!(r.apply_event(&stored(2, 1, &prompt), now), Ingest::Applied);
        let mut guard = r.select(&prompt, now, &[]).unwrap();
        assert_eq!(
            guard.decision(),
            Decision {
                worker: InstanceId(2),
                overlap_blocks: 4,
                prompt_blocks: 4
            }
        );
        assert_eq!(r.load(InstanceId(2)).prefill_tokens, 1);
        guard.generated(1);
        assert_eq!(r.load(InstanceId(2)).prefill_tokens, 0);
        assert_eq!(r.load(InstanceId(2)).active_blocks, 5);
        drop(guard);
        assert_eq!(r.load(InstanceId(2)), Load::default());
    }

    #[test]
    fn gaps_are_reported_and_caught_up() {
        let r = router(RouterConfig::default());
        let now = Instant::now();
        r.set_workers(&[InstanceId(1)]);
        let a: Vec<u32> = (0..8).collect();
        let b: Vec<u32> = (100..108).collect();
        assert_eq!(r.apply_event(&stored(1, 1, &a), now), Ingest::Applied);
        assert_eq!(r.apply_event(&stored(1, 1, &a), now), Ingest::Duplicate);
        let gap = r.apply_event(&stored(1, 3, &b), now);
        assert_eq!(
            gap,
            Ingest::Gap {
                worker: InstanceId(1),
                after: 1
            }
        );
        // The worker's replay buffer has events 2 and 3.
        let replay = KvReplay::Events {
            events: vec![
                KvEvent {
                    worker_id: InstanceId(1),
                    event_id: 2,
                    data: KvEventData::Cleared,
                },
                stored(1, 3, &b),
            ],
        };
        r.apply_catch_up(InstanceId(1), Ok(replay), now);
        let hashes = |t: &[u32]| -> Vec<u64> {
            compute_block_hashes(t, BS, BLOCK_HASH_SEED)
                .iter()
                .map(|h| h.sequence)
                .collect()
        };
        assert_eq!(r.index().find_matches(&hashes(&a)).best(), 0);
        assert_eq!(r.index().find_matches(&hashes(&b)).best(), 2);
        assert_eq!(r.apply_event(&stored(1, 4, &a), now), Ingest::Applied);
        // A failed catch-up empties the worker's index and backs off.
        r.apply_catch_up(InstanceId(1), Err(CatchUpError::Failed("gone".into())), now);
        assert_eq!(r.index().num_blocks(), 0);
        assert_eq!(r.apply_event(&stored(1, 9, &a), now), Ingest::Ignored);
        let later = now + Duration::from_secs(2);
        assert!(matches!(
            r.apply_event(&stored(1, 9, &a), later),
            Ingest::Gap { after: 0, .. }
        ));
        r.apply_catch_up(
            InstanceId(1),
            Ok(KvReplay::Snapshot {
                event_id: 9,
                stored: vec![stored(1, 0, &a).data],
            }),
            later,
        );
        assert_eq!(r.index().find_matches(&hashes(&a)).best(), 2);
        assert_eq!(r.apply_event(&stored(1, 10, &b), later), Ingest::Applied);
    }

    #[test]
    fn silent_workers_are_routed_by_the_router_s_own_decisions() {
        let r = router(RouterConfig::default());
        let now = Instant::now();
        r.set_workers(&[InstanceId(1), InstanceId(2), InstanceId(3)]);
        for w in 1..=3 {
            r.apply_catch_up(InstanceId(w), Err(CatchUpError::Unsupported), now);
        }
        let prompt: Vec<u32> = (0..64).collect();
        let first = r.select(&prompt, now, &[]).unwrap();
        let worker = first.worker();
        drop(first);
        let again = r
            .select(&prompt, now + Duration::from_secs(1), &[])
            .unwrap();
        assert_eq!(again.worker(), worker);
        assert_eq!(again.decision().overlap_blocks, 16);
        drop(again);
        // Forgotten after the TTL.
        let much_later = now + Duration::from_secs(600);
        assert_eq!(
            r.select(&prompt, much_later, &[])
                .unwrap()
                .decision()
                .overlap_blocks,
            0
        );
    }

    #[tokio::test]
    async fn requests_wait_while_every_worker_is_busy_and_overflow_is_refused() {
        let r = router(RouterConfig {
            queue_capacity: 1,
            ..Default::default()
        });
        r.set_workers(&[InstanceId(1)]);
        let full = LoadReport {
            worker_id: Some(InstanceId(1)),
            active_blocks: 100,
            total_blocks: 100,
            ..Default::default()
        };
        r.apply_load(&full, Instant::now());
        let prompt: Vec<u32> = (0..8).collect();
        let waiting = {
            let r = r.clone();
            let prompt = prompt.clone();
            tokio::spawn(async move { r.route(&prompt, &[]).await.map(|g| g.worker()) })
        };
        for _ in 0..100 {
            if r.queue.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(r.queue.len(), 1);
        assert_eq!(
            r.route(&prompt, &[]).await.err(),
            Some(RouteError::Overloaded)
        );
        r.apply_load(
            &LoadReport {
                active_blocks: 10,
                ..full
            },
            Instant::now(),
        );
        let routed = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released")
            .expect("task");
        assert_eq!(routed, Ok(InstanceId(1)));
    }
}
