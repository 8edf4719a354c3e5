//! The KV indexer: which workers hold which KV blocks, and for a prompt, how many of its leading
//! blocks each worker already holds.
//!
//! A block's sequence hash names the block *and its whole prefix* (DESIGN.md, "Block hashing"), so
//! the prefix tree over blocks is kept as one map from sequence hash to the set of workers that
//! hold that node: a node's parent is implied by the hash chain and needs no pointer, and a
//! worker's path through the tree is the run of the prompt's hashes it holds from the start.
//!
//! Invariants:
//! - An entry exists exactly while at least one worker holds the block; its holder set is sorted
//!   and has no duplicates (`Holders`).
//! - `find_matches` counts, per worker, the blocks it holds from the prompt's first block up to
//!   its first missing one, the prefix an engine's prefix cache would reuse. It stops as soon as
//!   no worker is still matching, so a miss costs one lookup, and it jumps ahead over runs every
//!   matching worker holds (exact as long as a worker holding a block holds its prefix).
//! - The map is split into shards, each behind its own read-write lock: lookups take read locks
//!   one block at a time and run concurrently with each other and with writes to other shards;
//!   a write holds one shard's lock for one block.
//! - Workers get dense slots (`Slot`) on first sight; a slot is reused only after every block of
//!   its previous worker was removed.

mod holders;

pub use holders::{Holders, Slot};

use foldhash::fast::RandomState;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use turbine_protocols::{InstanceId, KvEventData, StorageTier};

const SHARDS: usize = 16;

/// How far `find_matches` looks ahead (see there).
const JUMP: usize = 16;

/// Per worker, how many of a prompt's leading blocks it holds (only workers holding at least one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlapScores {
    pub scores: Vec<(InstanceId, u32)>,
}

impl OverlapScores {
    pub fn get(&self, worker: InstanceId) -> u32 {
        self.scores
            .iter()
            .find(|(w, _)| *w == worker)
            .map_or(0, |(_, d)| *d)
    }

    pub fn best(&self) -> u32 {
        self.scores.iter().map(|(_, d)| *d).max().unwrap_or(0)
    }
}

/// A seeded hasher keyed per process: the keys are derived from user prompts, so a fixed
/// function would let a client aim many blocks at one bucket.
type BlockMap = HashMap<u64, Holders, RandomState>;

#[derive(Default)]
struct Workers {
    slot_of: HashMap<InstanceId, Slot>,
    id_of: Vec<Option<InstanceId>>,
    blocks: Vec<u64>,
    free: Vec<Slot>,
}

impl Workers {
    fn slot(&mut self, worker: InstanceId) -> Slot {
        if let Some(&slot) = self.slot_of.get(&worker) {
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.id_of.push(None);
                self.blocks.push(0);
                (self.id_of.len() - 1) as Slot
            }
        };
        self.id_of[slot as usize] = Some(worker);
        self.blocks[slot as usize] = 0;
        self.slot_of.insert(worker, slot);
        slot
    }
}

pub struct KvIndexer {
    shards: Box<[RwLock<BlockMap>]>,
    workers: RwLock<Workers>,
    /// Entries over all shards.
    entries: AtomicUsize,
}

impl Default for KvIndexer {
    fn default() -> Self {
        Self::new()
    }
}

