//! Command-line flags. Every flag has a `TURBINE_*` environment variable and a default that works
//! on one machine.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use turbine_bench::Slo;
use turbine_bench::workload::Length;
use turbine_engine::executor::timing::TimingProfile;
use turbine_engine::{EngineConfig, SchedulingPolicy};
use turbine_router::{CostWeights, QueuePolicy, RouterConfig, RoutingPolicy};

#[derive(Parser)]
#[command(name = "turbine", version, about = "Distributed LLM inference serving")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve a model through the OpenAI-compatible API, everything in one process.
    Serve(Box<ServeArgs>),
    /// Run workers only, for frontends elsewhere (needs --discovery and --events).
    Worker(Box<ServeArgs>),
    /// Run the HTTP frontend only, for workers elsewhere (needs --discovery and --events).
    Frontend(Box<ServeArgs>),
    /// Load an OpenAI-compatible server and report latency and throughput.
    Bench(Box<BenchArgs>),
    /// Replay a workload in virtual time on simulated workers through the real router and
    /// engine scheduler; report as `bench` does.
    Sim(Box<SimArgs>),
    /// Time the CUDA executor's decode steps and prefills directly (no server); JSON lines out.
    #[command(hide = true)]
    GpuBench(Box<GpuBenchArgs>),
    /// Greedy generation from token ids, each prompt alone and all in one batch, with every
    /// step's logits as JSON (for parity checks against transformers).
    #[command(hide = true)]
    Generate(Box<GenerateArgs>),
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
pub enum OnOff {
    On,
    Off,
}

/// CUDA graphs for decode steps (`--engine cuda`).
#[derive(Args, Debug, Clone)]
pub struct GraphArgs {
    /// CUDA engine: run decode steps of up to `--cuda-graph-max-batch` sequences through CUDA
    /// graphs, one per padded batch size (1, 2, 4, 8, then multiples of 8), captured on use.
    #[arg(long, value_enum, default_value = "on", env = "TURBINE_CUDA_GRAPHS")]
    pub cuda_graphs: OnOff,
    /// CUDA engine: the largest decode batch run through a graph (at most --max-num-seqs).
    #[arg(long, default_value_t = 256, env = "TURBINE_CUDA_GRAPH_MAX_BATCH")]
    pub cuda_graph_max_batch: usize,
}

