//! The element-wise and attention math of a transformer layer, on f32 rows.

use super::config::RopeStyle;
use super::kv_cache::KvCache;

/// `out = x / rms(x) * weight`, row by row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (row, out_row) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for ((o, v), w) in out_row.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// RMSNorm of every `head_dim` slice in place (Qwen3's q/k norms).
pub fn rms_norm_heads(x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    for head in x.chunks_exact_mut(n) {
        let mean_square = head.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for (v, w) in head.iter_mut().zip(weight) {
            *v *= scale * w;
        }
    }
}

/// Rotates each `head_dim` slice of `x` (one token's heads) by its position.
pub fn rope(x: &mut [f32], head_dim: usize, pos: usize, inv_freq: &[f32], style: RopeStyle) {
    let half = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &freq) in inv_freq.iter().enumerate().take(half) {
            let (sin, cos) = (pos as f32 * freq).sin_cos();
            let (a, b) = match style {
                RopeStyle::Neox => (i, i + half),
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cos - x1 * sin;
            head[b] = x0 * sin + x1 * cos;
        }
    }
}

/// `gate = silu(gate) * up`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Causal attention of one token (all its query heads) over positions `0..=pos` of its sequence,
/// reading K and V from the paged cache block by block. The heads that share a KV head are done
/// together, so each K and V row is read once per token. `out` gets `heads × head_dim` values.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    cache: &KvCache,
    layer: usize,
    block_table: &[u32],
    pos: usize,
    q: &[f32],
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let group = heads / kv_heads;
    let len = pos + 1;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let width = kv_heads * head_dim;
    out.fill(0.0);
    // scores[h_in_group * len + p]
    scores.clear();
    scores.resize(group * len, 0.0);
    for g in 0..kv_heads {
        let kv = g * head_dim..(g + 1) * head_dim;
        let mut p = 0;
        for (keys, _) in cache.blocks(layer, block_table, len) {
            for k_row in keys.chunks_exact(width) {
                let k = &k_row[kv.clone()];
                for j in 0..group {
                    let h = g * group + j;
                    scores[j * len + p] = dot(&q[h * head_dim..(h + 1) * head_dim], k) * scale;
                }
                p += 1;
            }
        }
        for j in 0..group {
            softmax(&mut scores[j * len..(j + 1) * len]);
        }
        let mut p = 0;
        for (_, values) in cache.blocks(layer, block_table, len) {
            for v_row in values.chunks_exact(width) {
                let v = &v_row[kv.clone()];
                for j in 0..group {
                    let h = g * group + j;
                    axpy(
                        scores[j * len + p],
                        v,
                        &mut out[h * head_dim..(h + 1) * head_dim],
                    );
                }
                p += 1;
            }
        }
    }
}

/// Dot product written in 8 independent lanes so the compiler vectorizes it.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline]
fn axpy(w: f32, x: &[f32], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += w * v;
    }
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}
