//! x86_64 AVX-512 VNNI kernels for many tokens at once (Q4_0, Q4_1, Q8_0 weights against Q8
//! activations): lanes are tokens. The activations of up to 8 tokens are repacked once per call
//! ([`pack`]) so that one 32-byte load holds the same 4 elements of 8 tokens; each 4-byte group of
//! a weight block is broadcast to all lanes and one `vpdpbusd` then does 4 multiply-adds for each
//! of the 8 tokens, with no horizontal sums, and each weight block is decoded once for up to 32
//! tokens.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: the activations are stored plus 128
//! (unsigned) and the weights kept signed, and each product starts from `-128 * sum(w)` over its
//! 4 weights, so each lane holds the exact integer sum of 4 products, as lane `k` of the AVX2
//! kernels' `maddubs`/`madd` does. The `f32` scaling and accumulation then repeat the AVX2
//! kernels' operations in their order (one accumulator per 4-element lane), so results equal
//! the AVX2 backend's (and ggml's) bit for bit, and a token's result does not depend on how many
//! tokens share the matmul (batched decoding gives the same tokens as sequential decoding).
//! Exactness costs one convert and one FMA per 4 products; a block-level `f32` scale (one FMA per
//! 32) would be about twice as fast here but would need a matching, slower one-token kernel.
//!
//! # Safety
//!
//! Every `unsafe fn` here requires AVX2, FMA, F16C, AVX-512F, AVX-512VL and AVX-512 VNNI
//! ([`available`] returned `true`; the functions enable only the AVX2 set at compile time, the
//! one VNNI instruction being inline assembly), a whole weight row, and at least as many packed
//! blocks per token group as the row has blocks (checked).

use std::arch::x86_64::*;

use super::avx2::nibbles;
use super::blocks::{Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, QK};
use super::q8::BlockQ8;

/// Tokens per packed group (the `i32` lanes of a 256-bit register).
pub const LANES: usize = 8;

/// Token groups computed per pass over a weight row (each weight block is decoded once for them).
const MAX_GROUPS: usize = 4;

/// Whether this CPU can run this module's kernels.
pub fn available() -> bool {
    super::avx2::available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// One 32-element block of [`LANES`] tokens: `qs[32k + 4t + j]` is token `t`'s element `4k + j`.
/// Missing tokens (a last, partial group) have `q = 0` and `d = s = 0`, and give zero.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub struct PackedQ8 {
    /// `q + 128` (unsigned, for `vpdpbusd`).
    pub qs: [u8; QK * LANES],
    /// Per token: the block's `d` and `s`.
    pub d: [f32; LANES],
    pub s: [f32; LANES],
}

impl Default for PackedQ8 {
    fn default() -> Self {
        PackedQ8 {
            qs: [128; QK * LANES],
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
            for (j, &q) in b.qs.iter().enumerate() {
                p.qs[QK * (j / 4) + 4 * t + j % 4] = (q as u8) ^ 0x80;
            }
        }
    }
}

/// `G` groups of [`LANES`] dot products of one weight row, in exactly the arithmetic of the AVX2
/// kernels (`avx2::dot_blocks32`): there, lane `k` of a block's product holds the integer sum of
/// elements `4k..4k + 4`, scaled by `d_w d_a` into accumulator lane `k` (FMA), Q4_1's `m_w s_a`
/// added apart; here accumulator `[k]` holds that lane for 8 tokens. So a token's result is the
/// AVX2 backend's bit for bit, whatever the batch.
///
/// `decode(block)` gives the block's 32 weights as signed bytes; `MIN` adds the block's second
/// `f16` times `s` (Q4_1).
///
/// # Safety
/// See the module documentation.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_groups<const G: usize, const MIN: bool>(
    row: &[u8],
    block_bytes: usize,
    acts: [&[PackedQ8]; G],
    decode: impl Fn(&[u8]) -> __m256i,
) -> [__m256; G] {
    let blocks = row.len() / block_bytes;
    assert!(acts.iter().all(|a| a.len() >= blocks));
    let mut acc = [[_mm256_setzero_ps(); QK / 4]; G];
    let mut acc_m = [_mm256_setzero_ps(); G];
    for (i, b) in row.chunks_exact(block_bytes).enumerate() {
        // [d, m] (for types without `m`, lane 1 is unused; every block has 4 bytes).
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
            b[0], b[1], b[2], b[3],
        ])));
        let dw = _mm256_broadcastss_ps(dm);
        let mw = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
        let mut w = [0i32; QK / 4];
        // SAFETY: `w` is 32 bytes.
        unsafe { _mm256_storeu_si256(w.as_mut_ptr().cast(), decode(b)) };
        let scale: [__m256; G] = std::array::from_fn(|g| {
            // SAFETY: i < blocks <= acts[g].len(); `d` is 32 bytes.
            _mm256_mul_ps(dw, unsafe {
                _mm256_loadu_ps(acts[g].get_unchecked(i).d.as_ptr())
            })
        });
        for (k, wk) in w.iter().enumerate() {
            // SAFETY: `wk` is 4 readable bytes; VNNI available (the module's contract).
            let (wk, base) = unsafe {
                let wk = broadcast32(wk);
                // -128 * sum(w[4k..4k + 4]): the activations are stored plus 128.
                let c = dpbusd(_mm256_setzero_si256(), _mm256_set1_epi8(-128), wk);
                (wk, _mm256_sub_epi32(_mm256_setzero_si256(), c))
            };
            for g in 0..G {
                // SAFETY: as above; 32 bytes at 32k <= 224 of 256.
                let si = unsafe {
                    let y = acts[g].get_unchecked(i).qs.as_ptr().add(QK * k);
                    dpbusd(base, _mm256_load_si256(y.cast()), wk)
                };
                let c = &mut acc[g][k];
                *c = _mm256_fmadd_ps(scale[g], _mm256_cvtepi32_ps(si), *c);
            }
        }
        if MIN {
            for g in 0..G {
                // SAFETY: as above; `s` is 32 bytes.
                let sa = unsafe { _mm256_loadu_ps(acts[g].get_unchecked(i).s.as_ptr()) };
                acc_m[g] = _mm256_add_ps(acc_m[g], _mm256_mul_ps(mw, sa));
            }
        }
    }
    // The AVX2 kernels' `hsum_ps(acc)` (+ `m`), lane by lane.
    std::array::from_fn(|g| {
        let l = &acc[g];
        let even = _mm256_add_ps(_mm256_add_ps(l[0], l[4]), _mm256_add_ps(l[2], l[6]));
        let odd = _mm256_add_ps(_mm256_add_ps(l[1], l[5]), _mm256_add_ps(l[3], l[7]));
        let d = _mm256_add_ps(even, odd);
        if MIN { _mm256_add_ps(d, acc_m[g]) } else { d }
    })
}