impl GraphArgs {
    /// The executor's `graph_max_batch`: 0 where graphs are off.
    pub fn max_batch(&self) -> usize {
        match self.cuda_graphs {
            OnOff::On => self.cuda_graph_max_batch,
            OnOff::Off => 0,
        }
    }
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
    /// CUDA engine: share of each GPU's memory to use, weights and KV cache together.
    #[arg(long, default_value_t = 0.9, env = "TURBINE_GPU_MEMORY_UTILIZATION")]
    pub gpu_memory_utilization: f64,
    #[command(flatten)]
    pub graphs: GraphArgs,
    #[arg(long, value_enum, default_value = "auto", env = "TURBINE_LOAD_FORMAT")]
    pub load_format: LoadFormat,
    /// CPU engine: memory for each worker's KV cache, in GiB.
    #[arg(long, default_value_t = 0.5, env = "TURBINE_KV_CACHE_GIB")]
    pub kv_cache_gib: f64,
    /// Mock engine: run simulated time this many times faster than real time.
    #[arg(long, default_value_t = 1.0, env = "TURBINE_SPEEDUP")]
    pub speedup: f64,
    /// Override the model's context length, in tokens.
    #[arg(long, env = "TURBINE_CONTEXT_LENGTH")]
    pub context_length: Option<u32>,
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
    /// worker/frontend: discovery (etcd://HOST:PORT[,HOST:PORT...]).
    #[arg(long, env = "TURBINE_DISCOVERY")]
    pub discovery: Option<String>,
    /// worker/frontend: the event plane for KV events and load reports (nats://HOST:PORT).
    #[arg(long, env = "TURBINE_EVENTS")]
    pub events: Option<String>,
    /// worker: where the request plane listens (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0", env = "TURBINE_LISTEN")]
    pub listen: String,
    /// worker: the host frontends should use to reach it. Default: the listen address.
    #[arg(long, env = "TURBINE_ADVERTISE")]
    pub advertise: Option<String>,
    #[command(flatten)]
    pub engine_args: EngineArgs,
    #[command(flatten)]
    pub router: RouterArgs,
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
    #[arg(long, env = "TURBINE_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Use /v1/chat/completions (prompt as one user message; implies text prompts) instead of
    /// /v1/completions.
    #[arg(long, env = "TURBINE_BENCH_CHAT")]
    pub chat: bool,
    /// How prompts are sent: token ids (exact on any server) or the ids decoded to text.
    #[arg(
        long,
        value_enum,
        default_value = "tokens",
        env = "TURBINE_BENCH_PROMPT_FORMAT"
    )]
    pub prompt_format: PromptFormatArg,
    /// A JSON object merged into every request body, e.g. '{"min_tokens":128}'.
    #[arg(long, env = "TURBINE_BENCH_EXTRA_BODY")]
    pub extra_body: Option<String>,
    /// Requests sent (closed loop, copies of the first ones) before each measured pass.
    #[arg(long, default_value_t = 0, env = "TURBINE_BENCH_WARMUP")]
    pub warmup: usize,
    /// A request that takes longer fails as `timeout`.
    #[arg(
        long,
        default_value_t = 600,
        env = "TURBINE_BENCH_REQUEST_TIMEOUT_SECS"
    )]
    pub request_timeout_secs: u64,
    /// No progress bar (it is also off when stderr is not a terminal).
    #[arg(long, env = "TURBINE_BENCH_NO_PROGRESS")]
    pub no_progress: bool,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Simulated workers.
    #[arg(long, default_value_t = 8, env = "TURBINE_SIM_WORKERS")]
    pub workers: usize,
    /// Longest sequence a worker accepts, in tokens.
    #[arg(long, default_value_t = 32_768, env = "TURBINE_SIM_CONTEXT_LENGTH")]
    pub context_length: usize,
    #[command(flatten)]
    pub engine_args: EngineArgs,
    #[command(flatten)]
    pub router: RouterArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// How requests arrive (`turbine bench`, `turbine sim`).
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Closed loop: requests in flight at once. With `--rate` or trace timestamps: a cap on them
    /// (default: none).
    #[arg(long, env = "TURBINE_BENCH_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Open loop: Poisson arrivals at this many requests per second (seeded by `--seed`).
    #[arg(long, env = "TURBINE_BENCH_RATE")]
    pub rate: Option<f64>,
    /// Replay a trace as a closed loop, ignoring its timestamps.
    #[arg(long, env = "TURBINE_BENCH_CLOSED_LOOP")]
    pub closed_loop: bool,
    /// One closed-loop pass per level, e.g. 1,4,16,64.
    #[arg(long, value_delimiter = ',', env = "TURBINE_BENCH_SWEEP_CONCURRENCY")]
    pub sweep_concurrency: Vec<usize>,
}

/// What a run reports besides its table (`turbine bench`, `turbine sim`).
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// SLO on time to first token, in ms; goodput counts requests within every SLO given.
    #[arg(long, env = "TURBINE_BENCH_SLO_TTFT_MS")]
    pub slo_ttft_ms: Option<f64>,
    /// SLO on a request's mean inter-token latency (TPOT), in ms.
    #[arg(long, env = "TURBINE_BENCH_SLO_ITL_MS")]
    pub slo_itl_ms: Option<f64>,
    /// Also write the report as JSON to this file (an array of reports for a sweep).
    #[arg(long, env = "TURBINE_BENCH_JSON")]
    pub json: Option<PathBuf>,
    /// Write SVG charts here: TTFT and ITL CDFs, and throughput against latency over a sweep.
    #[arg(long, env = "TURBINE_BENCH_PLOT")]
    pub plot: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PromptFormatArg {
    Tokens,
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    /// Independent requests with `--input-len` and `--output-len`.
    Synthetic,
    /// `--groups` shared prefixes of `--prefix-len` tokens, `--users` requests each.
    SharedPrefix,
    /// `--conversations` of `--turns` turns whose history grows.
    MultiTurn,
    /// Replay of a Mooncake trace (`--trace`).
    Trace,
}

