//! A fixed pool of KV blocks with reference counts and a prefix cache.
//!
//! Invariants (checked by `check_invariants` in tests):
//! - a block is in the free list exactly when its reference count is 0;
//! - `cached` maps a sequence hash to the one block that holds it, and a block has a hash exactly
//!   when `cached` points at it;
//! - free blocks with a hash are reusable cache: a request whose prefix matches takes them back
//!   (ref 0 → 1, out of the free list); free blocks are reused least recently released first,
//!   and a request's blocks are released last block first, so leaves go before their parents;
//! - every change to the cached set is recorded as a KV event, so replaying the event stream
//!   rebuilds exactly the cached set.

use super::event_log::EventLog;
use super::free_list::FreeList;
use std::collections::HashMap;
use turbine_protocols::{InstanceId, KvEvent, KvEventData, KvReplay, StorageTier, StoredBlock};
use turbine_tokens::BlockHash;

pub type BlockId = u32;

#[derive(Clone, Copy)]
struct CachedHash {
    hash: BlockHash,
    parent: Option<u64>,
}

pub struct BlockManager {
    block_size: usize,
    ref_counts: Vec<u32>,
    hashes: Vec<Option<CachedHash>>,
    free: FreeList,
    cached: HashMap<u64, BlockId>,
    events: EventLog,
}

impl BlockManager {
    /// `replay_capacity`: how many recent KV events are kept for replay.
    pub fn new(
        num_blocks: usize,
        block_size: usize,
        worker_id: InstanceId,
        replay_capacity: usize,
    ) -> Self {
        let num_blocks = num_blocks.min(u32::MAX as usize - 1);
        Self {
            block_size: block_size.max(1),
            ref_counts: vec![0; num_blocks],
            hashes: vec![None; num_blocks],
            free: FreeList::full(num_blocks),
            cached: HashMap::new(),
            events: EventLog::new(worker_id, replay_capacity),
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.ref_counts.len()
    }

    /// Blocks that can be handed out now (empty or holding reusable cache).
    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    /// Blocks held by requests.
    pub fn num_active(&self) -> usize {
        self.num_blocks() - self.num_free()
    }

    pub fn num_cached(&self) -> usize {
        self.cached.len()
    }

    /// The blocks holding the longest cached prefix of `hashes`.
    pub fn cached_prefix(&self, hashes: &[BlockHash]) -> Vec<BlockId> {
        hashes
            .iter()
            .map_while(|h| self.cached.get(&h.sequence).copied())
            .collect()
    }

    /// How many of `cached` (a [`Self::cached_prefix`] result) are free now, i.e. would stop being
    /// allocatable once taken.
    pub fn count_free(&self, blocks: &[BlockId]) -> usize {
        blocks
            .iter()
            .filter(|&&b| self.ref_counts[b as usize] == 0)
            .count()
    }

    /// Takes a reference on blocks found by [`Self::cached_prefix`].
    pub fn acquire(&mut self, blocks: &[BlockId]) {
        for &block in blocks {
            let count = &mut self.ref_counts[block as usize];
            if *count == 0 {
                self.free.remove(block);
            }
            *count += 1;
        }
    }

    /// Hands out `n` blocks (reference count 1), evicting the cache they held; `None`, changing
    /// nothing, if fewer than `n` are free.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<BlockId>> {
        if n > self.free.len() {
            return None;
        }
        let mut evicted = Vec::new();
        let blocks = (0..n)
            .filter_map(|_| self.free.pop_front())
            .inspect(|&block| {
                self.ref_counts[block as usize] = 1;
                if let Some(old) = self.hashes[block as usize].take() {
                    self.cached.remove(&old.hash.sequence);
                    evicted.push(old.hash.sequence);
                }
            })
            .collect();
        if !evicted.is_empty() {
            self.events.record(KvEventData::Removed {
                seq_hashes: evicted,
                tier: StorageTier::Device,
            });
        }
        Some(blocks)
    }

    /// Registers newly filled blocks as cache: `blocks[i]` holds the block hashed `hashes[i]`, and
    /// the block before `blocks[0]` has sequence hash `parent`. A hash another block already holds
    /// (two requests computed the same prefix at once) is left unregistered; that block is freed
    /// as plain memory later.
    pub fn commit(&mut self, blocks: &[BlockId], hashes: &[BlockHash], parent: Option<u64>) {
        let mut stored = Vec::new();
        let mut stored_parent = parent;
        let mut previous = parent;
        for (&block, &hash) in blocks.iter().zip(hashes) {
            let fresh =
                self.hashes[block as usize].is_none() && !self.cached.contains_key(&hash.sequence);
            if fresh {
                self.hashes[block as usize] = Some(CachedHash {
                    hash,
                    parent: previous,
                });
                self.cached.insert(hash.sequence, block);
                stored.push(StoredBlock {
                    seq_hash: hash.sequence,
                    local_hash: hash.local,
                });
            } else {
                self.flush_stored(stored_parent, &mut stored);
                stored_parent = Some(hash.sequence);
            }
            previous = Some(hash.sequence);
        }
        self.flush_stored(stored_parent, &mut stored);
    }

