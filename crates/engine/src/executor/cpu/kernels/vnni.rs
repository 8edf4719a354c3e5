//! x86_64 AVX-512 VNNI kernels for many tokens at once (Q4_0, Q4_1, Q8_0 weights against Q8
//! activations): lanes are tokens. The activations of up to 8 tokens are repacked once per call
//! ([`pack`]) so that one 32-byte load holds the same 4 elements of 8 tokens; each 4-byte group
//! of a weight block is broadcast to all lanes and one `vpdpbusd` then does 4 multiply-adds for
//! each of the 8 tokens, with no horizontal sums. Each weight block is decoded once for up to 24
//! tokens (three groups), whose 24 accumulators stay in AVX-512's 32 vector registers.
//!
//! 256-bit registers, not 512: on the AMD Zen 4 these kernels were tuned on, the 512-bit version
//! of the same loop ran 1.5-2x slower (`kernel_speed`, 2026-11-22).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes. Q4_1's nibbles are unsigned, so they are the
//! unsigned side and the activations (signed) the other. Q4_0's `nibble - 8` and Q8_0's bytes are
//! signed: there the activations are packed plus 128 (unsigned), and each lane's sum starts from
//! `-128 * sum(w)` over its 4 weights (computed once per block for all groups). Either way each
//! lane holds the exact integer sum of 4 products, as lane `k` of the AVX2 kernels'
//! `maddubs`/`madd` does. The `f32` scaling and accumulation then repeat the AVX2 kernels'
//! operations in their order (one accumulator per 4-element lane), so results equal the AVX2
//! backend's (and ggml's) bit for bit, and a token's result does not depend on how many tokens
//! share the matmul (batched decoding gives the same tokens as sequential decoding). Exactness
//! costs one convert and one FMA per 4 products.
//!
//! # Safety
//!
//! Every `unsafe fn` here requires AVX2, FMA, F16C, AVX-512F, AVX-512VL and AVX-512 VNNI
//! ([`available`] returned `true`), a whole weight row, and at least as many packed blocks per
//! token group as the row has blocks (checked), packed for the kernel's type ([`Packing`]).

use std::arch::x86_64::*;

use super::blocks::{Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, QK};
use super::q8::BlockQ8;

/// Tokens per packed group (the `i32` lanes of a 256-bit register).
pub const LANES: usize = 8;

/// Token groups computed per pass over a weight row: 3 × 8 accumulators, plus the scales and
/// temporaries, fill the 32 registers.
const MAX_GROUPS: usize = 3;

/// 4-element groups per block: the lanes of the AVX2 kernels' per-block product.
const GROUPS4: usize = QK / 4;

/// Whether this CPU can run this module's kernels.
pub fn available() -> bool {
    super::avx2::available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// How a type's kernel wants its activations packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// As they are (signed): Q4_1.
    Signed,
    /// Plus 128 (unsigned): Q4_0 and Q8_0.
    Offset,
}

/// One 32-element block of [`LANES`] tokens: `qs[32k + 4t + j]` is token `t`'s element `4k + j`
/// (a signed byte, or plus 128 for [`Packing::Offset`]). Missing tokens (a last, partial group)
/// have `d = s = 0` and give zero.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub struct PackedQ8 {
    pub qs: [u8; QK * LANES],
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
pub fn pack(tokens: &[&[BlockQ8]], packing: Packing, out: &mut [PackedQ8]) {
    assert!(tokens.len() <= LANES);
    let flip = match packing {
        Packing::Signed => 0,
        Packing::Offset => 0x80,
    };
    for (i, p) in out.iter_mut().enumerate() {
        *p = PackedQ8 {
            qs: [flip; QK * LANES],
            ..PackedQ8::default()
        };
        for (t, a) in tokens.iter().enumerate() {
            let b = &a[i];
            p.d[t] = b.d;
            p.s[t] = b.s;
            for (j, &q) in b.qs.iter().enumerate() {
                p.qs[QK * (j / 4) + 4 * t + j % 4] = q as u8 ^ flip;
            }
        }
    }
}

