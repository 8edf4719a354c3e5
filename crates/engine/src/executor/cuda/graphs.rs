//! CUDA graphs for decode steps. A step whose every sequence brings one token and samples it is
//! padded to the next of a set of batch sizes (1, 2, 4, 8, then multiples of 8) and to block
//! tables of the next power-of-two width (at least 1,024 tokens, at most the longest context
//! allowed); its forward pass and sampling are then one graph launch instead of a few hundred
//! kernel launches. Each (size, width) is captured lazily: the first step of that shape runs its
//! padded work directly (which also chooses its GEMM algorithms before the capture), the second captures it and
//! every later one replays it. Shapes never used cost nothing, and start-up stays as fast as
//! without graphs.
//!
//! A graph reads everything that changes between steps from buffers of its own `Scratch`,
//! allocated once for the largest size and never moved: the metadata (token ids, positions,
//! KV slots, block tables) and the draws are copied in before each launch. Every grid is fixed
//! by the shape: decode attention splits by the context the width allows, and its splits past a
//! token's keys exit at once (the width's bucket keeps those few at short contexts).

use super::device::{BLAS_WORKSPACE, GpuResult};
use super::forward::{self, Model, Scratch};
use super::graph::Graph;
use super::kv_cache::GpuKvCache;
use super::plan::StepPlan;
use crate::executor::{Batch, Draw};
use std::collections::{HashMap, HashSet};

/// Device memory of one instantiated graph, counted in the KV sizing (on an H100 the driver took
/// 2 MiB for every two or three graphs of the 8B model's decode step, 230 to 390 nodes).
const GRAPH_BYTES: usize = 1 << 20;
/// The narrowest block tables a graph has, in tokens.
const MIN_WIDTH_TOKENS: usize = 1024;

/// The batch sizes graphs are captured at, up to `max`: 1, 2, 4, 8, then every multiple of 8
/// (at most 7 padding rows per step); none past the first that holds `max_seqs` sequences.
pub fn sizes(max: usize, max_seqs: usize) -> Vec<usize> {
    let all = [1, 2, 4].into_iter().chain((8..=max).step_by(8));
    let mut sizes = Vec::new();
    for size in all.filter(|&s| s <= max) {
        sizes.push(size);
        if size >= max_seqs {
            break;
        }
    }
    sizes
}

pub struct DecodeGraphs {
    sizes: Vec<usize>,
    /// Block-table width of the widest graphs: the longest context allowed, in blocks.
    width: usize,
    block_size: usize,
    scratch: Scratch,
    reserved: bool,
    /// By (batch size, table width).
    graphs: HashMap<(usize, usize), Graph>,
    /// Shapes whose padded work has run once.
    warmed: HashSet<(usize, usize)>,
    /// Set when a capture failed: every step then runs as without graphs.
    failed: bool,
}

impl DecodeGraphs {
    /// Graphs for decode steps of up to `max_batch` sequences (and no larger than a step of
    /// `max_seqs` needs) of up to `max_context` tokens; None where `max_batch` is 0.
    pub fn new(
        max_batch: usize,
        max_seqs: usize,
        max_context: usize,
        block_size: usize,
    ) -> Option<Self> {
        let sizes = sizes(max_batch, max_seqs);
        let width = max_context.div_ceil(block_size).max(1);
        (!sizes.is_empty()).then(|| Self {
            sizes,
            width,
            block_size,
            scratch: Scratch::default(),
            reserved: false,
            graphs: HashMap::new(),
            warmed: HashSet::new(),
            failed: false,
        })
    }

