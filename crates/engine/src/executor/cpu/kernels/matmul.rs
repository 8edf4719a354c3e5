//! `out = input × Wᵀ` for a [`QMatrix`] `W`, on rayon's current thread pool.
//!
//! The llama.cpp scheme: each input row is quantized once per call (to [`BlockQ8`] for Q4_0,
//! Q4_1 and Q8_0 weights, to [`BlockQ8K`] for Q4_K and Q6_K; plain `f32` for F32/F16/BF16
//! weights), then every output is one integer-block dot product of a weight row with an
//! activation row, scaled in `f32`.
//!
//! Work split: tokens are cut into tiles of [`TOKEN_TILE`], output rows into chunks sized for a
//! few chunks per thread; each task computes one (row chunk × token tile) tile, walking a weight
//! row once over all the tile's tokens while it is in L1, four tokens per call where the type has
//! a four-token kernel (Q4_0, Q4_1 and Q8_0 on AVX2: each weight block is unpacked once for the
//! four). Decode (one token) writes straight into `out`; larger tiles are computed row-major per
//! weight row and transposed into `out`.
//!
//! On AVX2, Q4_0, Q4_1 and Q8_0 matmuls of [`PACKED_MIN_TOKENS`] tokens or more pack each tile's
//! activations into groups of 8 tokens (tokens in lanes, see `lanes`). Their results equal the
//! one-token kernels' bit for bit, so a token's output never depends on the batch it is in.

use rayon::prelude::*;

use super::q8::{BlockQ8, BlockQ8K, quantize_q8, quantize_q8k};
use super::{DType, QMatrix, scalar};

/// Tokens per tile: activations of a tile (32 tokens × a few KB) stay in L2 while each weight
/// row of a chunk is read once.
pub const TOKEN_TILE: usize = 32;

/// Elements of work (floats copied, activations quantized or packed) below which a parallel
/// loop runs on the calling thread: waking the other threads costs more than it saves (a
/// 32-token decode step has hundreds of such loops).
const SERIAL_BELOW: usize = 1 << 16;

/// The `with_min_len` that keeps loops over items of `item` elements each on one thread for
/// less than [`SERIAL_BELOW`] elements in all.
fn min_items(item: usize) -> usize {
    SERIAL_BELOW.div_ceil(item.max(1))
}

/// The instruction set the kernels use. Only [`Backend::best`] and the checked constructors make
/// one, so a `Backend` always names an instruction set this CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend(Isa);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Backend {
    /// Portable Rust, on every CPU.
    pub fn scalar() -> Backend {
        Backend(Isa::Scalar)
    }

    /// AVX2 + FMA + F16C, when this CPU has them.
    pub fn avx2() -> Option<Backend> {
        #[cfg(target_arch = "x86_64")]
        if super::avx2::available() {
            return Some(Backend(Isa::Avx2));
        }
        None
    }

    /// The fastest backend this CPU supports.
    pub fn best() -> Backend {
        Backend::avx2().unwrap_or_else(Backend::scalar)
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
        }
    }
}

/// A dot product of one weight row with one activation row.
///
/// # Safety
/// The backend that chose the function must be available (guaranteed by [`Backend`]); `row` is a
/// whole row and `act` the matching activations (guaranteed by the driver).
type DotFn<A> = unsafe fn(&[u8], &[A]) -> f32;

/// Four dot products of one weight row with four activation rows (the weight row is decoded
/// once). Same safety contract as [`DotFn`].
type Dot4Fn<A> = unsafe fn(&[u8], [&[A]; 4]) -> [f32; 4];

/// The dot products for one weight type on one backend.
#[derive(Clone, Copy)]
struct Dot<A> {
    one: DotFn<A>,
    four: Option<Dot4Fn<A>>,
}

impl<A> Dot<A> {
    fn one(one: DotFn<A>) -> Kernel
    where
        Kernel: From<Dot<A>>,
    {
        Kernel::from(Dot { one, four: None })
    }
}

/// The kernel for a weight type, by the activation format it needs.
enum Kernel {
    Q8(Dot<BlockQ8>),
    Q8K(Dot<BlockQ8K>),
    F32(Dot<f32>),
}

impl From<Dot<BlockQ8>> for Kernel {
    fn from(d: Dot<BlockQ8>) -> Kernel {
        Kernel::Q8(d)
    }
}

impl From<Dot<BlockQ8K>> for Kernel {
    fn from(d: Dot<BlockQ8K>) -> Kernel {
        Kernel::Q8K(d)
    }
}

impl From<Dot<f32>> for Kernel {
    fn from(d: Dot<f32>) -> Kernel {
        Kernel::F32(d)
    }
}

