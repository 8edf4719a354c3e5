//! Quantization of activations (the `f32` input of a matmul) to 8-bit blocks, done once per input
//! row so that the weight dot products run on integers, in llama.cpp's (ggml's x86) arithmetic, so
//! that our logits follow llama.cpp's on the same GGUF:
//! - [`BlockQ8`] is ggml's `block_q8_0` / `block_q8_1` (`quantize_row_q8_0` / `_q8_1`):
//!   `d = amax / 127`, `q = round(x * (127 / amax))` (to nearest, ties to even), and `d` and
//!   `s = d * sum(q)` stored as `f16` (here as the `f32` value of that `f16`).
//! - [`BlockQ8K`] is ggml's `block_q8_K` (`quantize_row_q8_K_ref`): the signed value of largest
//!   magnitude `max` gives `q = round(x * (-127 / max))`, `d = 1 / (-127 / max)` in `f32`.
//!
//! Invariants:
//! - Quantized values are in `-127..=127` (never `-128`). The AVX2 kernels rely on this
//!   (`_mm256_sign_epi8` of `-128` overflows, and `maddubs` pair sums stay below `i16::MAX`).
//! - An all-zero block has `d = 0` and all `q = 0`.
//! - [`BlockQ8K::bsums`] are the sums of `q` over each 16 elements (for Q4_K's mins and Q6_K's
//!   `-32` offset), computed from the stored `q`, so the integer identities are exact.

use half::f16;

use super::blocks::{QK, QK_K};

/// 32 activations: `x[i] ≈ d * qs[i]`. Used against Q4_0, Q4_1 and Q8_0 weights.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8 {
    /// The block's scale, rounded to `f16`.
    pub d: f32,
    /// `d * sum(qs)` (with `d` before rounding), rounded to `f16`: the term Q4_1's offset `m`
    /// multiplies.
    pub s: f32,
    pub qs: [i8; QK],
}

/// 256 activations: `x[i] ≈ d * qs[i]`. Used against Q4_K and Q6_K weights.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    /// `bsums[g] = sum(qs[16g..16g + 16])`.
    pub bsums: [i16; QK_K / 16],
}

impl Default for BlockQ8 {
    fn default() -> Self {
        BlockQ8 {
            d: 0.0,
            s: 0.0,
            qs: [0; QK],
        }
    }
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// Rounds to the nearest integer, ties to even, for `|v| < 2^22` (GGML's `nearest_int`, and what
/// `_mm256_round_ps` does in its x86 quantizers): adding `1.5 * 2^23` leaves the integer in the low
/// mantissa bits. Branch-free and vectorizable, unlike `f32::round`, which is a library call on
/// baseline x86_64.
#[inline(always)]
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

#[inline]
fn quantize(x: &[f32], scale: f32, qs: &mut [i8]) {
    for (q, &v) in qs.iter_mut().zip(x) {
        // |v * scale| <= 127 up to rounding; the clamp keeps NaN and rounding excursions in range.
        *q = nearest_int(v * scale).clamp(-127, 127) as i8;
    }
}

#[inline(always)]
fn to_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// Quantizes `x` (a multiple of 32 long) into `out` (`x.len() / 32` blocks).
pub fn quantize_q8(x: &[f32], out: &mut [BlockQ8]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        quantize(x, if amax != 0.0 { 127.0 / amax } else { 0.0 }, &mut b.qs);
        b.d = to_f16(d);
        b.s = to_f16(d * b.qs.iter().map(|&q| q as i32).sum::<i32>() as f32);
    }
}

/// Quantizes `x` (a multiple of 256 long) into `out` (`x.len() / 256` blocks).
pub fn quantize_q8k(x: &[f32], out: &mut [BlockQ8K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        // The first element of largest magnitude, with its sign.
        let max = x
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let iscale = if max != 0.0 { -127.0 / max } else { 0.0 };
        quantize(x, iscale, &mut b.qs);
        b.d = if max != 0.0 { 1.0 / iscale } else { 0.0 };
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&q| q as i16).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_matches_round_ties_even() {
        for v in [
            0.0f32, 0.5, 1.5, 2.5, -0.5, -1.5, 126.49, -126.51, 127.0, -127.0, 3.999,
        ] {
            assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v}");
        }
    }

    #[test]
    fn q8_round_trip_is_within_half_a_step() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
            .collect();
        let mut b = vec![BlockQ8::default(); 2];
        quantize_q8(&x, &mut b);
        for (blk, x) in b.iter().zip(x.chunks_exact(32)) {
            assert!(blk.qs.iter().all(|&q| q >= -127));
            // The quants are rounded with the exact scale; `d` is then stored as `f16`.
            let d = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (&q, &v) in blk.qs.iter().zip(x) {
                assert!((q as f32 * d - v).abs() <= d * 0.5 + 1e-6);
            }
            let sum: i32 = blk.qs.iter().map(|&q| q as i32).sum();
            assert_eq!(blk.d, to_f16(d));
            assert_eq!(blk.s, to_f16(d * sum as f32));
        }
    }

    #[test]
    fn q8k_block_sums_and_zero_blocks() {
        let mut x = vec![0f32; 512];
        for (i, v) in x[256..].iter_mut().enumerate() {
            *v = (i as f32 * 0.37).sin();
        }
        let mut b = vec![BlockQ8K::default(); 2];
        quantize_q8k(&x, &mut b);
        assert_eq!(b[0].d, 0.0);
        assert!(b[0].qs.iter().all(|&q| q == 0));
        for g in 0..16 {
            let s: i16 = b[1].qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
            assert_eq!(b[1].bsums[g], s);
        }
        assert!(b[1].qs.iter().any(|&q| q.abs() == 127));
    }
}
