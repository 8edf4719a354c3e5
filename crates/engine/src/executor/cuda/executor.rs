//! The CUDA executor: the engine's batched steps on one GPU. Logits of the sampled rows come
//! back to the host for the engine's sampler; [`CudaExecutor::greedy`] picks tokens on the GPU
//! instead and copies back only their ids (benchmarks and parity checks).

use super::compile::Compiler;
use super::device::Gpu;
use super::forward::{self, Scratch, activation_bytes_per_token, ensure};
use super::gemm::Choice as GemmChoice;
use super::graphs::DecodeGraphs;
use super::kernels::Kernels;
use super::kv_cache::{GpuKvCache, blocks_that_fit, bytes_per_block};
use super::plan::StepPlan;
use super::timeline::Span;
use super::weights::{Shapes, Weights};
use crate::executor::cpu::Model;
use crate::executor::cpu::config::ModelConfig;
use crate::executor::{Batch, Draw, Executor, ExecutorError, Samples, StepOutput};
use std::sync::Arc;

/// Where the weights come from.
#[derive(Clone)]
pub enum WeightSource {
    /// A model loaded by the CPU loader (safetensors or GGUF), converted to bf16.
    Loaded(Arc<Model>),
    /// Random weights of this shape, made on the GPU (`--load-format dummy`).
    Dummy(ModelConfig),
}

#[derive(Debug, Clone)]
pub struct CudaOptions {
    pub device: usize,
    /// Share of the GPU's memory this executor may take, weights and KV cache included.
    pub gpu_memory_utilization: f64,
    pub block_size: usize,
    /// KV blocks; default: as many as fit.
    pub num_blocks: Option<usize>,
    /// Most tokens in one step (sizes the activation reserve).
    pub max_batch_tokens: usize,
    /// Most sequences in one step (sizes the logits reserve).
    pub max_seqs: usize,
    /// Decode steps of up to this many sequences run through CUDA graphs (`graphs`), padded to
    /// at most what `max_seqs` sequences need; 0: none.
    pub graph_max_batch: usize,
    /// The longest context a sequence may reach, in tokens: the block-table width of the graphs.
    pub max_context: usize,
}

// Field order is drop order: device memory goes before the GPU context.
pub struct CudaExecutor {
    graphs: Option<DecodeGraphs>,
    /// Whether decode steps use `graphs` (benchmarks compare both in one process).
    use_graphs: bool,
    scratch: Scratch,
    cache: GpuKvCache,
    weights: Weights,
    kernels: Kernels,
    config: ModelConfig,
    block_size: usize,
    gpu: Gpu,
}

fn failed(e: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Failed(format!("CUDA: {e}"))
}

impl CudaExecutor {
    /// Opens the GPU, compiles (or loads cached) kernels, uploads or makes the weights and sizes
    /// the KV cache. Fails with a message, never a panic, where there is no driver or GPU.
    pub fn new(source: WeightSource, options: &CudaOptions) -> Result<Self, ExecutorError> {
        if options.block_size == 0 {
            return Err(failed("the KV block size must be positive"));
        }
        let config = match &source {
            WeightSource::Loaded(model) => model.config.clone(),
            WeightSource::Dummy(config) => config.clone(),
        };
        super::kernels::check_shape(config.head_dim, config.heads / config.kv_heads)
            .map_err(failed)?;
        let gpu = Gpu::open(options.device).map_err(failed)?;
        let compiler = Compiler::new(&gpu.libs.nvrtc).map_err(failed)?;
        let shapes = Shapes::of(&config);
        let kernels = Kernels::load(
            &gpu,
            &compiler,
            &shapes,
            config.head_dim,
            config.heads / config.kv_heads,
            options.block_size,
        )
        .map_err(failed)?;
        let weights = match &source {
            WeightSource::Loaded(model) => Weights::upload(&gpu, model),
            WeightSource::Dummy(config) => Weights::dummy(&gpu, &kernels, config),
        }
        .map_err(failed)?;
        gpu.sync().map_err(failed)?;
        let graphs = DecodeGraphs::new(
            options.graph_max_batch,
            options.max_seqs,
            options.max_context,
            options.block_size,
        );
        let model = forward::Model {
            gpu: &gpu,
            kernels: &kernels,
            config: &config,
            weights: &weights,
        };
        let graph_bytes = graphs.as_ref().map_or(0, |g| g.reserve_bytes(&model));
        let kv_width = config.kv_heads * config.head_dim;
        let num_blocks = match options.num_blocks {
            Some(n) => n,
            None => {
                let (free, total) = gpu.memory().map_err(failed)?;
                let reserve = options.max_batch_tokens * activation_bytes_per_token(&shapes)
                    + options.max_seqs * config.vocab * 4
                    + graph_bytes
                    + (1 << 30);
                let per_block = bytes_per_block(config.layers, options.block_size, kv_width);
                blocks_that_fit(
                    total,
                    total - free,
                    options.gpu_memory_utilization,
                    reserve,
                    per_block,
                )
                .map_err(failed)?
            }
        };
        let cache = GpuKvCache::new(
            &gpu,
            config.layers,
            num_blocks,
            options.block_size * kv_width,
        )
        .map_err(failed)?;
        tracing::info!(
            gpu = %gpu.name,
            arch = ?gpu.arch,
            nvrtc = ?compiler.version(),
            libraries = ?gpu.libs.files,
            num_blocks,
            graph_sizes = graphs.as_ref().map_or(0, DecodeGraphs::len),
            graph_mib = graph_bytes >> 20,
            "CUDA executor ready"
        );
        Ok(Self {
            use_graphs: graphs.is_some(),
            graphs,
            scratch: Scratch::default(),
            cache,
            weights,
            kernels,
            config,
            block_size: options.block_size,
            gpu,
        })
    }

