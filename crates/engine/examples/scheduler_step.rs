//! CPU cost of one engine step outside the model: scheduler, block manager, batch building,
//! output bookkeeping, with 256 sequences decoding ~1k-token contexts over a pool that holds
//! ~16k cached blocks. The executor is the mock one (it prices the step, nothing sleeps), wrapped
//! so that its own share is timed separately.
//!
//! ```text
//! cargo run --release -p turbine-engine --example scheduler_step [-- STEPS]
//! ```
//!
//! Two pools: one with spare empty blocks (decode never evicts), and one with none, where every
//! block a decoding sequence starts evicts the least recently used cached block (and emits a
//! `Removed` event).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use turbine_engine::EngineConfig;
use turbine_engine::core::EngineCore;
use turbine_engine::executor::mock::MockExecutor;
use turbine_engine::executor::timing::TimingProfile;
use turbine_engine::executor::{Batch, Executor, ExecutorError, StepOutput};
use turbine_protocols::{InstanceId, PreprocessedRequest, SamplingOptions, StopConditions};

const BLOCK_SIZE: usize = 16;
const RUNNING: usize = 256;
const PROMPT: usize = 1000;
const CACHED_PROMPT: usize = 1024;
const WARMUP: usize = 200;
/// Blocks cached by finished requests before the decoding sequences start.
const CACHED_BLOCKS: usize = 16 * 1024;

/// The mock executor, timing its own calls.
struct TimedExecutor {
    inner: MockExecutor,
    last_ns: Arc<AtomicU64>,
}

impl Executor for TimedExecutor {
    fn execute(&mut self, batch: &Batch<'_>) -> Result<StepOutput, ExecutorError> {
        let start = Instant::now();
        let out = self.inner.execute(batch);
        self.last_ns
            .store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }
}

/// splitmix64, for prompts.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn prompt(&mut self, len: usize) -> Vec<u32> {
        (0..len).map(|_| (self.next() % 128_000) as u32).collect()
    }
}

fn request(id: usize, token_ids: Vec<u32>, max_tokens: u32) -> PreprocessedRequest {
    PreprocessedRequest {
        request_id: format!("r{id}"),
        token_ids,
        sampling: SamplingOptions::default(),
        stop: StopConditions {
            max_tokens,
            stop_token_ids: Vec::new(),
        },
        priority: 0,
    }
}

struct Scenario {
    name: &'static str,
    /// No empty blocks: every block a decoding sequence starts evicts a cached one.
    evict: bool,
}

struct Samples {
    step: Vec<u64>,
    exec: Vec<u64>,
    events: Vec<u64>,
    num_events: usize,
    /// The whole timed loop: wall time, and time this thread was on a CPU (other processes on a
    /// busy machine inflate the first, not the second).
    loop_wall_ns: u64,
    loop_cpu_ns: Option<u64>,
}

/// Nanoseconds this thread has run on a CPU (Linux `schedstat`), if available.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn summary(values: &[u64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mean = values.iter().sum::<u64>() as f64 / values.len() as f64 / 1000.0;
    (percentile(&sorted, 0.5), percentile(&sorted, 0.99), mean)
}

/// Decoding prompts are staggered in length so that block boundaries are spread over steps.
fn prompt_len(i: usize) -> usize {
    PROMPT + i % BLOCK_SIZE * 3
}