fn kernel(dtype: DType, backend: Backend) -> Kernel {
    match backend.0 {
        Isa::Scalar => match dtype {
            DType::F32 => Dot::one(scalar::dot_f32),
            DType::F16 => Dot::one(scalar::dot_f16),
            DType::BF16 => Dot::one(scalar::dot_bf16),
            DType::Q4_0 => Dot::one(scalar::dot_q4_0),
            DType::Q4_1 => Dot::one(scalar::dot_q4_1),
            DType::Q8_0 => Dot::one(scalar::dot_q8_0),
            DType::Q4_K => Dot::one(scalar::dot_q4_k),
            DType::Q6_K => Dot::one(scalar::dot_q6_k),
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            use super::avx2;
            let q8 = |one, four| {
                Kernel::Q8(Dot {
                    one,
                    four: Some(four),
                })
            };
            match dtype {
                DType::F32 => Dot::one(avx2::dot_f32),
                DType::F16 => Dot::one(avx2::dot_f16),
                DType::BF16 => Dot::one(avx2::dot_bf16),
                DType::Q4_0 => q8(avx2::dot_q4_0, avx2::dot_q4_0_x4),
                DType::Q4_1 => q8(avx2::dot_q4_1, avx2::dot_q4_1_x4),
                DType::Q8_0 => q8(avx2::dot_q8_0, avx2::dot_q8_0_x4),
                DType::Q4_K => Dot::one(avx2::dot_q4_k),
                DType::Q6_K => Dot::one(avx2::dot_q6_k),
            }
        }
    }
}

/// Dot products of one weight row with groups of [`lanes::LANES`](super::lanes::LANES) packed
/// tokens, `LANES` results per group into the last argument. Same safety contract as [`DotFn`].
#[cfg(target_arch = "x86_64")]
type PackedFn = unsafe fn(&[u8], &[&[super::lanes::PackedQ8]], &mut [f32]);

/// Tokens from which the packed (tokens in lanes) kernels are used: they always compute groups
/// of 8 tokens.
pub const PACKED_MIN_TOKENS: usize = 8;

/// The packed kernel for a weight type on a backend, if there is one.
#[cfg(target_arch = "x86_64")]
fn packed_kernel(dtype: DType, backend: Backend) -> Option<PackedFn> {
    use super::lanes;
    match (backend.0, dtype) {
        (Isa::Avx2, DType::Q4_0) => Some(lanes::dot_q4_0),
        (Isa::Avx2, DType::Q4_1) => Some(lanes::dot_q4_1),
        (Isa::Avx2, DType::Q8_0) => Some(lanes::dot_q8_0),
        _ => None,
    }
}

/// Quantizes `input` (`T × cols`) row by row into `T × (cols / block)` blocks.
fn quantize_rows<B: Default + Clone + Send>(
    input: &[f32],
    cols: usize,
    block: usize,
    quantize: fn(&[f32], &mut [B]),
) -> Vec<B> {
    let per_row = cols / block;
    let mut out = vec![B::default(); input.len() / block];
    if input.len() > cols {
        out.par_chunks_mut(per_row)
            .zip(input.par_chunks(cols))
            .with_min_len(min_items(cols))
            .for_each(|(o, x)| quantize(x, o));
    } else {
        quantize(input, &mut out);
    }
    out
}

/// One token (`act`) against every row of `mats` into `outs`: the rows in chunks (8 per thread
/// and matrix), all in one parallel section. (Four rows per kernel call, for four independent
/// accumulation chains, was 20-40% slower over the real model's matrices: decode streams its
/// weights from memory, and one row at a time streams best.)
fn one_token<A: Sync, const N: usize>(
    mats: [&QMatrix; N],
    act: &[A],
    dot: Dot<A>,
    outs: [&mut [f32]; N],
) {
    let threads = rayon::current_num_threads().max(1);
    let mut tasks = Vec::new();
    for (m, out) in mats.into_iter().zip(outs) {
        let chunk = m.rows().div_ceil(threads * 8).max(16);
        for (c, out) in out.chunks_mut(chunk).enumerate() {
            tasks.push((m, c * chunk, out));
        }
    }
    // SAFETY (both calls below): `kernel` picked `dot` for the matrices' type on a `Backend`,
    // which exists only if its instruction set is available; rows come from `row_data` and `act`
    // is one whole token row, matching the rows' length.
    tasks.into_par_iter().for_each(|(m, first, out)| {
        for (k, o) in out.iter_mut().enumerate() {
            *o = unsafe { (dot.one)(m.row_data(first + k), act) };
        }
    });
}

