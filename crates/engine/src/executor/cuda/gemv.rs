//! The few-token projections of `gemv.cu`: decode steps of a few tokens run each layer as four
//! fused GEMVs (norm + QKV, output + residual, norm + gate-up + SiLU, down + residual) instead
//! of cuBLASLt GEMMs and the small kernels between them.

use super::device::{Gpu, GpuResult, arg};
use super::weights::Shapes;
use cudarc::driver::sys::{CUdeviceptr, CUfunction};

/// Threads per block: 8 consumer warps and a producer (GEMV_THREADS in the source).
const THREADS: u32 = 288;
/// Most tokens a step may have. The kernels take up to 8 (the MMAs' n), but at 8 the library GEMMs and
/// the separate small kernels measured faster (H200).
const MAX_TOKENS: usize = 4;
/// Padding of each normalized input row in shared memory, in bf16 (GEMV_PAD in the source).
const PAD: usize = 8;
/// Bytes of a stage row: GEMV_KT + GEMV_KT_PAD bf16.
const STAGE_ROW: usize = (512 + 32) * 2;
/// Stages × rows of each kernel's ring (STAGES in the source): 11 × 16 for QKV, 5 × (16 + 16)
/// for gate-up, 6 × 16 for the add kernels.
const RING_ROWS_STORE: usize = 11 * 16;
const RING_ROWS_SILU: usize = 5 * 32;
const RING_ROWS_ADD: usize = 6 * 16;

struct Kernel {
    f: CUfunction,
    /// Shared memory of the stage ring.
    ring: usize,
    /// Blocks that are resident at once on the whole GPU (with the most shared memory a launch
    /// uses): the grid's upper bound.
    resident: u32,
}

pub struct Gemv {
    norm_store: Kernel,
    norm_silu: Kernel,
    add: Kernel,
    /// Shared memory per token of the normalized input, in bytes.
    row_bytes: usize,
    /// The most tokens a step may have here.
    max_tokens: usize,
}

impl Gemv {
    /// Loads the kernels where they can run: sm_90 or later (bulk copies), projection widths
    /// that are multiples of 16 rows and inputs that are multiples of 32 columns; for as many
    /// tokens (at most MAX_TOKENS) as the stage ring and the normalized input rows leave room for in
    /// a block's shared memory. None where they cannot: the forward pass then uses cuBLASLt.
    pub fn load(
        gpu: &Gpu,
        function: impl Fn(&str) -> GpuResult<CUfunction>,
        s: &Shapes,
    ) -> GpuResult<Option<Self>> {
        let fits = [s.qkv, s.hidden, s.inter]
            .iter()
            .all(|n| n.is_multiple_of(16))
            && [s.hidden, s.q, s.inter]
                .iter()
                .all(|k| k.is_multiple_of(32));
        let row_bytes = (s.hidden + PAD) * 2;
        let deepest = RING_ROWS_STORE.max(RING_ROWS_SILU) * STAGE_ROW;
        let room = (gpu.max_shared as usize).saturating_sub(deepest);
        let max_tokens = MAX_TOKENS.min(room / row_bytes);
        if gpu.arch.0 < 9 || !fits || max_tokens == 0 {
            return Ok(None);
        }
        let kernel = |name: &str, ring_rows: usize, tokens: usize| -> GpuResult<Kernel> {
            let f = function(name)?;
            let ring = ring_rows * STAGE_ROW;
            let most = (ring + tokens * row_bytes) as u32;
            gpu.allow_shared(f, most)?;
            let resident = gpu.sms * gpu.resident_blocks(f, THREADS, most)?;
            Ok(Kernel { f, ring, resident })
        };
        Ok(Some(Self {
            norm_store: kernel("gemv_norm_store", RING_ROWS_STORE, max_tokens)?,
            norm_silu: kernel("gemv_norm_silu", RING_ROWS_SILU, max_tokens)?,
            add: kernel("gemv_add", RING_ROWS_ADD, 0)?,
            row_bytes,
            max_tokens,
        }))
    }

