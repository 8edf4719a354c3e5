//! How many mock workers one process keeps in real time: N [`Worker`]s (engine thread + mock
//! executor, built as `turbine serve --engine mock` builds them), each kept busy by 8 concurrent
//! decode requests driven through [`Generate`] streams on a tokio runtime, so every step samples
//! ~8 tokens. A worker in real time spends exactly its simulated step time per step; the ratio
//! `wall time / Σ simulated step time` over a measurement window says how far behind it falls
//! (1.0 = real time).
//!
//! ```text
//! cargo run --release -p turbine-engine --example mock_fleet [-- N1,N2,... [SECONDS]]
//! ```

use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use turbine_engine::core::EngineCore;
use turbine_engine::executor::mock::MockExecutor;
use turbine_engine::executor::timing::TimingProfile;
use turbine_engine::metrics::WorkerHandles;
use turbine_engine::worker::WorkerOptions;
use turbine_engine::{EngineConfig, Worker, WorkerMetrics};
use turbine_protocols::{InstanceId, PreprocessedRequest, SamplingOptions, StopConditions};
use turbine_runtime::{EmbeddedEventPlane, EventPlane, Generate};

const CONCURRENCY: usize = 8;
const PROMPT: usize = 64;
const MAX_TOKENS: u32 = 1024;
const WARMUP: Duration = Duration::from_secs(1);

fn request(worker: usize, slot: usize, round: u64) -> PreprocessedRequest {
    let salt = (worker * CONCURRENCY + slot) as u32;
    PreprocessedRequest {
        request_id: format!("w{worker}-s{slot}-r{round}"),
        token_ids: (0..PROMPT as u32)
            .map(|t| (t * 7919 + salt * 31 + round as u32) % 32_000)
            .collect(),
        sampling: SamplingOptions::default(),
        stop: StopConditions {
            max_tokens: MAX_TOKENS,
            stop_token_ids: Vec::new(),
        },
        priority: 0,
    }
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks; USER_HZ is 100 on every mainstream configuration.
    Some((utime + stime) / 100.0)
}

struct Row {
    workers: usize,
    steps_per_worker_s: f64,
    simulated_ms: f64,
    ratio_mean: f64,
    ratio_worst: f64,
    tokens_s: f64,
    cpu_cores: Option<f64>,
}

fn snapshot(handles: &[WorkerHandles]) -> Vec<(u64, f64)> {
    handles
        .iter()
        .map(|h| {
            (
                h.step_seconds.get_sample_count(),
                h.step_seconds.get_sample_sum(),
            )
        })
        .collect()
}

fn measure(rt: &tokio::runtime::Runtime, n: usize, window: Duration) -> Row {
    let registry = prometheus::Registry::new();
    let metrics = WorkerMetrics::register(&registry).expect("metrics register");
    let events: Arc<dyn EventPlane> = Arc::new(EmbeddedEventPlane::default());
    let profile = TimingProfile::default();
    let mut workers = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let id = InstanceId(i as u64 + 1);
        let executor = Box::new(MockExecutor::new(profile.clone()));
        let core = EngineCore::new(EngineConfig::default(), executor, id, i as u64)
            .expect("valid engine configuration");
        let worker_metrics = metrics.for_worker(id);
        handles.push(worker_metrics.clone());
        let worker = Worker::spawn(
            id,
            core,
            events.clone(),
            worker_metrics,
            WorkerOptions::default(),
        )
        .expect("spawn a worker thread");
        workers.push(worker);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tokens = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n * CONCURRENCY);
    for (w, worker) in workers.iter().enumerate() {
        for slot in 0..CONCURRENCY {
            let worker: Arc<dyn Generate> = worker.clone();
            let (stop, tokens) = (stop.clone(), tokens.clone());
            tasks.push(rt.spawn(async move {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut stream =
                        worker.generate(request(w, slot, round), CancellationToken::new());
                    while let Some(item) = stream.next().await {
                        let Ok(output) = item else { return };
                        tokens.fetch_add(output.token_ids.len() as u64, Ordering::Relaxed);
                        if output.finish_reason.is_some() {
                            break;
                        }
                    }
                    round += 1;
                }
            }));
        }
    }

    std::thread::sleep(WARMUP);
    let (before, tokens_before) = (snapshot(&handles), tokens.load(Ordering::Relaxed));
    let (cpu_before, started) = (process_cpu_seconds(), Instant::now());
    std::thread::sleep(window);
    let (after, tokens_after) = (snapshot(&handles), tokens.load(Ordering::Relaxed));
    let (cpu_after, wall) = (process_cpu_seconds(), started.elapsed().as_secs_f64());

    stop.store(true, Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    for worker in &workers {
        worker.stop();
    }

    let mut ratios = Vec::with_capacity(n);
    let (mut steps, mut simulated) = (0u64, 0.0);
    for ((c0, s0), (c1, s1)) in before.iter().zip(&after) {
        let (dc, ds) = (c1 - c0, s1 - s0);
        steps += dc;
        simulated += ds;
        ratios.push(if ds > 0.0 { wall / ds } else { f64::INFINITY });
    }
    Row {
        workers: n,
        steps_per_worker_s: steps as f64 / n as f64 / wall,
        simulated_ms: simulated / steps.max(1) as f64 * 1000.0,
        ratio_mean: n as f64 * wall / simulated,
        ratio_worst: ratios.iter().copied().fold(0.0, f64::max),
        tokens_s: (tokens_after - tokens_before) as f64 / wall,
        cpu_cores: cpu_before.zip(cpu_after).map(|(a, b)| (b - a) / wall),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let counts: Vec<usize> = args
        .next()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 64, 128, 256, 512]);
    let window = Duration::from_secs_f64(
        args.next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0f64)
            .max(0.5),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!(
        "{CONCURRENCY} concurrent decodes per worker, {PROMPT}-token prompts, {MAX_TOKENS} max tokens, \
         default timing profile, speedup 1; {cores} cores; {:.1} s warm-up, {:.1} s window",
        WARMUP.as_secs_f64(),
        window.as_secs_f64()
    );
    println!(
        "{:>7} {:>14} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "workers",
        "steps/s/worker",
        "sim step ms",
        "ratio mean",
        "ratio worst",
        "tokens/s",
        "CPU cores"
    );
    let mut largest_real_time = None;
    for n in counts {
        let row = measure(&rt, n, window);
        println!(
            "{:>7} {:>14.1} {:>12.2} {:>12.3} {:>12.3} {:>12.0} {:>10}",
            row.workers,
            row.steps_per_worker_s,
            row.simulated_ms,
            row.ratio_mean,
            row.ratio_worst,
            row.tokens_s,
            row.cpu_cores
                .map_or_else(|| "n/a".into(), |c| format!("{c:.2}"))
        );
        if row.ratio_mean <= 1.1 {
            largest_real_time = largest_real_time.max(Some(row.workers));
        }
    }
    match largest_real_time {
        Some(n) => println!("largest N within 10% of real time (mean ratio <= 1.1): {n}"),
        None => println!("no N within 10% of real time"),
    }
}
