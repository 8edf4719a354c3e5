//! KV index micro-benchmark on a real trace: the Mooncake conversation trace becomes a stream of
//! KV events and lookups over 16 workers, then that stream is replayed against `KvIndexer`.
//!
//! The stream is made once, outside the timing: each request is looked up, sent to the worker
//! holding most of its prefix (round-robin when nobody holds any), and that worker's LRU cache
//! of `--capacity` blocks stores its missing blocks and evicts the oldest (Stored and Removed
//! events). Each trace block (512 tokens) becomes `--split` index blocks (`--split 32` models
//! 16-token engine blocks).
//!
//! Ops are counted per block, as Dynamo counts them: a stored or removed block is one op, a
//! lookup is one op per prompt block. Reported: ops/s replaying everything on one thread; lookup
//! latency percentiles; ops/s with events and lookups on two threads at once; and memory per
//! indexed block.
//!
//! `cargo run --release -p turbine-router --example index_bench -- [--trace FILE] [--workers 16]
//!  [--capacity 4096] [--split 1] [--repeat 5]`

use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};
use turbine_protocols::InstanceId;
use turbine_router::policy::{Candidate, Prompt, choose};
use turbine_router::{CostWeights, KvIndexer, Load, RoutingPolicy};

enum Op {
    Lookup(Vec<u64>),
    Store(InstanceId, Vec<u64>),
    Remove(InstanceId, Vec<u64>),
}

impl Op {
    fn blocks(&self) -> usize {
        match self {
            Op::Lookup(h) | Op::Store(_, h) | Op::Remove(_, h) => h.len(),
        }
    }
}

struct Args {
    trace: PathBuf,
    workers: u64,
    capacity: usize,
    split: u64,
    repeat: usize,
}

fn args() -> Args {
    let mut args = Args {
        trace: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/traces/mooncake_conversation.jsonl"),
        workers: 16,
        capacity: 4096,
        split: 1,
        repeat: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--trace" => args.trace = value.into(),
            "--workers" => args.workers = value.parse().expect("--workers"),
            "--capacity" => args.capacity = value.parse().expect("--capacity"),
            "--split" => args.split = value.parse().expect("--split"),
            "--repeat" => args.repeat = value.parse().expect("--repeat"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// The trace's prompts as index keys: hash id `h`, part `k` of `split`, becomes one 64-bit key
/// (mixed, as real sequence hashes are).
fn prompts(args: &Args) -> Vec<Vec<u64>> {
    let text = std::fs::read_to_string(&args.trace)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", args.trace.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("trace line");
            v["hash_ids"]
                .as_array()
                .expect("hash_ids")
                .iter()
                .flat_map(|id| {
                    let id = id.as_u64().expect("hash id");
                    (0..args.split).map(move |k| mix(id * args.split + k))
                })
                .collect()
        })
        .collect()
}

fn mix(x: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&x.to_le_bytes())
}

/// A worker's cache in the stream generator: LRU over blocks.
#[derive(Default)]
struct Lru {
    stamp: HashMap<u64, u64>,
    order: VecDeque<(u64, u64)>,
    clock: u64,
}

impl Lru {
    fn touch(&mut self, hash: u64) -> bool {
        self.clock += 1;
        let fresh = self.stamp.insert(hash, self.clock).is_none();
        self.order.push_back((self.clock, hash));
        fresh
    }

    fn evict(&mut self, capacity: usize) -> Vec<u64> {
        let mut evicted = Vec::new();
        while self.stamp.len() > capacity {
            let Some((t, h)) = self.order.pop_front() else {
                break;
            };
            if self.stamp.get(&h) == Some(&t) {
                self.stamp.remove(&h);
                evicted.push(h);
            }
        }
        evicted
    }

    fn prefix(&self, hashes: &[u64]) -> usize {
        hashes
            .iter()
            .take_while(|h| self.stamp.contains_key(h))
            .count()
    }
}

/// Requests counted as in flight on their worker, for the generator's load balance.
const IN_FLIGHT: usize = 64;

