//! The router's index against the truth, under random event streams with losses.
//!
//! Several real engine block managers serve random requests that share prefixes (cache hits,
//! allocations that evict, releases, occasional cache clears). Their KV events reach the router
//! through a lossy, duplicating link; load reports carry each worker's last event id. The router
//! recovers from gaps with the block managers' own catch-up (replay buffer, or a full snapshot
//! when the buffer has moved on). After every round the index must equal each worker's cached
//! set exactly, and `find_matches` must equal a brute-force prefix count on random prompts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use turbine_engine::kv::{BlockId, BlockManager};
use turbine_protocols::{InstanceId, KvEvent, LoadReport};
use turbine_router::{Ingest, KvRouter, RouterConfig, RouterMetrics};
use turbine_tokens::{BLOCK_HASH_SEED, BlockHash, compute_block_hashes};

const BS: usize = 4;
const WORKERS: u64 = 4;

/// The test's randomness: seeded, so every run sees the same streams.
struct Prng(StdRng);

impl Prng {
    fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.0.random_ratio(percent, 100)
    }
}

/// A prompt from a few families: a shared family head, then a tail of random length.
fn prompt(rng: &mut Prng) -> Vec<u32> {
    let family = rng.below(6) as u32;
    let head = 4 * BS;
    let tail = rng.below(6 * BS);
    let mut tokens: Vec<u32> = (0..head as u32).map(|i| family * 1000 + i).collect();
    // Tails come from a small alphabet, so they too are shared now and then.
    tokens.extend((0..tail).map(|_| 500 + rng.below(3) as u32));
    tokens
}

struct Worker {
    id: InstanceId,
    blocks: BlockManager,
    held: Vec<Vec<BlockId>>,
}

impl Worker {
    /// Serves one random request: takes its cached prefix, allocates and commits the rest, and
    /// holds the blocks a while.
    fn serve(&mut self, rng: &mut Prng) {
        let tokens = prompt(rng);
        let hashes: Vec<BlockHash> = compute_block_hashes(&tokens, BS, BLOCK_HASH_SEED);
        let cached = self.blocks.cached_prefix(&hashes);
        self.blocks.acquire(&cached);
        let missing = hashes.len() - cached.len();
        let Some(fresh) = self.blocks.allocate(missing) else {
            self.blocks.release(&cached);
            return;
        };
        let parent = cached.len().checked_sub(1).map(|i| hashes[i].sequence);
        self.blocks.commit(&fresh, &hashes[cached.len()..], parent);
        let mut all = cached;
        all.extend(fresh);
        self.held.push(all);
    }

    fn release_some(&mut self, rng: &mut Prng) {
        while self.held.len() > 3 || (!self.held.is_empty() && rng.chance(30)) {
            let i = rng.below(self.held.len());
            let blocks = self.held.swap_remove(i);
            self.blocks.release(&blocks);
        }
    }

    fn load(&self) -> LoadReport {
        LoadReport {
            worker_id: Some(self.id),
            kv_event_id: self.blocks.last_event_id(),
            total_blocks: self.blocks.num_blocks() as u64,
            ..Default::default()
        }
    }
}

fn resolve(router: &KvRouter, workers: &[Worker], ingest: Ingest, now: Instant) {
    if let Ingest::Gap { worker, after } = ingest {
        let w = workers
            .iter()
            .find(|w| w.id == worker)
            .expect("known worker");
        router.apply_catch_up(worker, Ok(w.blocks.catch_up(after)), now);
    }
}

fn brute_force(cached: &HashSet<u64>, hashes: &[u64]) -> u32 {
    hashes.iter().take_while(|h| cached.contains(h)).count() as u32
}

#[test]
fn the_index_matches_the_workers_caches_through_lost_and_repeated_events() {
    let mut rng = Prng(StdRng::seed_from_u64(20261122));
    let router = KvRouter::new(
        RouterConfig::default(),
        BS,
        RouterMetrics::unregistered().for_model("m"),
    );
    let mut workers: Vec<Worker> = (1..=WORKERS)
        .map(|i| Worker {
            id: InstanceId(i),
            // Small caches (evictions all the time) and short replay buffers (snapshots too).
            blocks: BlockManager::new(24 + 8 * i as usize, BS, InstanceId(i), 6),
            held: Vec::new(),
        })
        .collect();
    let ids: Vec<InstanceId> = workers.iter().map(|w| w.id).collect();
    let start = Instant::now();
    for id in router.set_workers(&ids) {
        let w = workers.iter().find(|w| w.id == id).expect("worker");
        router.apply_catch_up(id, Ok(w.blocks.catch_up(0)), start);
    }
    let (mut lost, mut gaps) = (0, 0);
    for round in 0..400u64 {
        let now = start + Duration::from_millis(round);
        let mut events: Vec<KvEvent> = Vec::new();
        for w in workers.iter_mut() {
            for _ in 0..rng.below(3) {
                w.serve(&mut rng);
            }
            w.release_some(&mut rng);
            if rng.chance(2) {
                w.blocks.clear_cache();
            }
            events.extend(w.blocks.take_events());
        }
        for event in &events {
            if rng.chance(15) {
                lost += 1;
                continue;
            }
            let repeats = if rng.chance(5) { 2 } else { 1 };
            for _ in 0..repeats {
                let ingest = router.apply_event(event, now);
                gaps += usize::from(matches!(ingest, Ingest::Gap { .. }));
                resolve(&router, &workers, ingest, now);
            }
        }
        // Two load reports: the second reveals events the first announced that never came.
        for _ in 0..2 {
            for w in &workers {
                let ingest = router.apply_load(&w.load(), now);
                resolve(&router, &workers, ingest, now);
            }
        }
        for w in &workers {
            let truth = w.blocks.cached_hashes();
            assert_eq!(
                router.index().worker_blocks(w.id),
                truth.len() as u64,
                "round {round}, worker {}",
                w.id
            );
            for &hash in &truth {
                assert!(router.index().holds(w.id, hash), "round {round}");
            }
        }
        let union: HashSet<u64> = workers
            .iter()
            .flat_map(|w| w.blocks.cached_hashes())
            .collect();
        assert_eq!(router.index().num_blocks(), union.len(), "round {round}");
        for _ in 0..4 {
            let hashes: Vec<u64> = compute_block_hashes(&prompt(&mut rng), BS, BLOCK_HASH_SEED)
                .iter()
                .map(|h| h.sequence)
                .collect();
            let scores = router.index().find_matches(&hashes);
            for w in &workers {
                let want = brute_force(&w.blocks.cached_hashes(), &hashes);
                assert_eq!(scores.get(w.id), want, "round {round}, worker {}", w.id);
            }
        }
    }
    assert!(lost > 100 && gaps > 50, "lost {lost}, gaps {gaps}");

    // A worker that leaves takes its blocks with it.
    let gone = workers.pop().expect("a worker").id;
    router.set_workers(&ids[..ids.len() - 1]);
    assert_eq!(router.index().worker_blocks(gone), 0);
    assert!(!router.index().workers().contains(&gone));
}
