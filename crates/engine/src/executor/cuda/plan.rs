//! A step's host-side metadata, checked and packed into one buffer for one upload: token ids,
//! positions, KV slots, each token's sequence, the rows to sample, the work lists of the two
//! attention kernels (decode tokens; prefill tiles of up to 64 tokens) and the block tables.
//! Every index the kernels follow is validated here, so a bad batch is an error, never a wild
//! write. A CUDA graph's step is padded to the graph's batch and table width (`StepPlan::padded`).

use crate::executor::Batch;

/// Tokens of one tile of `prefill_attention`'s work list (QT in the source).
pub const PREFILL_TILE: usize = 64;

#[derive(Debug, PartialEq)]
pub struct StepPlan {
    /// tokens | pos | slots | seq_of | sample_rows | decode | tiles | block_tables, as i32; the
    /// tables with `table_cols` columns each, `max_blocks` apart on the device.
    pub packed: Vec<i32>,
    pub tokens: usize,
    pub sampled: usize,
    pub seqs: usize,
    /// Tokens of sequences with one new token (decode attention).
    pub decode: usize,
    /// (first token, count, sequence) triples of prefill tiles.
    pub tiles: usize,
    /// Width of the block-table matrix on the device.
    pub max_blocks: usize,
    /// Columns of each table in `packed` (the longest table).
    pub table_cols: usize,
    /// The longest context, or a bound on it (padded plans): decode attention splits by it.
    pub max_ctx: usize,
}

/// Offsets of the packed arrays, in elements.
impl StepPlan {
    pub fn pos(&self) -> usize {
        self.tokens
    }
    pub fn slots(&self) -> usize {
        2 * self.tokens
    }
    pub fn seq_of(&self) -> usize {
        3 * self.tokens
    }
    pub fn sample_rows(&self) -> usize {
        4 * self.tokens
    }
    pub fn decode_list(&self) -> usize {
        4 * self.tokens + self.sampled
    }
    pub fn tile_list(&self) -> usize {
        self.decode_list() + self.decode
    }
    pub fn block_tables(&self) -> usize {
        self.tile_list() + 3 * self.tiles
    }
    /// Elements of the packed arrays on the device.
    pub fn device_len(&self) -> usize {
        self.block_tables() + self.seqs * self.max_blocks
    }

    pub fn new(
        batch: &Batch<'_>,
        vocab: usize,
        block_size: usize,
        num_blocks: usize,
    ) -> Result<Self, String> {
        Self::build(batch, vocab, block_size, num_blocks, None)
    }

    /// A decode step (one new token per sequence, every one sampled) padded to `size` sequences
    /// and tables `width` blocks wide, for a CUDA graph captured at that size: every offset and
    /// count is the graph's, attention splits by the longest context the width allows, and the
    /// padding rows (token 0 at position 0 of block 0, no KV slot) write nothing to the cache.
    pub fn padded(
        batch: &Batch<'_>,
        vocab: usize,
        block_size: usize,
        num_blocks: usize,
        (size, width): (usize, usize),
    ) -> Result<Self, String> {
        let n = batch.seqs.len();
        if n > size || batch.seqs.iter().any(|s| s.block_table.len() > width) {
            return Err(format!(
                "the step does not fit a graph of {size} × {width} blocks"
            ));
        }
        if batch
            .seqs
            .iter()
            .any(|s| s.new_tokens.len() != 1 || !s.sampled())
        {
            return Err("graphs take decode steps whose every sequence is sampled".into());
        }
        Self::build(batch, vocab, block_size, num_blocks, Some((size, width)))
    }