impl QMatrix {
    /// `out[t][r] = sum_c input[t][c] * W[r][c]`: `input` is `T × cols` and `out` `T × rows`,
    /// both row-major. Uses [`Backend::best`] and rayon's current pool.
    ///
    /// Quantized weights see the input quantized to 8 bits per 32 or 256 elements (see the
    /// module docs), so results differ from an exact product by about
    /// `sum_blocks max|x| / 254 * sum|w|` at most.
    ///
    /// # Panics
    /// If `input.len()` is not a multiple of `cols` or `out.len()` is not `T * rows`.
    pub fn matmul(&self, input: &[f32], out: &mut [f32]) {
        self.matmul_with(Backend::best(), input, out);
    }

    /// [`matmul`](Self::matmul) of several matrices with one input (Q, K and V; gate and up).
    /// For Q4_0/Q4_1/Q8_0 weights of one type, the input is quantized once for all of them, and
    /// for one token all their rows are computed in one parallel section (a one-token step is
    /// short enough for each section's start and end to count); otherwise one matmul after
    /// another. Same results.
    pub fn matmul_many<const N: usize>(mats: [&QMatrix; N], input: &[f32], outs: [&mut [f32]; N]) {
        let first = mats[0];
        let cols = first.cols();
        let backend = Backend::best();
        let shared = input.len().is_multiple_of(cols)
            && mats.iter().zip(&outs).all(|(m, o)| {
                m.dtype() == first.dtype()
                    && m.cols() == cols
                    && o.len() * cols == m.rows() * input.len()
            });
        match kernel(first.dtype(), backend) {
            Kernel::Q8(dot) if shared => {
                let act = quantize_rows(input, cols, 32, quantize_q8);
                if input.len() == cols {
                    one_token(mats, &act, dot, outs);
                } else {
                    for (m, out) in mats.into_iter().zip(outs) {
                        m.quantized(backend, &act, dot, out);
                    }
                }
            }
            _ => {
                for (m, out) in mats.into_iter().zip(outs) {
                    m.matmul_with(backend, input, out);
                }
            }
        }
    }

    /// [`matmul`](Self::matmul) on a chosen backend (to compare backends).
    pub fn matmul_with(&self, backend: Backend, input: &[f32], out: &mut [f32]) {
        let (rows, cols) = (self.rows(), self.cols());
        assert!(
            input.len().is_multiple_of(cols),
            "matmul input of {} floats is not a whole number of rows of {cols}",
            input.len()
        );
        let tokens = input.len() / cols;
        assert_eq!(
            out.len(),
            tokens * rows,
            "matmul output must be {tokens} x {rows}"
        );
        if tokens == 0 {
            return;
        }
        match kernel(self.dtype(), backend) {
            Kernel::Q8(dot) => self.quantized(
                backend,
                &quantize_rows(input, cols, 32, quantize_q8),
                dot,
                out,
            ),
            Kernel::Q8K(dot) => {
                let act = quantize_rows(input, cols, 256, quantize_q8k);
                self.drive(&act, cols / 256, dot, out);
            }
            Kernel::F32(dot) => self.drive(input, cols, dot, out),
        }
    }

