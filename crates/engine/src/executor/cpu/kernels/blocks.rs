//! Byte-level helpers shared by dequantization and the dot products: little-endian half floats
//! and the packed 6-bit scales of Q4_K.
//!
//! Callers pass whole blocks (slices of exactly the type's block size in bytes), so the fixed
//! offsets below are always in bounds.

use half::f16;

/// Bytes of a Q4_0 block: `f16 d`, 16 bytes of nibbles.
pub(crate) const Q4_0_BYTES: usize = 18;
/// Bytes of a Q4_1 block: `f16 d`, `f16 m`, 16 bytes of nibbles.
pub(crate) const Q4_1_BYTES: usize = 20;
/// Bytes of a Q8_0 block: `f16 d`, 32 `i8`.
pub(crate) const Q8_0_BYTES: usize = 34;
/// Bytes of a Q4_K super-block: `f16 d`, `f16 dmin`, 12 scale bytes, 128 bytes of nibbles.
pub(crate) const Q4_K_BYTES: usize = 144;
/// Bytes of a Q6_K super-block: 128 `ql`, 64 `qh`, 16 `i8` scales, `f16 d`.
pub(crate) const Q6_K_BYTES: usize = 210;
/// Elements of a 32-element block (Q4_0, Q4_1, Q8_0 and the Q8 activations).
pub(crate) const QK: usize = 32;
/// Elements of a K-quant super-block.
pub(crate) const QK_K: usize = 256;

/// The little-endian `f16` at `bytes[at..at + 2]`, as `f32`.
#[inline(always)]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// The raw bits of the little-endian `f16` at `bytes[at..at + 2]`.
#[inline(always)]
pub(crate) fn f16_bits_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// The four 6-bit Q6_K quants `l + 32k` (`k < 4`) of one 128-element half, unsigned (0..64):
/// low 4 bits from `ql[l + 32(k % 2)]` (low nibble for `k < 2`, high for `k >= 2`), high 2 bits
/// from bits `2k..2k + 2` of `qh[l]`. `ql` and `qh` are the half's 64 and 32 bytes.
#[inline]
pub(crate) fn q6_k_quad(ql: &[u8], qh: &[u8], l: usize) -> [u8; 4] {
    [
        (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
        (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
        (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
        (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
    ]
}

/// Unpacks Q4_K's 12 scale bytes into 8 six-bit scales and 8 six-bit mins (GGML's
/// `get_scale_min_k4`): sub-blocks 0-3 keep their low 6 bits in bytes 0-3 (scales) and 4-7
/// (mins); sub-blocks 4-7 keep their low 4 bits in bytes 8-11 (scale low nibble, min high nibble)
/// and their top 2 bits in the top bits of bytes 0-3 (scales) and 4-7 (mins).
#[inline(always)]
pub(crate) fn q4_k_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, mn)
}
