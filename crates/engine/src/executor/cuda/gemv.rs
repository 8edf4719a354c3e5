//! The few-token projections of `gemv.cu`: decode steps of a few tokens run each layer as four
//! fused GEMVs (norm + QKV, output + residual, norm + gate-up + SiLU, down + residual) instead
//! of cuBLASLt GEMMs and the small kernels between them.

use super::device::{Gpu, GpuResult, arg};
use super::weights::Shapes;
use cudarc::driver::sys::{CUdeviceptr, CUfunction};

/// Threads per block: 8 consumer warps and a producer (GEMV_THREADS in the source).
const THREADS: u32 = 288;
/// Padding of each normalized input row in shared memory, in bf16 (GEMV_PAD in the source).
const PAD: usize = 8;
/// Padding of each stage row, in bf16 (GEMV_KT_PAD in the source).
const KT_PAD: usize = 32;
/// Overrides the layout's fields for tuning runs, as `kt=1024,silu=4` (see `GemvLayout`).
pub const LAYOUT_ENV: &str = "TURBINE_CUDA_GEMV";

/// How the GEMV kernels stage their weights: the defines `gemv.cu` is compiled with and the
/// shared memory the host gives them. The defaults measured best on an H200.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemvLayout {
    /// Columns a ring stage holds of each row (GEMV_KT): a multiple of 256.
    pub kt: usize,
    /// Ring stages of `gemv_norm_store` (16 rows each), `gemv_norm_silu` (16 gate + 16 up rows)
    /// and `gemv_add` (16 rows; two blocks share a multiprocessor by default).
    pub store: usize,
    pub silu: usize,
    pub add: usize,
    /// Most tokens a step may have here: the normalized-input rows reserved in shared memory.
    /// The kernels take up to 8 (the MMAs' n), but at 8 the library GEMMs and the separate small
    /// kernels measured faster (H200).
    pub tokens: usize,
}

impl Default for GemvLayout {
    fn default() -> Self {
        Self {
            kt: 512,
            store: 11,
            silu: 5,
            add: 6,
            tokens: 4,
        }
    }
}

/// The form `LAYOUT_ENV` takes.
impl std::fmt::Display for GemvLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kt={},store={},silu={},add={},tokens={}",
            self.kt, self.store, self.silu, self.add, self.tokens
        )
    }
}

impl GemvLayout {
    /// The defaults with `LAYOUT_ENV`'s fields, if set.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(LAYOUT_ENV) {
            Ok(spec) => Self::parse(&spec).map_err(|e| format!("{LAYOUT_ENV}={spec}: {e}")),
            Err(_) => Ok(Self::default()),
        }
    }

    fn parse(spec: &str) -> Result<Self, String> {
        let mut layout = Self::default();
        for field in spec.split(',').filter(|f| !f.trim().is_empty()) {
            let (name, value) = field
                .split_once('=')
                .ok_or_else(|| format!("`{field}` is not NAME=VALUE"))?;
            let value: usize = value
                .trim()
                .parse()
                .map_err(|_| format!("`{field}`: not a count"))?;
            let (slot, range) = match name.trim() {
                "kt" => (&mut layout.kt, 256..=4096),
                "store" => (&mut layout.store, 1..=32),
                "silu" => (&mut layout.silu, 1..=32),
                "add" => (&mut layout.add, 1..=32),
                "tokens" => (&mut layout.tokens, 1..=8),
                other => {
                    return Err(format!(
                        "unknown field `{other}` (kt, store, silu, add, tokens)"
                    ));
                }
            };
            if !range.contains(&value) {
                return Err(format!("`{field}`: outside {range:?}"));
            }
            *slot = value;
        }
        if !layout.kt.is_multiple_of(256) {
            return Err(format!("kt={} is not a multiple of 256", layout.kt));
        }
        Ok(layout)
    }

    pub fn defines(&self) -> [(&'static str, String); 4] {
        [
            ("GEMV_KT", self.kt.to_string()),
            ("GEMV_STAGES_STORE", self.store.to_string()),
            ("GEMV_STAGES_SILU", self.silu.to_string()),
            ("GEMV_STAGES_ADD", self.add.to_string()),
        ]
    }

    /// Shared memory of a ring of `stages` × `rows` rows.
    fn ring(&self, stages: usize, rows: usize) -> usize {
        stages * rows * (self.kt + KT_PAD) * 2
    }
}

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
    /// As compiled, with `tokens` the most a step may have here.
    layout: GemvLayout,
}

