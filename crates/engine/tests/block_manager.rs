//! Randomized, deterministic property tests of the block manager: many simulated requests share
//! prompt prefixes, take their cached prefix, allocate the rest, commit full blocks, hold them a
//! while and release, with occasional cache clears and aborts. After every operation the test
//! checks the module's invariants against an independent model of reference counts, block
//! contents and the KV event stream (including replay and dump).

use std::collections::{HashMap, HashSet};
use turbine_engine::kv::{BlockId, BlockManager};
use turbine_protocols::{InstanceId, KvEvent, KvEventData, StorageTier, StoredBlock};
use turbine_tokens::{BlockHash, compute_block_hashes};

const WORKER: InstanceId = InstanceId(7);
const SEED: u64 = 0;

/// splitmix64: tiny, deterministic, good enough to drive a simulation.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn tokens(&mut self, n: usize, vocab: u32) -> Vec<u32> {
        (0..n)
            .map(|_| (self.next() % u64::from(vocab)) as u32)
            .collect()
    }
}

#[derive(Debug)]
enum Phase {
    /// Holds its cached prefix; the rest could not be allocated yet.
    Waiting,
    /// Has all its blocks; commits its full blocks a few at a time, as a chunked prefill would.
    Computing,
    /// Everything committed; releases after `steps` more turns.
    Holding { steps: usize },
}

#[derive(Debug)]
struct Request {
    hashes: Vec<BlockHash>,
    /// Blocks the whole token sequence needs (the last one may be partial).
    needed: usize,
    blocks: Vec<BlockId>,
    /// Blocks already registered (taken from the cache or committed by this request).
    committed: usize,
    phase: Phase,
}

/// The test's own view of the world, kept independently of the block manager.
struct Model {
    /// Reference counts as the simulation took and dropped them.
    refs: Vec<u32>,
    /// The sequence hash whose KV a block physically holds (written by a commit, wiped when the
    /// block is handed out again).
    content: Vec<Option<u64>>,
    /// Cached set rebuilt from the event stream alone.
    cached: HashSet<u64>,
    /// Every event ever taken, in order (`log[i].event_id == i + 1`).
    log: Vec<KvEvent>,
    /// For every sequence hash ever generated: (parent sequence hash, local hash).
    lineage: HashMap<u64, (Option<u64>, u64)>,
    replay_capacity: usize,
}

impl Model {
    fn new(num_blocks: usize, replay_capacity: usize) -> Self {
        Self {
            refs: vec![0; num_blocks],
            content: vec![None; num_blocks],
            cached: HashSet::new(),
            log: Vec::new(),
            lineage: HashMap::new(),
            replay_capacity,
        }
    }

    fn learn(&mut self, hashes: &[BlockHash]) {
        let mut parent = None;
        for h in hashes {
            self.lineage.insert(h.sequence, (parent, h.local));
            parent = Some(h.sequence);
        }
    }

    fn acquire(&mut self, bm: &mut BlockManager, blocks: &[BlockId]) {
        bm.acquire(blocks);
        for &b in blocks {
            self.refs[b as usize] += 1;
        }
    }

    fn allocate(&mut self, bm: &mut BlockManager, n: usize) -> Option<Vec<BlockId>> {
        let free_before = bm.num_free();
        let got = bm.allocate(n);
        match &got {
            None => assert!(
                n > free_before,
                "allocate({n}) failed with {free_before} free"
            ),
            Some(blocks) => {
                assert_eq!(blocks.len(), n);
                let distinct: HashSet<_> = blocks.iter().collect();
                assert_eq!(distinct.len(), n, "allocate returned a block twice");
                for &b in blocks {
                    assert_eq!(self.refs[b as usize], 0, "block {b} handed out while held");
                    self.refs[b as usize] = 1;
                    self.content[b as usize] = None;
                }
            }
        }
        got
    }

    fn commit(
        &mut self,
        bm: &mut BlockManager,
        blocks: &[BlockId],
        hashes: &[BlockHash],
        parent: Option<u64>,
    ) {
        for (&b, h) in blocks.iter().zip(hashes) {
            assert!(self.refs[b as usize] > 0, "committing a block nobody holds");
            self.content[b as usize] = Some(h.sequence);
        }
        bm.commit(blocks, hashes, parent);
    }

