//! Continuous batching: every step, decide which sequences compute how many tokens, within a
//! token budget (`max_num_batched_tokens`) and a sequence limit (`max_num_seqs`).
//!
//! The rules, in order:
//! 1. Running sequences go first, in priority order: each computes what it has pending (one token
//!    when decoding, the next chunk of its prompt when prefilling). When the KV pool is full, the
//!    lowest-priority running sequence (newest, under FCFS) is preempted: its blocks are released
//!    (they stay in the prefix cache) and it waits again, to be recomputed later.
//! 2. Then, if nothing was preempted this step, waiting sequences are admitted in priority order.
//!    Their cached prefix is reused and skips computation; the rest of the prompt is chunked to
//!    fit the budget. Admission stops at the first sequence that does not fit, so nothing jumps
//!    the queue and nothing starves.
//!
//! A sequence always makes progress when it runs alone: the config guarantees the pool holds a
//! whole `max_model_len` sequence.

mod sequence;

pub use sequence::{SeqId, Sequence, Status};

use crate::config::EngineConfig;
use crate::kv::BlockManager;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use turbine_tokens::BLOCK_HASH_SEED;

/// Sequence ids come from a counter, never from input, so a multiplicative hash spreads them
/// well and costs a fraction of SipHash.
#[derive(Default, Clone, Copy)]
struct SeqIdHasher(u64);

impl Hasher for SeqIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// One sequence's share of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledWork {
    pub seq: SeqId,
    /// Position of the first token computed this step.
    pub start: usize,
    pub num_new: usize,
    /// Whether a token is sampled after this step (the sequence has nothing left pending).
    pub sample: bool,
}

#[derive(Debug, Default)]
pub struct ScheduleOutput {
    pub work: Vec<ScheduledWork>,
    pub preempted: Vec<SeqId>,
}

impl ScheduleOutput {
    pub fn num_batched_tokens(&self) -> usize {
        self.work.iter().map(|w| w.num_new).sum()
    }
}

pub struct Scheduler {
    config: EngineConfig,
    pub blocks: BlockManager,
    seqs: HashMap<SeqId, Sequence, BuildHasherDefault<SeqIdHasher>>,
    waiting: BTreeSet<((i32, u64), SeqId)>,
    /// Sorted by order key.
    running: Vec<SeqId>,
    /// Prompt tokens looked up in the prefix cache, and how many were found.
    pub prefix_queried_tokens: u64,
    pub prefix_hit_tokens: u64,
    pub preemptions: u64,
}

