//! Sampling on the GPU against the exact distribution, on a tiny random model. Needs a GPU, so it
//! is ignored by default; `scripts/gpu/sampling.sh` runs it on a GPU machine (built here with
//! `cargo test --release -p turbine-engine --test cuda_sampling --no-run`).
//!
//! One step gives the logits; then the same step is run with draws whose `u` walks a grid of N
//! points. Inverse-CDF sampling on a grid hits each token about p·N times, so every token's
//! count must be within 2 of p·N, where p is the probability after temperature, top-k, top-p and
//! min-p, computed here in f64.

use turbine_engine::executor::cpu::config::ModelConfig;
use turbine_engine::executor::cuda::{CudaExecutor, CudaOptions, WeightSource};
use turbine_engine::executor::{Batch, Draw, Executor, Samples, SeqStep};

const GRID: usize = 1000;

fn step<'a>(prompt: &'a [u32], table: &'a [u32], draw: Option<Draw>) -> Batch<'a> {
    Batch {
        seqs: vec![SeqStep {
            start: 0,
            new_tokens: prompt,
            block_table: table,
            sample: true,
            all_tokens: prompt,
            prompt_len: prompt.len(),
            draw,
        }],
    }
}

/// Probabilities after the draw's filters; ties at a cut are kept, as on the GPU.
fn expected(logits: &[f32], d: &Draw) -> Vec<f64> {
    let t = d.temperature as f64;
    let mut sorted: Vec<f64> = logits.iter().map(|&l| l as f64).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let max = sorted[0];
    let weight = |l: f64| ((l - max) / t).exp();
    let mut cut = f64::NEG_INFINITY;
    if d.top_k > 0 && (d.top_k as usize) < sorted.len() {
        cut = sorted[d.top_k as usize - 1];
    }
    if d.top_p < 1.0 {
        let total: f64 = sorted
            .iter()
            .filter(|&&l| l >= cut)
            .map(|&l| weight(l))
            .sum();
        let mut mass = 0.0;
        for &l in &sorted {
            mass += weight(l);
            if mass >= d.top_p as f64 * total {
                cut = cut.max(l);
                break;
            }
        }
    }
    if d.min_p > 0.0 {
        cut = cut.max(max + t * (d.min_p as f64).ln());
    }
    let kept: Vec<f64> = logits
        .iter()
        .map(|&l| {
            if l as f64 >= cut {
                weight(l as f64)
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = kept.iter().sum();
    kept.iter().map(|w| w / total).collect()
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu/sampling.sh"]
fn gpu_draws_follow_the_filtered_distribution() {
    let json = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512,
        "vocab_size": 96, "head_dim": 64
    });
    let config = ModelConfig::from_hf(&json).unwrap();
    let options = CudaOptions {
        device: 0,
        gpu_memory_utilization: 0.5,
        block_size: 16,
        num_blocks: Some(8),
        max_batch_tokens: 64,
        max_seqs: 4,
        graph_max_batch: 4,
        max_context: 64,
    };
    let mut ex = CudaExecutor::new(WeightSource::Dummy(config), &options).expect("a GPU");
    let prompt = [5u32, 17, 42, 7];
    let table = [0u32];
    let logits = match ex.execute(&step(&prompt, &table, None)).unwrap().samples {
        Samples::Logits { rows, .. } => rows,
        other => panic!("expected logits, got {other:?}"),
    };
    let draws = [
        (1.0, 0, 1.0, 0.0),
        (0.7, 5, 1.0, 0.0),
        (1.3, 0, 0.8, 0.0),
        (1.0, 20, 0.9, 0.05),
        (0.5, 0, 1.0, 0.2),
    ];
    for (temperature, top_k, top_p, min_p) in draws {
        let draw = |u: f64| Draw {
            temperature,
            top_k,
            top_p,
            min_p,
            u,
        };
        let p = expected(&logits, &draw(0.0));
        let mut counts = vec![0usize; logits.len()];
        for i in 0..GRID {
            let d = draw((i as f64 + 0.5) / GRID as f64);
            match ex.execute(&step(&prompt, &table, Some(d))).unwrap().samples {
                Samples::Tokens(t) => counts[t[0] as usize] += 1,
                other => panic!("expected a token, got {other:?}"),
            }
        }
        for (id, (&n, &p)) in counts.iter().zip(&p).enumerate() {
            let want = p * GRID as f64;
            assert!(
                (n as f64 - want).abs() <= 2.0,
                "draw {:?}: token {id} drawn {n} times, expected {want:.1}",
                draw(0.0)
            );
        }
    }
    let argmax = (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
        .unwrap();
    match ex
        .execute(&step(&prompt, &table, Some(Draw::GREEDY)))
        .unwrap()
        .samples
    {
        Samples::Tokens(t) => assert_eq!(t, vec![argmax as u32]),
        other => panic!("expected a token, got {other:?}"),
    }
}