    fn release(&mut self, bm: &mut BlockManager, blocks: &[BlockId]) {
        for &b in blocks {
            let r = &mut self.refs[b as usize];
            assert!(
                *r > 0,
                "the simulation would release block {b} more than it took"
            );
            *r -= 1;
        }
        bm.release(blocks);
    }

    /// Takes the new events, checks them, folds them into the cached set.
    fn absorb_events(&mut self, bm: &mut BlockManager) {
        for event in bm.take_events() {
            assert_eq!(event.worker_id, WORKER);
            assert_eq!(
                event.event_id,
                self.log.len() as u64 + 1,
                "event ids are gapless"
            );
            match &event.data {
                KvEventData::Stored {
                    parent,
                    blocks,
                    tier,
                } => {
                    assert_eq!(*tier, StorageTier::Device);
                    assert!(!blocks.is_empty(), "empty Stored event");
                    self.check_chain(*parent, blocks);
                    for b in blocks {
                        assert!(
                            self.cached.insert(b.seq_hash),
                            "Stored announces {:x} twice",
                            b.seq_hash
                        );
                    }
                }
                KvEventData::Removed { seq_hashes, tier } => {
                    assert_eq!(*tier, StorageTier::Device);
                    assert!(!seq_hashes.is_empty(), "empty Removed event");
                    for h in seq_hashes {
                        assert!(self.cached.remove(h), "Removed {h:x} that was not stored");
                    }
                }
                KvEventData::Cleared => self.cached.clear(),
            }
            self.log.push(event);
        }
    }

    /// A Stored run's parent and local hashes are those the hashing gave.
    fn check_chain(&self, parent: Option<u64>, blocks: &[StoredBlock]) {
        let mut expected_parent = parent;
        for b in blocks {
            let (p, local) = self.lineage[&b.seq_hash];
            assert_eq!(p, expected_parent, "wrong parent for {:x}", b.seq_hash);
            assert_eq!(local, b.local_hash, "wrong local hash for {:x}", b.seq_hash);
            expected_parent = Some(b.seq_hash);
        }
    }

    fn check(&mut self, bm: &mut BlockManager, rng: &mut Prng, live: &[Request]) {
        bm.check_invariants();
        self.absorb_events(bm);

        // (c) the event stream rebuilds the cached set exactly.
        assert_eq!(
            self.cached,
            bm.cached_hashes(),
            "event replay != cached set"
        );
        assert_eq!(bm.num_cached(), self.cached.len());

        // (a)/(b) reference counts: held blocks are exactly those the simulation holds.
        let held = self.refs.iter().filter(|&&r| r > 0).count();
        assert_eq!(bm.num_active(), held);
        assert_eq!(bm.num_free() + held, bm.num_blocks());

        // (d) replay returns the recorded suffix while buffered, None after.
        let last = self.log.len() as u64;
        assert_eq!(bm.last_event_id(), last);
        let cap = self.replay_capacity as u64;
        let mut probes = vec![last, rng.next() % (last + 1)];
        probes.extend(last.checked_sub(cap));
        probes.extend(last.checked_sub(cap + 1));
        for after in probes {
            let got = bm.replay(after);
            if last - after <= cap {
                let want = &self.log[after as usize..];
                assert_eq!(got.as_deref(), Some(want), "replay({after}) of {last}");
            } else {
                assert_eq!(got, None, "replay({after}) of {last}, capacity {cap}");
            }
        }

        // (e) a dump rebuilds the cached set, parents first.
        let mut seen = HashSet::new();
        for data in bm.dump() {
            let KvEventData::Stored { parent, blocks, .. } = data else {
                panic!("dump holds a non-Stored event: {data:?}");
            };
            if let Some(p) = parent {
                assert!(
                    seen.contains(&p) || !self.cached.contains(&p),
                    "dump lists {:x} before its cached parent {p:x}",
                    blocks[0].seq_hash
                );
            }
            self.check_chain(parent, &blocks);
            for b in blocks {
                assert!(seen.insert(b.seq_hash), "dump lists {:x} twice", b.seq_hash);
            }
        }
        assert_eq!(seen, self.cached, "dump != cached set");

        // Lookups agree with the event-built set, and a cached block really holds that prefix.
        for req in live {
            let hit = bm.cached_prefix(&req.hashes);
            let expected = req
                .hashes
                .iter()
                .take_while(|h| self.cached.contains(&h.sequence))
                .count();
            assert_eq!(hit.len(), expected, "cached_prefix length");
            for (b, h) in hit.iter().zip(&req.hashes) {
                assert_eq!(
                    self.content[*b as usize],
                    Some(h.sequence),
                    "block {b} is cached as {:x} but holds other KV",
                    h.sequence
                );
            }
        }
    }
}

