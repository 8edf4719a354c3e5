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
//! FMA enabled (see [`with_fma`]) so `mul_add` is one instruction.

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
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)), // 0x1.555e66p-3, 0x1.fffdb6p-2
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

/// ggml's tree sum of 16 lanes (`_mm512_reduce_add_ps`): halves added pairwise down to one.
#[inline(always)]
pub fn reduce16(v: &[f32; 16]) -> f32 {
    let t: [f32; 8] = std::array::from_fn(|i| v[i + 8] + v[i]);
    let u: [f32; 4] = std::array::from_fn(|i| t[i + 4] + t[i]);
    (u[0] + u[2]) + (u[1] + u[3])
}

/// The summation order of a dot product (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Tiled,
    Vector,
}

/// Lanes of a dot product before their final [`reduce16`]: element `i` goes to lane `i % 16`,
/// and for [`Order::Vector`] to accumulator `(i / 16) % 4` of four.
pub struct Lanes {
    acc: [[f32; 16]; 4],
    order: Order,
}

impl Lanes {
    #[inline(always)]
    pub fn new(order: Order) -> Lanes {
        Lanes {
            acc: [[0.0; 16]; 4],
            order,
        }
    }

    /// Accumulator of element `i`.
    #[inline(always)]
    fn slot(&self, i: usize) -> usize {
        match self.order {
            Order::Tiled => 0,
            Order::Vector => (i / 16) % 4,
        }
    }

    /// Adds `a[k] * b[k]` for the 16 elements `16c..16c + 16` (zeros past the end).
    #[inline(always)]
    pub fn add_chunk(&mut self, c: usize, a: &[f32], b: &[f32]) {
        let acc = &mut self.acc[self.slot(16 * c)];
        for (l, (x, y)) in a.iter().zip(b).enumerate() {
            acc[l] = x.mul_add(*y, acc[l]);
        }
    }

    #[inline(always)]
    pub fn sum(&self) -> f32 {
        match self.order {
            Order::Tiled => reduce16(&self.acc[0]),
            Order::Vector => {
                let a = &self.acc;
                reduce16(&std::array::from_fn(|l| {
                    (a[0][l] + a[2][l]) + (a[1][l] + a[3][l])
                }))
            }
        }
    }
}

/// `a · b` in `order` (both of one length, a multiple of 16 or zero-padded to one).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32], order: Order) -> f32 {
    let mut lanes = Lanes::new(order);
    for (c, (a, b)) in a.chunks(16).zip(b.chunks(16)).enumerate() {
        lanes.add_chunk(c, a, b);
    }
    lanes.sum()
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

/// `gate = silu(gate) * up` as `ggml_vec_swiglu_f32`: [`expf`] for whole groups of 16, the C
/// library's `expf` for the rest.
#[inline(always)]
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let whole = gate.len() / 16 * 16;
    for (i, (g, u)) in gate.iter_mut().zip(up).enumerate() {
        let e = if i < whole {
            expf(0.0 - *g)
        } else {
            (-*g).exp()
        };
        *g = *g / (1.0 + e) * u;
    }
}

/// Runs `f` compiled with FMA (and AVX2) when this CPU has them, so that `mul_add` is one
/// instruction (elsewhere it is a library call: correct, slower).
#[inline(always)]
pub fn with_fma<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("fma") && is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the features were just detected.
        return unsafe { run(f) };
    }
    f()
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