/// A weight type of these kernels.
trait Weights {
    /// Bytes per 32-element block.
    const BYTES: usize;
    /// Whether [`decode`](Self::decode) gives unsigned bytes (the activations are then packed
    /// signed, [`Packing::Signed`]) or signed ones ([`Packing::Offset`]).
    const UNSIGNED: bool;
    /// Whether the block's second `f16` is an offset `m` (its `m * s` is added apart).
    const MIN: bool;
    /// The block's 32 weights as 8 groups of 4 bytes (group `k` = elements `4k..4k + 4`, the
    /// AVX2 kernels' lane `k`).
    fn decode(b: &[u8]) -> [i32; GROUPS4];
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Group `k` of 16 nibble bytes at `at`: byte `j` holds element `j` (low nibble) and `j + 16`.
fn nibbles(b: &[u8], at: usize, k: usize) -> u32 {
    (word(b, at + 4 * (k % 4)) >> (4 * (k / 4))) & 0x0F0F_0F0F
}

/// Q4_0: `w = nibble - 8`.
struct Q40;
/// Q4_1: `w = d * nibble + m`.
struct Q41;
/// Q8_0: 32 signed bytes.
struct Q80;

impl Weights for Q40 {
    const BYTES: usize = Q4_0_BYTES;
    const UNSIGNED: bool = false;
    const MIN: bool = false;
    #[inline(always)]
    fn decode(b: &[u8]) -> [i32; GROUPS4] {
        std::array::from_fn(|k| {
            // n - 8 per byte as (n + 0x78) ^ 0x80, no byte overflowing into the next.
            ((nibbles(b, 2, k) + 0x7878_7878) ^ 0x8080_8080) as i32
        })
    }
}

impl Weights for Q41 {
    const BYTES: usize = Q4_1_BYTES;
    const UNSIGNED: bool = true;
    const MIN: bool = true;
    #[inline(always)]
    fn decode(b: &[u8]) -> [i32; GROUPS4] {
        std::array::from_fn(|k| nibbles(b, 4, k) as i32)
    }
}

impl Weights for Q80 {
    const BYTES: usize = Q8_0_BYTES;
    const UNSIGNED: bool = false;
    const MIN: bool = false;
    #[inline(always)]
    fn decode(b: &[u8]) -> [i32; GROUPS4] {
        std::array::from_fn(|k| word(b, 2 + 4 * k) as i32)
    }
}

/// `G` groups of [`LANES`] dot products of one weight row, in exactly the arithmetic of the AVX2
/// kernels (`avx2::dot_blocks32`): there, lane `k` of a block's product holds the integer sum of
/// elements `4k..4k + 4`, scaled by `d_w d_a` into accumulator lane `k` (FMA), Q4_1's `m_w s_a`
/// added apart; here accumulator `[k]` holds that lane for 8 tokens. So a token's result is the
/// AVX2 backend's bit for bit, whatever the batch.
///
/// # Safety
/// See the module documentation.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn dot_groups<W: Weights, const G: usize>(
    row: &[u8],
    acts: [&[PackedQ8]; G],
) -> [__m256; G] {
    let block_bytes = W::BYTES;
    let blocks = row.len() / block_bytes;
    assert!(acts.iter().all(|a| a.len() >= blocks));
    let mut acc = [[_mm256_setzero_ps(); GROUPS4]; G];
    let mut acc_m = [_mm256_setzero_ps(); G];
    for (i, b) in row.chunks_exact(block_bytes).enumerate() {
        // [d, m] (for types without `m`, lane 1 is unused; every block has 4 bytes).
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
            b[0], b[1], b[2], b[3],
        ])));
        let dw = _mm256_broadcastss_ps(dm);
        let w = W::decode(b);
        // SAFETY (every `get_unchecked` below): i < blocks <= acts[g].len().
        let blk: [&PackedQ8; G] = std::array::from_fn(|g| unsafe { acts[g].get_unchecked(i) });
        let scale: [__m256; G] = std::array::from_fn(|g| {
            _mm256_mul_ps(dw, unsafe { _mm256_loadu_ps(blk[g].d.as_ptr()) })
        });
        for (k, &wk) in w.iter().enumerate() {
            let wk = _mm256_set1_epi32(wk);
            // Where each lane's sum starts: 0, or -128 * sum(w) (the activations are packed plus
            // 128).
            let start = if W::UNSIGNED {
                _mm256_setzero_si256()
            } else {
                let c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(-128), wk);
                _mm256_sub_epi32(_mm256_setzero_si256(), c)
            };
            for g in 0..G {
                // SAFETY: 32 bytes at 32k <= 224 of 256.
                let a = unsafe { _mm256_load_si256(blk[g].qs.as_ptr().add(QK * k).cast()) };
                let sum = if W::UNSIGNED {
                    _mm256_dpbusd_epi32(start, wk, a)
                } else {
                    _mm256_dpbusd_epi32(start, a, wk)
                };
                acc[g][k] = _mm256_fmadd_ps(scale[g], _mm256_cvtepi32_ps(sum), acc[g][k]);
            }
        }
        if W::MIN {
            let mw = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
            for g in 0..G {
                // SAFETY: `s` is 32 bytes.
                let sa = unsafe { _mm256_loadu_ps(blk[g].s.as_ptr()) };
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
        if W::MIN {
            _mm256_add_ps(d, acc_m[g])
        } else {
            d
        }
    })
}

/// All groups of `acts` against one weight row, [`MAX_GROUPS`] at a time (each weight block
/// decoded once for them); `out` gets `LANES` results per group.
///
/// # Safety
/// See the module documentation.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn dot_all<W: Weights>(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    assert_eq!(out.len(), acts.len() * LANES);
    for (acts, out) in acts
        .chunks(MAX_GROUPS)
        .zip(out.chunks_mut(MAX_GROUPS * LANES))
    {
        // SAFETY (both arms): forwarded.
        let acc: &[__m256] = match acts {
            [a] => &unsafe { dot_groups::<W, 1>(row, [a]) },
            [a, b] => &unsafe { dot_groups::<W, 2>(row, [a, b]) },
            [a, b, c] => &unsafe { dot_groups::<W, 3>(row, [a, b, c]) },
            _ => unreachable!("chunks of at most MAX_GROUPS"),
        };
        for (acc, out) in acc.iter().zip(out.chunks_exact_mut(LANES)) {
            // SAFETY: `out` has `LANES` floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *acc) };
        }
    }
}

/// Q4_0 (`w = nibble - 8`) against activations packed with [`Packing::Offset`].
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn dot_q4_0(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    // SAFETY: forwarded.
    unsafe { dot_all::<Q40>(row, acts, out) }
}

/// Q4_1 (`w = d * nibble + m`) against activations packed with [`Packing::Signed`].
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn dot_q4_1(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    // SAFETY: forwarded.
    unsafe { dot_all::<Q41>(row, acts, out) }
}

/// Q8_0 (32 signed bytes) against activations packed with [`Packing::Offset`].
///
/// # Safety
/// See the module documentation.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn dot_q8_0(row: &[u8], acts: &[&[PackedQ8]], out: &mut [f32]) {
    // SAFETY: forwarded.
    unsafe { dot_all::<Q80>(row, acts, out) }
}