    /// The product with activations quantized to [`BlockQ8`] (Q4_0, Q4_1, Q8_0 weights): the
    /// packed kernels from [`PACKED_MIN_TOKENS`] tokens where the backend has them.
    fn quantized(&self, backend: Backend, act: &[BlockQ8], dot: Dot<BlockQ8>, out: &mut [f32]) {
        let per_token = self.cols() / 32;
        #[cfg(target_arch = "x86_64")]
        if act.len() >= PACKED_MIN_TOKENS * per_token
            && let Some(packed) = packed_kernel(self.dtype(), backend)
        {
            self.drive_packed(act, per_token, packed, out);
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = backend;
        self.drive(act, per_token, dot, out);
    }

    /// Runs `dot` over all (row, token) pairs; `act` holds `per_token` items per token.
    fn drive<A: Sync>(&self, act: &[A], per_token: usize, dot: Dot<A>, out: &mut [f32]) {
        let rows = self.rows();
        let threads = rayon::current_num_threads().max(1);
        let tokens = act.len() / per_token;
        // SAFETY (both calls below): `kernel` picked `dot` for this matrix's type on a `Backend`,
        // which exists only if its instruction set is available; rows come from `row_data` and
        // activations are whole token rows of `per_token` items, matching the row's length.
        if tokens == 1 {
            one_token([self], act, dot, [out]);
            return;
        }
        let tiles = tokens.div_ceil(TOKEN_TILE);
        let chunk = rows.div_ceil((threads * 4).div_ceil(tiles)).clamp(4, 64);
        out.par_chunks_mut(TOKEN_TILE * rows)
            .zip(act.par_chunks(TOKEN_TILE * per_token))
            .for_each(|(out, act)| {
                let tile = out.len() / rows;
                let token = |t: usize| &act[t * per_token..(t + 1) * per_token];
                rows_in_chunks(rows, tile, chunk, tile, out, |r, res| {
                    let w = self.row_data(r);
                    let mut t = 0;
                    if let Some(four) = dot.four {
                        while t + 4 <= tile {
                            let a = [token(t), token(t + 1), token(t + 2), token(t + 3)];
                            res[t..t + 4].copy_from_slice(&unsafe { four(w, a) });
                            t += 4;
                        }
                    }
                    for (t, o) in res.iter_mut().enumerate().skip(t) {
                        *o = unsafe { (dot.one)(w, token(t)) };
                    }
                });
            });
    }

    /// [`drive`](Self::drive) for a packed kernel: the same tiles, each tile's activations packed
    /// once into groups of [`lanes::LANES`](super::lanes::LANES) tokens.
    #[cfg(target_arch = "x86_64")]
    fn drive_packed(&self, act: &[BlockQ8], per_token: usize, dot: PackedFn, out: &mut [f32]) {
        use super::lanes::{LANES, PackedQ8, pack};
        let rows = self.rows();
        let threads = rayon::current_num_threads().max(1);
        let tokens = act.len() / per_token;
        let tiles = tokens.div_ceil(TOKEN_TILE);
        // Rows are read once per tile whatever the chunk, so chunks are only cut for balance:
        // 4 per thread (SmolLM2's 576 rows in 8 equal chunks on 2 threads, not 9 of up to 64).
        let chunk = rows.div_ceil((threads * 4).div_ceil(tiles)).max(4);
        out.par_chunks_mut(TOKEN_TILE * rows)
            .zip(act.par_chunks(TOKEN_TILE * per_token))
            .for_each(|(out, act)| {
                let tile = out.len() / rows;
                let groups = tile.div_ceil(LANES);
                let mut packed = vec![PackedQ8::default(); groups * per_token];
                packed
                    .par_chunks_mut(per_token)
                    .zip(act.par_chunks(LANES * per_token))
                    .with_min_len(min_items(LANES * per_token * 32))
                    .for_each(|(p, act)| {
                        let tokens: Vec<&[BlockQ8]> = act.chunks_exact(per_token).collect();
                        pack(&tokens, p);
                    });
                let packed: Vec<&[PackedQ8]> = packed.chunks_exact(per_token).collect();
                rows_in_chunks(rows, tile, chunk, groups * LANES, out, |r, lanes| {
                    // SAFETY: `packed_kernel` picked `dot` for this matrix's type on a `Backend`,
                    // which exists only if its instruction set is available; every group holds
                    // `per_token` blocks, matching the row.
                    unsafe { dot(self.row_data(r), &packed, lanes) };
                });
            });
    }
}

/// `out[t][r]` (`tile` tokens × `rows`, row-major) for every weight row `r`: `compute(r, res)`
/// writes row `r`'s results for the tile's tokens into the first `tile` of `res` (`width`
/// floats). Rows go in parallel chunks of `chunk`; each chunk's results are transposed in a
/// small buffer and copied out in runs of `chunk`, so neither side is written with a stride.
fn rows_in_chunks(
    rows: usize,
    tile: usize,
    chunk: usize,
    width: usize,
    out: &mut [f32],
    compute: impl Fn(usize, &mut [f32]) + Sync,
) {
    thread_local! {
        /// `tmp` below, kept between calls (a fresh one costs page faults per step). Taken, not
        /// borrowed: a thread may start another matmul while waiting inside this one.
        static TMP: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    }
    // Chunk c's results at tmp[c * chunk * tile..], as [token][row in chunk].
    let mut tmp = TMP.take();
    tmp.resize(rows * tile, 0.0);
    tmp.par_chunks_mut(chunk * tile)
        .enumerate()
        .for_each(|(c, block)| {
            let n = block.len() / tile;
            let mut res = vec![0f32; width];
            for k in 0..n {
                compute(c * chunk + k, &mut res);
                for (t, &v) in res[..tile].iter().enumerate() {
                    block[t * n + k] = v;
                }
            }
        });
    out.par_chunks_mut(rows)
        .enumerate()
        .with_min_len(min_items(rows))
        .for_each(|(t, out)| {
            for (c, block) in tmp.chunks(chunk * tile).enumerate() {
                let n = block.len() / tile;
                out[c * chunk..c * chunk + n].copy_from_slice(&block[t * n..(t + 1) * n]);
            }
        });
    TMP.set(tmp);
}
