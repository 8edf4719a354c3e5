//! The CPU executor against independent references:
//! - llama.cpp on the same GGUF (SmolLM2-135M-Instruct Q4_1): teacher-forced top-1 agreement and
//!   greedy continuations (fixtures from `scripts/reference/llama_cpp.py`, one made by its native
//!   build on an AVX-512 CPU, one on an AVX2 CPU; each checked with the executor reproducing that
//!   build, whatever this CPU is);
//! - an exact float64 forward pass of the same weights (`scripts/reference/smollm2_f64.py`);
//! - tiny random safetensors Llama, Qwen3 and Qwen2 models against the numpy float64 reference
//!   (`scripts/reference/numpy_llama.py`, run by this test) to 1e-4 relative error.
//!
//! Both llama.cpp and this executor quantize activations to 8 bits before quantized matmuls, which
//! moves logits by ~0.1 from the exact result; where the top two logits are closer than that,
//! either top-1 may be right. This executor reproduces llama.cpp's CPU arithmetic (see
//! `executor/cpu/ggml.rs`), so against llama.cpp (the build that made each fixture) the logits
//! are equal and every top-1 and greedy token agrees; the thresholds leave room for a C
//! library whose `sinf`/`cosf`/`powf` round differently. Against the exact float64 reference,
//! the margins recorded in the fixture say where comparisons are meaningful.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use turbine_engine::EngineConfig;
use turbine_engine::core::EngineCore;
use turbine_engine::executor::cpu::{CpuExecutor, Model, Width};
use turbine_protocols::{InstanceId, PreprocessedRequest, SamplingOptions, StopConditions};

const BLOCK: usize = 16;

/// This crate's directory in the checkout under test, read at run time: a test binary that cargo
/// reuses from another checkout of the same target directory would carry that checkout's path
/// from `env!`.
fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
}

fn fixture(name: &str) -> Value {
    let path = manifest_dir().join("tests/fixtures/reference").join(name);
    serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture JSON")
}

/// The llama.cpp fixtures, by the build that made them.
const LLAMA_CPP: [(&str, Width); 2] = [
    ("smollm2_llama_cpp.json", Width::Avx512),
    ("smollm2_llama_cpp_avx2.json", Width::Avx2),
];

/// The build a llama.cpp fixture says made it (its `llama_print_system_info`).
fn fixture_width(reference: &Value) -> Width {
    let info = reference["system_info"].as_str().expect("system_info");
    if info.contains("AVX512 = 1") {
        Width::Avx512
    } else {
        Width::Avx2
    }
}

fn smollm2() -> Arc<Model> {
    let path = turbine_tokens::cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fixtures.sh",
        path.display()
    );
    Arc::new(Model::load(&path).expect("load SmolLM2"))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// (agreement over all positions, agreement where the reference's margin ≥ `margin`, count there)
/// with the executor reproducing the `width` build of llama.cpp.
fn teacher_forced(reference: &Value, margin: f64, width: Width) -> (f64, f64, usize) {
    let model = smollm2();
    let vocab = model.config.vocab;
    let tf = &reference["teacher_forced"];
    let tokens = ids(&tf["tokens"]);
    let mut executor =
        CpuExecutor::new(model, tokens.len().div_ceil(BLOCK), BLOCK).with_width(width);
    let logits = executor.score(&tokens, BLOCK).expect("score");
    let expected = ids(&tf["top1"]);
    let margins: Vec<f64> = tf["top1_margin"]
        .as_array()
        .expect("margins")
        .iter()
        .map(|m| m.as_f64().unwrap_or(0.0))
        .collect();
    let ours: Vec<u32> = logits.chunks_exact(vocab).map(argmax).collect();
    if let Some(top1_logits) = tf["top1_logit"].as_array() {
        let diffs: Vec<f64> = top1_logits
            .iter()
            .zip(logits.chunks_exact(vocab).zip(&expected))
            .map(|(l, (row, &id))| (row[id as usize] as f64 - l.as_f64().unwrap_or(0.0)).abs())
            .collect();
        eprintln!(
            "logit of the reference's top-1: mean |difference| {:.4}, max {:.4}",
            diffs.iter().sum::<f64>() / diffs.len() as f64,
            diffs.iter().copied().fold(0.0, f64::max)
        );
    }
    let agree = ours.iter().zip(&expected).filter(|(a, b)| a == b).count();
    let confident: Vec<usize> = (0..expected.len())
        .filter(|&i| margins[i] >= margin)
        .collect();
    let agree_confident = confident
        .iter()
        .filter(|&&i| ours[i] == expected[i])
        .count();
    (
        agree as f64 / expected.len() as f64,
        agree_confident as f64 / confident.len().max(1) as f64,
        confident.len(),
    )
}

#[test]
fn teacher_forced_top1_agrees_with_llama_cpp() {
    for (name, width) in LLAMA_CPP {
        let reference = fixture(name);
        assert_eq!(fixture_width(&reference), width, "{name}");
        let (all, confident, n) = teacher_forced(&reference, 0.3, width);
        eprintln!(
            "{name}: llama.cpp top-1 agreement: {:.2}% of all positions, {:.2}% of {n} with margin ≥ 0.3",
            all * 100.0,
            confident * 100.0
        );
        assert!(
            reference["teacher_forced"]["tokens"]
                .as_array()
                .expect("tokens")
                .len()
                >= 256
        );
        assert!(all >= 0.99, "{name}: top-1 agreement {all}");
        assert_eq!(
            confident, 1.0,
            "{name}: every position where llama.cpp is sure agrees"
        );
    }
}

