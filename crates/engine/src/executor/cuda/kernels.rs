//! The kernels of `kernels.cu`, compiled for the model's head shape and the GPU in hand, each with
//! a typed launcher. Device pointers are `u64`; a null optional input is 0.

use super::compile::Compiler;
use super::device::{Gpu, GpuResult, arg};
use super::gemv::{Gemv, GemvLayout};
use super::plan::{CORE_MIN_KEYS, MMA_MIN_KEYS, attention_splits, mma_attention_splits};
use super::prefill::PrefillLayout;
use super::timeline::{self, Timeline};
use super::weights::Shapes;
use cudarc::driver::result::module;
use cudarc::driver::sys::{CUdeviceptr, CUfunction};
use std::ffi::CString;

pub const SOURCE: &str = concat!(
    include_str!("kernels.cu"),
    include_str!("prefill.cu"),
    include_str!("prefill_wgmma.cu"),
    include_str!("gemv.cu"),
    include_str!("decode_mma.cu"),
    include_str!("sample.cu")
);
/// A file to compile instead of `SOURCE`: kernel work on a GPU machine that has no Rust
/// toolchain, with the binary built elsewhere.
pub const SOURCE_ENV: &str = "TURBINE_CUDA_SOURCE";
/// Warps per block of `decode_attention` (ATTN_WARPS in the source).
const ATTN_THREADS: u32 = 128;
/// Items (warps) per block of `decode_attention_mma` (MMA_ITEMS in the source).
const MMA_ITEMS: u32 = 4;
/// `qkv_post` does this many heads per block from this many tokens on.
const QKV_HEADS_PER_BLOCK: usize = 8;
const QKV_HEADS_MIN_TOKENS: usize = 256;

pub struct Kernels {
    embed: CUfunction,
    add_rmsnorm: CUfunction,
    qkv_post: CUfunction,
    decode_attention: CUfunction,
    /// The tensor-core decode attention, for the shapes it supports (see `decode_mma.cu`).
    decode_attention_mma: Option<CUfunction>,
    /// Its warps resident at once on the whole GPU.
    decode_slots: usize,
    decode_merge: CUfunction,
    prefill_attention: CUfunction,
    silu_mul: CUfunction,
    sample: CUfunction,
    fill_random: CUfunction,
    /// The fused few-token projections, where the GPU and the model's shapes allow them.
    pub gemv: Option<Gemv>,
    /// Where `TURBINE_CUDA_TIMELINE` asks for one (diagnostics).
    pub timeline: Option<Timeline>,
    head_dim: usize,
    prefill: PrefillLayout,
}

// SAFETY: function handles are immutable once loaded and valid in any thread that binds the
// context (the executor does before each step).
unsafe impl Send for Kernels {}

/// Attention's shape, fixed per model.
pub struct AttnShape {
    pub heads: i32,
    pub kv_heads: i32,
    pub max_blocks: i32,
}

/// Where a step's attention reads its per-token metadata and writes its partials.
pub struct AttnArgs {
    pub q: CUdeviceptr,
    pub k_cache: CUdeviceptr,
    pub v_cache: CUdeviceptr,
    pub pos: CUdeviceptr,
    pub seq_of: CUdeviceptr,
    pub block_tables: CUdeviceptr,
    pub decode_list: CUdeviceptr,
    pub tile_list: CUdeviceptr,
    pub out: CUdeviceptr,
    pub part_acc: CUdeviceptr,
    pub part_ml: CUdeviceptr,
}

/// Checks that the kernels support a head shape (before anything is loaded).
pub fn check_shape(head_dim: usize, group: usize) -> Result<(), String> {
    if head_dim == 0 || !head_dim.is_multiple_of(64) || head_dim > 256 {
        return Err(format!(
            "the CUDA executor supports head_dim 64, 128, 192 or 256, not {head_dim}"
        ));
    }
    if group * head_dim > 2048 {
        return Err(format!(
            "{group} query heads per KV head of dim {head_dim} exceed the attention kernel's \
             shared memory"
        ));
    }
    Ok(())
}

