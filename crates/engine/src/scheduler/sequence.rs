//! One request inside the engine: its tokens, how many of them have KV in the cache, and the
//! blocks that hold that KV.
//!
//! Invariants: `num_computed <= tokens.len()`; `blocks.len() * block_size >= num_computed`;
//! `hashes` covers every full block of `tokens` up to `num_computed` (it may cover more, computed
//! before a preemption); the first `num_committed` blocks are registered in the prefix cache.

use crate::kv::BlockId;
use crate::sampler::SequenceSampler;
use turbine_protocols::{PreprocessedRequest, StopConditions};
use turbine_tokens::{BlockHash, hash_block};

/// Engine-internal id of a sequence.
pub type SeqId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Waiting,
    Running,
}

pub struct Sequence {
    pub id: SeqId,
    pub request_id: String,
    /// Prompt then generated tokens.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Tokens whose KV is computed and stored in `blocks`.
    pub num_computed: usize,
    pub blocks: Vec<BlockId>,
    pub hashes: Vec<BlockHash>,
    pub num_committed: usize,
    pub stop: StopConditions,
    pub sampler: SequenceSampler,
    /// Lower runs first; ties go to the earlier arrival.
    pub priority: i32,
    pub arrival: u64,
    pub status: Status,
    /// Prompt tokens served from the prefix cache when the sequence was first scheduled.
    pub cached_tokens: Option<usize>,
    pub num_preemptions: u32,
}

impl Sequence {
    pub fn new(
        id: SeqId,
        request: PreprocessedRequest,
        priority: i32,
        arrival: u64,
        fallback_seed: u64,
    ) -> Self {
        let sampler =
            SequenceSampler::new(request.sampling.clone(), &request.token_ids, fallback_seed);
        Self {
            id,
            request_id: request.request_id,
            prompt_len: request.token_ids.len(),
            tokens: request.token_ids,
            num_computed: 0,
            blocks: Vec::new(),
            hashes: Vec::new(),
            num_committed: 0,
            stop: request.stop,
            sampler,
            priority,
            arrival,
            status: Status::Waiting,
            cached_tokens: None,
            num_preemptions: 0,
        }
    }

    pub fn num_generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Tokens still to compute before the next token can be sampled.
    pub fn num_pending(&self) -> usize {
        self.tokens.len() - self.num_computed
    }

    /// Extends `hashes` over every full block of `tokens[..upto]`.
    pub fn hash_blocks(&mut self, upto: usize, block_size: usize, seed: u64) {
        while (self.hashes.len() + 1) * block_size <= upto {
            let start = self.hashes.len() * block_size;
            let parent = self.hashes.last().map(|h| h.sequence);
            let hash = hash_block(parent, &self.tokens[start..start + block_size], seed);
            self.hashes.push(hash);
        }
    }

    /// The scheduling order key: smaller runs first and is preempted last.
    pub fn order_key(&self) -> (i32, u64) {
        (self.priority, self.arrival)
    }
}