#[test]
fn teacher_forced_top1_agrees_with_exact_reference() {
    let (all, confident, n) = teacher_forced(&fixture("smollm2_f64.json"), 0.3, Width::native());
    eprintln!(
        "f64 top-1 agreement: {:.2}% of all positions, {:.2}% of {n} with margin ≥ 0.3",
        all * 100.0,
        confident * 100.0
    );
    assert!(all >= 0.97, "top-1 agreement {all}");
    assert_eq!(confident, 1.0);
}

#[test]
fn greedy_continuations_match_llama_cpp_while_it_is_sure() {
    for (name, width) in LLAMA_CPP {
        greedy_continuations(name, width);
    }
}

fn greedy_continuations(name: &str, width: Width) {
    let reference = fixture(name);
    let model = smollm2();
    let config = EngineConfig {
        num_blocks: 64,
        block_size: BLOCK,
        max_model_len: 1024,
        ..Default::default()
    };
    let executor = Box::new(CpuExecutor::new(model, config.num_blocks, BLOCK).with_width(width));
    let mut core = EngineCore::new(config, executor, InstanceId(1), 0).expect("engine");
    let cases = reference["greedy"].as_array().expect("greedy");
    let mut seqs = Vec::new();
    for case in cases {
        let request = PreprocessedRequest {
            request_id: case["name"].as_str().unwrap_or("case").into(),
            token_ids: ids(&case["prompt_tokens"]),
            sampling: SamplingOptions {
                temperature: 0.0,
                ..Default::default()
            },
            stop: StopConditions {
                max_tokens: 32,
                stop_token_ids: vec![],
            },
            priority: 0,
        };
        seqs.push(core.add_request(request).0);
    }
    // All five run batched together.
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); cases.len()];
    for _ in 0..200 {
        if !core.has_work() {
            break;
        }
        for out in core.step().expect("step").outputs {
            let i = seqs
                .iter()
                .position(|&s| s == out.seq)
                .expect("known sequence");
            outputs[i].extend(&out.output.token_ids);
        }
    }
    let mut identical = 0;
    for (case, ours) in cases.iter().zip(&outputs) {
        let expected = ids(&case["output_tokens"]);
        let margins: Vec<f64> = case["output_margins"]
            .as_array()
            .expect("margins")
            .iter()
            .map(|m| m.as_f64().unwrap_or(0.0))
            .collect();
        // Compare up to the first step where llama.cpp's own choice was a near tie.
        let sure = margins
            .iter()
            .position(|&m| m < 0.5)
            .unwrap_or(expected.len());
        assert_eq!(
            ours[..sure],
            expected[..sure],
            "{name} {}: first {sure} tokens",
            case["name"]
        );
        identical += usize::from(*ours == expected);
    }
    eprintln!(
        "{name}: greedy: {identical} of {} continuations identical to llama.cpp over all 32 tokens",
        cases.len()
    );
    assert!(
        identical >= 4,
        "{name}: {identical} of 5 greedy continuations identical"
    );
}

fn venv_python() -> PathBuf {
    let python = turbine_tokens::cache_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh (it creates the venv with numpy)",
        python.display()
    );
    python
}

fn numpy_reference(args: &[&str]) -> String {
    let script = manifest_dir().join("../../scripts/reference/numpy_llama.py");
    let out = Command::new(venv_python())
        .arg(script)
        .args(args)
        .output()
        .expect("run numpy_llama.py");
    assert!(
        out.status.success(),
        "numpy_llama.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn tiny_safetensors_models_match_the_numpy_f64_reference() {
    let tokens: Vec<u32> = vec![
        1, 17, 200, 3, 99, 42, 7, 7, 128, 255, 0, 64, 31, 5, 180, 90, 2, 11, 250, 33,
    ];
    let list = tokens
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for (arch, seed) in [("llama", "1"), ("qwen3", "2"), ("qwen2", "3")] {
        let dir = std::env::temp_dir().join(format!("turbine-tiny-{arch}-{}", std::process::id()));
        let dir_str = dir.to_str().expect("path");
        numpy_reference(&["--make-model", dir_str, "--arch", arch, "--seed", seed]);
        let expected: Value = serde_json::from_str(&numpy_reference(&[
            dir_str,
            "--tokens",
            &list,
            "--all-logits",
        ]))
        .expect("json");
        let model = Arc::new(Model::load(&dir).expect("load tiny model"));
        let vocab = model.config.vocab;
        // Block size 4: the 20 positions span several paged blocks.
        let mut executor = CpuExecutor::new(model, 8, 4);
        let ours = executor.score(&tokens, 4).expect("score");
        let rows = expected["logits"].as_array().expect("logits");
        assert_eq!(rows.len(), tokens.len());
        let mut worst: f64 = 0.0;
        for (pos, row) in rows.iter().enumerate() {
            let row: Vec<f64> = row
                .as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
                .collect();
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            let diff = row
                .iter()
                .zip(&ours[pos * vocab..(pos + 1) * vocab])
                .map(|(r, o)| (r - *o as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            worst = worst.max(diff / norm);
        }
        eprintln!("{arch}: worst relative logit error {worst:.2e}");
        assert!(worst < 1e-4, "{arch}: relative error {worst}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
