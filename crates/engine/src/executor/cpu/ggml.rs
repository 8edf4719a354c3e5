//! llama.cpp's element-wise arithmetic, reproduced operation for operation so that our logits
//! equal llama.cpp's bit for bit on the same GGUF (its x86 build with AVX-512, ggml 0.9.x:
//! `ggml/src/ggml-cpu/vec.h`, `ops.cpp` and `llamafile/sgemm.cpp`).
//!
//! Why bother: activations are quantized to 8 bits before every quantized matmul, so a one-ulp
//! difference anywhere can flip a rounding, and one flip moves the layer's output by a whole
//! quantization step; after a few layers the two computations are as far apart as llama.cpp is
//! from the exact result (logits ~0.1). Only identical arithmetic keeps greedy outputs identical.
//!
//! What is reproduced:
//! - `expf`: ggml's vectorized `ggml_v_expf` (AVX-512 variant), used by softmax and SiLU.
//! - Summation orders of ggml's f16 dot products: [`Order::Tiled`] is tinyBLAS (matrices with
//!   two or more tokens: 16 lanes, each summing every 16th product in order, then a tree);
//!   [`Order::Vector`] is `ggml_vec_dot_f16` (one token: 4 × 16 lanes over chunks of 64, the
//!   four combined, then the same tree).
//! - `softmax`: `ggml_vec_soft_max_f32` (exponentials summed per 16 in a tree, the sums in f64).
//!
//! These are plain `f32` operations with `mul_add` where ggml fuses; callers compile them with
//! FMA enabled (see [`fma_fn!`]) so `mul_add` is one instruction.

/// `e^x` as ggml's `ggml_v_expf` computes it (ARM's optimized-routines algorithm: a degree-5
/// polynomial on the reduced argument, scaled by `2^n`; maximum error 1.5 ulp).
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // 0x1.715476p+0 = 1 / ln 2
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),                  // 0x1.7f7d1cp-20
        (-n).mul_add(f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010) // 0x1.0e4020p-7
        .mul_add(b, f32::from_bits(0x3d2b_9f17)) // 0x1.573e2ep-5
        .mul_add(
            u,
            // 0x1.555e66p-3, 0x1.fffdb6p-2
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)),
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0)); // 0x1.ffffecp-1
    scale_by_pow2(j, n as i32)
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

/// ggml's tree sum of 16 lanes (`_mm512_reduce_add_ps`): halves added pairwise down to one.
/// (Loops, not closures, here and below: a closure would be compiled apart from the FMA-enabled
/// callers of [`fma_fn!`], without FMA.)
#[inline(always)]
pub fn reduce16<T: Sum>(v: &[T; 16]) -> T {
    let mut t = [v[0]; 8];
    for (i, t) in t.iter_mut().enumerate() {
        *t = v[i + 8].add(v[i]);
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

    /// Accumulators of 16 lanes the order uses: element `i` goes to lane `i % 16` of
    /// accumulator `(i / 16) % slots`.
    #[inline(always)]
    pub fn slots(self) -> usize {
        match self {
            Order::Tiled => 1,
            Order::Vector => 4,
        }
    }

    /// The sum of the accumulators' lanes (`acc[slot][lane]`, [`slots`](Self::slots) of
    /// them), in this order's way.
    #[inline(always)]
    pub fn finish<T: Sum>(self, acc: &[[T; 16]]) -> T {
        let mut lanes = acc[0];
        if self == Order::Vector {
            for (l, lane) in lanes.iter_mut().enumerate() {
                *lane = acc[0][l].add(acc[2][l]).add(acc[1][l].add(acc[3][l]));
            }
        }
        reduce16(&lanes)
    }
}

/// `acc[l] += x[l] * y[l]` (fused) for the 16 lanes.
#[inline(always)]
fn fma16(acc: &mut [f32; 16], x: &[f32], y: &[f32]) {
    let (x, y): (&[f32; 16], &[f32; 16]) = (x.try_into().unwrap(), y.try_into().unwrap());
    for l in 0..16 {
        acc[l] = x[l].mul_add(y[l], acc[l]);
    }
}

/// `a · b` in `order` (`a` and `b` of one length; a partial last 16 counts as zero-padded).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32], order: Order) -> f32 {
    match order {
        Order::Tiled => dot_slots::<1>(a, b, order),
        Order::Vector => dot_slots::<4>(a, b, order),
    }
}

/// [`dot`] with `SLOTS = order.slots()` fixed at compile time, so that the accumulators stay in
/// registers.
#[inline(always)]
fn dot_slots<const SLOTS: usize>(a: &[f32], b: &[f32], order: Order) -> f32 {
    let mut acc = [[0f32; 16]; SLOTS];
    let n = a.len().min(b.len());
    // Whole groups of SLOTS × 16, then the rest 16 at a time, the last one zero-padded.
    let step = 16 * SLOTS;
    let mut c = 0;
    while c + step <= n {
        for (slot, acc) in acc.iter_mut().enumerate() {
            let at = c + 16 * slot;
            fma16(acc, &a[at..at + 16], &b[at..at + 16]);
        }
        c += step;
    }
    while c < n {
        let (mut x, mut y) = ([0f32; 16], [0f32; 16]);
        let m = (n - c).min(16);
        x[..m].copy_from_slice(&a[c..c + m]);
        y[..m].copy_from_slice(&b[c..c + m]);
        fma16(&mut acc[(c / 16) % SLOTS], &x, &y);
        c += 16;
    }
    order.finish(&acc)
}

/// Softmax of `x` in place, as `ggml_vec_soft_max_f32` after ggml's max.
#[inline(always)]
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for chunk in x.chunks_mut(16) {
        let mut e = [0f32; 16];
        for (e, v) in e.iter_mut().zip(chunk.iter_mut()) {
            *v = expf(*v - max);
            *e = *v;
        }
        sum += reduce16(&e) as f64;
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
    /// `gate = silu(gate) * up` as `ggml_vec_swiglu_f32`: [`expf`] for whole groups of 16, the C
    /// library's `expf` for the rest.
    pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
        let whole = gate.len() / 16 * 16;
        for (i, (g, u)) in gate.iter_mut().zip(up).enumerate() {
            let e = if i < whole { expf(0.0 - *g) } else { (-*g).exp() };
            *g = *g / (1.0 + e) * u;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_is_close_to_exp() {
        // Normal results (below -87.3 they are subnormal, with fewer significant bits).
        for i in -1740..1770 {
            let x = i as f32 * 0.05;
            let (ours, exact) = (expf(x), (x as f64).exp());
            assert!(
                ((ours as f64 - exact) / exact).abs() < 3e-7,
                "{x}: {ours} vs {exact}"
            );
        }
        assert!((expf(-100.0) as f64 - (-100f64).exp()).abs() < 2e-45);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(200.0), f32::INFINITY);
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn orders_sum_the_same_products() {
        let a: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..64).map(|i| (i as f32 * 0.11).cos()).collect();
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        for order in [Order::Tiled, Order::Vector] {
            assert!((dot(&a, &b, order) as f64 - exact).abs() < 1e-5);
        }
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