/// What the source is compiled with: the model's attention shape `(head_dim, group,
/// block_size)`, the prefill attention's and the GEMVs' layouts, and the timeline's capacity
/// where one is recorded.
pub fn defines(
    (head_dim, group, block_size): (usize, usize, usize),
    prefill: &PrefillLayout,
    gemv: &GemvLayout,
    timeline_records: Option<usize>,
) -> Vec<(&'static str, String)> {
    let mut defines = vec![
        ("HEAD_DIM", head_dim.to_string()),
        ("GROUP", group.to_string()),
        ("BLOCK_SIZE", block_size.to_string()),
    ];
    defines.extend(prefill.defines());
    defines.extend(gemv.defines());
    if let Some(n) = timeline_records {
        defines.push(("TIMELINE", n.to_string()));
    }
    defines
}

impl Kernels {
    pub fn load(
        gpu: &Gpu,
        compiler: &Compiler,
        shapes: &Shapes,
        head_dim: usize,
        group: usize,
        block_size: usize,
    ) -> GpuResult<Self> {
        check_shape(head_dim, group)?;
        if gpu.arch.0 < 8 {
            return Err(format!(
                "{} has compute capability {}.{}; the CUDA executor needs 8.0 or newer (bf16 \
                 tensor cores)",
                gpu.name, gpu.arch.0, gpu.arch.1
            ));
        }
        let mut prefill = PrefillLayout::new(head_dim, group);
        let gemv_layout = GemvLayout::from_env()?;
        let timeline_records = timeline::capacity();
        let defines = defines(
            (head_dim, group, block_size),
            &prefill,
            &gemv_layout,
            timeline_records,
        );
        let source = match std::env::var_os(SOURCE_ENV) {
            Some(path) => {
                tracing::warn!("compiling the CUDA kernels of {}", path.display());
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("{SOURCE_ENV}={}: {e}", path.display()))?
            }
            None => SOURCE.to_string(),
        };
        let cubin = compiler.cubin(&source, &defines, gpu.arch)?;
        let m = gpu.module(&cubin)?;
        let f = |name: &str| -> GpuResult<CUfunction> {
            let c = CString::new(name).map_err(|e| e.to_string())?;
            // SAFETY: `m` is a loaded module that is never unloaded.
            unsafe { module::get_function(m, c) }.map_err(|e| format!("kernel {name}: {e:?}"))
        };
        // The Hopper kernel where the module has it (see prefill_wgmma.cu), else the portable one.
        let prefill_attention = match f("prefill_attention_wgmma") {
            Ok(wgmma) => {
                prefill = PrefillLayout::hopper(group);
                wgmma
            }
            Err(_) => f("prefill_attention")?,
        };
        let decode_attention_mma = (group <= 8 && head_dim <= 128)
            .then(|| f("decode_attention_mma"))
            .transpose()?;
        let decode_slots = match decode_attention_mma {
            Some(mma) => {
                let blocks = gpu.resident_blocks(mma, MMA_ITEMS * 32, 0)?;
                (gpu.sms * blocks * MMA_ITEMS) as usize
            }
            None => 0,
        };
        gpu.allow_shared(prefill_attention, prefill.shared_bytes())?;
        let timeline = timeline_records
            .map(|n| Timeline::new(m, &source, n))
            .transpose()?;
        Ok(Self {
            embed: f("embed")?,
            add_rmsnorm: f("add_rmsnorm")?,
            qkv_post: f("qkv_post")?,
            decode_attention: f("decode_attention")?,
            decode_attention_mma,
            decode_slots,
            decode_merge: f("decode_merge")?,
            prefill_attention,
            silu_mul: f("silu_mul")?,
            sample: f("sample")?,
            fill_random: f("fill_random")?,
            gemv: Gemv::load(gpu, f, shapes, &gemv_layout)?,
            timeline,
            head_dim,
            prefill,
        })
    }

    pub fn embed(
        &self,
        gpu: &Gpu,
        tokens: u64,
        table: u64,
        x: u64,
        t: usize,
        hidden: usize,
    ) -> GpuResult<()> {
        let hidden = hidden as i32;
        // SAFETY: tokens[t] < vocab (checked by the executor); x holds t × hidden floats.
        unsafe {
            gpu.launch(
                self.embed,
                (t as u32, 1, 1),
                256,
                &mut [arg(&tokens), arg(&table), arg(&x), arg(&hidden)],
            )
        }
    }

    /// See `add_rmsnorm` in the source; `rows` (0 for all) picks the input rows of `out_rows`.
    #[allow(clippy::too_many_arguments)]
    pub fn add_rmsnorm(
        &self,
        gpu: &Gpu,
        x: u64,
        delta: u64,
        w: u64,
        out: u64,
        rows: u64,
        out_rows: usize,
        hidden: usize,
        eps: f32,
    ) -> GpuResult<()> {
        let h = hidden as i32;
        // Few rows: more threads a row for more loads in flight; many rows: fewer.
        let per_thread = if out_rows < 256 { 4 } else { 16 };
        let block = (hidden / per_thread).clamp(32, 1024).next_multiple_of(32) as u32;
        // SAFETY: buffers sized by the forward pass for its rows.
        unsafe {
            gpu.launch(
                self.add_rmsnorm,
                (out_rows as u32, 1, 1),
                block,
                &mut [
                    arg(&x),
                    arg(&delta),
                    arg(&w),
                    arg(&out),
                    arg(&rows),
                    arg(&h),
                    arg(&eps),
                ],
            )
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn qkv_post(
        &self,
        gpu: &Gpu,
        qkv: u64,
        bias: u64,
        q_norm: u64,
        k_norm: u64,
        inv_freq: u64,
        pos: u64,
        slots: u64,
        q_out: u64,
        k_cache: u64,
        v_cache: u64,
        t: usize,
        shape: &AttnShape,
        interleaved: bool,
        eps: f32,
    ) -> GpuResult<()> {
        let inter = interleaved as i32;
        // One head per block for decode-sized steps (the parallelism), several for prefills.
        let per_block = if t >= QKV_HEADS_MIN_TOKENS {
            QKV_HEADS_PER_BLOCK
        } else {
            1
        };
        let all_heads = (shape.heads + shape.kv_heads) as usize;
        let grid = (t as u32, all_heads.div_ceil(per_block) as u32, 1);
        let per_block = per_block as i32;
        // SAFETY: slots index the cache layer; the rest is sized for t tokens.
        unsafe {
            gpu.launch(
                self.qkv_post,
                grid,
                (self.head_dim / 2) as u32,
                &mut [
                    arg(&qkv),
                    arg(&bias),
                    arg(&q_norm),
                    arg(&k_norm),
                    arg(&inv_freq),
                    arg(&pos),
                    arg(&slots),
                    arg(&q_out),
                    arg(&k_cache),
                    arg(&v_cache),
                    arg(&shape.heads),
                    arg(&shape.kv_heads),
                    arg(&inter),
                    arg(&eps),
                    arg(&per_block),
                ],
            )
        }
    }

    /// How many chunks to split each decode token's keys into, for the kernel in use.
    pub fn decode_splits(
        &self,
        gpu: &Gpu,
        tokens: usize,
        shape: &AttnShape,
        max_ctx: usize,
        max_partials: usize,
    ) -> usize {
        let (kv_heads, heads) = (shape.kv_heads as usize, shape.heads as usize);
        if self.decode_attention_mma.is_some() {
            let slots = self.decode_slots;
            mma_attention_splits(tokens, kv_heads, heads, max_ctx, slots, max_partials)
        } else {
            let sms = gpu.sms as usize;
            attention_splits(tokens, kv_heads, heads, max_ctx, sms, max_partials)
        }
    }

    /// Decode attention for the `n` listed tokens, each one's keys split in `splits` chunks: on
    /// the tensor cores (`decode_mma.cu`) where the head shape allows, else on CUDA cores.
    pub fn decode_attention(
        &self,
        gpu: &Gpu,
        a: &AttnArgs,
        shape: &AttnShape,
        n: usize,
        splits: usize,
    ) -> GpuResult<()> {
        let splits_i = splits as i32;
        let min_keys = if self.decode_attention_mma.is_some() {
            MMA_MIN_KEYS
        } else {
            CORE_MIN_KEYS
        } as i32;
        let scale_log2 = self.scale_log2();
        let tokens = n as i32;
        let mut args = vec![
            arg(&a.q),
            arg(&a.k_cache),
            arg(&a.v_cache),
            arg(&a.pos),
            arg(&a.seq_of),
            arg(&a.block_tables),
            arg(&a.decode_list),
            arg(&shape.max_blocks),
            arg(&shape.heads),
            arg(&shape.kv_heads),
            arg(&splits_i),
            arg(&min_keys),
            arg(&scale_log2),
            arg(&a.out),
            arg(&a.part_acc),
            arg(&a.part_ml),
        ];
        // SAFETY: the lists name tokens whose blocks are in the cache; the partial buffers hold
        // n × heads × splits entries when splits > 1.
        unsafe {
            if let Some(f) = self.decode_attention_mma {
                // One warp per (token, KV head, split); the item count comes last.
                args.push(arg(&tokens));
                let items = (n * shape.kv_heads as usize * splits) as u32;
                let grid = (items.div_ceil(MMA_ITEMS), 1, 1);
                gpu.launch(f, grid, MMA_ITEMS * 32, &mut args)?;
            } else {
                let grid = (n as u32, shape.kv_heads as u32, splits as u32);
                gpu.launch(self.decode_attention, grid, ATTN_THREADS, &mut args)?;
            }
            if splits > 1 {
                gpu.launch(
                    self.decode_merge,
                    (n as u32, shape.heads as u32, 1),
                    self.head_dim as u32,
                    &mut [
                        arg(&a.part_acc),
                        arg(&a.part_ml),
                        arg(&a.decode_list),
                        arg(&a.pos),
                        arg(&shape.heads),
                        arg(&splits_i),
                        arg(&min_keys),
                        arg(&a.out),
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Causal prefill attention over `tiles` tiles of the tile list.
    pub fn prefill_attention(
        &self,
        gpu: &Gpu,
        a: &AttnArgs,
        shape: &AttnShape,
        tiles: usize,
    ) -> GpuResult<()> {
        let scale_log2 = self.scale_log2();
        // SAFETY: each tile's tokens and their blocks are described by the step's metadata.
        unsafe {
            gpu.launch_with_shared(
                self.prefill_attention,
                self.prefill.grid(shape.heads as usize, tiles),
                self.prefill.threads(),
                self.prefill.shared_bytes(),
                &mut [
                    arg(&a.q),
                    arg(&a.k_cache),
                    arg(&a.v_cache),
                    arg(&a.pos),
                    arg(&a.block_tables),
                    arg(&a.tile_list),
                    arg(&shape.max_blocks),
                    arg(&shape.heads),
                    arg(&shape.kv_heads),
                    arg(&scale_log2),
                    arg(&a.out),
                ],
            )
        }
    }

    /// Softmax scale for exp2: log2(e) / sqrt(head_dim).
    fn scale_log2(&self) -> f32 {
        std::f32::consts::LOG2_E / (self.head_dim as f32).sqrt()
    }

    pub fn silu_mul(
        &self,
        gpu: &Gpu,
        gate_up: u64,
        out: u64,
        t: usize,
        inter: usize,
    ) -> GpuResult<()> {
        // The kernel's threads take 8 columns each where `inter` allows.
        let per_thread = if inter.is_multiple_of(8) { 8 } else { 1 };
        let blocks = inter.div_ceil(256 * per_thread).min(1024) as u32;
        let inter = inter as i32;
        // SAFETY: gate_up holds t × 2·inter, out t × inter.
        unsafe {
            gpu.launch(
                self.silu_mul,
                (blocks, t as u32, 1),
                256,
                &mut [arg(&gate_up), arg(&out), arg(&inter)],
            )
        }
    }

    /// One token per row of `logits` (rows × vocab floats), with each row's draw in `params`
    /// (rows × 5 floats: temperature, top-k, top-p, min-p, u), into `out` (rows ints).
    pub fn sample(
        &self,
        gpu: &Gpu,
        logits: u64,
        rows: usize,
        vocab: usize,
        params: u64,
        out: u64,
    ) -> GpuResult<()> {
        let vocab = vocab as i32;
        // SAFETY: the buffers hold what the comment above says.
        unsafe {
            gpu.launch(
                self.sample,
                (rows as u32, 1, 1),
                1024,
                &mut [arg(&logits), arg(&vocab), arg(&params), arg(&out)],
            )
        }
    }

    pub fn fill_random(
        &self,
        gpu: &Gpu,
        out: u64,
        n: usize,
        seed: u32,
        center: f32,
        spread: f32,
    ) -> GpuResult<()> {
        let n = n as i64;
        let blocks = (n as usize).div_ceil(256).min(65_535) as u32;
        // SAFETY: out holds n bf16.
        unsafe {
            gpu.launch(
                self.fill_random,
                (blocks, 1, 1),
                256,
                &mut [arg(&out), arg(&n), arg(&seed), arg(&center), arg(&spread)],
            )
        }
    }
}
