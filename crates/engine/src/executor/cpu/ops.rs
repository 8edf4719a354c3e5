//! The element-wise math of a transformer layer (norms, RoPE), on f32 rows.

use super::config::RopeStyle;
use super::ggml::fma_fn;

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

fma_fn! {
    /// Rotates each `head_dim` slice of `x` (one token's heads) by the `[cos, sin]` pairs
    /// `angles`.
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
}