struct SimParams {
    seed: u64,
    num_blocks: usize,
    block_size: usize,
    replay_capacity: usize,
    iterations: usize,
    max_live: usize,
}

fn simulate(p: &SimParams) {
    let mut rng = Prng(p.seed);
    let bs = p.block_size;
    let mut bm = BlockManager::new(p.num_blocks, bs, WORKER, p.replay_capacity);
    let mut model = Model::new(p.num_blocks, p.replay_capacity);
    // A few shared prefixes (one of them empty) so that requests hit each other's cache, over a
    // small vocabulary so that suffixes sometimes coincide too.
    let prefixes: Vec<Vec<u32>> = (0..5)
        .map(|i| {
            let len = if i == 0 { 0 } else { bs * (1 + rng.below(5)) };
            rng.tokens(len, 50)
        })
        .collect();
    let max_tokens = (p.num_blocks / p.max_live).max(2) * bs;
    let mut live: Vec<Request> = Vec::new();
    let mut counts = [0usize; 6];

    for _ in 0..p.iterations {
        let op = rng.below(100);
        if op < 30 && live.len() < p.max_live {
            counts[0] += 1;
            // A new request: shared prefix + random suffix.
            let prefix = &prefixes[rng.below(prefixes.len())];
            let mut tokens = prefix.clone();
            let suffix_len = rng.below(3 * bs + 1);
            tokens.extend(rng.tokens(suffix_len, 3));
            tokens.truncate(max_tokens.max(1));
            if tokens.is_empty() {
                tokens.push(1);
            }
            let hashes = compute_block_hashes(&tokens, bs, SEED);
            model.learn(&hashes);
            let mut cached = bm.cached_prefix(&hashes);
            // Like the scheduler: always leave the last token to compute.
            cached.truncate((tokens.len() - 1) / bs);
            model.acquire(&mut bm, &cached);
            live.push(Request {
                needed: tokens.len().div_ceil(bs),
                committed: cached.len(),
                blocks: cached,
                hashes,
                phase: Phase::Waiting,
            });
        } else if op < 90 && !live.is_empty() {
            counts[1] += 1;
            // Advance one request.
            let i = rng.below(live.len());
            let req = &mut live[i];
            match req.phase {
                Phase::Waiting => {
                    let n = req.needed - req.blocks.len();
                    if let Some(new) = model.allocate(&mut bm, n) {
                        req.blocks.extend(new);
                        req.phase = Phase::Computing;
                    } else if live.iter().all(|r| matches!(r.phase, Phase::Waiting)) {
                        // Everyone waits on blocks that only waiters hold: give one up.
                        counts[5] += 1;
                        let req = live.swap_remove(i);
                        model.release(&mut bm, &req.blocks);
                    }
                }
                Phase::Computing => {
                    let full = req.hashes.len();
                    let upto = (req.committed + 1 + rng.below(3)).min(full);
                    if upto > req.committed {
                        let from = req.committed;
                        let parent = from.checked_sub(1).map(|j| req.hashes[j].sequence);
                        model.commit(
                            &mut bm,
                            &req.blocks[from..upto],
                            &req.hashes[from..upto],
                            parent,
                        );
                        req.committed = upto;
                    }
                    if req.committed == full {
                        req.phase = Phase::Holding {
                            steps: rng.below(8),
                        };
                    }
                }
                Phase::Holding { steps: 0 } => {
                    let req = live.swap_remove(i);
                    model.release(&mut bm, &req.blocks);
                }
                Phase::Holding { ref mut steps } => *steps -= 1,
            }
        } else if op < 93 {
            counts[2] += 1;
            bm.clear_cache();
        } else if op < 97 && !live.is_empty() {
            counts[3] += 1;
            // Abort a request in whatever state it is.
            let req = live.swap_remove(rng.below(live.len()));
            model.release(&mut bm, &req.blocks);
        } else {
            counts[4] += 1;
            // An eviction-only probe: allocate a few blocks and give them straight back.
            let n = rng.below(4);
            if let Some(blocks) = model.allocate(&mut bm, n) {
                model.release(&mut bm, &blocks);
            }
        }
        model.check(&mut bm, &mut rng, &live);
    }

    // (a) no leak: once everyone has released, every block is free again.
    for req in live.drain(..) {
        model.release(&mut bm, &req.blocks);
        model.check(&mut bm, &mut rng, &[]);
    }
    assert_eq!(bm.num_active(), 0);
    assert_eq!(bm.num_free(), bm.num_blocks());
    // And the whole pool can be handed out, evicting every cached block.
    let all = model
        .allocate(&mut bm, p.num_blocks)
        .expect("the whole pool is free");
    model.check(&mut bm, &mut rng, &[]);
    assert!(bm.cached_hashes().is_empty() && model.cached.is_empty());
    model.release(&mut bm, &all);
    model.check(&mut bm, &mut rng, &[]);
    assert_eq!(bm.num_free(), bm.num_blocks());

    // The simulation must really have exercised every path.
    assert!(counts[..5].iter().all(|&c| c > 0), "op counts {counts:?}");
    assert!(model.log.len() > 100, "only {} events", model.log.len());
    let evictions = model
        .log
        .iter()
        .filter(|e| matches!(e.data, KvEventData::Removed { .. }))
        .count();
    assert!(evictions > 0, "no eviction happened");
}