    /// Batch sizes graphs may be captured at.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn captured(&self) -> usize {
        self.graphs.len()
    }

    fn largest_size(&self) -> usize {
        self.sizes.last().copied().unwrap_or(1)
    }

    /// Attention partials of the size that keeps the most, and metadata elements of the largest.
    fn largest(&self, model: &Model<'_>) -> (usize, usize) {
        let bound = self.width * self.block_size;
        let partials = self
            .sizes
            .iter()
            .map(|&s| model.partials(s, bound))
            .max()
            .unwrap_or(1);
        (partials, self.largest_size() * (6 + self.width))
    }

    /// The narrowest table width, in blocks.
    fn min_width(&self) -> usize {
        MIN_WIDTH_TOKENS.div_ceil(self.block_size).min(self.width)
    }

    /// Device memory the graphs may take: their buffers, cuBLASLt's workspace and every shape's
    /// graph.
    pub fn reserve_bytes(&self, model: &Model<'_>) -> usize {
        let (partials, meta) = self.largest(model);
        let widths = (self.width / self.min_width()).ilog2() as usize + 2;
        Scratch::reserve_bytes(model.config, self.largest_size(), meta, partials)
            + BLAS_WORKSPACE
            + self.sizes.len() * widths * GRAPH_BYTES
    }

    /// The padded size and table width for the step where a graph takes it.
    pub fn shape_for(&self, batch: &Batch<'_>) -> Option<(usize, usize)> {
        let n = batch.seqs.len();
        let decode = batch
            .seqs
            .iter()
            .all(|s| s.new_tokens.len() == 1 && s.sampled() && s.block_table.len() <= self.width);
        if self.failed || n == 0 || !decode {
            return None;
        }
        let size = self.sizes.iter().copied().find(|&s| s >= n)?;
        let cols = batch.seqs.iter().map(|s| s.block_table.len()).max()?;
        let width = cols
            .next_power_of_two()
            .max(self.min_width())
            .min(self.width);
        Some((size, width))
    }

    /// Runs the padded decode step `plan` with one draw per sequence (padding rows greedy) and
    /// returns the sequences' tokens; their logits stay in `logits()`.
    pub fn run(
        &mut self,
        model: &Model<'_>,
        cache: &GpuKvCache,
        plan: &StepPlan,
        draws: &[Draw],
    ) -> GpuResult<Vec<u32>> {
        let gpu = model.gpu;
        if !self.reserved {
            let (partials, meta) = self.largest(model);
            let size = self.largest_size();
            self.scratch
                .reserve(gpu, model.config, size, meta, partials)?;
            self.reserved = true;
        }
        let (size, shape) = (plan.tokens, (plan.tokens, plan.max_blocks));
        forward::upload(gpu, plan, &mut self.scratch)?;
        let mut params = vec![0f32; size * 5];
        for (p, d) in params.chunks_exact_mut(5).zip(draws) {
            p.copy_from_slice(&[d.temperature, d.top_k as f32, d.top_p, d.min_p, d.u as f32]);
        }
        let params_buf = self.scratch.params.as_ref().ok_or("no draw buffer")?;
        gpu.copy_to(params_buf, &params)?;
        if let Some(graph) = self.graphs.get(&shape) {
            graph.launch(gpu)?;
        } else if self.warmed.insert(shape) {
            step(model, cache, plan, &mut self.scratch)?;
        } else {
            match self.capture(model, cache, plan) {
                Ok(graph) => {
                    graph.launch(gpu)?;
                    self.graphs.insert(shape, graph);
                }
                Err(e) => {
                    tracing::warn!("CUDA graph capture failed, decode runs without: {e}");
                    self.failed = true;
                    step(model, cache, plan, &mut self.scratch)?;
                }
            }
        }
        let mut ids = vec![0i32; draws.len()];
        let tokens = self.scratch.tokens.as_ref().map_or(0, |b| b.ptr());
        gpu.copy_from(tokens, &mut ids)?;
        Ok(ids.into_iter().map(|i| i as u32).collect())
    }

    /// The f32 logits of the last step's rows.
    pub fn logits(&self) -> u64 {
        self.scratch.logits.as_ref().map_or(0, |b| b.ptr())
    }

    /// Captures the step with kernels launched as programmatic dependents (PDL edges in the
    /// graph), or without them where the driver is older than CUDA 12.3 or fails to capture them.
    fn capture(
        &mut self,
        model: &Model<'_>,
        cache: &GpuKvCache,
        plan: &StepPlan,
    ) -> GpuResult<Graph> {
        let gpu = model.gpu;
        let (free, _) = gpu.memory()?;
        let scratch = &mut self.scratch;
        let without_pdl = |scratch: &mut Scratch| {
            let pdl = gpu.pdl();
            gpu.set_pdl(false);
            let graph = Graph::capture(gpu, || step(model, cache, plan, scratch));
            gpu.set_pdl(pdl);
            graph
        };
        let graph = if !gpu.graphs_keep_pdl() {
            without_pdl(scratch)?
        } else {
            match Graph::capture(gpu, || step(model, cache, plan, scratch)) {
                Err(e) if gpu.pdl() => {
                    tracing::warn!(
                        "capture with programmatic dependent launch failed ({e}); without"
                    );
                    without_pdl(scratch)?
                }
                other => other?,
            }
        };
        let (after, _) = gpu.memory()?;
        tracing::info!(
            batch = plan.tokens,
            blocks = plan.max_blocks,
            nodes = graph.nodes,
            programmatic_edges = graph.programmatic_edges,
            bytes = free.saturating_sub(after),
            "captured a decode CUDA graph"
        );
        Ok(graph)
    }
}

