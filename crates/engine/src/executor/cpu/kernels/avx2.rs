//! x86_64 AVX2 + FMA + F16C versions of the dot products in [`scalar`](super::scalar): the same
//! integer block sums (exact), accumulated in `f32` lanes (a different rounding order, so results
//! agree with the scalar ones to float tolerance, not bit for bit).
//!
//! # Safety
//!
//! Every `unsafe fn` here requires that the CPU supports AVX2, FMA and F16C ([`available`]
//! returned `true`), and takes a whole row as described in `scalar` (`row.len()` a whole number
//! of blocks, `act` at least as many blocks or elements). The raw loads inside read only within
//! the block or activation they are given, whose sizes are fixed by the block layout.
//!
//! The integer tricks rely on the activation invariant of [`q8`](super::q8): `-127 <= q <= 127`.
//! With it, `maddubs` pair sums stay below `i16::MAX` (`2 * 63 * 127` for Q6_K is the largest),
//! and `_mm256_sign_epi8` never negates `-128` on the activation side.

use std::arch::x86_64::*;

use super::blocks::{
    Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q6_K_BYTES, Q8_0_BYTES, f16_bits_at, q4_k_scales_mins,
};
use super::q8::{BlockQ8, BlockQ8K};

/// Whether this CPU can run this module's kernels.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_to_f32(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// 32 bytes at `p` (any alignment).
///
/// # Safety
/// `p..p + 32` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load32<T>(p: *const T) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// 16 bytes of nibbles at `p` as 32 bytes: the 16 low nibbles, then the 16 high nibbles (GGML's
/// element order for Q4_0 and Q4_1).
///
/// # Safety
/// `p..p + 16` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes.
    let both = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(p.cast()) });
    // Low half unshifted, high half shifted by 4 (a broadcast load and a variable shift keep
    // this off the shuffle port).
    let shifted = _mm256_srlv_epi64(both, _mm256_set_epi64x(4, 4, 0, 0));
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
}

/// `sum(x[i] * y[i])` over each group of 4 bytes, as 8 `f32` lanes, for unsigned `x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_sum_u8_i8(x: __m256i, y: __m256i) -> __m256 {
    let pairs = _mm256_maddubs_epi16(x, y);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// Dot products of one row of 32-element blocks with `N` activation rows at once: each weight
/// block is loaded and unpacked once for all `N` tokens.
///
/// Each token's result is ggml's x86 `ggml_vec_dot_q4_0_q8_0` / `_q4_1_q8_1` / `_q8_0_q8_0` bit
/// for bit: one `f32` accumulator of 8 lanes (lane `k` gets `d_w d_a` times the integer sum of
/// elements `4k..4k + 4` of each block, by FMA, block after block), summed by `hsum_ps`, plus (for
/// Q4_1) the `m_w s_a` of every block added in order.
///
/// `decode(block)` returns the block's 32 quants as bytes, signed when `SIGNED` (Q4_0, Q8_0:
/// `maddubs` then takes `|x|` and moves the sign onto the activation), unsigned otherwise (Q4_1).
/// `d` is the block's leading `f16`; with `MIN`, the `f16` at byte 2 is an offset `m` that
/// contributes `m * s` (Q4_1).
///
/// # Safety
/// As in the module documentation, for every activation row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_blocks32<const N: usize, const SIGNED: bool, const MIN: bool>(
    row: &[u8],
    block_bytes: usize,
    acts: [&[BlockQ8]; N],
    decode: impl Fn(&[u8]) -> __m256i,
) -> [f32; N] {
    let blocks = row.len() / block_bytes;
    assert!(acts.iter().all(|a| a.len() >= blocks));
    let mut acc = [_mm256_setzero_ps(); N];
    // Lane 1 accumulates `m * s` (with `MIN`).
    let mut acc_m = [_mm_setzero_ps(); N];
    for (i, b) in row.chunks_exact(block_bytes).enumerate() {
        // [d, m] of the block in one conversion (for types without `m`, lane 1 is unused).
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
            b[0], b[1], b[2], b[3],
        ])));
        let x = decode(b);
        let ux = if SIGNED { _mm256_sign_epi8(x, x) } else { x };
        for t in 0..N {
            // SAFETY: i < blocks <= acts[t].len() (checked above); a `BlockQ8` starts with its
            // two `f32` `d` and `s` (repr(C)), then 32 bytes of `qs`.
            let a = unsafe { acts[t].get_unchecked(i) };
            let (ds, y) = unsafe {
                (
                    _mm_castsi128_ps(_mm_loadl_epi64((a as *const BlockQ8).cast())),
                    load32(a.qs.as_ptr()),
                )
            };
            // [d_w d_a, m_w s_a]
            let scales = _mm_mul_ps(dm, ds);
            let y = if SIGNED { _mm256_sign_epi8(y, x) } else { y };
            let p = mul_sum_u8_i8(ux, y);
            acc[t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(scales), p, acc[t]);
            if MIN {
                acc_m[t] = _mm_add_ps(acc_m[t], scales);
            }
        }
    }
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = hsum_ps(acc[t]);
        if MIN {
            out[t] += _mm_cvtss_f32(_mm_movehdup_ps(acc_m[t]));
        }
    }
    out
}

