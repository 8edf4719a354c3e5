//! Tokenization and streaming-detokenization throughput with the SmolLM2 GGUF tokenizer, on a
//! ~4k-token English prompt. Each figure is printed beside a baseline measured in the same run:
//! encode vs HF `encode` with offsets, and `IncrementalDetokenizer::push` vs decoding each token.
//!
//! Run: `cargo run --release -p turbine-tokens --example tokenize_throughput [model.gguf]`
//! (the model comes from `scripts/fixtures.sh`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use turbine_tokens::{GgufFile, IncrementalDetokenizer, Tokenizer, TokensError, cache_dir};

const PARAGRAPH: &str = "The committee met on Tuesday to review the quarterly results, which showed \
    that revenue had grown by 12.5 percent compared with the same period last year. Several members \
    asked whether the increase could be sustained, given the rising cost of materials and the \
    uncertain outlook for consumer demand. The finance director explained that most of the growth \
    came from new contracts signed in the spring, and that the company's investments in automation \
    were beginning to reduce production costs. She also noted that the backlog of orders was the \
    largest it had been in five years. After a long discussion, the committee agreed to approve the \
    budget for the next phase of the project, while asking for a detailed report on risks before \
    the end of the month. ";

/// Runs `f` repeatedly for at least `budget`; returns calls per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        f();
        calls += 1;
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

fn main() -> Result<(), TokensError> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let load_start = Instant::now();
    let tokenizer = Arc::new(Tokenizer::from_gguf(&GgufFile::open(&path)?)?);
    let load = load_start.elapsed();

    let mut prompt = String::new();
    let mut section = 1;
    while tokenizer.encode(&prompt, false)?.len() < 4000 {
        prompt.push_str(&format!("Section {section}. {PARAGRAPH}"));
        section += 1;
    }
    let ids = tokenizer.encode(&prompt, false)?;
    let n = ids.len() as f64;
    let budget = Duration::from_secs(3);

    let encode = rate(budget, || {
        std::hint::black_box(tokenizer.encode(&prompt, false).ok());
    });
    let hf_encode = rate(budget, || {
        std::hint::black_box(tokenizer.inner().encode(prompt.as_str(), false).ok());
    });
    let stream = rate(budget, || {
        let mut d = IncrementalDetokenizer::new(tokenizer.clone(), false);
        for &id in &ids {
            std::hint::black_box(d.push(id));
        }
    });
    let per_token_decode = rate(budget, || {
        for &id in &ids {
            std::hint::black_box(tokenizer.decode(&[id], false).ok());
        }
    });

    println!("model: {}", path.display());
    println!("tokenizer load: {:.0} ms", load.as_secs_f64() * 1e3);
    println!("prompt: {} tokens, {} bytes", ids.len(), prompt.len());
    println!(
        "encode (Tokenizer::encode):           {:>12.0} tokens/s  ({:.2} ms per prompt)",
        encode * n,
        1e3 / encode
    );
    println!(
        "baseline: HF encode with offsets:     {:>12.0} tokens/s  (ratio {:.2}x)",
        hf_encode * n,
        encode / hf_encode
    );
    println!(
        "stream (IncrementalDetokenizer::push): {:>11.0} tokens/s",
        stream * n
    );
    println!(
        "baseline: decode(&[id]) per token:    {:>12.0} tokens/s  (ratio {:.2}x)",
        per_token_decode * n,
        stream / per_token_decode
    );
    Ok(())
}