/// The padded step's forward pass and sampling, on the graphs' buffers.
fn step(model: &Model<'_>, cache: &GpuKvCache, plan: &StepPlan, s: &mut Scratch) -> GpuResult<()> {
    model.launch(plan, cache, s)?;
    let (logits, params, tokens) = (
        s.logits.as_ref().map_or(0, |b| b.ptr()),
        s.params.as_ref().map_or(0, |b| b.ptr()),
        s.tokens.as_ref().map_or(0, |b| b.ptr()),
    );
    let vocab = model.config.vocab;
    model
        .kernels
        .sample(model.gpu, logits, plan.sampled, vocab, params, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::SeqStep;

    fn decode<'a>(n: usize, new: &'a [u32], table: &'a [u32]) -> Batch<'a> {
        let seq = SeqStep {
            start: 0,
            new_tokens: new,
            block_table: table,
            sample: true,
            all_tokens: new,
            prompt_len: 1,
            draw: None,
        };
        Batch { seqs: vec![seq; n] }
    }

    #[test]
    fn steps_pad_to_a_size_and_a_power_of_two_width() {
        let graphs = DecodeGraphs::new(32, 256, 8192, 16).unwrap();
        let table: Vec<u32> = (0..600).collect();
        let shape = |n: usize, blocks: usize, new: &[u32]| {
            graphs.shape_for(&decode(n, new, &table[..blocks]))
        };
        assert_eq!(shape(3, 10, &[1]), Some((4, 64)));
        assert_eq!(shape(9, 70, &[1]), Some((16, 128)));
        assert_eq!(shape(32, 300, &[1]), Some((32, 512)));
        assert_eq!(shape(1, 512, &[1]), Some((1, 512)));
        // Too many sequences, too long a table, or a prefill: no graph.
        assert_eq!(shape(33, 10, &[1]), None);
        assert_eq!(shape(1, 513, &[1]), None);
        assert_eq!(shape(1, 10, &[1, 2]), None);
    }

    #[test]
    fn sizes_double_then_step_by_eight() {
        assert_eq!(sizes(0, 8), Vec::<usize>::new());
        assert_eq!(sizes(1, 8), vec![1]);
        assert_eq!(sizes(6, 8), vec![1, 2, 4]);
        assert_eq!(sizes(32, 64), vec![1, 2, 4, 8, 16, 24, 32]);
        assert_eq!(sizes(256, 256).len(), 35);
        // None past what the most sequences a step may have need.
        assert_eq!(sizes(256, 5), vec![1, 2, 4, 8]);
        assert_eq!(sizes(256, 16), vec![1, 2, 4, 8, 16]);
    }
}
