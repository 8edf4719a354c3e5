//! The workload the flags describe, made from the tokenizer's vocabulary.

use crate::cli::{WorkloadArgs, WorkloadKind};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use turbine_bench::workload::{
    MultiTurn, SharedPrefix, Synthetic, TraceReplay, Vocabulary, Workload, read_trace,
};
use turbine_tokens::{ModelTokenizer, Tokenizer, cache_dir};

/// Loads the tokenizer and builds the workload; `need_text`: prompts will be sent as text, so
/// they must be made of words that re-encode exactly.
pub fn build(args: &WorkloadArgs, need_text: bool) -> anyhow::Result<(Arc<Tokenizer>, Workload)> {
    let path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let tokenizer = if path.extension().is_some_and(|e| e == "json") {
        Arc::new(Tokenizer::from_json_file(&path)?)
    } else {
        ModelTokenizer::load(&path)
            .with_context(|| format!("cannot load the tokenizer (--tokenizer {})", path.display()))?
            .tokenizer
    };
    let vocabulary = Vocabulary::for_tokenizer(&tokenizer, need_text)?;
    let workload = match args.workload {
        WorkloadKind::Synthetic => Synthetic {
            requests: args.requests.unwrap_or(100),
            input: args.input_len,
            output: args.output_len,
            seed: args.seed,
        }
        .build(&vocabulary),
        WorkloadKind::SharedPrefix => SharedPrefix {
            groups: args.groups,
            users: args.users,
            prefix: args.prefix_len,
            input: args.input_len,
            output: args.output_len,
            seed: args.seed,
        }
        .build(&vocabulary),
        WorkloadKind::MultiTurn => MultiTurn {
            conversations: args.conversations,
            turns: args.turns,
            input: args.input_len,
            output: args.output_len,
            think_time: Duration::from_millis(args.think_time_ms),
            seed: args.seed,
        }
        .build(&vocabulary),
        WorkloadKind::Trace => {
            let path = args
                .trace
                .as_ref()
                .context("--workload trace needs --trace FILE")?;
            let records = read_trace(path)?;
            let seconds = |s: f64| {
                Duration::try_from_secs_f64(s).context("trace start and duration must be >= 0")
            };
            TraceReplay {
                block_size: args.trace_block_size,
                speed: args.speed,
                start: seconds(args.trace_start_secs)?,
                duration: args.trace_duration_secs.map(seconds).transpose()?,
                max_requests: args.requests,
                seed: args.seed,
            }
            .build(&records, &path.display().to_string(), &vocabulary)?
        }
    };
    anyhow::ensure!(
        !workload.requests.is_empty(),
        "the workload has no requests ({})",
        workload.description
    );
    Ok((tokenizer, workload))
}
