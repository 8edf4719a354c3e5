//! Portable dot products of one weight row (GGML bytes) with one quantized or `f32` activation
//! row. For Q4_0, Q4_1 and Q8_0 they are ggml's arithmetic, bit for bit like the SIMD kernels;
//! for the other types the SIMD kernels compute the same sums in another order.
//!
//! Every function takes a whole row: `row.len()` is the row's encoded size and `act` holds the
//! same number of elements (checked by [`QMatrix`](super::QMatrix) and the matmul driver).

use half::{bf16, f16};

use super::blocks::{
    Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q6_K_BYTES, Q8_0_BYTES, QK, QK_K, f16_at, q4_k_scales_mins,
    q6_k_quad,
};
use super::q8::{BlockQ8, BlockQ8K};

/// ggml's x86 accumulation of 32-element blocks (`ggml_vec_dot_q4_0_q8_0` and its siblings), which
/// the AVX2 kernels (one-token and tokens-in-lanes) compute too, so every backend gives the same
/// bits: lane `k` of 8 `f32` lanes gets `d_w d_a` times the integer sum of elements `4k..4k + 4`
/// of each block (fused multiply-add, block after block); the lanes are then summed as `hsum_ps`
/// does.
struct Lanes([f32; 8]);

impl Lanes {
    /// Adds one block: `scale = d_w d_a`, `w` and `a` its 32 integer weights and activations.
    #[inline(always)]
    fn add(&mut self, scale: f32, w: &[i32; QK], a: &[i8; QK]) {
        for (k, lane) in self.0.iter_mut().enumerate() {
            let sum: i32 = (4 * k..4 * k + 4).map(|e| w[e] * a[e] as i32).sum();
            *lane = scale.mul_add(sum as f32, *lane);
        }
    }

    fn sum(&self) -> f32 {
        let l = &self.0;
        ((l[4] + l[0]) + (l[6] + l[2])) + ((l[5] + l[1]) + (l[7] + l[3]))
    }
}

/// The 32 weights of a nibble block (low nibbles are elements 0-15, high nibbles 16-31), minus
/// `offset`.
#[inline(always)]
fn nibbles(qs: &[u8], offset: i32) -> [i32; QK] {
    std::array::from_fn(|e| {
        let q = qs[e % (QK / 2)];
        (if e < QK / 2 { q & 0x0F } else { q >> 4 }) as i32 - offset
    })
}

/// `sum_i d_w d_a (q_w[i] - 8) q_a[i]` over blocks.
pub fn dot_q4_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut lanes = Lanes([0.0; 8]);
    for (b, a) in row.chunks_exact(Q4_0_BYTES).zip(act) {
        lanes.add(f16_at(b, 0) * a.d, &nibbles(&b[2..], 8), &a.qs);
    }
    lanes.sum()
}

/// `sum_i (d_w q_w[i] + m_w) d_a q_a[i] = d_w d_a sum(q_w q_a) + m_w s_a` over blocks, the
/// `m_w s_a` terms summed apart, in order, and added last.
pub fn dot_q4_1(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut lanes = Lanes([0.0; 8]);
    let mut mins = 0f32;
    for (b, a) in row.chunks_exact(Q4_1_BYTES).zip(act) {
        lanes.add(f16_at(b, 0) * a.d, &nibbles(&b[4..], 0), &a.qs);
        mins += f16_at(b, 2) * a.s;
    }
    lanes.sum() + mins
}

pub fn dot_q8_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut lanes = Lanes([0.0; 8]);
    for (b, a) in row.chunks_exact(Q8_0_BYTES).zip(act) {
        let w: [i32; QK] = std::array::from_fn(|e| b[2 + e] as i8 as i32);
        lanes.add(f16_at(b, 0) * a.d, &w, &a.qs);
    }
    lanes.sum()
}

/// Per super-block: `d d_a sum_j sc[j] sum(q_w q_a over sub-block j)
///   - dmin d_a sum_j m[j] (bsums[2j] + bsums[2j + 1])`.
pub fn dot_q4_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, a) in row.chunks_exact(Q4_K_BYTES).zip(act) {
        let (sc, mn) = q4_k_scales_mins(&b[4..16]);
        let qs = &b[16..];
        let mut sumi = 0i32;
        for c in 0..4 {
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                let q = qs[32 * c + l];
                lo += (q & 0x0F) as i32 * a.qs[64 * c + l] as i32;
                hi += (q >> 4) as i32 * a.qs[64 * c + 32 + l] as i32;
            }
            sumi += sc[2 * c] as i32 * lo + sc[2 * c + 1] as i32 * hi;
        }
        let mins: i32 = mn
            .iter()
            .zip(a.bsums.chunks_exact(2))
            .map(|(&m, s)| m as i32 * (s[0] as i32 + s[1] as i32))
            .sum();
        sum += f16_at(b, 0) * a.d * sumi as f32 - f16_at(b, 2) * a.d * mins as f32;
    }
    sum
}

/// Per super-block: `d d_a sum_g sc[g] sum((q_w - 32) q_a over group g of 16)`.
pub fn dot_q6_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, a) in row.chunks_exact(Q6_K_BYTES).zip(act) {
        let mut groups = [0i32; QK_K / 16];
        for h in 0..2 {
            let ql = &b[64 * h..64 * h + 64];
            let qh = &b[128 + 32 * h..128 + 32 * h + 32];
            for l in 0..32 {
                let q = q6_k_quad(ql, qh, l);
                for (k, &q) in q.iter().enumerate() {
                    let e = 128 * h + l + 32 * k;
                    groups[e / 16] += (q as i32 - 32) * a.qs[e] as i32;
                }
            }
        }
        let sumi: i32 = groups
            .iter()
            .zip(&b[192..208])
            .map(|(&g, &sc)| g * sc as i8 as i32)
            .sum();
        sum += f16_at(b, 208) * a.d * sumi as f32;
    }
    sum
}

/// Eight independent partial sums so the compiler can vectorize without reassociating.
#[inline(always)]
fn dot_lanes(row: &[u8], x: &[f32], width: usize, load: impl Fn(&[u8]) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut rows = row.chunks_exact(8 * width);
    let mut xs = x.chunks_exact(8);
    for (w, x) in (&mut rows).zip(&mut xs) {
        for k in 0..8 {
            acc[k] += load(&w[k * width..(k + 1) * width]) * x[k];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (w, &x) in rows.remainder().chunks_exact(width).zip(xs.remainder()) {
        sum += load(w) * x;
    }
    sum
}

pub fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    dot_lanes(row, x, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    dot_lanes(row, x, 2, |b| f16::from_le_bytes([b[0], b[1]]).to_f32())
}

pub fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    dot_lanes(row, x, 2, |b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
}
