//! The CPU executor: the engine's batched steps on a [`Model`] with a paged [`KvCache`].

use super::forward::{Scratch, TokenRow, forward};
use super::kv_cache::KvCache;
use super::model::Model;
use crate::executor::{Batch, Executor, ExecutorError, Samples, StepOutput};
use std::sync::Arc;

pub struct CpuExecutor {
    model: Arc<Model>,
    cache: KvCache,
    scratch: Scratch,
}

impl CpuExecutor {
    pub fn new(model: Arc<Model>, num_blocks: usize, block_size: usize) -> Self {
        let c = &model.config;
        let cache = KvCache::new(c.layers, num_blocks, block_size, c.kv_heads, c.head_dim);
        Self {
            model,
            cache,
            scratch: Scratch::default(),
        }
    }
}

impl Executor for CpuExecutor {
    fn execute(&mut self, batch: &Batch<'_>) -> Result<StepOutput, ExecutorError> {
        let vocab = self.model.config.vocab;
        let mut rows = Vec::with_capacity(batch.num_tokens());
        let mut logit_rows = Vec::new();
        for seq in &batch.seqs {
            for (k, &token) in seq.new_tokens.iter().enumerate() {
                if token as usize >= vocab {
                    return Err(ExecutorError::Failed(format!(
                        "token id {token} is outside the model's vocabulary of {vocab}"
                    )));
                }
                rows.push(TokenRow {
                    token,
                    pos: seq.start + k,
                    block_table: seq.block_table,
                });
            }
            if seq.sample {
                logit_rows.push(rows.len() - 1);
            }
        }
        let logits = forward(
            &self.model,
            &mut self.cache,
            &rows,
            &logit_rows,
            &mut self.scratch,
        );
        Ok(StepOutput {
            samples: Samples::Logits {
                vocab_size: vocab,
                rows: logits,
            },
            simulated: None,
        })
    }
}
