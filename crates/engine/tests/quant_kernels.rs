//! The CPU executor's quantized kernels against independent references:
//! - dequantization of every type against `gguf.quants` (fixtures from
//!   `scripts/reference/gguf_quants.py`), bit for bit;
//! - matmul of every type, on every backend this CPU has, against the dequantized matrix times the
//!   input in `f64`, within the error bound of the 8-bit activation quantization;
//! - the same on real tensors of the SmolLM2 GGUF, for each tensor type it contains;
//! - `kernel_speed` (ignored): decode and prefill speed of SmolLM2's MLP shapes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use half::{bf16, f16};
use turbine_engine::executor::cpu::kernels::{
    Backend, DType, PACKED_MIN_TOKENS, QMatrix, dequantize_row,
};
use turbine_engine::rng::Rng;
use turbine_tokens::gguf::GgufFile;

fn cache_dir() -> PathBuf {
    std::env::var_os("TURBINE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/turbine")))
        .expect("neither TURBINE_CACHE nor HOME is set")
}

fn smollm2() -> Arc<GgufFile> {
    let path = cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "missing fixture {}: run `scripts/fixtures.sh` first",
        path.display()
    );
    Arc::new(GgufFile::open(&path).expect("open the SmolLM2 GGUF"))
}

fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::scalar()];
    all.extend(Backend::avx2());
    all
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex byte"))
        .collect()
}

#[test]
fn dequantize_matches_gguf_reference() {
    // Read at run time, not by `env!`: see cpu_reference.rs's `manifest_dir`.
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("tests/fixtures/quants");
    for dtype in DType::ALL {
        let path = dir.join(format!("{}.json", dtype.name().to_lowercase()));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with scripts/reference/gguf_quants.py)",
                path.display()
            )
        });
        let fixture: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
        assert_eq!(fixture["ggml_type"], dtype.ggml_id());
        let bytes = from_hex(fixture["hex"].as_str().expect("hex"));
        let expected: Vec<f32> = fixture["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect();

        let mut out = vec![f32::NAN; expected.len()];
        dequantize_row(dtype, &bytes, &mut out).expect("dequantize");
        for (i, (&got, &want)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{dtype} element {i}: {got} != {want}"
            );
        }
        // The same bytes as a one-row matrix, through the embedding lookup.
        let m = QMatrix::from_bytes(dtype, 1, expected.len(), bytes).expect("matrix");
        let mut row = vec![0f32; expected.len()];
        m.row(0, &mut row).expect("row");
        assert_eq!(row, out, "{dtype}: QMatrix::row");
    }
}

