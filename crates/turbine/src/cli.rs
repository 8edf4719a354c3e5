//! Command-line flags. Every flag has a `TURBINE_*` environment variable and a default that works
//! on one machine.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "turbine", version, about = "Distributed LLM inference serving")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve a model through the OpenAI-compatible API, everything in one process.
    Serve(ServeArgs),
    /// Load an OpenAI-compatible server and report latency and throughput.
    Bench(BenchArgs),
    /// Time the CUDA executor's decode steps and prefills directly (no server); JSON lines out.
    #[command(hide = true)]
    GpuBench(GpuBenchArgs),
    /// Greedy generation from token ids, each prompt alone and all in one batch, with every
    /// step's logits as JSON (for parity checks against transformers).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EngineKind {
    /// Streams the prompt back; for tests and overhead measurements.
    Echo,
    /// The real engine core (paged KV, prefix cache, continuous batching) with a simulated GPU:
    /// steps take the time a timing profile says, tokens are deterministic.
    Mock,
    /// The engine core with the native CPU executor: real model math.
    Cpu,
    /// The engine core with the CUDA executor (one GPU per worker): bf16 on NVIDIA GPUs.
    Cuda,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LoadFormat {
    /// The model's weights (GGUF or safetensors).
    Auto,
    /// Random weights of the shape `config.json` gives (CUDA engine): for performance work
    /// without downloading weights.
    Dummy,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A GGUF file or an HF model directory. Default: SmolLM2-135M-Instruct in the cache
    /// (fetched by `scripts/fixtures.sh model`).
    #[arg(long, env = "TURBINE_MODEL")]
    pub model: Option<PathBuf>,
    /// The name clients use in `model`. Default: the model file's name up to its first dot.
    #[arg(long, env = "TURBINE_MODEL_NAME")]
    pub model_name: Option<String>,
    #[arg(long, value_enum, default_value = "cpu", env = "TURBINE_ENGINE")]
    pub engine: EngineKind,
    /// Number of workers in this process.
    #[arg(long, default_value_t = 1, env = "TURBINE_WORKERS")]
    pub workers: u32,
    #[arg(long, default_value = "127.0.0.1", env = "TURBINE_HOST")]
    pub host: String,
    /// 0 picks a free port.
    #[arg(long, default_value_t = 8000, env = "TURBINE_PORT")]
    pub port: u16,
    /// Echo engine: delay before each token, in milliseconds.
    #[arg(long, default_value_t = 0.0, env = "TURBINE_ECHO_DELAY_MS")]
    pub echo_delay_ms: f64,
    /// Engine: KV blocks per worker. Default: 4096 for the mock engine; for the CPU engine, as
    /// many as `--kv-cache-gib` holds.
    #[arg(long, env = "TURBINE_NUM_BLOCKS")]
    pub num_blocks: Option<usize>,
    /// CUDA engine: share of each GPU's memory to use, weights and KV cache together.
    #[arg(long, default_value_t = 0.9, env = "TURBINE_GPU_MEMORY_UTILIZATION")]
    pub gpu_memory_utilization: f64,
    #[arg(long, value_enum, default_value = "auto", env = "TURBINE_LOAD_FORMAT")]
    pub load_format: LoadFormat,
    /// CPU engine: memory for each worker's KV cache, in GiB.
    #[arg(long, default_value_t = 0.5, env = "TURBINE_KV_CACHE_GIB")]
    pub kv_cache_gib: f64,
    /// Engine: most tokens computed in one step.
    #[arg(long, default_value_t = 2048, env = "TURBINE_MAX_NUM_BATCHED_TOKENS")]
    pub max_num_batched_tokens: usize,
    /// Engine: most sequences in a running batch.
    #[arg(long, default_value_t = 256, env = "TURBINE_MAX_NUM_SEQS")]
    pub max_num_seqs: usize,
    /// Engine: compute each prompt in one step instead of in chunks.
    #[arg(long, env = "TURBINE_NO_CHUNKED_PREFILL")]
    pub no_chunked_prefill: bool,
    /// Engine: admit and preempt by request `priority` (lower first) instead of arrival order.
    #[arg(long, env = "TURBINE_PRIORITY_SCHEDULING")]
    pub priority_scheduling: bool,
    /// Mock engine: a timing profile (JSON); default: Llama-3.1-8B bf16 on an H100 SXM.
    #[arg(long, env = "TURBINE_MOCK_PROFILE")]
    pub mock_profile: Option<PathBuf>,
    /// Mock engine: run simulated time this many times faster than real time.
    #[arg(long, default_value_t = 1.0, env = "TURBINE_SPEEDUP")]
    pub speedup: f64,
    /// Override the model's context length, in tokens.
    #[arg(long, env = "TURBINE_CONTEXT_LENGTH")]
    pub context_length: Option<u32>,
    /// Tokens per KV block.
    #[arg(long, default_value_t = 16, env = "TURBINE_BLOCK_SIZE")]
    pub block_size: u32,
    /// Require `Authorization: Bearer <key>` on /v1 routes; repeat or comma-separate for several keys.
    #[arg(
        long,
        env = "TURBINE_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_key: Vec<String>,
    /// A file of accepted API keys, one per line (blank lines and `#` comments ignored).
    #[arg(long, env = "TURBINE_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 32 << 20, env = "TURBINE_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// Longest prompt, in tokens. Default: the model's context length.
    #[arg(long, env = "TURBINE_MAX_PROMPT_TOKENS")]
    pub max_prompt_tokens: Option<u32>,
    /// Largest `max_tokens` a request may ask for. Default: whatever fits in the context.
    #[arg(long, env = "TURBINE_MAX_TOKENS_LIMIT")]
    pub max_tokens_limit: Option<u32>,
    /// Requests served at once; more wait in a queue.
    #[arg(long, default_value_t = 4096, env = "TURBINE_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: usize,
    /// Requests allowed to wait for a slot; beyond that, 503 with Retry-After.
    #[arg(long, default_value_t = 4096, env = "TURBINE_MAX_QUEUED_REQUESTS")]
    pub max_queued_requests: usize,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish, in seconds.
    #[arg(long, default_value_t = 30, env = "TURBINE_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: u64,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The server's base URL (`http://host:port`, with or without `/v1`).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8000",
        env = "TURBINE_BENCH_URL"
    )]
    pub url: String,
    /// The model to request. Default: the first one the server lists.
    #[arg(long, env = "TURBINE_BENCH_MODEL")]
    pub model: Option<String>,
    /// Use /v1/chat/completions instead of /v1/completions.
    #[arg(long, env = "TURBINE_BENCH_CHAT")]
    pub chat: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1, env = "TURBINE_BENCH_CONCURRENCY")]
    pub concurrency: usize,
    /// Requests to send in all.
    #[arg(long, default_value_t = 100, env = "TURBINE_BENCH_REQUESTS")]
    pub requests: usize,
    /// Requests sent before measuring. Default: one per client (`--concurrency`).
    #[arg(long, env = "TURBINE_BENCH_WARMUP")]
    pub warmup: Option<usize>,
    /// The prompt is this many repetitions of " hello" (one token in most tokenizers).
    #[arg(long, default_value_t = 128, env = "TURBINE_BENCH_PROMPT_WORDS")]
    pub prompt_words: usize,
    #[arg(long, default_value_t = 128, env = "TURBINE_BENCH_MAX_TOKENS")]
    pub max_tokens: u32,
    #[arg(long, env = "TURBINE_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Also write the report as JSON to this file.
    #[arg(long, env = "TURBINE_BENCH_JSON")]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GpuBenchArgs {
    /// An HF model directory, or its `config.json` with `--load-format dummy`.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "dummy")]
    pub load_format: LoadFormat,
    /// Decode batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64,128")]
    pub batch: Vec<usize>,
    /// Decode context lengths, in tokens.
    #[arg(long, value_delimiter = ',', default_value = "1024,8192")]
    pub context: Vec<usize>,
    /// Prefill lengths, in tokens (one sequence each); 0 for none.
    #[arg(long, value_delimiter = ',', default_value = "1024,4096,16384")]
    pub prefill: Vec<usize>,
    /// Timed decode steps per row (after two warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 0.9)]
    pub gpu_memory_utilization: f64,
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A GGUF file or an HF model directory.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "cuda")]
    pub engine: EngineKind,
    /// A JSON file holding a list of prompts, each a list of token ids.
    #[arg(long)]
    pub prompts: PathBuf,
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// Where to write the JSON result.
    #[arg(long)]
    pub out: PathBuf,
}
