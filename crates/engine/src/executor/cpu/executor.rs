//! The CPU executor: the engine's batched steps on a [`Model`] with a paged [`KvCache`].

use super::forward::{Scratch, TokenRow, forward};
use super::ggml::{Order, Width};
use super::kv_cache::{KvCache, KvElem, KvType};
use super::model::Model;
use crate::executor::{Batch, Executor, ExecutorError, Samples, StepOutput};
use half::f16;
use std::sync::Arc;

pub struct CpuExecutor {
    model: Arc<Model>,
    cache: Cache,
    /// The llama.cpp build whose attention and SiLU arithmetic is reproduced.
    width: Width,
    scratch: Scratch,
}

/// The KV cache in the model's [`KvType`].
enum Cache {
    F32(KvCache<f32>),
    F16(KvCache<f16>),
}

impl CpuExecutor {
    pub fn new(model: Arc<Model>, num_blocks: usize, block_size: usize) -> Self {
        let cache = match model.kv_type {
            KvType::F32 => Cache::F32(cache_for(&model, num_blocks, block_size)),
            KvType::F16 => Cache::F16(cache_for(&model, num_blocks, block_size)),
        };
        Self {
            model,
            cache,
            width: Width::native(),
            scratch: Scratch::default(),
        }
    }

    /// Reproduces the `width` build of llama.cpp instead of the one this CPU would get (to check
    /// against a reference made on another machine).
    pub fn with_width(mut self, width: Width) -> Self {
        self.width = width;
        self
    }

    /// The forward pass on whichever cache type the model uses, run on a rayon worker thread: the
    /// pass has ~10 parallel sections per layer, and one started from a worker is handed to the
    /// other workers directly, where one started from outside the pool waits for a thread to be
    /// woken for it (which dominated one-token steps).
    fn forward(&mut self, rows: &[TokenRow<'_>], logit_rows: &[usize]) -> Vec<f32> {
        let (model, width, scratch) = (&self.model, self.width, &mut self.scratch);
        rayon::scope(|_| match &mut self.cache {
            Cache::F32(cache) => forward(model, cache, rows, logit_rows, width, scratch),
            Cache::F16(cache) => forward(model, cache, rows, logit_rows, width, scratch),
        })
    }
}

fn cache_for<T: KvElem>(model: &Model, num_blocks: usize, block_size: usize) -> KvCache<T> {
    let c = &model.config;
    KvCache::new(c.layers, num_blocks, block_size, c.kv_heads, c.head_dim)
}

impl CpuExecutor {
    /// The logits after every position of `tokens`, scored as one sequence from position 0 in
    /// the cache's first blocks (`tokens.len()` × vocab). For evaluation: it overwrites those
    /// blocks, so use it on an executor the engine is not serving from.
    pub fn score(&mut self, tokens: &[u32], block_size: usize) -> Result<Vec<f32>, ExecutorError> {
        let vocab = self.model.config.vocab;
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ExecutorError::Failed(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let table: Vec<u32> = (0..tokens.len().div_ceil(block_size.max(1)) as u32).collect();
        let rows: Vec<TokenRow<'_>> = tokens
            .iter()
            .enumerate()
            .map(|(pos, &token)| TokenRow {
                token,
                pos,
                block_table: &table,
                order: Order::for_new_tokens(tokens.len()),
            })
            .collect();
        let all: Vec<usize> = (0..rows.len()).collect();
        Ok(self.forward(&rows, &all))
    }
}

impl Executor for CpuExecutor {
    fn execute(&mut self, batch: &Batch<'_>) -> Result<StepOutput, ExecutorError> {
        let vocab = self.model.config.vocab;
        let mut rows = Vec::with_capacity(batch.num_tokens());
        let mut logit_rows = Vec::new();
        for seq in &batch.seqs {
            let order = Order::for_new_tokens(seq.new_tokens.len());
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
                    order,
                });
            }
            if seq.sample {
                logit_rows.push(rows.len() - 1);
            }
        }
        let logits = self.forward(&rows, &logit_rows);
        Ok(StepOutput {
            samples: Samples::Logits {
                vocab_size: vocab,
                rows: logits,
            },
            simulated: None,
        })
    }
}