/// Random but valid GGML bytes: random quants, finite scales of realistic size.
fn random_matrix(dtype: DType, rows: usize, cols: usize, rng: &mut Rng) -> QMatrix {
    let n = rows * cols;
    let normal = |rng: &mut Rng| (0..4).map(|_| rng.next_f32()).sum::<f32>() - 2.0;
    match dtype {
        DType::F32 => {
            let v: Vec<f32> = (0..n).map(|_| normal(rng)).collect();
            return QMatrix::from_f32(rows, cols, &v).expect("f32 matrix");
        }
        DType::F16 => {
            let v: Vec<f16> = (0..n).map(|_| f16::from_f32(normal(rng))).collect();
            return QMatrix::from_f16(rows, cols, &v).expect("f16 matrix");
        }
        DType::BF16 => {
            let v: Vec<bf16> = (0..n).map(|_| bf16::from_f32(normal(rng))).collect();
            return QMatrix::from_bf16(rows, cols, &v).expect("bf16 matrix");
        }
        _ => {}
    }
    let scale_fields: &[usize] = match dtype {
        DType::Q4_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q4_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => unreachable!(),
    };
    let block_bytes = dtype.block_bytes();
    let mut bytes: Vec<u8> = (0..n / dtype.block_size() * block_bytes)
        .map(|_| rng.next_u64() as u8)
        .collect();
    for block in bytes.chunks_exact_mut(block_bytes) {
        for &at in scale_fields {
            let v = (0.002 + 0.03 * rng.next_f32()) * if rng.next_f32() < 0.2 { -1.0 } else { 1.0 };
            block[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
    QMatrix::from_bytes(dtype, rows, cols, bytes).expect("quantized matrix")
}

/// Inputs with varied scales per row: normal values, one row with outliers, one all-zero row.
fn random_input(tokens: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..tokens * cols)
        .map(|_| (0..4).map(|_| rng.next_f32()).sum::<f32>() - 2.0)
        .collect();
    if tokens > 1 {
        x[cols..2 * cols]
            .iter_mut()
            .step_by(37)
            .for_each(|v| *v *= 50.0);
    }
    if tokens > 2 {
        x[2 * cols..3 * cols].fill(0.0);
    }
    x
}

/// Checks `out` against `input × Wᵀ` computed in `f64` from the dequantized weights.
///
/// The bound is rigorous: the activations are quantized per block of `act_block` elements with
/// step `d = max|x| / 127`, so each differs from its input by at most `d / 2`, and the dot
/// product by at most `sum_blocks max|x| / 254 * sum|w|` (zero for F32/F16/BF16 weights, which
/// see the `f32` input); `f32` accumulation adds at most `cols * 2^-23 * sum|w x|`. Returns the
/// largest error relative to `|w| |x|` (the row-norm product), for the report.
fn check_against_reference(w: &QMatrix, input: &[f32], out: &[f32], what: &str) -> f64 {
    let (rows, cols) = (w.rows(), w.cols());
    let act_block = match w.dtype() {
        DType::Q4_0 | DType::Q4_1 | DType::Q8_0 => Some(32),
        DType::Q4_K | DType::Q6_K => Some(256),
        DType::F32 | DType::F16 | DType::BF16 => None,
    };
    let wf = w.to_f32();
    let mut worst = 0f64;
    for (t, x) in input.chunks_exact(cols).enumerate() {
        for (r, wr) in wf.chunks_exact(cols).enumerate() {
            let exact: f64 = wr.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
            let abs: f64 = wr
                .iter()
                .zip(x)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let quant: f64 = act_block.map_or(0.0, |n| {
                wr.chunks_exact(n)
                    .zip(x.chunks_exact(n))
                    .map(|(wb, xb)| {
                        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                        amax / 254.0 * wb.iter().map(|v| v.abs() as f64).sum::<f64>()
                    })
                    .sum()
            });
            let bound = quant * (1.0 + 1e-5) + cols as f64 * 2f64.powi(-23) * (abs + quant) + 1e-6;
            let got = out[t * rows + r] as f64;
            let err = (got - exact).abs();
            assert!(
                err <= bound,
                "{what}: token {t} row {r}: got {got}, exact {exact}, error {err} > bound {bound}"
            );
            let norms = wr.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt()
                * x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            if norms > 0.0 {
                worst = worst.max(err / norms);
            }
        }
    }
    worst
}

#[test]
fn matmul_matches_dequantized_reference() {
    let mut rng = Rng::new(7);
    let (rows, cols) = (67, 512);
    for dtype in DType::ALL {
        let w = random_matrix(dtype, rows, cols, &mut rng);
        for tokens in [1, 3, 40] {
            let input = random_input(tokens, cols, &mut rng);
            let mut results = Vec::new();
            for backend in backends() {
                let mut out = vec![f32::NAN; tokens * rows];
                w.matmul_with(backend, &input, &mut out);
                let what = format!("{dtype} T={tokens} {}", backend.name());
                let rel = check_against_reference(&w, &input, &out, &what);
                assert!(rel < 2e-2, "{what}: error {rel} of |w||x|");
                results.push((backend, out));
            }
            // Backends agree far more closely than either does with the exact product: the
            // integer block sums are identical, only the f32 accumulation order may differ, and
            // for the 32-element block types it does not (all follow ggml's order).
            let exact = matches!(dtype, DType::Q4_0 | DType::Q4_1 | DType::Q8_0);
            let (_, first) = &results[0];
            for (backend, out) in &results[1..] {
                for (i, (&a, &b)) in first.iter().zip(out).enumerate() {
                    assert!(
                        if exact {
                            a.to_bits() == b.to_bits()
                        } else {
                            (a - b).abs() <= 1e-4 * (1.0 + a.abs())
                        },
                        "{dtype} T={tokens}: scalar {a} vs {} {b} at {i}",
                        backend.name()
                    );
                }
            }
        }
    }
}

/// The AVX2 many-token kernels (tokens in lanes, from [`PACKED_MIN_TOKENS`] tokens) compute the
/// one-token kernels' integer lane sums and then the same `f32` operations in the same order, so
/// they match the scalar backend (ggml's arithmetic) bit for bit, for whole and partial groups of
/// 8 tokens, tiles of 32 and SmolLM2's shapes; and a token's result does not depend on the batch
/// (batched decoding equals sequential decoding), down to one token.
#[test]
fn packed_kernels_equal_one_token_kernels() {
    let Some(avx2) = Backend::avx2() else {
        eprintln!("no AVX2 on this CPU: skipped");
        return;
    };
    let mut rng = Rng::new(13);
    for (rows, cols) in [(37, 320), (576, 1536), (1536, 576)] {
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            let w = random_matrix(dtype, rows, cols, &mut rng);
            for tokens in [PACKED_MIN_TOKENS, 8, 13, 32, 40, 75] {
                let input = random_input(tokens, cols, &mut rng);
                let mut want = vec![f32::NAN; tokens * rows];
                w.matmul_with(Backend::scalar(), &input, &mut want);
                let mut got = vec![f32::NAN; tokens * rows];
                w.matmul_with(avx2, &input, &mut got);
                for (i, (&a, &b)) in want.iter().zip(&got).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{dtype} {rows}x{cols} T={tokens} at {i}: scalar {a} vs avx2 {b}"
                    );
                }
                for (t, x) in input.chunks_exact(cols).enumerate().take(3) {
                    let mut one = vec![f32::NAN; rows];
                    w.matmul_with(avx2, x, &mut one);
                    assert_eq!(
                        one,
                        got[t * rows..(t + 1) * rows],
                        "{dtype} T={tokens} token {t}"
                    );
                }
            }
        }
    }
}