/// What to send; shared by every command that replays a workload.
#[derive(Args, Debug)]
pub struct WorkloadArgs {
    #[arg(
        long,
        value_enum,
        default_value = "synthetic",
        env = "TURBINE_BENCH_WORKLOAD"
    )]
    pub workload: WorkloadKind,
    /// The tokenizer prompts are made from: tokenizer.json, a GGUF file or a HF model directory.
    /// Default: SmolLM2-135M-Instruct's GGUF in the cache.
    #[arg(long, env = "TURBINE_BENCH_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
    /// Synthetic: requests to send (default 100). Trace: at most this many.
    #[arg(long, env = "TURBINE_BENCH_REQUESTS")]
    pub requests: Option<usize>,
    /// Prompt tokens (synthetic), tokens each user appends (shared prefix) or of each message
    /// (multi-turn): N or MIN..MAX (uniform).
    #[arg(long, default_value = "128", env = "TURBINE_BENCH_INPUT_LEN")]
    pub input_len: Length,
    /// Output tokens per request: N or MIN..MAX (uniform).
    #[arg(long, default_value = "128", env = "TURBINE_BENCH_OUTPUT_LEN")]
    pub output_len: Length,
    /// Shared prefix: number of system prompts.
    #[arg(long, default_value_t = 4, env = "TURBINE_BENCH_GROUPS")]
    pub groups: usize,
    /// Shared prefix: requests per system prompt.
    #[arg(long, default_value_t = 16, env = "TURBINE_BENCH_USERS")]
    pub users: usize,
    /// Shared prefix: tokens of each system prompt.
    #[arg(long, default_value_t = 512, env = "TURBINE_BENCH_PREFIX_LEN")]
    pub prefix_len: u32,
    /// Multi-turn: number of conversations.
    #[arg(long, default_value_t = 16, env = "TURBINE_BENCH_CONVERSATIONS")]
    pub conversations: usize,
    /// Multi-turn: turns per conversation.
    #[arg(long, default_value_t = 4, env = "TURBINE_BENCH_TURNS")]
    pub turns: usize,
    /// Multi-turn: pause between an answer and the next message, in ms.
    #[arg(long, default_value_t = 0, env = "TURBINE_BENCH_THINK_TIME_MS")]
    pub think_time_ms: u64,
    /// Trace: a Mooncake JSON-lines file.
    #[arg(long, env = "TURBINE_BENCH_TRACE")]
    pub trace: Option<PathBuf>,
    /// Trace: tokens per hash id; lengths scale by this / 512.
    #[arg(long, default_value_t = 512, env = "TURBINE_BENCH_TRACE_BLOCK_SIZE")]
    pub trace_block_size: u32,
    /// Trace: timestamps are divided by this.
    #[arg(long, default_value_t = 1.0, env = "TURBINE_BENCH_SPEED")]
    pub speed: f64,
    /// Trace: replay from this point of the trace, in seconds.
    #[arg(long, default_value_t = 0.0, env = "TURBINE_BENCH_TRACE_START_SECS")]
    pub trace_start_secs: f64,
    /// Trace: replay this much of the trace, in seconds (default: to its end).
    #[arg(long, env = "TURBINE_BENCH_TRACE_DURATION_SECS")]
    pub trace_duration_secs: Option<f64>,
    /// Seeds prompts, lengths and Poisson arrivals.
    #[arg(long, default_value_t = 0, env = "TURBINE_BENCH_SEED")]
    pub seed: u64,
}

/// How requests are spread over workers (`turbine serve`, `turbine sim`).
#[derive(Args, Debug, Clone)]
pub struct RouterArgs {
    /// kv: KV-cache overlap weighed against load; or round-robin, random, least-loaded,
    /// power-of-two.
    #[arg(long = "router", default_value = "kv", env = "TURBINE_ROUTER")]
    pub policy: RoutingPolicy,
    /// kv: weight of the prompt blocks a worker would compute anew (not cached there) against
    /// its load (queued prefill and active blocks).
    #[arg(long, default_value_t = 16.0, env = "TURBINE_ROUTER_OVERLAP_WEIGHT")]
    pub router_overlap_weight: f64,
    /// kv: 0 picks the lowest cost; above 0, a random pick weighted by exp(-cost/temperature).
    #[arg(long, default_value_t = 0.0, env = "TURBINE_ROUTER_TEMPERATURE")]
    pub router_temperature: f64,
    /// kv: leave out workers with more work than this many times the mean (0: off).
    #[arg(long, default_value_t = 1.3, env = "TURBINE_ROUTER_HOTSPOT_FACTOR")]
    pub router_hotspot_factor: f64,
    /// kv: ignore KV events and index the router's own decisions instead (for workers that
    /// publish no events; those are detected and handled so anyway).
    #[arg(long, env = "TURBINE_ROUTER_APPROXIMATE")]
    pub router_approximate: bool,
    /// Approximate mode: seconds a prompt sent to a worker is assumed to stay cached there.
    #[arg(
        long,
        default_value_t = 120.0,
        env = "TURBINE_ROUTER_APPROXIMATE_TTL_SECS"
    )]
    pub router_approximate_ttl_secs: f64,
    /// A worker is busy above this share of its KV blocks in use; when all are, requests queue.
    #[arg(long, default_value_t = 0.95, env = "TURBINE_ROUTER_BUSY_KV_USAGE")]
    pub router_busy_kv_usage: f64,
    /// A worker is also busy with more prompt tokens than this waiting to be prefilled.
    #[arg(long, env = "TURBINE_ROUTER_BUSY_PREFILL_TOKENS")]
    pub router_busy_prefill_tokens: Option<u64>,
    /// Requests that may wait while every worker is busy; beyond that, 503 with Retry-After.
    #[arg(long, default_value_t = 1024, env = "TURBINE_ROUTER_QUEUE_SIZE")]
    pub router_queue_size: usize,
    /// Order of the router's queue: fcfs or shortest-prefill-first.
    #[arg(long, default_value = "fcfs", env = "TURBINE_ROUTER_QUEUE_POLICY")]
    pub router_queue_policy: QueuePolicy,
    /// Seed of the router's random choices.
    #[arg(long, default_value_t = 0, env = "TURBINE_ROUTER_SEED")]
    pub router_seed: u64,
}

