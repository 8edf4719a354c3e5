//! `turbine gpu-bench`: times the CUDA executor without a server. Decode rows run `batch`
//! sequences at `context` tokens each (their KV blocks allocated, not filled: timing needs only
//! the reads) with greedy sampling on the GPU; prefill rows run one sequence of `n` tokens. Each
//! row prints one JSON line; rows that do not fit in GPU memory say so. With `--cuda-graphs
//! on,off` each decode row is timed with and without CUDA graphs, one after the other. Last, one
//! line per cuBLASLt GEMM shape: the candidates' times and the algorithm kept.

use crate::cli::{GpuBenchArgs, OnOff};
use crate::serve::weight_source;
use serde_json::json;
use std::time::Instant;
use turbine_engine::executor::cuda::{CudaExecutor, CudaOptions};
use turbine_engine::executor::{Batch, SeqStep};

pub fn run(args: GpuBenchArgs) -> anyhow::Result<()> {
    let source = weight_source(&args.model, args.load_format)?;
    let longest_prefill = args.prefill.iter().copied().max().unwrap_or(0);
    let options = CudaOptions {
        device: 0,
        gpu_memory_utilization: args.gpu_memory_utilization,
        block_size: args.block_size,
        num_blocks: None,
        max_batch_tokens: longest_prefill.max(args.batch.iter().copied().max().unwrap_or(1)),
        max_seqs: args.batch.iter().copied().max().unwrap_or(1),
        graph_max_batch: if args.cuda_graphs.contains(&OnOff::On) {
            args.batch.iter().copied().max().unwrap_or(1)
        } else {
            0
        },
        max_context: args.context.iter().copied().max().unwrap_or(0) + args.steps + 3,
    };
    let started = Instant::now();
    let mut ex = CudaExecutor::new(source, &options)?;
    let bs = args.block_size;
    let info = json!({
        "kind": "setup", "device": ex.device_name(), "num_blocks": ex.num_blocks(),
        "weight_bytes": ex.weight_bytes(), "kv_bytes_per_token": ex.kv_bytes_per_token(),
        "gemv": ex.gemv_layout(), "libraries": ex.libraries(), "load_s": started.elapsed().as_secs_f64(),
    });
    println!("{info}");
    for &n in args.prefill.iter().filter(|&&n| n > 0) {
        let blocks = n.div_ceil(bs);
        if blocks > ex.num_blocks() {
            println!(
                "{}",
                json!({"kind": "prefill", "tokens": n, "skipped": "no room"})
            );
            continue;
        }
        let table: Vec<u32> = (0..blocks as u32).collect();
        let tokens: Vec<u32> = (0..n).map(|i| (i * 7919 % 1000) as u32 + 1).collect();
        let step = || Batch {
            seqs: vec![SeqStep {
                start: 0,
                new_tokens: &tokens,
                block_table: &table,
                sample: true,
                all_tokens: &tokens,
                prompt_len: n,
                draw: None,
            }],
        };
        let mut times = Vec::new();
        for _ in 0..3 {
            let t0 = Instant::now();
            ex.greedy(&step())?;
            times.push(t0.elapsed().as_secs_f64());
        }
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{}",
            json!({"kind": "prefill", "tokens": n, "ms": best * 1e3, "tokens_per_s": n as f64 / best})
        );
    }
    for &context in &args.context {
        for &batch in &args.batch {
            let per_seq = (context + args.steps + 3).div_ceil(bs);
            if per_seq * batch > ex.num_blocks() {
                println!(
                    "{}",
                    json!({"kind": "decode", "batch": batch, "context": context, "skipped": "no room"})
                );
                continue;
            }
            let tables: Vec<Vec<u32>> = (0..batch)
                .map(|i| ((i * per_seq) as u32..((i + 1) * per_seq) as u32).collect())
                .collect();
            for &graphs in &args.cuda_graphs {
                ex.set_graphs(graphs == OnOff::On);
                let mut last: Vec<Vec<u32>> = vec![vec![1]; batch];
                let (mut times, mut warmup) = (Vec::new(), Vec::new());
                for s in 0..args.steps.max(1) + 2 {
                    let b = Batch {
                        seqs: (0..batch)
                            .map(|i| SeqStep {
                                start: context + s,
                                new_tokens: &last[i],
                                block_table: &tables[i],
                                sample: true,
                                all_tokens: &last[i],
                                prompt_len: context,
                                draw: None,
                            })
                            .collect(),
                    };
                    let last_step = s == args.steps.max(1) + 1;
                    if last_step {
                        ex.timeline_reset()?;
                    }
                    let t0 = Instant::now();
                    let next = ex.greedy(&b)?;
                    let dt = t0.elapsed().as_secs_f64();
                    if s >= 2 {
                        times.push(dt);
                    } else {
                        warmup.push(dt * 1e3);
                    }
                    // Random-weight argmaxes can leave the vocabulary's range only through NaN; keep ids valid.
                    last = next
                        .into_iter()
                        .map(|t| vec![t.min(ex.config().vocab as u32 - 1)])
                        .collect();
                }
                // The last step's kernels, one line per launch (TURBINE_CUDA_TIMELINE).
                let spans = ex.timeline()?;
                let origin = spans.first().map_or(0, |s| s.start);
                for span in &spans {
                    println!(
                        "{}",
                        json!({
                            "kind": "timeline", "batch": batch, "context": context,
                            "graphs": graphs == OnOff::On, "kernel": span.kernel,
                            "start_us": (span.start - origin) as f64 / 1e3,
                            "end_us": (span.end - origin) as f64 / 1e3,
                            "warps": span.warps, "sms": span.sms,
                        })
                    );
                }
                times.sort_by(f64::total_cmp);
                let median = times[times.len() / 2];
                let kv = batch * (context + args.steps / 2) * ex.kv_bytes_per_token();
                println!(
                    "{}",
                    json!({
                        "kind": "decode", "batch": batch, "context": context, "step_ms": median * 1e3,
                        "graphs": graphs == OnOff::On,
                        // The shape's first step (run directly, GEMM algorithms chosen) and
                        // second (with graphs: captured, then launched), in ms.
                        "warmup_ms": warmup,
                        "weight_bytes": ex.weight_bytes(), "kv_bytes": kv,
                        "gbps": (ex.weight_bytes() + kv) as f64 / median / 1e9,
                    })
                );
            }
        }
    }
    // Which cuBLASLt algorithm each GEMM shape runs, and the candidates' times that chose it.
    for c in ex.gemm_choices() {
        let (t, n, k, f32_out) = c.shape;
        println!(
            "{}",
            json!({
                "kind": "gemm", "t": t, "n": n, "k": k, "f32_out": f32_out,
                "candidates_us": c.candidates_us, "chosen": c.chosen,
            })
        );
    }
    Ok(())
}
