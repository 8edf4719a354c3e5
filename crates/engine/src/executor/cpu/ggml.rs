//! llama.cpp's element-wise arithmetic, reproduced operation for operation so that our logits
//! equal llama.cpp's bit for bit on the same GGUF (its native x86 builds, ggml 0.9.x:
//! `ggml/src/ggml-cpu/vec.h`, `ops.cpp` and `llamafile/sgemm.cpp`). A build for an AVX-512 CPU
//! and one for an AVX2 CPU differ: vectors of 16 or 8 lanes, so other summation orders, and
//! another `expf`. [`Width`] names the build reproduced; the executor takes the one llama.cpp
//! would be built as on this CPU ([`Width::native`]).
//!
//! Why bother: activations are quantized to 8 bits before every quantized matmul, so a one-ulp
//! difference anywhere can flip a rounding, and one flip moves the layer's output by a whole
//! quantization step; after a few layers the two computations are as far apart as llama.cpp is
//! from the exact result (logits ~0.1). Only identical arithmetic keeps greedy outputs identical.
//!
//! What is reproduced:
//! - `expf`: ggml's vectorized `ggml_v_expf` (its AVX-512 and AVX2 variants round differently),
//!   used by softmax and SiLU.
//! - Summation orders of ggml's f16 dot products, with `W` = 16 or 8 lanes: [`Order::Tiled`] is
//!   tinyBLAS (matrices with two or more tokens: `W` lanes, each summing every `W`th product in
//!   order, then a tree); [`Order::Vector`] is `ggml_vec_dot_f16` (one token: 4 × `W` lanes over
//!   chunks of `4W`, the four combined, then a tree).
//! - `softmax`: `ggml_vec_soft_max_f32` (exponentials summed per `W` in a tree, the sums in f64).
//!
//! Functions generic over `const W: usize` take the lanes of a [`Width`]: 8 or 16.
//!
//! These are plain `f32` operations with `mul_add` where ggml fuses; callers compile them with
//! FMA enabled (see [`fma_fn!`]) so `mul_add` is one instruction.

/// The llama.cpp x86 build whose arithmetic is reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// Built for an AVX2 CPU: 8-lane vectors.
    Avx2,
    /// Built for an AVX-512 CPU (with AVX-512 DQ, as llama.cpp's 512-bit `expf` requires):
    /// 16-lane vectors.
    Avx512,
}

impl Width {
    /// The build llama.cpp would be on this CPU (native build).
    pub fn native() -> Width {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
            return Width::Avx512;
        }
        Width::Avx2
    }
}

/// `e^x` as ggml's `ggml_v_expf` computes it with `W`-lane vectors (ARM's optimized-routines
/// algorithm: a degree-5 polynomial on the reduced argument, scaled by `2^n`; maximum error 1.5
/// ulp).
#[inline(always)]
pub fn expf<const W: usize>(x: f32) -> f32 {
    if W == 16 {
        expf_avx512(x)
    } else {
        expf_avx2(x)
    }
}

/// The start both variants share: `z` (`x / ln 2` plus `1.5 * 2^23`, its integer part `n` in the
/// low mantissa bits), `n`, the reduced argument `b = x - n ln 2`, `u = b^2`, and
/// `high = (c5 b + c4) u + (c3 b + c2)`; each variant ends with its own `high * u + ...`.
#[inline(always)]
fn expf_parts(x: f32) -> (f32, f32, f32, f32, f32) {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // 0x1.715476p+0 = 1 / ln 2
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),                  // 0x1.7f7d1cp-20
        (-n).mul_add(f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    let u = b * b;
    let high = f32::from_bits(0x3c07_2010) // 0x1.0e4020p-7
        .mul_add(b, f32::from_bits(0x3d2b_9f17)) // 0x1.573e2ep-5
        .mul_add(
            u,
            // 0x1.555e66p-3, 0x1.fffdb6p-2
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)),
        );
    (z, n, b, u, high)
}