impl RouterArgs {
    pub fn config(&self) -> anyhow::Result<RouterConfig> {
        let ttl = self.router_approximate_ttl_secs;
        if !(ttl.is_finite() && ttl > 0.0) {
            anyhow::bail!("--router-approximate-ttl-secs must be a positive number of seconds");
        }
        Ok(RouterConfig {
            policy: self.policy,
            weights: CostWeights {
                overlap_weight: self.router_overlap_weight,
                temperature: self.router_temperature.max(0.0),
                hotspot_factor: self.router_hotspot_factor.max(0.0),
            },
            approximate: self.router_approximate,
            approximate_ttl: std::time::Duration::from_secs_f64(ttl),
            busy_kv_usage: self.router_busy_kv_usage,
            busy_prefill_tokens: self.router_busy_prefill_tokens,
            queue_capacity: self.router_queue_size,
            queue_policy: self.router_queue_policy,
            seed: self.router_seed,
            ..Default::default()
        })
    }
}

/// How each engine is sized and scheduled (`turbine serve`, `turbine sim`).
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Engine: KV blocks per worker. Default: 4096 for the mock engine; for the CPU engine, as
    /// many as `--kv-cache-gib` holds.
    #[arg(long, env = "TURBINE_NUM_BLOCKS")]
    pub num_blocks: Option<usize>,
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
    /// Tokens per KV block.
    #[arg(long, default_value_t = 16, env = "TURBINE_BLOCK_SIZE")]
    pub block_size: u32,
}

impl EngineArgs {
    /// The engine configuration for a model of `max_model_len` tokens.
    pub fn config(&self, max_model_len: usize) -> EngineConfig {
        EngineConfig {
            num_blocks: self.num_blocks.unwrap_or(4096),
            block_size: self.block_size as usize,
            max_num_batched_tokens: self.max_num_batched_tokens,
            max_num_seqs: self.max_num_seqs,
            enable_chunked_prefill: !self.no_chunked_prefill,
            max_model_len,
            policy: if self.priority_scheduling {
                SchedulingPolicy::Priority
            } else {
                SchedulingPolicy::Fcfs
            },
            ..Default::default()
        }
    }

    /// The mock executor's timing: `--mock-profile`, or Llama-3.1-8B bf16 on an H100.
    pub fn profile(&self) -> anyhow::Result<TimingProfile> {
        match &self.mock_profile {
            Some(path) => TimingProfile::load(path).map_err(anyhow::Error::msg),
            None => Ok(TimingProfile::default()),
        }
    }
}

impl ReportArgs {
    pub fn slo(&self) -> Slo {
        Slo {
            ttft_ms: self.slo_ttft_ms,
            itl_ms: self.slo_itl_ms,
        }
    }
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
    /// Decode rows with CUDA graphs on, off, or both (`on,off`: each row timed both ways, one
    /// after the other, in the same process).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "on")]
    pub cuda_graphs: Vec<OnOff>,
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
    /// CUDA engine: decode steps through CUDA graphs.
    #[arg(long, value_enum, default_value = "on")]
    pub cuda_graphs: OnOff,
    /// Where to write the JSON result.
    #[arg(long)]
    pub out: PathBuf,
}
