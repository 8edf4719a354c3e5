//! A decoding token's attention with AVX2, FMA and F16C, for the AVX2 build of llama.cpp
//! ([`Order::Vector`] with 8 lanes): the same arithmetic as [`attention`](super::attention)'s, read
//! straight from the paged cache (each row converted to `f32` in registers as it is used, no
//! `f32` copy of the context).
//!
//! # Safety
//!
//! [`decode`] requires AVX2, FMA and F16C ([`available`] returned `true`).

use std::arch::x86_64::*;

use super::attention::Heads;
use super::ggml::{self, Order};
use super::kv_cache::{KvCache, KvElem};

/// Whether this CPU can run [`decode`].
pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Dimensions per `ggml_vec_dot_f16` step: 4 accumulators of 8 lanes.
const STEP: usize = 32;

/// Whether [`decode`] takes heads of `head_dim` (whole [`STEP`]s: `ggml_vec_dot_f16` has no
/// leftover elements).
pub fn fits(head_dim: usize) -> bool {
    head_dim.is_multiple_of(STEP)
}

/// Attention of one decoding token (`q`: `heads × head_dim`) over positions `0..len` of the
/// sequence with `table`, layer `layer`, into `out`. `rows` and `scores` are scratch.
///
/// # Safety
/// As in the module documentation; `fits(shape.head_dim)`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn decode<T: KvElem>(
    cache: &KvCache<T>,
    layer: usize,
    table: &[u32],
    len: usize,
    q: &[f32],
    shape: Heads,
    rows: &mut Vec<usize>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let hd = shape.head_dim;
    assert!(fits(hd));
    let (k, v) = cache.layer(layer);
    let width = cache.width();
    // Where each position's row starts in `k` and `v`.
    rows.clear();
    rows.extend((0..len).map(|p| cache.slot(table, p) * width));
    let group = shape.heads / shape.kv_heads;
    let scale = _mm256_set1_ps(1.0 / (hd as f32).sqrt());
    // scores[h * len + p], positions 8 at a time for every head: the rows are read in order.
    scores.resize(shape.heads * len, 0.0);
    for (c, chunk) in rows.chunks(8).enumerate() {
        // The next positions' K, and these positions' V for after the softmax: the rows are
        // scattered over the cache's blocks, too far apart for the hardware's prefetch.
        for &row in rows.iter().skip(c * 8 + 8).take(8) {
            prefetch(&k[row..][..width]);
        }
        for &row in chunk {
            prefetch(&v[row..][..width]);
        }
        for (h, scores) in scores.chunks_exact_mut(len).enumerate() {
            let dots = dots8(&q[h * hd..][..hd], k, chunk, h / group * hd);
            let mut lanes = [0f32; 8];
            // SAFETY: `lanes` is 8 writable `f32`.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_mul_ps(dots, scale)) };
            scores[c * 8..][..chunk.len()].copy_from_slice(&lanes[..chunk.len()]);
        }
    }
    for scores in scores.chunks_exact_mut(len) {
        ggml::softmax::<8>(scores);
    }
    T::round(scores);
    for (h, (w, out)) in scores
        .chunks_exact(len)
        .zip(out.chunks_exact_mut(hd))
        .enumerate()
    {
        for (d, out) in out.chunks_exact_mut(STEP).enumerate() {
            out.copy_from_slice(&weighted_sum(v, rows, w, h / group * hd + d * STEP));
        }
    }
}

/// Asks for the cache lines of `x` to be loaded.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch<T>(x: &[T]) {
    let bytes = std::mem::size_of_val(x);
    let p = x.as_ptr().cast::<i8>();
    for at in (0..bytes).step_by(64).chain([bytes - 1]) {
        // SAFETY: `p + at` is within `x` (and a prefetch reads nothing anyway).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(at)) };
    }
}

