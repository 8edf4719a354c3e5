//! The element-wise and attention math of a transformer layer, on f32 rows.

use super::config::RopeStyle;
use super::ggml::{self, Order};
use super::kv_cache::{KvCache, KvElem};

/// `1 / rms(x)` as ggml computes it: squares in `f32`, summed in `f64`.
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|v| (v * v) as f64).sum();
    let mean_square = (sum / x.len() as f64) as f32;
    1.0 / (mean_square + eps).sqrt()
}

/// `out = x / rms(x) * weight`, row by row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (row, out_row) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let scale = inv_rms(row, eps);
        for ((o, v), w) in out_row.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// RMSNorm of every `head_dim` slice in place (Qwen3's q/k norms).
pub fn rms_norm_heads(x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    for head in x.chunks_exact_mut(n) {
        let scale = inv_rms(head, eps);
        for (v, w) in head.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

/// RoPE angles as ggml computes them (`ggml_rope_cache_init`): for position `p`, pair `i` turns
/// by `p * s^i / divisor_i`, the power taken by repeated `f32` multiplication from `p`, with
/// `s = base^(-2 / dims)`; the divisors are Llama 3.1's per-frequency scaling (1 otherwise).
pub struct Rope {
    theta_scale: f32,
    divisors: Vec<f32>,
}

impl Rope {
    pub fn new(base: f32, head_dim: usize, divisors: Vec<f32>) -> Rope {
        debug_assert_eq!(divisors.len(), head_dim / 2);
        Rope {
            theta_scale: base.powf(-2.0 / head_dim as f32),
            divisors,
        }
    }

    /// `[cos, sin]` of every pair's angle at `pos`, into `out` (`head_dim` long).
    pub fn angles(&self, pos: usize, out: &mut [f32]) {
        let mut theta = pos as f32;
        for (cs, d) in out.chunks_exact_mut(2).zip(&self.divisors) {
            let (sin, cos) = (theta / d).sin_cos();
            cs.copy_from_slice(&[cos, sin]);
            theta *= self.theta_scale;
        }
    }
}

/// Rotates each `head_dim` slice of `x` (one token's heads) by the `[cos, sin]` pairs `angles`
/// (run it under [`ggml::with_fma`]).
#[inline(always)]
pub fn rope(x: &mut [f32], angles: &[f32], style: RopeStyle) {
    let (head_dim, half) = (angles.len(), angles.len() / 2);
    for head in x.chunks_exact_mut(head_dim) {
        for (i, cs) in angles.chunks_exact(2).enumerate() {
            let (cos, sin) = (cs[0], cs[1]);
            let (a, b) = match style {
                RopeStyle::Neox => (i, i + half),
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            };
            let (x0, x1) = (head[a], head[b]);
            // ggml's `x0*cos - x1*sin`, with the compiler's fused multiply-add.
            head[a] = x0.mul_add(cos, -(x1 * sin));
            head[b] = x0.mul_add(sin, x1 * cos);
        }
    }
}

/// Per-thread buffers of [`attend`].
#[derive(Default)]
pub struct AttendScratch {
    scores: Vec<f32>,
    row: Vec<f32>,
    /// Per head of a KV group: [`Lanes`]-shaped sums of `p * v`, `[head][slot][lane][dim]`.
    pv: Vec<f32>,
}

/// Causal attention of one token (all its query heads) over positions `0..=pos` of its sequence,
/// reading K and V from the paged cache block by block. The heads that share a KV head are done
/// together, so each K and V row is read once per token. `out` gets `heads × head_dim` values.
///
/// The arithmetic is llama.cpp's (see [`ggml`]): products with K and V are taken in the cache's
/// precision (`q` must already be rounded to it, [`KvElem::round`]; the softmax weights are
/// rounded here), summed in `order`, and position `p` of the sequence is lane `p % 16`.
#[allow(clippy::too_many_arguments)]
pub fn attend<T: KvElem>(
    cache: &KvCache<T>,
    layer: usize,
    block_table: &[u32],
    pos: usize,
    q: &[f32],
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    order: Order,
    scratch: &mut AttendScratch,
    out: &mut [f32],
) {
    ggml::with_fma(|| {
        attend_in_order(
            cache,
            layer,
            block_table,
            pos,
            q,
            (heads, kv_heads, head_dim),
            order,
            scratch,
            out,
        )
    })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend_in_order<T: KvElem>(
    cache: &KvCache<T>,
    layer: usize,
    block_table: &[u32],
    pos: usize,
    q: &[f32],
    (heads, kv_heads, head_dim): (usize, usize, usize),
    order: Order,
    scratch: &mut AttendScratch,
    out: &mut [f32],
) {
    let group = heads / kv_heads;
    let len = pos + 1;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let width = kv_heads * head_dim;
    let slots = match order {
        Order::Tiled => 1,
        Order::Vector => 4,
    };
    let AttendScratch { scores, row, pv } = scratch;
    row.resize(head_dim, 0.0);
    // scores[h_in_group * len + p]
    scores.clear();
    scores.resize(group * len, 0.0);
    let per_head = slots * 16 * head_dim;
    for g in 0..kv_heads {
        let kv = g * head_dim..(g + 1) * head_dim;
        let mut p = 0;
        for (keys, _) in cache.blocks(layer, block_table, len) {
            for k_row in keys.chunks_exact(width) {
                let k = T::as_f32(&k_row[kv.clone()], row);
                for j in 0..group {
                    let h = g * group + j;
                    let qh = &q[h * head_dim..(h + 1) * head_dim];
                    scores[j * len + p] = ggml::dot(qh, k, order) * scale;
                }
                p += 1;
            }
        }
        for j in 0..group {
            ggml::softmax(&mut scores[j * len..(j + 1) * len]);
        }
        T::round(scores);
        pv.clear();
        pv.resize(group * per_head, 0.0);
        let mut p = 0;
        for (_, values) in cache.blocks(layer, block_table, len) {
            for v_row in values.chunks_exact(width) {
                let v = T::as_f32(&v_row[kv.clone()], row);
                let slot = (p / 16) % slots;
                for j in 0..group {
                    let at = j * per_head + (slot * 16 + p % 16) * head_dim;
                    let w = scores[j * len + p];
                    for (acc, v) in pv[at..at + head_dim].iter_mut().zip(v) {
                        *acc = w.mul_add(*v, *acc);
                    }
                }
                p += 1;
            }
        }
        for j in 0..group {
            let h = g * group + j;
            let sums = &pv[j * per_head..(j + 1) * per_head];
            let lane = |slot: usize, l: usize, d: usize| sums[(slot * 16 + l) * head_dim + d];
            for (d, o) in out[h * head_dim..(h + 1) * head_dim].iter_mut().enumerate() {
                *o = ggml::reduce16(&std::array::from_fn(|l| match order {
                    Order::Tiled => lane(0, l, d),
                    Order::Vector => {
                        (lane(0, l, d) + lane(2, l, d)) + (lane(1, l, d) + lane(3, l, d))
                    }
                }));
            }
        }
    }
}