impl KvIndexer {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(BlockMap::default()))
                .collect(),
            workers: RwLock::new(Workers::default()),
            entries: AtomicUsize::new(0),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<BlockMap> {
        &self.shards[(hash >> 60) as usize % SHARDS]
    }

    /// Applies one event's data for `worker`. Only the device tier is indexed: that is what a
    /// request routed there reuses without a transfer.
    pub fn apply(&self, worker: InstanceId, data: &KvEventData) {
        match data {
            KvEventData::Stored { blocks, tier, .. } if *tier == StorageTier::Device => {
                self.store(worker, blocks.iter().map(|b| b.seq_hash))
            }
            KvEventData::Removed { seq_hashes, tier } if *tier == StorageTier::Device => {
                self.remove(worker, seq_hashes.iter().copied())
            }
            KvEventData::Cleared => self.clear(worker),
            _ => {}
        }
    }

    /// Records that `worker` holds these blocks (already-held ones are left as they are).
    pub fn store(&self, worker: InstanceId, seq_hashes: impl IntoIterator<Item = u64>) {
        let slot = self.workers.write().slot(worker);
        let mut added = 0;
        for hash in seq_hashes {
            let mut shard = self.shard(hash).write();
            match shard.get_mut(&hash) {
                Some(holders) => added += u64::from(holders.insert(slot)),
                None => {
                    shard.insert(hash, Holders::One(slot));
                    self.entries.fetch_add(1, Ordering::Relaxed);
                    added += 1;
                }
            }
        }
        self.workers.write().blocks[slot as usize] += added;
    }

    /// Records that `worker` no longer holds these blocks (unknown ones are ignored).
    pub fn remove(&self, worker: InstanceId, seq_hashes: impl IntoIterator<Item = u64>) {
        let Some(slot) = self.workers.read().slot_of.get(&worker).copied() else {
            return;
        };
        let mut removed = 0;
        for hash in seq_hashes {
            let mut shard = self.shard(hash).write();
            if let Some(holders) = shard.remove(&hash) {
                let (was, rest) = holders.remove(slot);
                removed += u64::from(was);
                match rest {
                    Some(rest) => {
                        shard.insert(hash, rest);
                    }
                    None => {
                        self.entries.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let mut workers = self.workers.write();
        let count = &mut workers.blocks[slot as usize];
        *count = count.saturating_sub(removed);
    }

    /// Drops every block of `worker`; it stays known. Walks the whole index: for rare events
    /// (a worker's cache reset, a resync), not for the request path.
    pub fn clear(&self, worker: InstanceId) {
        let Some(slot) = self.workers.read().slot_of.get(&worker).copied() else {
            return;
        };
        self.drop_slot(slot);
        self.workers.write().blocks[slot as usize] = 0;
    }

    /// Drops `worker` and its blocks; its slot becomes free.
    pub fn remove_worker(&self, worker: InstanceId) {
        let Some(slot) = self.workers.read().slot_of.get(&worker).copied() else {
            return;
        };
        self.drop_slot(slot);
        let mut workers = self.workers.write();
        workers.slot_of.remove(&worker);
        workers.id_of[slot as usize] = None;
        workers.blocks[slot as usize] = 0;
        workers.free.push(slot);
    }

    fn drop_slot(&self, slot: Slot) {
        for shard in self.shards.iter() {
            let mut shard = shard.write();
            let held: Vec<u64> = shard
                .iter()
                .filter(|(_, h)| h.contains(slot))
                .map(|(&k, _)| k)
                .collect();
            for hash in held {
                if let Some(holders) = shard.remove(&hash) {
                    match holders.remove(slot) {
                        (_, Some(rest)) => {
                            shard.insert(hash, rest);
                        }
                        (_, None) => {
                            self.entries.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }

    /// For each worker, the number of leading blocks of `seq_hashes` it holds.
    ///
    /// Jump search: from a run confirmed for every still-matching worker, look `JUMP` blocks
    /// ahead; if all of them hold that block, the run extends to it without visiting the blocks
    /// in between (engines evict a block's descendants before the block itself, so a worker
    /// holding a block holds its prefix). Otherwise the blocks in between are visited one by
    /// one to find where each worker's run ends. A deep hit costs `depth / JUMP` lookups.
    pub fn find_matches(&self, seq_hashes: &[u64]) -> OverlapScores {
        let Some(&first) = seq_hashes.first() else {
            return OverlapScores::default();
        };
        let mut active: Vec<Slot> = match self.shard(first).read().get(&first) {
            Some(holders) => holders.iter().collect(),
            None => return OverlapScores::default(),
        };
        let mut ended: Vec<(Slot, u32)> = Vec::new();
        // Every slot in `active` holds blocks `0..=confirmed`.
        let mut confirmed = 0;
        let last = seq_hashes.len() - 1;
        while !active.is_empty() && confirmed < last {
            let ahead = (confirmed + JUMP).min(last);
            let all_hold = self.with_holders(seq_hashes[ahead], |holders| {
                holders.is_some_and(|h| h.len() >= active.len() && covers(h, &active))
            });
            if !all_hold {
                for (at, &hash) in seq_hashes
                    .iter()
                    .enumerate()
                    .take(ahead + 1)
                    .skip(confirmed + 1)
                {
                    self.with_holders(hash, |holders| {
                        active.retain(|&slot| {
                            let keep = holders.is_some_and(|h| h.contains(slot));
                            if !keep {
                                ended.push((slot, at as u32));
                            }
                            keep
                        })
                    });
                    if active.is_empty() {
                        break;
                    }
                }
            }
            confirmed = ahead;
        }
        let depth = confirmed as u32 + 1;
        ended.extend(active.iter().map(|&slot| (slot, depth)));
        let workers = self.workers.read();
        let scores = ended
            .into_iter()
            .filter_map(|(slot, depth)| {
                let id = (*workers.id_of.get(slot as usize)?)?;
                Some((id, depth))
            })
            .collect();
        OverlapScores { scores }
    }

    fn with_holders<T>(&self, hash: u64, f: impl FnOnce(Option<&Holders>) -> T) -> T {
        f(self.shard(hash).read().get(&hash))
    }

    /// Blocks indexed (distinct sequence hashes).
    pub fn num_blocks(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Blocks `worker` holds.
    pub fn worker_blocks(&self, worker: InstanceId) -> u64 {
        let workers = self.workers.read();
        workers
            .slot_of
            .get(&worker)
            .map_or(0, |&s| workers.blocks[s as usize])
    }

    /// Workers with a slot (seen in a store, not removed since).
    pub fn workers(&self) -> Vec<InstanceId> {
        let mut ids: Vec<InstanceId> = self.workers.read().slot_of.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Whether `worker` holds the block `seq_hash` (for tests and checks).
    pub fn holds(&self, worker: InstanceId, seq_hash: u64) -> bool {
        let Some(slot) = self.workers.read().slot_of.get(&worker).copied() else {
            return false;
        };
        self.shard(seq_hash)
            .read()
            .get(&seq_hash)
            .is_some_and(|h| h.contains(slot))
    }
}

/// Whether every slot of `active` (sorted) is in `holders` (sorted): one merge pass.
fn covers(holders: &Holders, active: &[Slot]) -> bool {
    let mut held = holders.iter();
    active
        .iter()
        .all(|&slot| held.by_ref().find(|&h| h >= slot) == Some(slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: InstanceId = InstanceId(1);
    const B: InstanceId = InstanceId(2);

    #[test]
    fn overlap_is_the_run_of_leading_blocks_each_worker_holds() {
        let index = KvIndexer::new();
        index.store(A, [10, 11, 12, 13]);
        index.store(B, [10, 11, 20]);
        let scores = index.find_matches(&[10, 11, 12, 13, 14]);
        assert_eq!(scores.get(A), 4);
        assert_eq!(scores.get(B), 2);
        assert_eq!(index.find_matches(&[10, 11, 20]).get(B), 3);
        assert_eq!(index.find_matches(&[99, 10]).scores, vec![]);
        index.remove(A, [11]);
        let scores = index.find_matches(&[10, 11, 12, 13]);
        assert_eq!((scores.get(A), scores.get(B)), (1, 2));
        assert_eq!(index.worker_blocks(A), 3);
        assert_eq!(index.num_blocks(), 5);
    }

    #[test]
    fn clearing_and_removing_workers_drop_all_their_blocks() {
        let index = KvIndexer::new();
        index.store(A, [1, 2, 3]);
        index.store(B, [1, 2]);
        index.clear(A);
        assert_eq!(index.worker_blocks(A), 0);
        assert_eq!(index.find_matches(&[1, 2, 3]).scores, vec![(B, 2)]);
        index.remove_worker(B);
        assert_eq!(index.num_blocks(), 0);
        assert_eq!(index.workers(), vec![A]);
        let c = InstanceId(3);
        index.store(c, [5]);
        assert_eq!(index.find_matches(&[5]).scores, vec![(c, 1)]);
    }
}