impl Scheduler {
    pub fn new(config: EngineConfig, blocks: BlockManager) -> Self {
        Self {
            config,
            blocks,
            seqs: HashMap::default(),
            waiting: BTreeSet::new(),
            running: Vec::new(),
            prefix_queried_tokens: 0,
            prefix_hit_tokens: 0,
            preemptions: 0,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn add(&mut self, mut seq: Sequence) {
        seq.status = Status::Waiting;
        seq.hash_blocks(seq.tokens.len(), self.config.block_size, BLOCK_HASH_SEED);
        self.waiting.insert((seq.order_key(), seq.id));
        self.seqs.insert(seq.id, seq);
    }

    pub fn get(&self, id: SeqId) -> Option<&Sequence> {
        self.seqs.get(&id)
    }

    pub fn get_mut(&mut self, id: SeqId) -> Option<&mut Sequence> {
        self.seqs.get_mut(&id)
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn is_idle(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Prompt tokens not yet computed, over all sequences.
    pub fn queued_prefill_tokens(&self) -> usize {
        self.seqs
            .values()
            .map(|s| s.prompt_len.saturating_sub(s.num_computed))
            .sum()
    }

    /// Removes a sequence (finished or aborted) and releases its blocks.
    pub fn remove(&mut self, id: SeqId) -> Option<Sequence> {
        let seq = self.seqs.remove(&id)?;
        match seq.status {
            Status::Waiting => {
                self.waiting.remove(&(seq.order_key(), id));
            }
            Status::Running => self.running.retain(|&r| r != id),
        }
        self.blocks.release(&seq.blocks);
        Some(seq)
    }

    pub fn schedule(&mut self) -> ScheduleOutput {
        let mut out = ScheduleOutput::default();
        let mut budget = self.config.max_num_batched_tokens;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let pending = self.seqs[&id].num_pending();
            let num_new = pending.min(budget);
            if !self.config.enable_chunked_prefill && num_new < pending {
                i += 1;
                continue;
            }
            if !self.grow_or_preempt(id, num_new, &mut out.preempted) {
                // `id` itself was preempted; everything after it too.
                break;
            }
            out.work.push(self.work(id, num_new));
            budget -= num_new;
            i += 1;
        }
        if out.preempted.is_empty() {
            self.admit(&mut budget, &mut out);
        }
        out
    }

    fn work(&self, id: SeqId, num_new: usize) -> ScheduledWork {
        let seq = &self.seqs[&id];
        ScheduledWork {
            seq: id,
            start: seq.num_computed,
            num_new,
            sample: seq.num_computed + num_new == seq.tokens.len(),
        }
    }

    /// Makes room for `num_new` more tokens of running sequence `id`, preempting from the back
    /// of the running list. False if `id` itself had to be preempted.
    fn grow_or_preempt(&mut self, id: SeqId, num_new: usize, preempted: &mut Vec<SeqId>) -> bool {
        let needed = self.blocks_needed(&self.seqs[&id], num_new);
        loop {
            if let Some(new_blocks) = self.blocks.allocate(needed) {
                if let Some(seq) = self.seqs.get_mut(&id) {
                    seq.blocks.extend(new_blocks);
                }
                return true;
            }
            let Some(&victim) = self.running.last() else {
                return false;
            };
            self.preempt(victim);
            preempted.push(victim);
            if victim == id {
                return false;
            }
        }
    }

    fn blocks_needed(&self, seq: &Sequence, num_new: usize) -> usize {
        let bs = self.config.block_size;
        (seq.num_computed + num_new)
            .div_ceil(bs)
            .saturating_sub(seq.blocks.len())
    }

    fn preempt(&mut self, id: SeqId) {
        self.running.retain(|&r| r != id);
        let Some(seq) = self.seqs.get_mut(&id) else {
            return;
        };
        self.blocks.release(&seq.blocks);
        seq.blocks.clear();
        seq.num_computed = 0;
        seq.num_committed = 0;
        seq.status = Status::Waiting;
        seq.num_preemptions += 1;
        self.preemptions += 1;
        self.waiting.insert((seq.order_key(), id));
    }

    fn admit(&mut self, budget: &mut usize, out: &mut ScheduleOutput) {
        let bs = self.config.block_size;
        while *budget > 0 && self.running.len() < self.config.max_num_seqs {
            let Some(&(key, id)) = self.waiting.first() else {
                return;
            };
            let seq = &self.seqs[&id];
            // Reuse the cached prefix, but always compute at least the last token: sampling
            // needs its logits.
            let mut cached = self.blocks.cached_prefix(&seq.hashes);
            cached.truncate((seq.tokens.len() - 1) / bs);
            let num_cached_tokens = cached.len() * bs;
            let pending = seq.tokens.len() - num_cached_tokens;
            let num_new = pending.min(*budget);
            if !self.config.enable_chunked_prefill && num_new < pending {
                return;
            }
            let needed = (num_cached_tokens + num_new).div_ceil(bs) - cached.len();
            if needed + self.blocks.count_free(&cached) > self.blocks.num_free() {
                return;
            }
            self.blocks.acquire(&cached);
            let Some(new_blocks) = self.blocks.allocate(needed) else {
                self.blocks.release(&cached);
                return;
            };
            self.waiting.remove(&(key, id));
            let Some(seq) = self.seqs.get_mut(&id) else {
                return;
            };
            if seq.cached_tokens.is_none() {
                seq.cached_tokens = Some(num_cached_tokens);
                self.prefix_queried_tokens += seq.prompt_len as u64;
                self.prefix_hit_tokens += num_cached_tokens as u64;
            }
            seq.num_committed = cached.len();
            seq.blocks = cached;
            seq.blocks.extend(new_blocks);
            seq.num_computed = num_cached_tokens;
            seq.status = Status::Running;
            let at = self
                .running
                .partition_point(|r| self.seqs[r].order_key() < key);
            self.running.insert(at, id);
            out.work.push(self.work(id, num_new));
            *budget -= num_new;
        }
    }

    /// Records that the scheduled work was computed: advances `num_computed` and registers the
    /// blocks that became full in the prefix cache.
    pub fn computed(&mut self, work: &ScheduledWork) {
        let bs = self.config.block_size;
        let Some(seq) = self.seqs.get_mut(&work.seq) else {
            return;
        };
        seq.num_computed = (work.start + work.num_new).min(seq.tokens.len());
        seq.hash_blocks(seq.num_computed, bs, BLOCK_HASH_SEED);
        let full = (seq.num_computed / bs)
            .min(seq.blocks.len())
            .min(seq.hashes.len());
        if full > seq.num_committed {
            let from = seq.num_committed;
            let parent = from.checked_sub(1).map(|p| seq.hashes[p].sequence);
            self.blocks
                .commit(&seq.blocks[from..full], &seq.hashes[from..full], parent);
            seq.num_committed = full;
        }
    }
}