    pub fn num_blocks(&self) -> usize {
        self.cache.num_blocks
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Bytes of weights a decode step reads (bf16), for the roofline.
    pub fn weight_bytes(&self) -> usize {
        Shapes::of(&self.config).weight_bytes(&self.config)
    }

    /// Bytes of K and V one token takes over all layers.
    pub fn kv_bytes_per_token(&self) -> usize {
        bytes_per_block(
            self.config.layers,
            1,
            self.config.kv_heads * self.config.head_dim,
        )
    }

    pub fn device_name(&self) -> &str {
        &self.gpu.name
    }

    /// The CUDA library files in use (driver, NVRTC, cuBLASLt).
    pub fn libraries(&self) -> &[String] {
        &self.gpu.libs.files
    }

    /// The few-token GEMVs' layout as compiled (`TURBINE_CUDA_GEMV`'s form), or None where
    /// decode steps use cuBLASLt throughout.
    pub fn gemv_layout(&self) -> Option<String> {
        self.kernels.gemv.as_ref().map(|g| g.layout().to_string())
    }

    /// Turns decode steps through CUDA graphs on or off (on needs `graph_max_batch` > 0).
    pub fn set_graphs(&mut self, on: bool) {
        self.use_graphs = on && self.graphs.is_some();
    }

    /// CUDA graphs captured so far.
    pub fn graphs_captured(&self) -> usize {
        self.graphs.as_ref().map_or(0, DecodeGraphs::captured)
    }

    /// Starts the kernels' timeline afresh (a no-op without one).
    pub fn timeline_reset(&self) -> Result<(), ExecutorError> {
        match &self.kernels.timeline {
            Some(t) => t.reset(&self.gpu).map_err(failed),
            None => Ok(()),
        }
    }

    /// The kernel launches recorded since the last reset, by start (empty without a timeline).
    /// The cuBLASLt GEMM shapes met so far and how each one's algorithm was chosen.
    pub fn gemm_choices(&self) -> Vec<GemmChoice> {
        self.gpu.gemm_choices()
    }

    pub fn timeline(&self) -> Result<Vec<Span>, ExecutorError> {
        match &self.kernels.timeline {
            Some(t) => t.read(&self.gpu).map_err(failed),
            None => Ok(Vec::new()),
        }
    }

    /// Runs a decode step through a CUDA graph where one takes it, with one draw per sequence,
    /// and returns the tokens; None where the step runs without graphs.
    fn replay(
        &mut self,
        batch: &Batch<'_>,
        draws: &[Draw],
    ) -> Result<Option<Vec<u32>>, ExecutorError> {
        let graphs = match self.graphs.as_mut() {
            Some(g) if self.use_graphs => g,
            _ => return Ok(None),
        };
        let Some(shape) = graphs.shape_for(batch) else {
            return Ok(None);
        };
        self.gpu.bind().map_err(failed)?;
        let (vocab, blocks) = (self.config.vocab, self.cache.num_blocks);
        let plan = StepPlan::padded(batch, vocab, self.block_size, blocks, shape)
            .map_err(ExecutorError::Failed)?;
        let model = forward::Model {
            gpu: &self.gpu,
            kernels: &self.kernels,
            config: &self.config,
            weights: &self.weights,
        };
        let tokens = graphs
            .run(&model, &self.cache, &plan, draws)
            .map_err(failed)?;
        Ok(Some(tokens))
    }

    /// Runs the step's forward pass; returns how many rows were sampled.
    fn run(&mut self, batch: &Batch<'_>) -> Result<usize, ExecutorError> {
        self.gpu.bind().map_err(failed)?;
        let plan = StepPlan::new(
            batch,
            self.config.vocab,
            self.block_size,
            self.cache.num_blocks,
        )
        .map_err(ExecutorError::Failed)?;
        if plan.tokens > 0 {
            let model = forward::Model {
                gpu: &self.gpu,
                kernels: &self.kernels,
                config: &self.config,
                weights: &self.weights,
            };
            model
                .forward(&plan, &self.cache, &mut self.scratch)
                .map_err(failed)?;
        }
        Ok(plan.sampled)
    }

    /// The step with greedy sampling on the GPU: the argmax token of each sampled row.
    pub fn greedy(&mut self, batch: &Batch<'_>) -> Result<Vec<u32>, ExecutorError> {
        if let Some(tokens) = self.replay(batch, &vec![Draw::GREEDY; batch.seqs.len()])? {
            return Ok(tokens);
        }
        let rows = self.run(batch)?;
        self.sample_rows(&vec![Draw::GREEDY; rows])
    }

    /// One token per sampled row of the step just run, drawn on the GPU: only the ids come back.
    fn sample_rows(&mut self, draws: &[Draw]) -> Result<Vec<u32>, ExecutorError> {
        let rows = draws.len();
        if rows == 0 {
            return self.gpu.sync().map(|()| Vec::new()).map_err(failed);
        }
        let params: Vec<f32> = draws
            .iter()
            .flat_map(|d| [d.temperature, d.top_k as f32, d.top_p, d.min_p, d.u as f32])
            .collect();
        let gpu = &self.gpu;
        ensure(gpu, &mut self.scratch.params, params.len() * 4).map_err(failed)?;
        let params_buf = self
            .scratch
            .params
            .as_ref()
            .ok_or_else(|| failed("no buffer"))?;
        gpu.copy_to(params_buf, &params).map_err(failed)?;
        let logits = self.scratch.logits.as_ref().map_or(0, |b| b.ptr());
        let out = ensure(gpu, &mut self.scratch.tokens, rows * 4).map_err(failed)?;
        self.kernels
            .sample(gpu, logits, rows, self.config.vocab, params_buf.ptr(), out)
            .map_err(failed)?;
        let mut ids = vec![0i32; rows];
        gpu.copy_from(out, &mut ids).map_err(failed)?;
        Ok(ids.into_iter().map(|i| i as u32).collect())
    }
}

impl Executor for CudaExecutor {
    /// Samples on the GPU when every sampled sequence comes with its draw; otherwise (penalties)
    /// copies the logits back for the engine's sampler. Decode steps run through a CUDA graph where one takes them (greedy for the graph's own
    /// sampling when the logits come back).
    fn execute(&mut self, batch: &Batch<'_>) -> Result<StepOutput, ExecutorError> {
        let draws: Option<Vec<Draw>> = batch
            .seqs
            .iter()
            .filter(|s| s.sampled())
            .map(|s| s.draw)
            .collect();
        let graph_draws = draws
            .clone()
            .unwrap_or_else(|| vec![Draw::GREEDY; batch.seqs.len()]);
        let replayed = self.replay(batch, &graph_draws)?;
        let rows = match replayed {
            Some(_) => batch.seqs.len(),
            None => self.run(batch)?,
        };
        let samples = match (draws, replayed) {
            (Some(_), Some(tokens)) => Samples::Tokens(tokens),
            (Some(draws), None) => Samples::Tokens(self.sample_rows(&draws)?),
            (None, replayed) => {
                let vocab = self.config.vocab;
                let mut logits = vec![0f32; rows * vocab];
                if rows > 0 {
                    let src = match (&replayed, &self.graphs) {
                        (Some(_), Some(graphs)) => graphs.logits(),
                        _ => self.scratch.logits.as_ref().map_or(0, |b| b.ptr()),
                    };
                    self.gpu.copy_from(src, &mut logits).map_err(failed)?;
                } else {
                    self.gpu.sync().map_err(failed)?;
                }
                Samples::Logits {
                    vocab_size: vocab,
                    rows: logits,
                }
            }
        };
        Ok(StepOutput {
            samples,
            simulated: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI has no GPU: opening one must fail with a message, not a panic.
    #[test]
    fn no_gpu_is_an_error_not_a_panic() {
        let json = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 256,
            "vocab_size": 100
        });
        let config = ModelConfig::from_hf(&json).unwrap();
        let options = CudaOptions {
            device: 0,
            gpu_memory_utilization: 0.9,
            block_size: 16,
            num_blocks: None,
            max_batch_tokens: 256,
            max_seqs: 8,
            graph_max_batch: 8,
            max_context: 1024,
        };
        if let Err(err) = CudaExecutor::new(WeightSource::Dummy(config), &options) {
            assert!(err.to_string().contains("CUDA"), "{err}");
        }
    }
}