/// `matmul_many` (one quantization and one parallel section for several matrices) gives each
/// matrix's own `matmul` result, for one token (fused) and several (one after another), and for
/// matrices of different types (not fused).
#[test]
fn matmul_many_equals_separate_matmuls() {
    let mut rng = Rng::new(17);
    for (a, b) in [(DType::Q4_1, DType::Q4_1), (DType::Q8_0, DType::Q4_0)] {
        let (wa, wb) = (
            random_matrix(a, 96, 128, &mut rng),
            random_matrix(b, 37, 128, &mut rng),
        );
        for tokens in [1, 5] {
            let input = random_input(tokens, 128, &mut rng);
            let (mut want_a, mut want_b) = (vec![0f32; tokens * 96], vec![0f32; tokens * 37]);
            wa.matmul(&input, &mut want_a);
            wb.matmul(&input, &mut want_b);
            let (mut out_a, mut out_b) = (vec![0f32; tokens * 96], vec![0f32; tokens * 37]);
            QMatrix::matmul_many([&wa, &wb], &input, [&mut out_a, &mut out_b]);
            assert_eq!((out_a, out_b), (want_a, want_b), "{a} and {b}, T={tokens}");
        }
    }
}

#[test]
fn matmul_default_backend_and_pool_sizes() {
    let mut rng = Rng::new(11);
    let w = random_matrix(DType::Q4_1, 100, 64, &mut rng);
    let input = random_input(70, 64, &mut rng);
    let mut want = vec![0f32; 70 * 100];
    w.matmul_with(Backend::best(), &input, &mut want);
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let mut out = vec![0f32; 70 * 100];
        pool.install(|| w.matmul(&input, &mut out));
        assert_eq!(out, want, "{threads} threads");
    }
    // No tokens: nothing to do.
    w.matmul(&[], &mut []);
}

#[test]
fn smollm2_real_tensors() {
    let file = smollm2();
    let mut rng = Rng::new(3);
    let mut seen = Vec::new();
    for info in file.tensors() {
        // Every tensor of the default model must be usable by the kernels.
        let m = QMatrix::from_gguf(&file, info).unwrap_or_else(|e| panic!("{e}"));
        if seen.contains(&m.dtype()) {
            continue;
        }
        seen.push(m.dtype());
        let m = m.slice_rows(0, m.rows().min(256)).expect("slice");
        let input = random_input(3, m.cols(), &mut rng);
        for backend in backends() {
            let mut out = vec![0f32; 3 * m.rows()];
            m.matmul_with(backend, &input, &mut out);
            let what = format!("{} ({}) on {}", info.name, m.dtype(), backend.name());
            let rel = check_against_reference(&m, &input, &out, &what);
            eprintln!("{what}: max error {rel:.2e} of |w||x|");
        }
    }
    seen.sort_by_key(|t| t.ggml_id());
    eprintln!("SmolLM2 tensor types: {seen:?}");
    assert!(seen.contains(&DType::Q4_1), "{seen:?}");
}