    fn build(
        batch: &Batch<'_>,
        vocab: usize,
        block_size: usize,
        num_blocks: usize,
        pad: Option<(usize, usize)>,
    ) -> Result<Self, String> {
        let padding = pad.map_or(0, |(size, _)| size - batch.seqs.len());
        let t = batch.num_tokens() + padding;
        let seqs = batch.seqs.len() + padding;
        let cols = batch
            .seqs
            .iter()
            .map(|s| s.block_table.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let (mut tokens, mut pos, mut slots, mut seq_of, mut rows) = (
            Vec::with_capacity(t),
            Vec::with_capacity(t),
            Vec::with_capacity(t),
            Vec::with_capacity(t),
            Vec::new(),
        );
        let mut tables = vec![0i32; seqs * cols];
        let (mut decode, mut tiles) = (Vec::new(), Vec::new());
        let mut max_ctx = 0;
        for (s, seq) in batch.seqs.iter().enumerate() {
            for (b, &block) in seq.block_table.iter().enumerate() {
                if block as usize >= num_blocks {
                    return Err(format!(
                        "block {block} is outside the cache's {num_blocks} blocks"
                    ));
                }
                tables[s * cols + b] = block as i32;
            }
            let end = seq.start + seq.new_tokens.len();
            if end > seq.block_table.len() * block_size {
                return Err(format!(
                    "positions up to {end} need more than the sequence's {} blocks",
                    seq.block_table.len()
                ));
            }
            let first = tokens.len() as i32;
            match seq.new_tokens.len() {
                0 => {}
                1 => decode.push(first),
                n => {
                    for begin in (0..n).step_by(PREFILL_TILE) {
                        let count = (n - begin).min(PREFILL_TILE);
                        tiles.extend([first + begin as i32, count as i32, s as i32]);
                    }
                }
            }
            for (k, &token) in seq.new_tokens.iter().enumerate() {
                if token as usize >= vocab {
                    return Err(format!(
                        "token id {token} is outside the model's vocabulary of {vocab}"
                    ));
                }
                let p = seq.start + k;
                tokens.push(token as i32);
                pos.push(p as i32);
                slots.push(
                    (seq.block_table[p / block_size] as usize * block_size + p % block_size) as i32,
                );
                seq_of.push(s as i32);
            }
            if seq.sampled() {
                rows.push(tokens.len() as i32 - 1);
            }
            max_ctx = max_ctx.max(end);
        }
        for s in batch.seqs.len()..seqs {
            let row = tokens.len() as i32;
            tokens.push(0);
            pos.push(0);
            slots.push(-1);
            seq_of.push(s as i32);
            rows.push(row);
            decode.push(row);
        }
        let max_blocks = pad.map_or(cols, |(_, width)| width);
        if pad.is_some() {
            max_ctx = max_blocks * block_size;
        }
        let sampled = rows.len();
        let mut packed = tokens;
        packed.extend(pos);
        packed.extend(slots);
        packed.extend(seq_of);
        packed.extend(rows);
        let (n_decode, n_tiles) = (decode.len(), tiles.len() / 3);
        packed.extend(decode);
        packed.extend(tiles);
        packed.extend(tables);
        Ok(Self {
            packed,
            tokens: t,
            sampled,
            seqs,
            decode: n_decode,
            tiles: n_tiles,
            max_blocks,
            table_cols: cols,
            max_ctx,
        })
    }
}

/// Fewest keys in a split of the CUDA-core and of the tensor-core decode attention. The kernels
/// deal each token's keys to chunks of at least this many, so a split count chosen from a bound
/// on the context (`max_ctx`) gives every token the same chunks as one chosen from its length.
pub const CORE_MIN_KEYS: usize = 64;
pub const MMA_MIN_KEYS: usize = 32;

/// How many chunks to split each token's keys into: enough blocks to fill `sms` multiprocessors
/// 16 times over, at least CORE_MIN_KEYS keys a chunk, and no more partials than `max_partials`
/// (token × head × split entries).
pub fn attention_splits(
    tokens: usize,
    kv_heads: usize,
    heads: usize,
    max_ctx: usize,
    sms: usize,
    max_partials: usize,
) -> usize {
    let blocks = (tokens * kv_heads).max(1);
    let want = (16 * sms).div_ceil(blocks);
    let by_len = max_ctx.div_ceil(CORE_MIN_KEYS);
    let by_memory = max_partials / (tokens * heads).max(1);
    want.min(by_len).min(by_memory).max(1)
}

/// Splits for the tensor-core decode attention, one warp per (token, KV head, split): as many as
/// fill the GPU's `slots` resident warps once (one wave ends together), at least MMA_MIN_KEYS
/// keys (two tiles of 16) a split, and no more partials than `max_partials`.
pub fn mma_attention_splits(
    tokens: usize,
    kv_heads: usize,
    heads: usize,
    max_ctx: usize,
    slots: usize,
    max_partials: usize,
) -> usize {
    let want = slots / (tokens * kv_heads).max(1);
    let by_len = max_ctx.div_ceil(MMA_MIN_KEYS);
    let by_memory = max_partials / (tokens * heads).max(1);
    want.min(by_len).min(by_memory).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::SeqStep;

    fn seq<'a>(start: usize, new: &'a [u32], table: &'a [u32], sample: bool) -> SeqStep<'a> {
        SeqStep {
            start,
            new_tokens: new,
            block_table: table,
            sample,
            all_tokens: new,
            prompt_len: new.len(),
            draw: None,
        }
    }

    #[test]
    fn packs_slots_tables_and_sampled_rows() {
        let batch = Batch {
            seqs: vec![
                seq(0, &[5, 6, 7], &[3], true),
                seq(4, &[9], &[1, 2], true),
                seq(0, &[1], &[0], false),
            ],
        };
        let plan = StepPlan::new(&batch, 10, 4, 4).unwrap();
        assert_eq!(
            (plan.tokens, plan.sampled, plan.max_blocks, plan.max_ctx),
            (5, 2, 2, 5)
        );
        let p = &plan.packed;
        assert_eq!(&p[..5], &[5, 6, 7, 9, 1]);
        assert_eq!(&p[plan.pos()..plan.pos() + 5], &[0, 1, 2, 4, 0]);
        assert_eq!(&p[plan.slots()..plan.slots() + 5], &[12, 13, 14, 8, 0]);
        assert_eq!(&p[plan.seq_of()..plan.seq_of() + 5], &[0, 0, 0, 1, 2]);
        assert_eq!(&p[plan.sample_rows()..plan.sample_rows() + 2], &[2, 3]);
        assert_eq!((plan.decode, plan.tiles), (2, 1));
        assert_eq!(&p[plan.decode_list()..plan.tile_list()], &[3, 4]);
        assert_eq!(&p[plan.tile_list()..plan.block_tables()], &[0, 3, 0]);
        assert_eq!(&p[plan.block_tables()..], &[3, 0, 1, 2, 0, 0]);
        assert_eq!(plan.device_len(), p.len());
    }

    #[test]
    fn pads_decode_steps_to_the_graph_shape() {
        let batch = Batch {
            seqs: vec![seq(4, &[9], &[1, 2], true), seq(0, &[3], &[0], true)],
        };
        let plan = StepPlan::padded(&batch, 10, 4, 4, (4, 3)).unwrap();
        assert_eq!(
            (
                plan.tokens,
                plan.sampled,
                plan.seqs,
                plan.decode,
                plan.tiles
            ),
            (4, 4, 4, 4, 0)
        );
        assert_eq!((plan.max_blocks, plan.table_cols, plan.max_ctx), (3, 2, 12));
        let p = &plan.packed;
        assert_eq!(&p[..4], &[9, 3, 0, 0]);
        assert_eq!(&p[plan.slots()..plan.slots() + 4], &[8, 0, -1, -1]);
        assert_eq!(&p[plan.seq_of()..plan.seq_of() + 4], &[0, 1, 2, 3]);
        assert_eq!(&p[plan.sample_rows()..plan.decode_list()], &[0, 1, 2, 3]);
        assert_eq!(&p[plan.decode_list()..plan.block_tables()], &[0, 1, 2, 3]);
        assert_eq!(&p[plan.block_tables()..], &[1, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(plan.device_len(), plan.block_tables() + 12);
        let too_wide = StepPlan::padded(&batch, 10, 4, 4, (4, 1));
        assert!(too_wide.is_err());
        let prefill = Batch {
            seqs: vec![seq(0, &[1, 2], &[0], true)],
        };
        assert!(StepPlan::padded(&prefill, 10, 4, 4, (4, 3)).is_err());
    }

    #[test]
    fn long_prompts_split_into_tiles_of_64() {
        let prompt: Vec<u32> = (0..150).map(|i| i % 10).collect();
        let table: Vec<u32> = (0..10).collect();
        let batch = Batch {
            seqs: vec![seq(0, &[1], &[10], true), seq(0, &prompt, &table, true)],
        };
        let plan = StepPlan::new(&batch, 10, 16, 11).unwrap();
        assert_eq!(
            &plan.packed[plan.tile_list()..plan.block_tables()],
            &[1, 64, 1, 65, 64, 1, 129, 22, 1]
        );
    }

    #[test]
    fn rejects_what_would_index_out_of_bounds() {
        let bad_token = Batch {
            seqs: vec![seq(0, &[10], &[0], true)],
        };
        assert!(StepPlan::new(&bad_token, 10, 4, 4).is_err());
        let bad_block = Batch {
            seqs: vec![seq(0, &[1], &[4], true)],
        };
        assert!(StepPlan::new(&bad_block, 10, 4, 4).is_err());
        let short_table = Batch {
            seqs: vec![seq(3, &[1, 2], &[0], true)],
        };
        assert!(StepPlan::new(&short_table, 10, 4, 4).is_err());
    }

    #[test]
    fn tensor_core_splits_fill_one_wave() {
        let slots = 132 * 8;
        assert_eq!(mma_attention_splits(1, 8, 32, 1024, slots, 1 << 20), 32);
        assert_eq!(mma_attention_splits(64, 8, 32, 1024, slots, 1 << 20), 2);
        assert_eq!(mma_attention_splits(8, 8, 32, 8192, slots, 1 << 20), 16);
        assert_eq!(mma_attention_splits(128, 8, 32, 1024, slots, 1 << 20), 1);
        assert_eq!(mma_attention_splits(1, 8, 32, 20, slots, 1 << 20), 1);
        assert_eq!(mma_attention_splits(1, 8, 32, 8192, slots, 32 * 4), 4);
    }

    #[test]
    fn splits_fill_the_gpu_for_small_batches_only() {
        assert_eq!(attention_splits(1, 8, 32, 8192, 132, 1 << 20), 128);
        assert_eq!(attention_splits(1, 8, 32, 100, 132, 1 << 20), 2);
        assert_eq!(attention_splits(4096, 8, 32, 4096, 132, 1 << 20), 1);
        assert_eq!(attention_splits(64, 8, 32, 1024, 132, 1 << 20), 5);
        assert_eq!(attention_splits(64, 8, 32, 8192, 132, 64 * 32 * 2), 2);
    }
}