    fn flush_stored(&mut self, parent: Option<u64>, stored: &mut Vec<StoredBlock>) {
        if !stored.is_empty() {
            self.events.record(KvEventData::Stored {
                parent,
                blocks: std::mem::take(stored),
                tier: StorageTier::Device,
            });
        }
    }

    /// Drops one reference from each block; the last block is released first so that, among
    /// blocks freed together, leaves are reused before their parents.
    pub fn release(&mut self, blocks: &[BlockId]) {
        for &block in blocks.iter().rev() {
            let count = &mut self.ref_counts[block as usize];
            debug_assert!(*count > 0, "block {block} released more often than taken");
            if *count == 0 {
                continue;
            }
            *count -= 1;
            if *count == 0 {
                if self.hashes[block as usize].is_some() {
                    self.free.push_back(block);
                } else {
                    // Uncached memory is worth nothing: reuse it before any cache.
                    self.free.push_front(block);
                }
            }
        }
    }

    /// Forgets every cached prefix that no request holds; in-use blocks keep theirs and are
    /// announced again after the `Cleared` event.
    pub fn clear_cache(&mut self) {
        for block in 0..self.num_blocks() {
            if self.ref_counts[block] == 0
                && let Some(old) = self.hashes[block].take()
            {
                self.cached.remove(&old.hash.sequence);
            }
        }
        self.events.record(KvEventData::Cleared);
        for event in self.dump() {
            self.events.record(event);
        }
    }

    /// KV events recorded since the last call.
    pub fn take_events(&mut self) -> Vec<KvEvent> {
        self.events.take_pending()
    }

    pub fn last_event_id(&self) -> u64 {
        self.events.last_event_id()
    }

    /// Events after `after_id`, if still buffered.
    pub fn replay(&self, after_id: u64) -> Option<Vec<KvEvent>> {
        self.events.replay(after_id)
    }

    /// What a subscriber that saw events up to `after_id` needs to catch up: the missed events if
    /// still buffered, else the whole cache.
    pub fn catch_up(&self, after_id: u64) -> KvReplay {
        match self.replay(after_id) {
            Some(events) => KvReplay::Events { events },
            None => KvReplay::Snapshot {
                event_id: self.last_event_id(),
                stored: self.dump(),
            },
        }
    }

    /// The whole cached set as `Stored` events, each parent before its children.
    pub fn dump(&self) -> Vec<KvEventData> {
        let mut children: HashMap<Option<u64>, Vec<&CachedHash>> = HashMap::new();
        for cached in self.hashes.iter().flatten() {
            children.entry(cached.parent).or_default().push(cached);
        }
        // Roots are blocks whose parent is not cached (evicted, or the first block).
        let mut stack: Vec<&CachedHash> = self
            .hashes
            .iter()
            .flatten()
            .filter(|c| c.parent.is_none_or(|p| !self.cached.contains_key(&p)))
            .collect();
        let mut out = Vec::with_capacity(self.cached.len());
        while let Some(cached) = stack.pop() {
            out.push(KvEventData::Stored {
                parent: cached.parent,
                blocks: vec![StoredBlock {
                    seq_hash: cached.hash.sequence,
                    local_hash: cached.hash.local,
                }],
                tier: StorageTier::Device,
            });
            if let Some(kids) = children.get(&Some(cached.hash.sequence)) {
                stack.extend(kids.iter().copied());
            }
        }
        out
    }

    /// Panics if an invariant of this module does not hold. For tests.
    pub fn check_invariants(&self) {
        for block in 0..self.num_blocks() {
            assert_eq!(
                self.ref_counts[block] == 0,
                self.free.contains(block as u32),
                "block {block} free-list membership"
            );
            if let Some(cached) = self.hashes[block] {
                assert_eq!(
                    self.cached.get(&cached.hash.sequence),
                    Some(&(block as u32)),
                    "block {block} cache entry"
                );
            }
        }
        assert_eq!(
            self.cached.len(),
            self.hashes.iter().flatten().count(),
            "cache map size"
        );
    }

    /// The sequence hashes cached now. For tests.
    pub fn cached_hashes(&self) -> std::collections::HashSet<u64> {
        self.cached.keys().copied().collect()
    }
}
