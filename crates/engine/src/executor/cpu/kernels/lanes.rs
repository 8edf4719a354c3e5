//! x86_64 AVX2 kernels for many tokens at once (Q4_0, Q4_1, Q8_0 weights against Q8
//! activations): lanes are tokens. The activations of up to 8 tokens are repacked once per
//! matmul ([`pack`]) so that one 32-byte load holds the same 4 elements of 8 tokens; a weight
//! row's quants are unpacked once per row into one byte per element ([`Weights::unpack`]), and
//! each 4-byte group of them is broadcast to all lanes, so that `maddubs` + `madd` give the
//! integer sum of those 4 products for each of the 8 tokens, with no horizontal sums.
//!
//! That integer sum is exactly lane `k` of the one-token AVX2 kernels' (and ggml's) per-block
//! product, and the `f32` scaling and accumulation repeat those kernels' operations in their
//! order (one accumulator per 4-element lane, `d_w d_a` by FMA, Q4_1's `m_w s_a` summed apart), so
//! results equal the AVX2 backend's (and ggml's) bit for bit, and a token's result does not
//! depend on how many tokens share the matmul (batched decoding gives the same tokens as
//! sequential decoding). Exactness costs one convert and one FMA per 4 products; the 8
//! accumulators of a group, with the broadcast weights and scales, fill AVX2's 16 registers, so a
//! weight row is walked once per group of 8 tokens (from L1: the driver's row chunks are small);
//! unpacking the nibbles once per row, not once per group, takes their masks and shifts out of
//! that loop.
//!
//! Integer bounds (activations in `-127..=127`, see [`q8`](super::q8)): `maddubs` multiplies
//! unsigned by signed bytes. Q4_1's nibbles are unsigned and multiply the activations directly
//! (pair sums up to `2 * 15 * 127`); Q4_0's `nibble - 8` and Q8_0's bytes are signed, so `maddubs`
//! takes `|w|` and moves the sign onto the activation (`sign_epi8`; pair sums up to
//! `2 * 128 * 127`), as the one-token kernels do.
//!
//! # Safety
//!
//! Every `unsafe fn` here requires AVX2, FMA and F16C ([`avx2::available`](super::avx2::available)
//! returned `true`), a whole weight row, and at least as many packed blocks per token group as the
//! row has blocks (checked).

use std::arch::x86_64::*;

use super::avx2;
use super::blocks::{Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, QK};
use super::q8::BlockQ8;

/// Tokens per packed group (the `i32` lanes of a 256-bit register).
pub const LANES: usize = 8;

/// 4-element groups per block: the lanes of the one-token kernels' per-block product.
const GROUPS4: usize = QK / 4;

/// One 32-element block of [`LANES`] tokens: `qs[32k + 4t + j]` is token `t`'s element `4k + j`.
/// Missing tokens (a last, partial group) are all zero and give zero.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub struct PackedQ8 {
    pub qs: [i8; QK * LANES],
    /// Per token: the block's `d` and `s`.
    pub d: [f32; LANES],
    pub s: [f32; LANES],
}

impl Default for PackedQ8 {
    fn default() -> Self {
        PackedQ8 {
            qs: [0; QK * LANES],
            d: [0.0; LANES],
            s: [0.0; LANES],
        }
    }
}

/// Packs up to [`LANES`] token rows (each at least `out.len()` blocks) into `out`.
pub fn pack(tokens: &[&[BlockQ8]], out: &mut [PackedQ8]) {
    assert!(tokens.len() <= LANES);
    for (i, p) in out.iter_mut().enumerate() {
        *p = PackedQ8::default();
        for (t, a) in tokens.iter().enumerate() {
            let b = &a[i];
            p.d[t] = b.d;
            p.s[t] = b.s;
            for (k, q) in b.qs.chunks_exact(4).enumerate() {
                p.qs[QK * k + 4 * t..QK * k + 4 * t + 4].copy_from_slice(q);
            }
        }
    }
}

/// A weight type of these kernels.
trait Weights {
    /// Bytes per 32-element block; the block starts with its `f16` scale `d`.
    const BYTES: usize;
    /// Whether [`unpack`](Self::unpack) gives unsigned bytes (Q4_1) or signed ones.
    const UNSIGNED: bool;
    /// Whether the block's second `f16` is an offset `m` (its `m * s` is added apart).
    const MIN: bool;
    /// The block's 32 quants, element `j` in byte `j` (the one-token kernels' decoding).
    ///
    /// # Safety
    /// AVX2 present; `b` a whole block.
    unsafe fn unpack(b: &[u8]) -> __m256i;
}

/// Q4_0: `w = d * (nibble - 8)`.
struct Q40;
/// Q4_1: `w = d * nibble + m`.
struct Q41;
/// Q8_0: `w = d * byte`.
struct Q80;

impl Weights for Q40 {
    const BYTES: usize = Q4_0_BYTES;
    const UNSIGNED: bool = false;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn unpack(b: &[u8]) -> __m256i {
        // SAFETY: AVX2 present (the trait's contract).
        unsafe { avx2::decode_q4_0(b) }
    }
}

