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
/// reading K and V from the paged cache. `out` gets `heads × head_dim` values.
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
    let scale = 1.0 / (head_dim as f32).sqrt();
    out.fill(0.0);
    for h in 0..heads {
        let g = h / group;
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        scores.clear();
        let mut max = f32::NEG_INFINITY;
        for p in 0..=pos {
            let (k, _) = cache.read(layer, cache.slot(block_table, p));
            let kh = &k[g * head_dim..(g + 1) * head_dim];
            let s = qh.iter().zip(kh).map(|(a, b)| a * b).sum::<f32>() * scale;
            max = max.max(s);
            scores.push(s);
        }
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let oh = &mut out[h * head_dim..(h + 1) * head_dim];
        for (p, s) in scores.iter().enumerate() {
            let (_, v) = cache.read(layer, cache.slot(block_table, p));
            let vh = &v[g * head_dim..(g + 1) * head_dim];
            let w = s / sum;
            for (o, x) in oh.iter_mut().zip(vh) {
                *o += w * x;
            }
        }
    }
}
