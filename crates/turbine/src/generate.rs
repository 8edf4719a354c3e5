//! `turbine generate`: greedy generation straight through an executor, no server. Each prompt runs
//! alone, then all of them as one batch; the JSON result holds the tokens of both runs and every
//! step's logits from the lone runs, for comparison against a reference implementation.

use crate::cli::{EngineKind, GenerateArgs, LoadFormat, OnOff};
use crate::serve::weight_source;
use anyhow::{Context, bail};
use std::sync::Arc;
use turbine_engine::executor::cpu::{CpuExecutor, Model};
use turbine_engine::executor::cuda::{CudaExecutor, CudaOptions};
use turbine_engine::executor::{Batch, Executor, Samples, SeqStep};

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.prompts)
        .with_context(|| format!("cannot read {}", args.prompts.display()))?;
    let prompts: Vec<Vec<u32>> =
        serde_json::from_str(&text).context("prompts: a list of lists of token ids")?;
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        bail!("every prompt needs at least one token");
    }
    if args.block_size == 0 {
        bail!("--block-size must be positive");
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) + args.max_tokens;
    let per_seq = longest.div_ceil(args.block_size);
    let num_blocks = per_seq * prompts.len();
    let mut executor: Box<dyn Executor> = match args.engine {
        EngineKind::Cpu => {
            let model = Arc::new(Model::load(&args.model).map_err(anyhow::Error::msg)?);
            Box::new(CpuExecutor::new(model, num_blocks, args.block_size))
        }
        EngineKind::Cuda => {
            let options = CudaOptions {
                device: 0,
                gpu_memory_utilization: 0.9,
                block_size: args.block_size,
                num_blocks: Some(num_blocks),
                max_batch_tokens: prompts.iter().map(Vec::len).sum(),
                max_seqs: prompts.len(),
                graph_max_batch: match args.cuda_graphs {
                    OnOff::On => usize::MAX,
                    OnOff::Off => 0,
                },
                max_context: longest,
            };
            let source = weight_source(&args.model, LoadFormat::Auto)?;
            Box::new(CudaExecutor::new(source, &options)?)
        }
        other => bail!("generate runs the cpu or cuda engine, not {other:?}"),
    };
    let tables: Vec<Vec<u32>> = (0..prompts.len())
        .map(|i| ((i * per_seq) as u32..((i + 1) * per_seq) as u32).collect())
        .collect();
    let mut alone = Generated::default();
    for (prompt, table) in prompts.iter().zip(&tables) {
        let one = greedy(
            executor.as_mut(),
            std::slice::from_ref(prompt),
            std::slice::from_ref(table),
            args.max_tokens,
        )?;
        alone.tokens.extend(one.tokens);
        alone.logits.extend(one.logits);
    }
    let batched = greedy(executor.as_mut(), &prompts, &tables, args.max_tokens)?;
    let result = serde_json::json!({
        "alone": alone.tokens, "logits": alone.logits,
        "batched": batched.tokens, "batched_logits": batched.logits,
    });
    std::fs::write(&args.out, serde_json::to_vec(&result)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(())
}

/// Per sequence: the generated tokens, and the logits of every step (steps × vocab).
#[derive(Default)]
struct Generated {
    tokens: Vec<Vec<u32>>,
    logits: Vec<Vec<Vec<f32>>>,
}

/// Greedy decoding of `prompts` together.
fn greedy(
    executor: &mut dyn Executor,
    prompts: &[Vec<u32>],
    tables: &[Vec<u32>],
    max_tokens: usize,
) -> anyhow::Result<Generated> {
    let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
    let mut out = vec![Vec::new(); prompts.len()];
    let mut logits = vec![Vec::new(); prompts.len()];
    for step in 0..max_tokens {
        let batch = Batch {
            seqs: seqs
                .iter()
                .zip(prompts)
                .zip(tables)
                .map(|((all, prompt), table)| {
                    let start = if step == 0 { 0 } else { all.len() - 1 };
                    SeqStep {
                        start,
                        new_tokens: &all[start..],
                        block_table: table,
                        sample: true,
                        all_tokens: all,
                        prompt_len: prompt.len(),
                        draw: None,
                    }
                })
                .collect(),
        };
        let Samples::Logits { vocab_size, rows } = executor.execute(&batch)?.samples else {
            bail!("the executor returned tokens, not logits");
        };
        for (i, row) in rows.chunks_exact(vocab_size).enumerate() {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (j, &v)| if v > b.1 { (j, v) } else { b },
                )
                .0 as u32;
            out[i].push(best);
            seqs[i].push(best);
            logits[i].push(row.to_vec());
        }
    }
    Ok(Generated {
        tokens: out,
        logits,
    })
}