/// The polynomial's degree-1 coefficient, `0x1.ffffecp-1`.
const C1: u32 = 0x3f7f_fff6;

/// The AVX-512 variant: the polynomial includes the 1 and is scaled by `_mm512_scalef_ps`.
#[inline(always)]
fn expf_avx512(x: f32) -> f32 {
    let (_, n, b, u, high) = expf_parts(x);
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let j = high.mul_add(u, f32::from_bits(C1).mul_add(b, 1.0));
    scale_by_pow2(j, n as i32)
}

/// The AVX2 variant: `2^n + 2^n j` by one FMA, with a two-factor scaling for `|n| > 126`.
#[inline(always)]
fn expf_avx2(x: f32) -> f32 {
    let (z, n, b, u, high) = expf_parts(x);
    let j = high.mul_add(u, f32::from_bits(C1) * b);
    // 2^n: n sits in z's low mantissa bits.
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    if n.abs() <= 126.0 || n.is_nan() {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    if n.abs() > 192.0 {
        return s1 * s1;
    }
    let s2 = f32::from_bits(e.wrapping_sub(g));
    s2.mul_add(j, s2) * s1
}

/// `j * 2^n`, rounded once (`_mm512_scalef_ps` for integral `n`, `|n| <= 192`): the first factor
/// keeps the product normal, the second rounds it (to a subnormal or infinity if it must).
#[inline(always)]
fn scale_by_pow2(j: f32, n: i32) -> f32 {
    let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let half = n / 2;
    j * pow2(half) * pow2(n - half)
}

/// What ggml's summation trees add: one `f32`, or `W` independent sums side by side (so that
/// a tree over 16 lanes of vectors runs in vector instructions).
pub trait Sum: Copy {
    fn add(self, other: Self) -> Self;
}

impl Sum for f32 {
    #[inline(always)]
    fn add(self, other: f32) -> f32 {
        self + other
    }
}

impl<const W: usize> Sum for [f32; W] {
    #[inline(always)]
    fn add(mut self, other: [f32; W]) -> [f32; W] {
        for (a, b) in self.iter_mut().zip(other) {
            *a += b;
        }
        self
    }
}

/// The sum of one vector's `W` lanes as ggml's reductions take it: for 16 lanes
/// `_mm512_reduce_add_ps` (halves added pairwise down to one), for 8 `hsum` of `__m256` (the
/// halves added, then `movehl` and `movehdup`).
/// (Loops, not closures, here and below: a closure would be compiled apart from the FMA-enabled
/// callers of [`fma_fn!`], without FMA.)
#[inline(always)]
pub fn reduce<T: Sum, const W: usize>(v: &[T; W]) -> T {
    assert!(W == 8 || W == 16, "8 or 16 lanes");
    let mut t = [v[0]; 8];
    for (i, t) in t.iter_mut().enumerate().take(W / 2) {
        *t = v[i + W / 2].add(v[i]);
    }
    if W == 8 {
        return t[0].add(t[2]).add(t[1].add(t[3]));
    }
    let mut u = [t[0]; 4];
    for (i, u) in u.iter_mut().enumerate() {
        *u = t[i + 4].add(t[i]);
    }
    u[0].add(u[2]).add(u[1].add(u[3]))
}

/// The summation order of a dot product (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Tiled,
    Vector,
}

impl Order {
    /// The order llama.cpp sums a sequence's attention products in when it brings `new_tokens`
    /// tokens to a step: one token is a vector dot product, more go through tinyBLAS's tiles.
    pub fn for_new_tokens(new_tokens: usize) -> Order {
        if new_tokens > 1 {
            Order::Tiled
        } else {
            Order::Vector
        }
    }

    /// Accumulators of `W` lanes the order uses: element `i` goes to lane `i % W` of
    /// accumulator `(i / W) % slots`.
    #[inline(always)]
    pub fn slots(self) -> usize {
        match self {
            Order::Tiled => 1,
            Order::Vector => 4,
        }
    }