fn stream(args: &Args, prompts: &[Vec<u64>]) -> Vec<Op> {
    let mut caches: Vec<Lru> = (0..args.workers).map(|_| Lru::default()).collect();
    let mut recent: VecDeque<(usize, u64)> = VecDeque::new();
    let mut active = vec![0u64; args.workers as usize];
    let mut rng = StdRng::seed_from_u64(1);
    let mut ops = Vec::new();
    for (i, hashes) in prompts.iter().enumerate() {
        ops.push(Op::Lookup(hashes.clone()));
        // Placed as the `kv` policy would, with the last requests as the load.
        let candidates: Vec<Candidate> = caches
            .iter()
            .enumerate()
            .map(|(w, c)| Candidate {
                worker: InstanceId(w as u64 + 1),
                overlap_blocks: c.prefix(hashes) as u32,
                load: Load {
                    active_blocks: active[w],
                    ..Default::default()
                },
            })
            .collect();
        let prompt = Prompt {
            tokens: hashes.len(),
            block_size: 1,
        };
        let w = choose(
            RoutingPolicy::Kv,
            &candidates,
            prompt,
            CostWeights::default(),
            i,
            &mut rng,
        );
        active[w] += hashes.len() as u64;
        recent.push_back((w, hashes.len() as u64));
        if recent.len() > IN_FLIGHT
            && let Some((done, blocks)) = recent.pop_front()
        {
            active[done] -= blocks;
        }
        let id = InstanceId(w as u64 + 1);
        let stored: Vec<u64> = hashes
            .iter()
            .copied()
            .filter(|&h| caches[w].touch(h))
            .collect();
        if !stored.is_empty() {
            ops.push(Op::Store(id, stored));
        }
        let removed = caches[w].evict(args.capacity);
        if !removed.is_empty() {
            ops.push(Op::Remove(id, removed));
        }
    }
    ops
}

fn apply(index: &KvIndexer, op: &Op) {
    match op {
        Op::Lookup(hashes) => {
            std::hint::black_box(index.find_matches(hashes));
        }
        Op::Store(w, hashes) => index.store(*w, hashes.iter().copied()),
        Op::Remove(w, hashes) => index.remove(*w, hashes.iter().copied()),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let args = args();
    let prompts = prompts(&args);
    let ops = stream(&args, &prompts);
    let block_ops: usize = ops.iter().map(Op::blocks).sum();
    let lookups: Vec<&Op> = ops.iter().filter(|o| matches!(o, Op::Lookup(_))).collect();
    let events: Vec<&Op> = ops.iter().filter(|o| !matches!(o, Op::Lookup(_))).collect();
    let lookup_blocks: usize = lookups.iter().map(|o| o.blocks()).sum();
    println!(
        "trace {} requests, {} workers, capacity {} blocks each, split {}: {} events, {} lookups, {} block ops ({} in lookups)",
        prompts.len(),
        args.workers,
        args.capacity,
        args.split,
        events.len(),
        lookups.len(),
        block_ops,
        lookup_blocks
    );

    // Memory first, before other rounds leave freed memory behind: the index after the whole
    // stream, measured as resident-set growth.
    let before = rss_bytes();
    let index = KvIndexer::new();
    for op in ops.iter().filter(|o| !matches!(o, Op::Lookup(_))) {
        apply(&index, op);
    }
    let grown = rss_bytes().saturating_sub(before);
    let held: u64 = (1..=args.workers)
        .map(|w| index.worker_blocks(InstanceId(w)))
        .sum();
    println!(
        "memory: {} blocks indexed ({} worker-block pairs), resident set +{:.1} MiB = {:.0} bytes per block",
        index.num_blocks(),
        held,
        grown as f64 / (1 << 20) as f64,
        grown as f64 / index.num_blocks().max(1) as f64
    );
    drop(index);

    // One thread, the stream in order.
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    for round in 0..args.repeat {
        let index = KvIndexer::new();
        let started = Instant::now();
        for op in &ops {
            apply(&index, op);
        }
        rates.push(block_ops as f64 / started.elapsed().as_secs_f64());
        if round == 0 {
            // Lookup latency, timed one by one on a second pass over the same stream.
            let index = KvIndexer::new();
            for op in &ops {
                if let Op::Lookup(h) = op {
                    let t = Instant::now();
                    std::hint::black_box(index.find_matches(h));
                    latencies.push(t.elapsed());
                } else {
                    apply(&index, op);
                }
            }
        }
    }
    latencies.sort();
    println!(
        "one thread: {:.2} M block ops/s (median of {}); find_matches p50 {:?}, p99 {:?}, max {:?}",
        median(rates) / 1e6,
        args.repeat,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );

    // Two threads: a writer applies the events while a reader runs the lookups.
    let mut rates = Vec::new();
    for _ in 0..args.repeat {
        let index = KvIndexer::new();
        let barrier = Barrier::new(2);
        let started = std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                for op in &events {
                    apply(&index, op);
                }
            });
            barrier.wait();
            let started = Instant::now();
            for op in &lookups {
                apply(&index, op);
            }
            started
        });
        rates.push(block_ops as f64 / started.elapsed().as_secs_f64());
    }
    println!(
        "two threads (events | lookups): {:.2} M block ops/s (median of {})",
        median(rates) / 1e6,
        args.repeat
    );
}
