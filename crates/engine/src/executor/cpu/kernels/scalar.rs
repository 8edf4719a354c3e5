//! Portable dot products of one weight row (GGML bytes) with one quantized or `f32` activation
//! row. These define the results; the SIMD kernels compute the same sums in another order.
//!
//! Every function takes a whole row: `row.len()` is the row's encoded size and `act` holds the
//! same number of elements (checked by [`QMatrix`](super::QMatrix) and the matmul driver).

use half::{bf16, f16};

use super::blocks::{
    Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q6_K_BYTES, Q8_0_BYTES, QK, QK_K, f16_at, q4_k_scales_mins,
    q6_k_quad,
};
use super::q8::{BlockQ8, BlockQ8K};

/// `sum_i d_w d_a (q_w[i] - 8) q_a[i]` over blocks.
pub fn dot_q4_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (b, a) in row.chunks_exact(Q4_0_BYTES).zip(act) {
        let mut sumi = 0i32;
        for (j, &q) in b[2..].iter().enumerate() {
            sumi += ((q & 0x0F) as i32 - 8) * a.qs[j] as i32;
            sumi += ((q >> 4) as i32 - 8) * a.qs[j + QK / 2] as i32;
        }
        sum += f16_at(b, 0) * a.d * sumi as f32;
    }
    sum
}

/// `sum_i (d_w q_w[i] + m_w) d_a q_a[i] = d_w d_a sum(q_w q_a) + m_w s_a` over blocks.
pub fn dot_q4_1(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (b, a) in row.chunks_exact(Q4_1_BYTES).zip(act) {
        let mut sumi = 0i32;
        for (j, &q) in b[4..].iter().enumerate() {
            sumi += (q & 0x0F) as i32 * a.qs[j] as i32;
            sumi += (q >> 4) as i32 * a.qs[j + QK / 2] as i32;
        }
        sum += f16_at(b, 0) * a.d * sumi as f32 + f16_at(b, 2) * a.s;
    }
    sum
}

pub fn dot_q8_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (b, a) in row.chunks_exact(Q8_0_BYTES).zip(act) {
        let sumi: i32 = b[2..]
            .iter()
            .zip(&a.qs)
            .map(|(&w, &x)| w as i8 as i32 * x as i32)
            .sum();
        sum += f16_at(b, 0) * a.d * sumi as f32;
    }
    sum
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
