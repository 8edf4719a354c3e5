//! The mock executor: no math. Each step takes the time the timing model says, and each sampled
//! token is deterministic: the `i`-th generated token is the prompt's `i mod prompt_len`-th token,
//! so outputs are checkable and survive preemption and recomputation unchanged.

use super::timing::{StepShape, TimingProfile};
use super::{Batch, Executor, ExecutorError, Samples, StepOutput};

pub struct MockExecutor {
    profile: TimingProfile,
}

impl MockExecutor {
    pub fn new(profile: TimingProfile) -> Self {
        Self { profile }
    }

    /// The shape the timing model prices.
    pub fn shape(batch: &Batch<'_>) -> StepShape {
        let mut shape = StepShape::default();
        for seq in &batch.seqs {
            let new = seq.new_tokens.len() as f64;
            shape.new_tokens += new;
            shape.attention_pairs += new * (seq.start as f64 + new / 2.0);
            shape.context_tokens += (seq.start + seq.new_tokens.len()) as f64;
        }
        shape
    }
}

/// The token the mock generates next: generated token `g` is `prompt[g % prompt_len]`.
fn next_token(all_tokens: &[u32], prompt_len: usize) -> u32 {
    if prompt_len == 0 || prompt_len > all_tokens.len() {
        return 0;
    }
    all_tokens[(all_tokens.len() - prompt_len) % prompt_len]
}

impl Executor for MockExecutor {
    fn execute(&mut self, batch: &Batch<'_>) -> Result<StepOutput, ExecutorError> {
        let tokens = batch
            .seqs
            .iter()
            .filter(|s| s.sample)
            .map(|s| next_token(s.all_tokens, s.prompt_len))
            .collect();
        Ok(StepOutput {
            samples: Samples::Tokens(tokens),
            simulated: Some(self.profile.step_time(Self::shape(batch))),
        })
    }
}