impl Gemv {
    /// Loads the kernels where they can run: sm_90 or later (bulk copies), projection widths
    /// that are multiples of 16 rows and inputs that are multiples of 32 columns; for as many
    /// tokens (at most `layout.tokens`) as fit their normalized input rows in a block's shared
    /// memory beside each kernel's stage ring and static shared memory. None where they cannot:
    /// the forward pass then uses cuBLASLt.
    pub fn load(
        gpu: &Gpu,
        function: impl Fn(&str) -> GpuResult<CUfunction>,
        s: &Shapes,
        layout: &GemvLayout,
    ) -> GpuResult<Option<Self>> {
        let fits = [s.qkv, s.hidden, s.inter]
            .iter()
            .all(|n| n.is_multiple_of(16))
            && [s.hidden, s.q, s.inter]
                .iter()
                .all(|k| k.is_multiple_of(32));
        if gpu.arch.0 < 9 || !fits {
            return Ok(None);
        }
        let row_bytes = (s.hidden + PAD) * 2;
        let (store, silu, add) = (
            function("gemv_norm_store")?,
            function("gemv_norm_silu")?,
            function("gemv_add")?,
        );
        // Tokens whose normalized input fits beside a kernel's ring and static shared memory.
        let room = |f: CUfunction, ring: usize| -> GpuResult<usize> {
            let used = ring + gpu.static_shared(f)? as usize;
            Ok((gpu.max_shared as usize).saturating_sub(used) / row_bytes)
        };
        let max_tokens = layout
            .tokens
            .min(room(store, layout.ring(layout.store, 16))?)
            .min(room(silu, layout.ring(layout.silu, 32))?);
        if max_tokens == 0 {
            return Ok(None);
        }
        let kernel = |f: CUfunction, ring: usize, tokens: usize| -> GpuResult<Kernel> {
            let most = (ring + tokens * row_bytes) as u32;
            gpu.allow_shared(f, most)?;
            let resident = gpu.sms * gpu.resident_blocks(f, THREADS, most)?;
            Ok(Kernel { f, ring, resident })
        };
        Ok(Some(Self {
            norm_store: kernel(store, layout.ring(layout.store, 16), max_tokens)?,
            norm_silu: kernel(silu, layout.ring(layout.silu, 32), max_tokens)?,
            add: kernel(add, layout.ring(layout.add, 16), 0)?,
            row_bytes,
            layout: GemvLayout {
                tokens: max_tokens,
                ..*layout
            },
        }))
    }

    /// Whether a step of `t` tokens runs its projections here.
    pub fn handles(&self, t: usize) -> bool {
        t > 0 && t <= self.layout.tokens
    }

    pub fn layout(&self) -> &GemvLayout {
        &self.layout
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
                self.layout.tokens
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_parse_print_and_refuse_what_the_kernels_cannot_take() {
        assert_eq!(GemvLayout::parse("").unwrap(), GemvLayout::default());
        let tuned = GemvLayout::parse(" kt=1024, silu=3 ,tokens=1").unwrap();
        assert_eq!(
            tuned,
            GemvLayout {
                kt: 1024,
                silu: 3,
                tokens: 1,
                ..GemvLayout::default()
            }
        );
        assert_eq!(GemvLayout::parse(&tuned.to_string()).unwrap(), tuned);
        for bad in [
            "kt=384", "kt=128", "silu=0", "tokens=9", "depth=3", "add", "add=x",
        ] {
            assert!(GemvLayout::parse(bad).is_err(), "{bad} accepted");
        }
        let ring = GemvLayout::default().ring(5, 32);
        assert_eq!(ring, 5 * 32 * (512 + 32) * 2);
    }
}