    /// Whether a step of `t` tokens runs its projections here.
    pub fn handles(&self, t: usize) -> bool {
        t > 0 && t <= self.max_tokens
    }

    /// `out[t × n] = rmsnorm(x) · wᵀ` (bf16 out) for the QKV projection.
    #[allow(clippy::too_many_arguments)]
    pub fn norm_store(
        &self,
        gpu: &Gpu,
        x: CUdeviceptr,
        norm: CUdeviceptr,
        eps: f32,
        w: CUdeviceptr,
        out: CUdeviceptr,
        tnk: (usize, usize, usize),
    ) -> GpuResult<()> {
        self.launch_norm(gpu, &self.norm_store, x, norm, eps, w, out, tnk)
    }

    /// `out[t × inter] = silu(g) · u` where `[g | u] = rmsnorm(x) · w_gate_upᵀ`.
    #[allow(clippy::too_many_arguments)]
    pub fn norm_silu(
        &self,
        gpu: &Gpu,
        x: CUdeviceptr,
        norm: CUdeviceptr,
        eps: f32,
        w_gate_up: CUdeviceptr,
        out: CUdeviceptr,
        (t, inter, k): (usize, usize, usize),
    ) -> GpuResult<()> {
        self.launch_norm(
            gpu,
            &self.norm_silu,
            x,
            norm,
            eps,
            w_gate_up,
            out,
            (t, inter, k),
        )
    }

    /// `x[t × n] += input · wᵀ` (the f32 residual stream).
    pub fn add(
        &self,
        gpu: &Gpu,
        input: CUdeviceptr,
        w: CUdeviceptr,
        x: CUdeviceptr,
        (t, n, k): (usize, usize, usize),
    ) -> GpuResult<()> {
        self.check(t)?;
        let grid = grid(&self.add, n);
        let (n, k, t) = (n as i32, k as i32, t as i32);
        // SAFETY: input holds t × k bf16, w n × k, x t × n floats (shapes checked at load).
        unsafe {
            gpu.launch_with_shared(
                self.add.f,
                (grid, 1, 1),
                THREADS,
                self.add.ring as u32,
                &mut [arg(&input), arg(&w), arg(&n), arg(&k), arg(&t), arg(&x)],
            )
        }
    }

    fn check(&self, t: usize) -> GpuResult<()> {
        if self.handles(t) {
            Ok(())
        } else {
            Err(format!(
                "{t} tokens for the GEMV kernels (at most {})",
                self.max_tokens
            ))
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_norm(
        &self,
        gpu: &Gpu,
        kernel: &Kernel,
        x: CUdeviceptr,
        norm: CUdeviceptr,
        eps: f32,
        w: CUdeviceptr,
        out: CUdeviceptr,
        (t, n, k): (usize, usize, usize),
    ) -> GpuResult<()> {
        self.check(t)?;
        let (grid, shared) = (grid(kernel, n), (kernel.ring + t * self.row_bytes) as u32);
        let (n, k, t) = (n as i32, k as i32, t as i32);
        // SAFETY: x holds t × k floats, norm k bf16, w the kernel's rows × k bf16 and out its
        // output; the shared memory holds the ring and t padded rows of k bf16.
        unsafe {
            gpu.launch_with_shared(
                kernel.f,
                (grid, 1, 1),
                THREADS,
                shared,
                &mut [
                    arg(&x),
                    arg(&norm),
                    arg(&eps),
                    arg(&w),
                    arg(&n),
                    arg(&k),
                    arg(&t),
                    arg(&out),
                ],
            )
        }
    }
}

/// One block per group of 16 output rows, but no more than are resident at once (they loop).
fn grid(kernel: &Kernel, n: usize) -> u32 {
    (n as u32 / 16).min(kernel.resident)
}
