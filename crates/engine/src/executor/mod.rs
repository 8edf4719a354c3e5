//! Executors run one batched step of the model: prefill chunks and decode tokens of many
//! sequences together, reading and writing paged KV through each sequence's block table.
//! `mock` simulates the time a GPU would take and emits deterministic tokens; the CPU and CUDA
//! executors implement the same trait with real math.

pub mod cpu;
pub mod cuda;
pub mod mock;
pub mod timing;

use crate::kv::BlockId;
use std::time::Duration;

/// One sequence's part of a step.
#[derive(Debug, Clone)]
pub struct SeqStep<'a> {
    /// Positions `start..start + new_tokens.len()` are computed this step; KV of positions
    /// before `start` is already in the cache.
    pub start: usize,
    pub new_tokens: &'a [u32],
    /// Where the sequence's KV lives: position `p` is in block `block_table[p / block_size]`,
    /// slot `p % block_size`.
    pub block_table: &'a [BlockId],
    /// Whether the step must produce this sequence's next-token distribution.
    pub sample: bool,
    /// The whole sequence so far (prompt and generated), for executors that need it.
    pub all_tokens: &'a [u32],
    pub prompt_len: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Batch<'a> {
    pub seqs: Vec<SeqStep<'a>>,
}

impl Batch<'_> {
    pub fn num_tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.new_tokens.len()).sum()
    }
}

/// What a step produced for the sequences with `sample` set, in batch order.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    /// One row of `vocab_size` logits per sampled sequence; the engine's sampler picks tokens.
    Logits { vocab_size: usize, rows: Vec<f32> },
    /// Tokens chosen by the executor itself (the mock executor).
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    pub samples: Samples,
    /// Simulated time of the step (mock executor); the engine sleeps for it in real-time mode and
    /// advances its clock in virtual-time mode. `None` for executors that really computed.
    pub simulated: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("executor failed: {0}")]
    Failed(String),
}

pub trait Executor: Send {
    fn execute(&mut self, batch: &Batch<'_>) -> Result<StepOutput, ExecutorError>;
}