#[test]
fn randomized_requests_keep_every_invariant() {
    for seed in 1..=6 {
        for (num_blocks, replay_capacity, max_live) in [(48, 16, 6), (24, 1, 4), (96, 0, 12)] {
            simulate(&SimParams {
                seed: seed * 1000 + num_blocks as u64,
                num_blocks,
                block_size: 4,
                replay_capacity,
                iterations: 3000,
                max_live,
            });
        }
    }
}

#[test]
fn randomized_requests_with_block_size_one() {
    for seed in 1..=3 {
        simulate(&SimParams {
            seed,
            num_blocks: 32,
            block_size: 1,
            replay_capacity: 8,
            iterations: 2000,
            max_live: 4,
        });
    }
}

fn hashes_of(tokens: &[u32], bs: usize) -> Vec<BlockHash> {
    compute_block_hashes(tokens, bs, SEED)
}

fn removed(events: &[KvEvent]) -> Vec<u64> {
    events
        .iter()
        .flat_map(|e| match &e.data {
            KvEventData::Removed { seq_hashes, .. } => seq_hashes.clone(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn leaves_are_evicted_before_their_parents() {
    let bs = 4;
    let mut bm = BlockManager::new(4, bs, WORKER, 64);
    let tokens: Vec<u32> = (0..16).collect();
    let hashes = hashes_of(&tokens, bs);
    let blocks = bm.allocate(4).expect("4 free blocks");
    bm.commit(&blocks, &hashes, None);
    bm.release(&blocks);
    bm.check_invariants();
    bm.take_events();

    let seq = |i: usize| hashes[i].sequence;
    let first = bm.allocate(1).expect("a free block");
    assert_eq!(first, vec![blocks[3]]);
    assert_eq!(removed(&bm.take_events()), vec![seq(3)]);
    let next = bm.allocate(2).expect("two free blocks");
    assert_eq!(next, vec![blocks[2], blocks[1]]);
    assert_eq!(removed(&bm.take_events()), vec![seq(2), seq(1)]);
    assert_eq!(bm.cached_prefix(&hashes), vec![blocks[0]]);
    bm.check_invariants();

    // Two requests sharing a parent: both leaves go before the shared block, whichever request
    // ends first.
    let mut bm = BlockManager::new(3, bs, WORKER, 64);
    let a = hashes_of(&[1, 1, 1, 1, 2, 2, 2, 2], bs);
    let b = hashes_of(&[1, 1, 1, 1, 3, 3, 3, 3], bs);
    let blocks_a = bm.allocate(2).expect("free");
    bm.commit(&blocks_a, &a, None);
    let mut blocks_b = bm.cached_prefix(&b);
    assert_eq!(blocks_b, vec![blocks_a[0]]);
    bm.acquire(&blocks_b);
    blocks_b.extend(bm.allocate(1).expect("free"));
    bm.commit(&blocks_b[1..], &b[1..], Some(b[0].sequence));
    bm.release(&blocks_a);
    bm.release(&blocks_b);
    bm.take_events();
    bm.allocate(2).expect("free");
    assert_eq!(
        removed(&bm.take_events()),
        vec![a[1].sequence, b[1].sequence]
    );
    assert_eq!(bm.cached_hashes(), HashSet::from([a[0].sequence]));
    bm.check_invariants();
}

#[test]
fn a_duplicate_commit_registers_once_and_emits_nothing() {
    let bs = 2;
    let mut bm = BlockManager::new(8, bs, WORKER, 64);
    let hashes = hashes_of(&[5, 6, 7, 8, 9, 10], bs);
    let a = bm.allocate(2).expect("free");
    bm.commit(&a, &hashes[..2], None);
    let stored = bm.take_events();
    assert_eq!(stored.len(), 1);

    // A second request computed the same two blocks at the same time, plus a third.
    let b = bm.allocate(3).expect("free");
    bm.commit(&b[..2], &hashes[..2], None);
    assert!(
        bm.take_events().is_empty(),
        "a duplicate commit emitted events"
    );
    assert_eq!(bm.num_cached(), 2);
    assert_eq!(bm.cached_prefix(&hashes), a);
    bm.check_invariants();

    // Its third block is new; its parent is the duplicate's hash.
    bm.commit(&b[2..], &hashes[2..], Some(hashes[1].sequence));
    let events = bm.take_events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].data,
        KvEventData::Stored {
            parent: Some(hashes[1].sequence),
            blocks: vec![StoredBlock {
                seq_hash: hashes[2].sequence,
                local_hash: hashes[2].local,
            }],
            tier: StorageTier::Device,
        }
    );
    assert_eq!(bm.cached_prefix(&hashes), vec![a[0], a[1], b[2]]);

    // Committing the same block again is a no-op too, and so is a mixed run: the duplicate in the
    // middle splits it, and the new block after it names the duplicate as its parent.
    bm.commit(&a, &hashes[..2], None);
    assert!(bm.take_events().is_empty());
    let more = hashes_of(&[5, 6, 7, 8, 9, 10, 11, 12], bs);
    let c = bm.allocate(2).expect("free");
    bm.commit(&[c[0], b[2], c[1]], &more[1..4], Some(more[0].sequence));
    let events = bm.take_events();
    let runs: Vec<_> = events
        .iter()
        .map(|e| match &e.data {
            KvEventData::Stored { parent, blocks, .. } => (
                *parent,
                blocks.iter().map(|b| b.seq_hash).collect::<Vec<_>>(),
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        runs,
        vec![(Some(more[2].sequence), vec![more[3].sequence])],
        "only the one new block is stored"
    );
    assert_eq!(bm.num_cached(), 4);
    bm.check_invariants();

    // The unregistered duplicates are plain memory once released: reused before any cache.
    bm.release(&b[..2]);
    let reused = bm.allocate(2).expect("free");
    assert!(
        bm.take_events().is_empty(),
        "reusing plain memory evicted cache"
    );
    let mut sorted = reused.clone();
    sorted.sort_unstable();
    let mut dups = b[..2].to_vec();
    dups.sort_unstable();
    assert_eq!(sorted, dups);
    bm.check_invariants();
}

#[test]
fn replay_and_dump_after_clear() {
    let bs = 2;
    let mut bm = BlockManager::new(6, bs, WORKER, 3);
    assert_eq!(bm.replay(0), Some(Vec::new()));
    let held_hashes = hashes_of(&[1, 2, 3, 4], bs);
    let held = bm.allocate(2).expect("free");
    bm.commit(&held, &held_hashes, None);
    let other = hashes_of(&[9, 9], bs);
    let gone = bm.allocate(1).expect("free");
    bm.commit(&gone, &other, None);
    bm.release(&gone);
    assert_eq!(bm.last_event_id(), 2);
    bm.clear_cache();
    // Cleared, then the two held blocks announced again (one Stored each, parent first).
    let events = bm.take_events();
    assert_eq!(events.len(), 5);
    assert_eq!(events[2].data, KvEventData::Cleared);
    assert_eq!(bm.cached_hashes().len(), 2);
    assert_eq!(
        bm.replay(2).map(|e| e.len()),
        Some(3),
        "the last 3 are buffered"
    );
    assert_eq!(bm.replay(1), None, "event 2 fell out of the buffer");
    assert_eq!(bm.replay(5), Some(Vec::new()));
    let dump = bm.dump();
    assert_eq!(dump, vec![events[3].data.clone(), events[4].data.clone()]);
    bm.release(&held);
    bm.check_invariants();
    assert_eq!(bm.num_free(), 6);
}