/// Q4_0: `x = nibble - 8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn decode_q4_0(b: &[u8]) -> __m256i {
    assert!(b.len() >= Q4_0_BYTES);
    // SAFETY: 16 bytes of nibbles at offset 2 of an 18-byte block.
    let q = unsafe { nibbles(b.as_ptr().add(2)) };
    _mm256_sub_epi8(q, _mm256_set1_epi8(8))
}

/// Q4_1: `x = nibble` (unsigned; the offset is applied through `m * s`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn decode_q4_1(b: &[u8]) -> __m256i {
    assert!(b.len() >= Q4_1_BYTES);
    // SAFETY: 16 bytes of nibbles at offset 4 of a 20-byte block.
    unsafe { nibbles(b.as_ptr().add(4)) }
}

/// Q8_0: 32 signed bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn decode_q8_0(b: &[u8]) -> __m256i {
    assert!(b.len() >= Q8_0_BYTES);
    // SAFETY: 32 quants at offset 2 of a 34-byte block.
    unsafe { load32(b.as_ptr().add(2)) }
}

/// The two entry points of a 32-element block type: one row with one token (`$one`) and with
/// four tokens (`$four`).
macro_rules! block32_dots {
    ($one:ident, $four:ident, $bytes:expr, $decode:ident, $signed:literal, $min:literal) => {
        /// # Safety
        /// See the module documentation.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $one(row: &[u8], act: &[BlockQ8]) -> f32 {
            // SAFETY: forwarded.
            unsafe { dot_blocks32::<1, $signed, $min>(row, $bytes, [act], |b| $decode(b))[0] }
        }

        /// # Safety
        /// See the module documentation.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $four(row: &[u8], acts: [&[BlockQ8]; 4]) -> [f32; 4] {
            // SAFETY: forwarded.
            unsafe { dot_blocks32::<4, $signed, $min>(row, $bytes, acts, |b| $decode(b)) }
        }
    };
}

block32_dots!(dot_q4_0, dot_q4_0_x4, Q4_0_BYTES, decode_q4_0, true, false);
block32_dots!(dot_q4_1, dot_q4_1_x4, Q4_1_BYTES, decode_q4_1, false, true);
block32_dots!(dot_q8_0, dot_q8_0_x4, Q8_0_BYTES, decode_q8_0, true, false);

/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0f32;
    for (b, a) in row.chunks_exact(Q4_K_BYTES).zip(act) {
        let (sc, mn) = q4_k_scales_mins(&b[4..16]);
        let mins: i32 = mn
            .iter()
            .zip(a.bsums.chunks_exact(2))
            .map(|(&m, s)| m as i32 * (s[0] as i32 + s[1] as i32))
            .sum();
        acc_m += f16_to_f32(f16_bits_at(b, 2)) * a.d * mins as f32;
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            // SAFETY: 32 bytes of nibbles at 16 + 32c <= 112 of a 144-byte block; activations
            // at 64c and 64c + 32 <= 224 of 256.
            let (bits, y0, y1) = unsafe {
                (
                    load32(b.as_ptr().add(16 + 32 * c)),
                    load32(a.qs.as_ptr().add(64 * c)),
                    load32(a.qs.as_ptr().add(64 * c + 32)),
                )
            };
            let lo = _mm256_and_si256(bits, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
            let p0 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(lo, y0),
                _mm256_set1_epi16(sc[2 * c] as i16),
            );
            let p1 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, y1),
                _mm256_set1_epi16(sc[2 * c + 1] as i16),
            );
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        let d = _mm256_set1_ps(f16_to_f32(f16_bits_at(b, 0)) * a.d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc) - acc_m
}

