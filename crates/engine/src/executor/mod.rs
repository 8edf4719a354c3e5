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
    /// Set when the executor may pick this sequence's token itself (see [`Draw`]); `None` when
    /// the engine needs the logits (penalties).
    pub draw: Option<Draw>,
}

/// Everything needed to sample a sequence's next token from its logits without the engine:
/// temperature (0: greedy), top-k (0: off), top-p (1: off), min-p (0: off), then one uniform
/// draw `u` in [0, 1), taken from the sequence's own random stream by the engine, so a seeded
/// request consumes its stream the same way whoever samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub u: f64,
}

impl Draw {
    /// The argmax, ties to the lowest id.
    pub const GREEDY: Draw = Draw {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        u: 0.0,
    };
}

impl SeqStep<'_> {
    /// Whether the step yields a token for this sequence: it asks for one and computes at least
    /// one position.
    pub fn sampled(&self) -> bool {
        self.sample && !self.new_tokens.is_empty()
    }
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
    /// Tokens chosen by the executor itself: the mock executor's, or the CUDA executor's draws
    /// on the GPU when every sampled sequence has a [`Draw`].
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