    /// The sum of the accumulators' lanes (`acc[slot][lane]`, [`slots`](Self::slots) of
    /// them), in this order's way: the vector order adds its 4 accumulators pairwise, then
    /// (`GGML_F32x8_REDUCE` / `_x16_`) 16 lanes by [`reduce`], 8 by two `hadd`s of their halves'
    /// sum.
    #[inline(always)]
    pub fn finish<T: Sum, const W: usize>(self, acc: &[[T; W]]) -> T {
        if self == Order::Tiled {
            return reduce(&acc[0]);
        }
        let mut lanes = acc[0];
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane = acc[0][l].add(acc[2][l]).add(acc[1][l].add(acc[3][l]));
        }
        if W == 16 {
            return reduce(&lanes);
        }
        let mut t = [lanes[0]; 4];
        for (i, t) in t.iter_mut().enumerate() {
            *t = lanes[i].add(lanes[i + 4]);
        }
        t[0].add(t[1]).add(t[2].add(t[3]))
    }
}

/// `acc[l] += x[l] * y[l]` (fused) for the `W` lanes.
#[inline(always)]
fn fma_lanes<const W: usize>(acc: &mut [f32; W], x: &[f32], y: &[f32]) {
    let (x, y): (&[f32; W], &[f32; W]) = (x.try_into().unwrap(), y.try_into().unwrap());
    for l in 0..W {
        acc[l] = x[l].mul_add(y[l], acc[l]);
    }
}

/// `a · b` in `order` with `W` lanes (`a` and `b` of one length; a partial last `W` counts as
/// zero-padded).
#[inline(always)]
pub fn dot<const W: usize>(a: &[f32], b: &[f32], order: Order) -> f32 {
    match order {
        Order::Tiled => dot_slots::<W, 1>(a, b, order),
        Order::Vector => dot_slots::<W, 4>(a, b, order),
    }
}

/// [`dot`] with `SLOTS = order.slots()` fixed at compile time, so that the accumulators stay in
/// registers.
#[inline(always)]
fn dot_slots<const W: usize, const SLOTS: usize>(a: &[f32], b: &[f32], order: Order) -> f32 {
    let mut acc = [[0f32; W]; SLOTS];
    let n = a.len().min(b.len());
    // Whole groups of SLOTS × W, then the rest W at a time, the last one zero-padded.
    let step = W * SLOTS;
    let mut c = 0;
    while c + step <= n {
        for (slot, acc) in acc.iter_mut().enumerate() {
            let at = c + W * slot;
            fma_lanes(acc, &a[at..at + W], &b[at..at + W]);
        }
        c += step;
    }
    while c < n {
        let (mut x, mut y) = ([0f32; W], [0f32; W]);
        let m = (n - c).min(W);
        x[..m].copy_from_slice(&a[c..c + m]);
        y[..m].copy_from_slice(&b[c..c + m]);
        fma_lanes(&mut acc[(c / W) % SLOTS], &x, &y);
        c += W;
    }
    order.finish(&acc)
}