/// `q ·` the `q.len()` values at `at` of each row in `rows` (up to 8; missing ones give 0), as
/// `ggml_vec_dot_f16` sums them ([`Order::Vector`]: 4 accumulators over steps of 32, added
/// pairwise, then the `hadd` tree), the 8 trees run side by side.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dots8<T: KvElem>(q: &[f32], k: &[T], rows: &[usize], at: usize) -> __m256 {
    let mut sums = [_mm256_setzero_ps(); 8];
    for (sum, &row) in sums.iter_mut().zip(rows) {
        *sum = dot_lanes(q, &k[row + at..][..q.len()]);
    }
    // Per row, lanes `a_0..a_7`: `t_i = a_i + a_{i+4}`, then `(t0 + t1) + (t2 + t3)`; the first `hadd`
    // adds within pairs, the second the pairs, leaving row `r`'s sum in lane `r`.
    let [s0, s1, s2, s3, s4, s5, s6, s7] = sums;
    _mm256_hadd_ps(
        _mm256_hadd_ps(add_halves(s0, s4), add_halves(s1, s5)),
        _mm256_hadd_ps(add_halves(s2, s6), add_halves(s3, s7)),
    )
}

/// `[a_lo + a_hi, b_lo + b_hi]` of the 128-bit halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn add_halves(a: __m256, b: __m256) -> __m256 {
    _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(a, b),
        _mm256_permute2f128_ps::<0x31>(a, b),
    )
}

/// The 8 lanes of `ggml_vec_dot_f16(q, k)` before its final sum: 4 accumulators of 8 lanes,
/// each over every fourth group of 8 products, added as `(a0 + a2) + (a1 + a3)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_lanes<T: KvElem>(q: &[f32], k: &[T]) -> __m256 {
    let mut acc = [_mm256_setzero_ps(); 4];
    for (q, k) in q.chunks_exact(STEP).zip(k.chunks_exact(STEP)) {
        for (s, acc) in acc.iter_mut().enumerate() {
            let x = lanes_f32(&q[8 * s..][..8]);
            // SAFETY: AVX and F16C are enabled here.
            let y = unsafe { T::load8(k[8 * s..][..8].try_into().unwrap()) };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
    }
    _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]))
}

/// 8 `f32` as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lanes_f32(x: &[f32]) -> __m256 {
    let x: &[f32; 8] = x.try_into().unwrap();
    // SAFETY: `x` is 8 readable `f32`.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

/// `sum_p w[p] * v[rows[p] + at..][..STEP]` as [`Order::Vector`] sums positions: position `p`
/// in lane `p % 8` of accumulator `(p / 8) % 4`, each lane's chain of FMAs in order, then the
/// order's tree.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn weighted_sum<T: KvElem>(v: &[T], rows: &[usize], w: &[f32], at: usize) -> [f32; STEP] {
    let order = Order::Vector;
    let stride = 8 * order.slots();
    let mut acc = [[[0f32; STEP]; 8]; 4];
    // Chain `i` (lane `i % 8` of accumulator `i / 8`) sums positions `i + stride * n`: `whole`
    // of them, and one more for the first `w.len() % stride` chains. (Loops of the same length
    // for every chain, and the extra one apart: the branches are predicted.)
    let whole = w.len() / stride;
    for (i, chain) in acc.as_flattened_mut().iter_mut().enumerate() {
        let mut sum = [_mm256_setzero_ps(); STEP / 8];
        for p in (i..).step_by(stride).take(whole) {
            add_row(&mut sum, &v[rows[p] + at..][..STEP], w[p]);
        }
        let p = i + stride * whole;
        if p < w.len() {
            add_row(&mut sum, &v[rows[p] + at..][..STEP], w[p]);
        }
        for (chain, sum) in chain.chunks_exact_mut(8).zip(sum) {
            // SAFETY: `chain` is 8 writable `f32`.
            unsafe { _mm256_storeu_ps(chain.as_mut_ptr(), sum) };
        }
    }
    order.finish::<_, 8>(&acc)
}

/// `sum += wp * row`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn add_row<T: KvElem>(sum: &mut [__m256; STEP / 8], row: &[T], wp: f32) {
    let wp = _mm256_set1_ps(wp);
    for (sum, x) in sum.iter_mut().zip(row.chunks_exact(8)) {
        // SAFETY: AVX and F16C are enabled here.
        let x = unsafe { T::load8(x.try_into().unwrap()) };
        *sum = _mm256_fmadd_ps(wp, x, *sum);
    }
}
