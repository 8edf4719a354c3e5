//! Decode through CUDA graphs against decode without them, on a small random model: two
//! executors with the same weights run the same prompts, then decode steps of several batch
//! sizes. At a captured size (no padding) logits must be bit for bit the same; at a padded size
//! (3 → 4 and 13 → 16 sequences) the GEMMs see more rows and may round differently, so greedy
//! tokens must match and logits stay within a small tolerance. Sampled draws must pick the same
//! tokens. Needs a GPU, so it is ignored by default; `scripts/gpu/graphs.sh` runs it on a GPU
//! machine (built here with `cargo test --release -p turbine-engine --test cuda_graphs
//! --no-run`).

use turbine_engine::executor::cpu::config::ModelConfig;
use turbine_engine::executor::cuda::{CudaExecutor, CudaOptions, WeightSource};
use turbine_engine::executor::{Batch, Draw, Executor, Samples, SeqStep};

const BLOCK: usize = 16;
const MAX_CONTEXT: usize = 512;
const DECODE_STEPS: usize = 6;

fn executor(graphs: bool) -> CudaExecutor {
    // head_dim 128 with 4 query heads per KV head: the tensor-core decode attention and, up to
    // 4 tokens, the fused GEMVs, as for Llama-3.1-8B.
    let json = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 512, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 1024,
        "vocab_size": 1000, "head_dim": 128
    });
    let config = ModelConfig::from_hf(&json).unwrap();
    let options = CudaOptions {
        device: 0,
        gpu_memory_utilization: 0.3,
        block_size: BLOCK,
        num_blocks: Some(16 * MAX_CONTEXT / BLOCK),
        max_batch_tokens: 16 * 400,
        max_seqs: 16,
        graph_max_batch: if graphs { 16 } else { 0 },
        max_context: MAX_CONTEXT,
    };
    CudaExecutor::new(WeightSource::Dummy(config), &options).expect("a GPU")
}

fn logits(ex: &mut CudaExecutor, batch: &Batch<'_>) -> Vec<f32> {
    match ex.execute(batch).unwrap().samples {
        Samples::Logits { rows, .. } => rows,
        other => panic!("expected logits, got {other:?}"),
    }
}

fn tokens(ex: &mut CudaExecutor, batch: &Batch<'_>) -> Vec<u32> {
    match ex.execute(batch).unwrap().samples {
        Samples::Tokens(t) => t,
        other => panic!("expected tokens, got {other:?}"),
    }
}

fn seq<'a>(
    start: usize,
    new: &'a [u32],
    table: &'a [u32],
    prompt_len: usize,
    draw: Option<Draw>,
) -> SeqStep<'a> {
    SeqStep {
        start,
        new_tokens: new,
        block_table: table,
        sample: true,
        all_tokens: new,
        prompt_len,
        draw,
    }
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu/graphs.sh"]
fn graphs_decode_as_without_them() {
    let mut on = executor(true);
    let mut off = executor(false);
    let vocab = on.config().vocab;
    for n in [1usize, 3, 4, 8, 13] {
        let captured = [1, 2, 4, 8, 16].contains(&n);
        // Contexts from 37 to 337 tokens: short ones leave most of the graph's splits empty.
        let prompts: Vec<Vec<u32>> = (0..n)
            .map(|i| {
                (0..37 + 23 * i)
                    .map(|k| ((k * 31 + i * 7) % 997) as u32)
                    .collect()
            })
            .collect();
        // Tables as long as each sequence needs, narrower than the graphs' (the 2D upload).
        let tables: Vec<Vec<u32>> = (0..n)
            .map(|i| {
                let first = (i * MAX_CONTEXT / BLOCK) as u32;
                let blocks = (prompts[i].len() + DECODE_STEPS).div_ceil(BLOCK) as u32;
                (first..first + blocks).collect()
            })
            .collect();
        let prefill = Batch {
            seqs: (0..n)
                .map(|i| seq(0, &prompts[i], &tables[i], prompts[i].len(), None))
                .collect(),
        };
        let first = logits(&mut on, &prefill);
        assert_eq!(first, logits(&mut off, &prefill), "prefill, batch {n}");
        let mut last: Vec<u32> = first.chunks(vocab).map(argmax).collect();
        let mut worst = 0f32;
        for step in 0..DECODE_STEPS {
            let news: Vec<[u32; 1]> = last.iter().map(|&t| [t]).collect();
            // Even steps bring logits back; odd ones sample on the GPU with draws.
            let draw = (step % 2 == 1).then_some(Draw {
                temperature: 0.8,
                top_k: 0,
                top_p: 0.95,
                min_p: 0.0,
                u: 0.37,
            });
            let batch = Batch {
                seqs: (0..n)
                    .map(|i| {
                        let len = prompts[i].len();
                        seq(len + step, &news[i], &tables[i], len, draw)
                    })
                    .collect(),
            };
            if draw.is_some() {
                let picked = tokens(&mut on, &batch);
                assert_eq!(picked, tokens(&mut off, &batch), "batch {n}, step {step}");
                last = picked;
                continue;
            }
            let (a, b) = (logits(&mut on, &batch), logits(&mut off, &batch));
            let diff = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            worst = worst.max(diff);
            if captured {
                assert_eq!(a, b, "batch {n}, step {step}");
            } else {
                assert!(
                    diff < 2e-2,
                    "batch {n}, step {step}: logits differ by {diff}"
                );
            }
            last = a.chunks(vocab).map(argmax).collect();
            let other: Vec<u32> = b.chunks(vocab).map(argmax).collect();
            assert_eq!(last, other, "greedy tokens, batch {n}, step {step}");
        }
        println!(
            "batch {n}: {DECODE_STEPS} decode steps, greedy and sampled tokens equal, logits \
             differ by at most {worst:e}"
        );
    }
    assert!(on.graphs_captured() >= 4, "{} graphs", on.graphs_captured());
    assert_eq!(off.graphs_captured(), 0);
    println!("{} graphs captured", on.graphs_captured());
}