/// All groups of `acts` against one weight row, [`MAX_GROUPS`] at a time; `out` gets
/// `LANES` results per group.
///
/// # Safety
/// See the module documentation.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_all<const MIN: bool>(
    row: &[u8],
    block_bytes: usize,
    acts: &[&[PackedQ8]],
    out: &mut [f32],
    decode: impl Fn(&[u8]) -> __m256i + Copy,
) {
    assert_eq!(out.len(), acts.len() * LANES);
    for (acts, out) in acts
        .chunks(MAX_GROUPS)
        .zip(out.chunks_mut(MAX_GROUPS * LANES))
    {
        // SAFETY (all arms): forwarded; the stores write `LANES` floats per group of `out`.
        macro_rules! run {
            ($g:literal) => {{
                let acc = unsafe {
                    dot_groups::<$g, MIN>(
                        row,
                        block_bytes,
                        std::array::from_fn(|g| acts[g]),
                        decode,
                    )
                };
                for (acc, out) in acc.iter().zip(out.chunks_exact_mut(LANES)) {
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *acc) };
                }
            }};
        }
        match acts.len() {
            1 => run!(1),
            2 => run!(2),
            3 => run!(3),
            _ => run!(4),
        }
    }
}

/// `acc + sum(u * s)` over each 4 bytes (`u` unsigned, `s` signed), in `i32` lanes without
/// saturation: `vpdpbusd` (AVX-512 VNNI with VL), as `_mm256_dpbusd_epi32`. Written as inline
/// assembly because the AVX-512 intrinsics and target features need Rust 1.89, after the MSRV.
///
/// # Safety
/// The CPU must have AVX-512 VNNI and AVX-512VL ([`available`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    let mut acc = acc;
    // SAFETY: the caller guarantees the instruction exists; it touches only these registers.
    unsafe {
        std::arch::asm!(
            "{{evex}} vpdpbusd {acc}, {u}, {s}",
            acc = inout(ymm_reg) acc,
            u = in(ymm_reg) u,
            s = in(ymm_reg) s,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// The `i32` at `p` in all 8 lanes, as `_mm256_set1_epi32(*p)` but always a broadcast load
/// (LLVM otherwise turns broadcasts of a just-stored vector into two shuffles each, which compete
/// with `vpdpbusd` for the vector ports).
///
/// # Safety
/// `p..p + 4` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn broadcast32(p: *const i32) -> __m256i {
    let v: __m256i;
    // SAFETY: the caller guarantees 4 readable bytes; AVX2 is enabled.
    unsafe {
        std::arch::asm!(
            "vpbroadcastd {v}, dword ptr [{p}]",
            v = lateout(ymm_reg) v,
            p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags),
        );
    }
    v
}

/// Q4_0 (`w = nibble - 8`) against packed activations.
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_0(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    let decode = |b: &[u8]| {
        assert!(b.len() >= Q4_0_BYTES);
        // SAFETY: 16 bytes of nibbles at offset 2 of an 18-byte block.
        let q = unsafe { nibbles(b.as_ptr().add(2)) };
        _mm256_sub_epi8(q, _mm256_set1_epi8(8))
    };
    // SAFETY: forwarded.
    unsafe { dot_all::<false>(row, Q4_0_BYTES, acts, out, decode) }
}

/// Q4_1 (`w = d * nibble + m`) against packed activations.
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_1(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    let decode = |b: &[u8]| {
        assert!(b.len() >= Q4_1_BYTES);
        // SAFETY: 16 bytes of nibbles at offset 4 of a 20-byte block.
        unsafe { nibbles(b.as_ptr().add(4)) }
    };
    // SAFETY: forwarded.
    unsafe { dot_all::<true>(row, Q4_1_BYTES, acts, out, decode) }
}

/// Q8_0 (32 signed bytes) against packed activations.
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q8_0(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    let decode = |b: &[u8]| {
        assert!(b.len() >= Q8_0_BYTES);
        // SAFETY: 32 quants at offset 2 of a 34-byte block.
        unsafe { _mm256_loadu_si256(b.as_ptr().add(2).cast()) }
    };
    // SAFETY: forwarded.
    unsafe { dot_all::<false>(row, Q8_0_BYTES, acts, out, decode) }
}
