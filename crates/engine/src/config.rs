//! How an engine is sized and scheduled.

/// Limits of one engine. Defaults suit a small model on one machine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// KV blocks in the pool.
    pub num_blocks: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Most tokens computed in one step (prefill chunks plus decode tokens).
    pub max_num_batched_tokens: usize,
    /// Most sequences running at once.
    pub max_num_seqs: usize,
    /// Split long prompts across steps so decode never waits behind a whole prefill.
    pub enable_chunked_prefill: bool,
    /// Longest sequence (prompt plus output), in tokens.
    pub max_model_len: usize,
    /// Recent KV events kept for replay to routers that missed some.
    pub event_replay_capacity: usize,
    pub policy: SchedulingPolicy,
}

/// The order in which waiting requests are admitted and running ones preempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulingPolicy {
    /// First come, first served; request priorities are ignored.
    #[default]
    Fcfs,
    /// Lower `priority` first, then arrival order; the highest value is preempted first.
    Priority,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            num_blocks: 4096,
            block_size: 16,
            max_num_batched_tokens: 2048,
            max_num_seqs: 256,
            enable_chunked_prefill: true,
            max_model_len: 8192,
            event_replay_capacity: 10_000,
            policy: SchedulingPolicy::Fcfs,
        }
    }
}

impl EngineConfig {
    /// Rejects configurations that could never run some admissible request.
    pub fn validate(&self) -> Result<(), String> {
        if self.block_size == 0
            || self.num_blocks == 0
            || self.max_num_seqs == 0
            || self.max_num_batched_tokens == 0
        {
            return Err(
                "block size, block count, max_num_seqs and max_num_batched_tokens must be positive"
                    .into(),
            );
        }
        let capacity = self.num_blocks * self.block_size;
        if capacity < self.max_model_len {
            return Err(format!(
                "the KV cache holds {capacity} tokens ({} blocks of {}), less than one sequence of max_model_len {}",
                self.num_blocks, self.block_size, self.max_model_len
            ));
        }
        if !self.enable_chunked_prefill && self.max_num_batched_tokens < self.max_model_len {
            return Err(format!(
                "without chunked prefill, max_num_batched_tokens ({}) must be at least max_model_len ({})",
                self.max_num_batched_tokens, self.max_model_len
            ));
        }
        Ok(())
    }
}