/// Softmax of `x` in place, as `ggml_vec_soft_max_f32` with `W` lanes after ggml's max.
#[inline(always)]
pub fn softmax<const W: usize>(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for chunk in x.chunks_mut(W) {
        let mut e = [0f32; W];
        for (e, v) in e.iter_mut().zip(chunk.iter_mut()) {
            *v = expf::<W>(*v - max);
            *e = *v;
        }
        sum += reduce(&e) as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x {
        *v *= inv;
    }
}

/// Whether this CPU has FMA (and AVX2), for [`fma_fn!`].
pub fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("fma") && is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Defines a function whose body is compiled twice, plain and (on x86_64) with FMA and AVX2 (taken
/// when the CPU has them), so that `mul_add` is one instruction there rather than a library call
/// (elsewhere it is a library call: correct, slower; aarch64 always has the instruction).
macro_rules! fma_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident $(<$g:ident: $bound:path>)?
        ($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name $(<$g: $bound>)? ($($arg: $ty),*) {
            #[inline(always)]
            fn body $(<$g: $bound>)? ($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast $(<$g: $bound>)? ($($arg: $ty),*) {
                    body $(::<$g>)? ($($arg),*)
                }
                if $crate::executor::cpu::ggml::has_fma() {
                    // SAFETY: the features `fast` is compiled for were just detected.
                    return unsafe { fast $(::<$g>)? ($($arg),*) };
                }
            }
            body $(::<$g>)? ($($arg),*)
        }
    };
}
pub(crate) use fma_fn;

fma_fn! {
    /// `gate = silu(gate) * up` as `ggml_vec_swiglu_f32` of the `width` build: [`expf`] for
    /// whole vectors, the C library's `expf` for the rest.
    pub fn silu_mul(width: Width, gate: &mut [f32], up: &[f32]) {
        match width {
            Width::Avx2 => silu_mul_lanes::<8>(gate, up),
            Width::Avx512 => silu_mul_lanes::<16>(gate, up),
        }
    }
}

#[inline(always)]
fn silu_mul_lanes<const W: usize>(gate: &mut [f32], up: &[f32]) {
    // Two loops, not one with a choice per element: vectorized, that one called the C
    // library's `expf` for every element as well.
    let whole = gate.len() / W * W;
    let (gate, gate_rest) = gate.split_at_mut(whole);
    let (up, up_rest) = up.split_at(whole.min(up.len()));
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + expf::<W>(0.0 - *g)) * u;
    }
    for (g, u) in gate_rest.iter_mut().zip(up_rest) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_is_close_to_exp() {
        for (name, expf) in [
            ("avx512", expf::<16> as fn(f32) -> f32),
            ("avx2", expf::<8>),
        ] {
            // Normal results (below -87.3 they are subnormal, with fewer significant bits).
            for i in -1740..1770 {
                let x = i as f32 * 0.05;
                let (ours, exact) = (expf(x), (x as f64).exp());
                assert!(
                    ((ours as f64 - exact) / exact).abs() < 3e-7,
                    "{name} {x}: {ours} vs {exact}"
                );
            }
            assert!(
                (expf(-100.0) as f64 - (-100f64).exp()).abs() < 2e-45,
                "{name}"
            );
            assert_eq!(expf(-200.0), 0.0, "{name}");
            assert_eq!(expf(200.0), f32::INFINITY, "{name}");
            assert_eq!(expf(f32::NEG_INFINITY), 0.0, "{name}");
        }
    }

    #[test]
    fn the_two_expf_variants_round_differently() {
        let differ = (0..1000)
            .map(|i| -(i as f32) * 0.0137)
            .filter(|&x| expf::<8>(x) != expf::<16>(x))
            .count();
        assert!(differ > 0);
    }

    #[test]
    fn orders_sum_the_same_products() {
        let a: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..64).map(|i| (i as f32 * 0.11).cos()).collect();
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        for order in [Order::Tiled, Order::Vector] {
            assert!((dot::<16>(&a, &b, order) as f64 - exact).abs() < 1e-5);
            assert!((dot::<8>(&a, &b, order) as f64 - exact).abs() < 1e-5);
        }
    }

    #[test]
    fn eight_lane_trees() {
        // Values whose sums round differently in different trees pin the 8-lane orders down.
        let v: [f32; 8] = [1e8, 1.0, -1e8, 1.0, 3.0, 1.0, 5.0, 1.0];
        // hsum of __m256: (v0+v4) + (v2+v6), (v1+v5) + (v3+v7), then those two.
        let want = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
        assert_eq!(reduce(&v), want);
        // GGML_F32x8_REDUCE: (s0+s4) + (s1+s5), (s2+s6) + (s3+s7), then those two.
        let zero = [0f32; 8];
        let got = Order::Vector.finish(&[v, zero, zero, zero]);
        assert_eq!(
            got,
            ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
        );
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
        let mut y = x.clone();
        softmax::<16>(&mut x);
        softmax::<8>(&mut y);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
