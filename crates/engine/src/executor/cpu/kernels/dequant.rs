//! Dequantization of GGML rows to `f32`, with GGML's exact arithmetic (the same operations in
//! the same order as `dequantize_row_*` in `ggml-quants.c` and `gguf.quants` in Python, so results
//! are bit-identical to both).

use half::{bf16, f16};

use super::blocks::{
    Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q6_K_BYTES, Q8_0_BYTES, QK, QK_K, f16_at, q4_k_scales_mins,
    q6_k_quad,
};
use super::{DType, KernelError};

/// Dequantizes `bytes`, one row or any whole number of blocks of `dtype`, into `out`.
///
/// `out.len()` must be a multiple of the block size and `bytes.len()` exactly the encoded size of
/// that many elements; otherwise nothing is written and a [`KernelError::Layout`] says why.
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let expected = dtype.row_bytes(out.len()).ok_or_else(|| {
        KernelError::Layout(format!(
            "{dtype}: {} elements is not a multiple of the block size {}",
            out.len(),
            dtype.block_size()
        ))
    })?;
    if bytes.len() != expected {
        return Err(KernelError::Layout(format!(
            "{dtype}: {} elements take {expected} bytes, got {}",
            out.len(),
            bytes.len()
        )));
    }
    match dtype {
        DType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        DType::Q4_0 => blocks(bytes, Q4_0_BYTES, out, QK, q4_0),
        DType::Q4_1 => blocks(bytes, Q4_1_BYTES, out, QK, q4_1),
        DType::Q8_0 => blocks(bytes, Q8_0_BYTES, out, QK, q8_0),
        DType::Q4_K => blocks(bytes, Q4_K_BYTES, out, QK_K, q4_k),
        DType::Q6_K => blocks(bytes, Q6_K_BYTES, out, QK_K, q6_k),
    }
    Ok(())
}

fn blocks(bytes: &[u8], block_bytes: usize, out: &mut [f32], n: usize, f: fn(&[u8], &mut [f32])) {
    for (b, y) in bytes.chunks_exact(block_bytes).zip(out.chunks_exact_mut(n)) {
        f(b, y);
    }
}

/// Element `j < 16` is the low nibble of byte `j`, element `j + 16` its high nibble.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(QK / 2);
    for (j, &q) in b[2..Q4_0_BYTES].iter().enumerate() {
        lo[j] = d * ((q & 0x0F) as i32 - 8) as f32;
        hi[j] = d * ((q >> 4) as i32 - 8) as f32;
    }
}

fn q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (lo, hi) = y.split_at_mut(QK / 2);
    for (j, &q) in b[4..Q4_1_BYTES].iter().enumerate() {
        lo[j] = d * (q & 0x0F) as f32 + m;
        hi[j] = d * (q >> 4) as f32 + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[2..Q8_0_BYTES]) {
        *o = q as i8 as f32 * d;
    }
}

/// Sub-block `j` (32 elements) uses scale/min `j`; sub-blocks `2c` and `2c + 1` are the low and
/// high nibbles of bytes `32c..32c + 32`.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let (sc, mn) = q4_k_scales_mins(&b[4..16]);
    let qs = &b[16..Q4_K_BYTES];
    for c in 0..4 {
        let q = &qs[32 * c..32 * c + 32];
        let (d1, m1) = (d * sc[2 * c] as f32, dmin * mn[2 * c] as f32);
        let (d2, m2) = (d * sc[2 * c + 1] as f32, dmin * mn[2 * c + 1] as f32);
        let out = &mut y[64 * c..64 * c + 64];
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// Two halves of 128 elements; in half `h`, element `l + 32k` (`l < 32`, `k < 4`) takes its low
/// 4 bits from `ql[64h + l + 32(k % 2)]` (low nibble for `k < 2`, high for `k >= 2`) and its high
/// 2 bits from bits `2k..2k + 2` of `qh[32h + l]`; element `e` uses scale `e / 16`.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for h in 0..2 {
        let ql = &b[64 * h..64 * h + 64];
        let qh = &b[128 + 32 * h..128 + 32 * h + 32];
        let out = &mut y[128 * h..128 * h + 128];
        for l in 0..32 {
            let q = q6_k_quad(ql, qh, l);
            for (k, &q) in q.iter().enumerate() {
                let e = l + 32 * k;
                let sc = b[192 + 8 * h + e / 16] as i8;
                out[e] = (d * sc as f32) * (q as i32 - 32) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_mismatched_sizes() {
        let mut out = [0f32; 32];
        assert!(dequantize_row(DType::Q4_0, &[0; 17], &mut out).is_err());
        assert!(dequantize_row(DType::Q4_K, &[0; 144], &mut out).is_err());
        assert!(dequantize_row(DType::Q4_0, &[0; 18], &mut out).is_ok());
    }

    #[test]
    fn q4_0_nibble_order() {
        let mut b = [0u8; 18];
        b[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2] = 0xA3; // element 0 = 3, element 16 = 10
        let mut out = [0f32; 32];
        dequantize_row(DType::Q4_0, &b, &mut out).unwrap();
        assert_eq!(out[0], 0.5 * (3.0 - 8.0));
        assert_eq!(out[16], 0.5 * (10.0 - 8.0));
        assert_eq!(out[1], -4.0);
    }
}