impl Weights for Q41 {
    const BYTES: usize = Q4_1_BYTES;
    const UNSIGNED: bool = true;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn unpack(b: &[u8]) -> __m256i {
        // SAFETY: AVX2 present (the trait's contract).
        unsafe { avx2::decode_q4_1(b) }
    }
}

impl Weights for Q80 {
    const BYTES: usize = Q8_0_BYTES;
    const UNSIGNED: bool = false;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn unpack(b: &[u8]) -> __m256i {
        // SAFETY: AVX2 present (the trait's contract).
        unsafe { avx2::decode_q8_0(b) }
    }
}

/// One group of [`LANES`] tokens against one weight row, in exactly the arithmetic of the AVX2
/// one-token kernels (`avx2::dot_blocks32`): there, lane `k` of a block's product holds the
/// integer sum of elements `4k..4k + 4`, scaled by `d_w d_a` into accumulator lane `k` (FMA),
/// Q4_1's `m_w s_a` added apart; here accumulator `[k]` holds that lane for 8 tokens.
///
/// # Safety
/// See the module documentation.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_group<W: Weights>(row: &[u8], quants: &[Quants], acts: &[PackedQ8]) -> __m256 {
    let blocks = row.len() / W::BYTES;
    assert!(acts.len() >= blocks && quants.len() >= blocks);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); GROUPS4];
    let mut acc_m = _mm256_setzero_ps();
    for ((b, q), blk) in row.chunks_exact(W::BYTES).zip(quants).zip(acts) {
        // [d, m] (for types without `m`, lane 1 is unused; every block has 4 bytes).
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
            b[0], b[1], b[2], b[3],
        ])));
        let dw = _mm256_broadcastss_ps(dm);
        // SAFETY: `d` and `s` are 32 bytes each.
        let (da, sa) = unsafe {
            (
                _mm256_loadu_ps(blk.d.as_ptr()),
                _mm256_loadu_ps(blk.s.as_ptr()),
            )
        };
        let scale = _mm256_mul_ps(dw, da);
        for (k, acc) in acc.iter_mut().enumerate() {
            // Quants 4k..4k + 4 in every lane, read from memory (shuffling them out of a
            // register made the shuffle unit the bottleneck).
            let w = _mm256_set1_epi32(i32::from_le_bytes(
                q.0[4 * k..4 * k + 4].try_into().unwrap(),
            ));
            // SAFETY: 32 bytes at 32k <= 224 of 256.
            let a = unsafe { _mm256_load_si256(blk.qs.as_ptr().add(QK * k).cast()) };
            let pairs = if W::UNSIGNED {
                _mm256_maddubs_epi16(w, a)
            } else {
                _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
            };
            let sum = _mm256_madd_epi16(pairs, ones);
            *acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sum), *acc);
        }
        if W::MIN {
            let mw = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
            acc_m = _mm256_add_ps(acc_m, _mm256_mul_ps(mw, sa));
        }
    }
    // The one-token kernels' `hsum_ps(acc)` (+ `m`), lane by lane.
    let l = &acc;
    let even = _mm256_add_ps(_mm256_add_ps(l[0], l[4]), _mm256_add_ps(l[2], l[6]));
    let odd = _mm256_add_ps(_mm256_add_ps(l[1], l[5]), _mm256_add_ps(l[3], l[7]));
    let d = _mm256_add_ps(even, odd);
    if W::MIN { _mm256_add_ps(d, acc_m) } else { d }
}

/// One block's quants, one byte per element (see [`Weights::unpack`]).
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Quants([u8; QK]);

thread_local! {
    /// The row being multiplied, unpacked; kept between calls. Taken, not borrowed: the work
    /// runs in this function's body, not in a closure (which would be compiled without AVX2).
    static UNPACKED: std::cell::Cell<Vec<Quants>> = const { std::cell::Cell::new(Vec::new()) };
}

/// All groups of `acts` against one weight row; `out` gets `LANES` results per group.
///
/// # Safety
/// See the module documentation.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_all<W: Weights>(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    assert_eq!(out.len(), acts.len() * LANES);
    let mut quants = UNPACKED.take();
    quants.clear();
    quants.resize(row.len() / W::BYTES, Quants::default());
    for (q, b) in quants.iter_mut().zip(row.chunks_exact(W::BYTES)) {
        // SAFETY: `b` is a whole block; `q` is 32 aligned bytes.
        unsafe { _mm256_store_si256(q.0.as_mut_ptr().cast(), W::unpack(b)) };
    }
    for (acts, out) in acts.iter().zip(out.chunks_exact_mut(LANES)) {
        // SAFETY: forwarded; `out` has `LANES` floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), dot_group::<W>(row, &quants, acts)) };
    }
    UNPACKED.set(quants);
}

/// Q4_0 (`w = nibble - 8`).
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_0(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    // SAFETY: forwarded.
    unsafe { dot_all::<Q40>(row, acts, out) }
}

/// Q4_1 (`w = d * nibble + m`).
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_1(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    // SAFETY: forwarded.
    unsafe { dot_all::<Q41>(row, acts, out) }
}

/// Q8_0 (32 signed bytes).
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q8_0(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    // SAFETY: forwarded.
    unsafe { dot_all::<Q80>(row, acts, out) }
}