fn run(scenario: &Scenario, steps: usize) -> Samples {
    let mut rng = Prng(42);
    let blocks_per_cached = CACHED_PROMPT / BLOCK_SIZE;
    let prompt_blocks: usize = (0..RUNNING)
        .map(|i| prompt_len(i).div_ceil(BLOCK_SIZE))
        .sum();
    // Blocks the decoding sequences start after their prompts.
    let growth = RUNNING * (WARMUP + steps + 2 * BLOCK_SIZE) / BLOCK_SIZE;
    let (cached_requests, num_blocks) = if scenario.evict {
        // Room for the cache and the prompts only; the cache is big enough to feed every new
        // block and still hold 16k blocks at the end.
        let cached_requests = (growth + CACHED_BLOCKS).div_ceil(blocks_per_cached);
        (
            cached_requests,
            cached_requests * blocks_per_cached + prompt_blocks,
        )
    } else {
        let cached_requests = CACHED_BLOCKS / blocks_per_cached;
        (
            cached_requests,
            CACHED_BLOCKS + prompt_blocks + growth + 1024,
        )
    };
    let config = EngineConfig {
        num_blocks,
        block_size: BLOCK_SIZE,
        max_num_seqs: RUNNING,
        ..Default::default()
    };
    let last_ns = Arc::new(AtomicU64::new(0));
    let executor = TimedExecutor {
        inner: MockExecutor::new(TimingProfile::default()),
        last_ns: last_ns.clone(),
    };
    let mut core = EngineCore::new(config, Box::new(executor), InstanceId(1), 7)
        .expect("valid engine configuration");

    // Fill the cache with finished requests.
    for i in 0..cached_requests {
        core.add_request(request(i, rng.prompt(CACHED_PROMPT), 1));
    }
    while core.has_work() {
        core.step().expect("mock step");
        core.take_kv_events();
    }
    let cached_after_fill = core.scheduler().blocks.num_cached();

    // 256 long-running decodes.
    for i in 0..RUNNING {
        core.add_request(request(1_000_000 + i, rng.prompt(prompt_len(i)), u32::MAX));
    }
    let mut prefill_steps = 0;
    loop {
        let report = core.step().expect("mock step");
        core.take_kv_events();
        prefill_steps += 1;
        if report.batch_size == RUNNING && report.batch_tokens == RUNNING {
            break;
        }
    }
    for _ in 0..WARMUP {
        core.step().expect("mock step");
        core.take_kv_events();
    }

    let mut samples = Samples {
        step: Vec::with_capacity(steps),
        exec: Vec::with_capacity(steps),
        events: Vec::with_capacity(steps),
        num_events: 0,
        loop_wall_ns: 0,
        loop_cpu_ns: None,
    };
    let blocks_before = core.scheduler().blocks.num_cached();
    let cpu_before = thread_cpu_ns();
    let wall_before = Instant::now();
    for _ in 0..steps {
        let start = Instant::now();
        let report = core.step().expect("mock step");
        let stepped = Instant::now();
        let events = core.take_kv_events();
        let done = Instant::now();
        assert_eq!(
            (report.batch_tokens, report.preempted),
            (RUNNING, 0),
            "{}: every sequence decodes, none is preempted",
            scenario.name
        );
        samples
            .step
            .push(stepped.duration_since(start).as_nanos() as u64);
        samples.exec.push(last_ns.load(Ordering::Relaxed));
        samples
            .events
            .push(done.duration_since(stepped).as_nanos() as u64);
        samples.num_events += events.len();
    }
    samples.loop_wall_ns = wall_before.elapsed().as_nanos() as u64;
    samples.loop_cpu_ns = cpu_before.zip(thread_cpu_ns()).map(|(a, b)| b - a);
    let blocks = &core.scheduler().blocks;
    println!(
        "{}: {} blocks in the pool; {} cached after the fill, {} when timing started, {} at the end; \
         {} prefill steps; {} KV events during the timed steps",
        scenario.name,
        blocks.num_blocks(),
        cached_after_fill,
        blocks_before,
        blocks.num_cached(),
        prefill_steps,
        samples.num_events
    );
    samples
}

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let scenarios = [
        Scenario {
            name: "spare pool (no eviction)",
            evict: false,
        },
        Scenario {
            name: "full pool (new blocks evict)",
            evict: true,
        },
    ];
    let mut rows = Vec::new();
    for scenario in &scenarios {
        let s = run(scenario, steps);
        let engine: Vec<u64> = s
            .step
            .iter()
            .zip(&s.exec)
            .map(|(t, e)| t.saturating_sub(*e))
            .collect();
        rows.push((scenario.name, s, engine));
    }
    println!();
    println!(
        "{RUNNING} decoding sequences, ~{PROMPT}-token contexts, {steps} timed steps; µs per step"
    );
    println!(
        "{:<36} {:>24} {:>8} {:>8} {:>8}",
        "scenario", "part", "median", "p99", "mean"
    );
    for (name, s, _) in &rows {
        let per_step = |ns: u64| ns as f64 / steps as f64 / 1000.0;
        let cpu = s
            .loop_cpu_ns
            .map_or_else(|| "n/a".to_string(), |ns| format!("{:.1}", per_step(ns)));
        println!(
            "{name}: whole loop (step + take_kv_events) {:.1} µs/step wall, {cpu} µs/step on-CPU",
            per_step(s.loop_wall_ns)
        );
    }
    for (name, s, engine) in &rows {
        for (part, values) in [
            ("EngineCore::step", &s.step),
            ("  mock executor alone", &s.exec),
            ("  step minus executor", engine),
            ("take_kv_events", &s.events),
        ] {
            let (median, p99, mean) = summary(values);
            println!("{name:<36} {part:>24} {median:>8.1} {p99:>8.1} {mean:>8.1}");
        }
    }
}