/// Computes `sum((q - 32) * y)` as `sum(q * y) - 32 * sum(y)`, with `q` unsigned in `0..64` so
/// that `maddubs` applies, and `sum(y)` per 16 elements from the activation's `bsums`.
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q6_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    let m2x4 = _mm256_set1_epi8(0x0C);
    let m2x16 = _mm256_set1_epi8(0x30);
    let mut acc = _mm256_setzero_ps();
    let mut acc_offset = 0f32;
    for (b, a) in row.chunks_exact(Q6_K_BYTES).zip(act) {
        let d = f16_to_f32(f16_bits_at(b, 208)) * a.d;
        // SAFETY: 16 scales at 192 of a 210-byte block; `bsums` is 16 `i16` (32 bytes).
        let (scales, bsums) = unsafe {
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(b.as_ptr().add(192).cast())),
                load32(a.bsums.as_ptr()),
            )
        };
        let offset = hsum_epi32(_mm256_madd_epi16(scales, bsums));
        acc_offset += d * (32 * offset) as f32;
        let sc = &b[192..208];
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            // SAFETY: ql at 64h (+32) and qh at 128 + 32h, 32 bytes each, inside the block.
            let (ql0, ql1, qh) = unsafe {
                (
                    load32(b.as_ptr().add(64 * h)),
                    load32(b.as_ptr().add(64 * h + 32)),
                    load32(b.as_ptr().add(128 + 32 * h)),
                )
            };
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m2)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16::<2>(_mm256_and_si256(qh, m2x4)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                    _mm256_and_si256(qh, m2x16),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2x16),
                ),
            ];
            for (k, &q) in q.iter().enumerate() {
                // SAFETY: activations 128h + 32k + 32 <= 256.
                let y = unsafe { load32(a.qs.as_ptr().add(128 * h + 32 * k)) };
                let g = 8 * h + 2 * k;
                // maddubs keeps each 128-bit lane's 16 elements (one scale group) together.
                let s = _mm256_set_m128i(
                    _mm_set1_epi16(sc[g + 1] as i8 as i16),
                    _mm_set1_epi16(sc[g] as i8 as i16),
                );
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc) - acc_offset
}

/// `f32` weights (`row` is `4 * x.len()` little-endian bytes).
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: element i of the row is at byte 4i, and i < x.len() = row.len() / 4.
    unsafe { dot_wide(row, 4, x, |p| _mm256_loadu_ps(p.cast())) }
}

/// `f16` weights (`row` is `2 * x.len()` bytes).
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: as in `dot_f32`, with 2 bytes per element.
    unsafe { dot_wide(row, 2, x, |p| _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))) }
}

/// `bf16` weights (`row` is `2 * x.len()` bytes): a bf16 is the top half of an f32.
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: as in `dot_f32`, with 2 bytes per element.
    unsafe {
        dot_wide(row, 2, x, |p| {
            let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
        })
    }
}

/// Dot product of `x` with a row of `width`-byte elements, 32 elements per step in 4 independent
/// accumulators; `load(p)` converts the 8 elements at `p` to `f32`.
///
/// # Safety
/// AVX2/FMA/F16C present; `row.len() >= width * x.len()`; `load` reads `8 * width` bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_wide(row: &[u8], width: usize, x: &[f32], load: impl Fn(*const u8) -> __m256) -> f32 {
    // SAFETY (whole body): loads at element i read elements i..i + 8 < x.len() of both rows.
    unsafe {
        let n = x.len();
        let (w, xp) = (row.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                *acc = _mm256_fmadd_ps(load(w.add(j * width)), _mm256_loadu_ps(xp.add(j)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(load(w.add(i * width)), _mm256_loadu_ps(xp.add(i)), acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum_ps(v);
        // The last < 8 elements, one at a time through the same loader on a padded copy.
        let tail = n - i;
        if tail > 0 {
            let mut wbuf = [0u8; 32];
            let mut xbuf = [0f32; 8];
            wbuf[..tail * width].copy_from_slice(&row[i * width..n * width]);
            xbuf[..tail].copy_from_slice(&x[i..n]);
            let v = _mm256_mul_ps(load(wbuf.as_ptr()), _mm256_loadu_ps(xbuf.as_ptr()));
            sum += hsum_ps(v);
        }
        sum
    }
}