fn median_secs(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The benchmarks' thread pool: 2 threads, or `KS_THREADS`.
fn bench_pool() -> (rayon::ThreadPool, usize) {
    let threads: usize = std::env::var("KS_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    (pool, threads)
}

/// Decode (T = 1), batched decode (T = 8, 32) and prefill (T = 128) speed of SmolLM2's MLP shapes in Q4_1 beside the same
/// matrices in F32, then the other types on the 576 x 1536 shape (K-quants need 256 | cols), on
/// 2 threads (`KS_THREADS` to change). Random weights: the speed does not depend on the values.
/// `KS_TOKENS=32`, `KS_BACKEND=avx2` and `KS_TYPE=Q4_1` keep only those cases (to profile
/// one kernel with `perf stat`).
///
/// `cargo test --release -p turbine-engine --test quant_kernels -- --ignored --nocapture kernel_speed`
#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn kernel_speed() {
    let (pool, threads) = bench_pool();
    let only = |var: &str, value: &str| std::env::var(var).map_or(true, |v| v == value);
    let mut rng = Rng::new(5);
    println!("threads: {threads}; median of many calls; weight GB/s = weight bytes / time");
    println!(
        "{:<10} {:>5} {:<7} {:>4} {:>10} {:>8} {:>8}",
        "matrix", "type", "backend", "T", "time", "GB/s", "GFLOP/s"
    );
    // ffn_down is 576 x 1536 (rows x cols), ffn_gate/ffn_up 1536 x 576.
    let mut cases = Vec::new();
    for (rows, cols) in [(576, 1536), (1536, 576)] {
        let q = random_matrix(DType::Q4_1, rows, cols, &mut rng);
        let f = QMatrix::from_f32(rows, cols, &q.to_f32()).expect("f32 copy");
        cases.extend([q, f]);
    }
    for dtype in [
        DType::Q4_0,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q6_K,
        DType::BF16,
    ] {
        cases.push(random_matrix(dtype, 576, 1536, &mut rng));
    }
    for m in cases.iter().filter(|m| only("KS_TYPE", m.dtype().name())) {
        let (rows, cols) = (m.rows(), m.cols());
        for tokens in [1usize, 8, 32, 128] {
            if !only("KS_TOKENS", &tokens.to_string()) {
                continue;
            }
            let input = random_input(tokens, cols, &mut rng);
            let mut out = vec![0f32; tokens * rows];
            for backend in backends()
                .into_iter()
                .filter(|b| only("KS_BACKEND", b.name()))
            {
                let iters = match (tokens, backend == Backend::scalar()) {
                    (1, _) => 2000,
                    (8 | 32, false) => 200,
                    (_, false) => 50,
                    (_, true) => 8,
                };
                let secs = pool
                    .install(|| median_secs(iters, || m.matmul_with(backend, &input, &mut out)));
                let bytes = m.bytes().len() as f64;
                let flops = 2.0 * (rows * cols * tokens) as f64;
                println!(
                    "{:<10} {:>5} {:<7} {:>4} {:>8.1}us {:>8.2} {:>8.2}",
                    format!("{rows}x{cols}"),
                    m.dtype().name(),
                    backend.name(),
                    tokens,
                    secs * 1e6,
                    bytes / secs / 1e9,
                    flops / secs / 1e9,
                );
            }
        }
    }
}

/// One decode step's matmuls: every weight matrix of SmolLM2 (the tied embedding as the LM head
/// included) against one token, in the model's order, as a decode step streams them from memory
/// (~100 MB, more than the L3). Median of 20 passes, on 2 threads (`KS_THREADS` to change);
/// `KS_TYPE=Q8_0` keeps only the matrices of that type.
///
/// `cargo test --release -p turbine-engine --test quant_kernels -- --ignored --nocapture decode_pass_speed`
#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn decode_pass_speed() {
    let (pool, _) = bench_pool();
    let file = smollm2();
    let mats: Vec<QMatrix> = file
        .tensors()
        .iter()
        .filter(|t| t.dims.len() == 2)
        .map(|t| QMatrix::from_gguf(&file, t).unwrap_or_else(|e| panic!("{e}")))
        .filter(|m| std::env::var("KS_TYPE").map_or(true, |v| v == m.dtype().name()))
        .collect();
    let bytes: usize = mats.iter().map(|m| m.bytes().len()).sum();
    let mut rng = Rng::new(9);
    let inputs: Vec<Vec<f32>> = mats
        .iter()
        .map(|m| random_input(1, m.cols(), &mut rng))
        .collect();
    let mut outs: Vec<Vec<f32>> = mats.iter().map(|m| vec![0f32; m.rows()]).collect();
    for backend in backends().into_iter().filter(|&b| b != Backend::scalar()) {
        let secs = pool.install(|| {
            median_secs(20, || {
                for ((m, x), out) in mats.iter().zip(&inputs).zip(&mut outs) {
                    m.matmul_with(backend, x, out);
                }
            })
        });
        println!(
            "decode pass, {} matrices, {:.1} MB, {}: {:.2} ms ({:.1} GB/s)",
            mats.len(),
            bytes as f64 / 1e6,
            backend.name(),
            secs * 1e3,
            bytes as f64 / secs / 1e9
        );
    }
}
