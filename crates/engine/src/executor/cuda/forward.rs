//! One batched forward pass on the GPU, in the CPU executor's order of operations: embeddings;
//! per layer RMSNorm, fused QKV GEMM, bias / q-k norm / RoPE / KV write, paged attention, output
//! GEMM, residual add + RMSNorm, fused gate-up GEMM, SiLU·up, down GEMM; then the final norm of
//! the sampled rows only and the LM head into f32 logits. Steps of up to 4 tokens (decode) run
//! the four projections as GEMVs with the norms, SiLU and residual adds fused in (`gemv`).

use super::device::{DeviceBuffer, Gpu, GpuResult};
use super::kernels::{AttnArgs, AttnShape, Kernels};
use super::kv_cache::GpuKvCache;
use super::plan::StepPlan;
use super::weights::{Shapes, Weights};
use crate::executor::cpu::config::{ModelConfig, RopeStyle};

/// Most attention partials (token × head × split) kept at once: 64 Mi floats of accumulators.
const MAX_PARTIALS: usize = 1 << 19;

/// Activation buffers, grown to the largest step seen and reused.
#[derive(Default)]
pub struct Scratch {
    meta: Option<DeviceBuffer>,
    x: Option<DeviceBuffer>,
    h: Option<DeviceBuffer>,
    qkv: Option<DeviceBuffer>,
    q: Option<DeviceBuffer>,
    attn: Option<DeviceBuffer>,
    proj: Option<DeviceBuffer>,
    gate_up: Option<DeviceBuffer>,
    act: Option<DeviceBuffer>,
    part_acc: Option<DeviceBuffer>,
    part_ml: Option<DeviceBuffer>,
    pub logits: Option<DeviceBuffer>,
    /// Each sampled row's draw (5 floats) and chosen token.
    pub params: Option<DeviceBuffer>,
    pub tokens: Option<DeviceBuffer>,
}

/// The device pointer of `slot`, reallocated first when it holds fewer than `bytes`.
pub fn ensure(gpu: &Gpu, slot: &mut Option<DeviceBuffer>, bytes: usize) -> GpuResult<u64> {
    if slot.as_ref().is_none_or(|b| b.bytes() < bytes) {
        *slot = None;
        *slot = Some(gpu.alloc(bytes.next_power_of_two())?);
    }
    Ok(slot.as_ref().map_or(0, DeviceBuffer::ptr))
}

/// Activation bytes per token of a step (the reserve kept out of the KV cache).
pub fn activation_bytes_per_token(s: &Shapes) -> usize {
    4 * s.hidden + 2 * (2 * s.hidden + s.qkv + 2 * s.q + 3 * s.inter) + 5 * 4
}

/// Pointers of the activation buffers of one step.
struct Activations {
    x: u64,
    h: u64,
    qkv: u64,
    q: u64,
    attn: u64,
    proj: u64,
    gate_up: u64,
    act: u64,
    part_acc: u64,
    part_ml: u64,
}

impl Scratch {
    /// The activation buffers for `t` tokens and `partials` attention partials.
    fn activations(
        &mut self,
        gpu: &Gpu,
        c: &ModelConfig,
        t: usize,
        partials: usize,
    ) -> GpuResult<Activations> {
        let sh = Shapes::of(c);
        Ok(Activations {
            x: ensure(gpu, &mut self.x, t * sh.hidden * 4)?,
            h: ensure(gpu, &mut self.h, t * sh.hidden * 2)?,
            qkv: ensure(gpu, &mut self.qkv, t * sh.qkv * 2)?,
            q: ensure(gpu, &mut self.q, t * sh.q * 2)?,
            attn: ensure(gpu, &mut self.attn, t * sh.q * 2)?,
            proj: ensure(gpu, &mut self.proj, t * sh.hidden * 2)?,
            gate_up: ensure(gpu, &mut self.gate_up, t * 2 * sh.inter * 2)?,
            act: ensure(gpu, &mut self.act, t * sh.inter * 2)?,
            part_acc: ensure(gpu, &mut self.part_acc, partials * c.head_dim * 4)?,
            part_ml: ensure(gpu, &mut self.part_ml, partials * 2 * 4)?,
        })
    }

    /// Allocates every buffer for steps of up to `t` tokens (all sampled), `meta` metadata
    /// elements and `partials` attention partials, so that such steps never reallocate one: a
    /// CUDA graph keeps the pointers it was captured with.
    pub fn reserve(
        &mut self,
        gpu: &Gpu,
        c: &ModelConfig,
        t: usize,
        meta: usize,
        partials: usize,
    ) -> GpuResult<()> {
        self.activations(gpu, c, t, partials)?;
        ensure(gpu, &mut self.meta, meta * 4)?;
        ensure(gpu, &mut self.logits, t * c.vocab * 4)?;
        ensure(gpu, &mut self.params, t * 5 * 4)?;
        ensure(gpu, &mut self.tokens, t * 4)?;
        Ok(())
    }

    /// An upper bound of what `reserve` allocates (each buffer rounded up to a power of two).
    pub fn reserve_bytes(c: &ModelConfig, t: usize, meta: usize, partials: usize) -> usize {
        let sh = Shapes::of(c);
        let exact = t * activation_bytes_per_token(&sh)
            + partials * (c.head_dim + 2) * 4
            + meta * 4
            + t * (c.vocab + 6) * 4;
        2 * exact
    }
}

/// Copies the step's metadata to the device (`s.meta`), the block tables to their rows.
pub fn upload(gpu: &Gpu, plan: &StepPlan, s: &mut Scratch) -> GpuResult<()> {
    let meta = ensure(gpu, &mut s.meta, plan.device_len() * 4)?;
    let buf = s.meta.as_ref().ok_or("no metadata buffer")?;
    if plan.table_cols == plan.max_blocks {
        return gpu.copy_to(buf, &plan.packed);
    }
    let (head, tables) = plan.packed.split_at(plan.block_tables());
    gpu.copy_to(buf, head)?;
    let shape = (plan.seqs, plan.table_cols, plan.max_blocks);
    gpu.copy_rows_to(meta + 4 * head.len() as u64, tables, shape)
}

pub struct Model<'a> {
    pub gpu: &'a Gpu,
    pub kernels: &'a Kernels,
    pub config: &'a ModelConfig,
    pub weights: &'a Weights,
}

impl Model<'_> {
    /// Attention partials (token × head × split) a step of `decode` decode tokens keeps, its
    /// splits chosen for contexts of up to `max_ctx`.
    pub fn partials(&self, decode: usize, max_ctx: usize) -> usize {
        let splits = self.splits(decode, max_ctx);
        if splits > 1 {
            decode * self.config.heads * splits
        } else {
            1
        }
    }

    fn splits(&self, decode: usize, max_ctx: usize) -> usize {
        let c = self.config;
        let (heads, kv_heads) = (c.heads as i32, c.kv_heads as i32);
        let shape = AttnShape {
            heads,
            kv_heads,
            max_blocks: 0,
        };
        let (gpu, k) = (self.gpu, self.kernels);
        k.decode_splits(gpu, decode, &shape, max_ctx, MAX_PARTIALS)
    }

    fn shape(&self, plan: &StepPlan) -> AttnShape {
        AttnShape {
            heads: self.config.heads as i32,
            kv_heads: self.config.kv_heads as i32,
            max_blocks: plan.max_blocks as i32,
        }
    }

    /// Uploads the step's metadata and runs it (`launch`).
    pub fn forward(&self, plan: &StepPlan, cache: &GpuKvCache, s: &mut Scratch) -> GpuResult<()> {
        upload(self.gpu, plan, s)?;
        self.launch(plan, cache, s)
    }

    /// Runs the step whose metadata is in `s.meta`, leaving `plan.sampled` rows of f32 logits
    /// in `s.logits`. It only launches work (no copies, no waits), so it can be captured.
    pub fn launch(&self, plan: &StepPlan, cache: &GpuKvCache, s: &mut Scratch) -> GpuResult<()> {
        let (gpu, k, c, w) = (self.gpu, self.kernels, self.config, self.weights);
        let sh = Shapes::of(c);
        let t = plan.tokens;
        let meta = ensure(gpu, &mut s.meta, plan.device_len() * 4)?;
        let at = |offset: usize| meta + 4 * offset as u64;
        let shape = self.shape(plan);
        let splits = self.splits(plan.decode, plan.max_ctx);
        let Activations {
            x,
            h,
            qkv,
            q,
            attn,
            proj,
            gate_up,
            act,
            part_acc,
            part_ml,
        } = s.activations(gpu, c, t, self.partials(plan.decode, plan.max_ctx))?;
        let interleaved = c.rope_style == RopeStyle::Interleaved;
        let opt = |b: &Option<DeviceBuffer>| b.as_ref().map_or(0, DeviceBuffer::ptr);

        // Steps of a few tokens run their projections as fused GEMVs, which add into the
        // residual stream themselves; larger ones use cuBLASLt, each residual add fused with the
        // next norm (the first layer has none to add).
        let few = k.gemv.as_ref().filter(|g| g.handles(t));
        let eps = c.rms_eps;
        k.embed(gpu, meta, w.embed.ptr(), x, t, sh.hidden)?;
        for (l, layer) in w.layers.iter().enumerate() {
            let delta = if l == 0 { 0 } else { proj };
            if let Some(gemv) = few {
                let (norm, wqkv) = (layer.attn_norm.ptr(), layer.wqkv.ptr());
                gemv.norm_store(gpu, x, norm, eps, wqkv, qkv, (t, sh.qkv, sh.hidden))?;
            } else {
                k.add_rmsnorm(
                    gpu,
                    x,
                    delta,
                    layer.attn_norm.ptr(),
                    h,
                    0,
                    t,
                    sh.hidden,
                    eps,
                )?;
                gpu.gemm(h, layer.wqkv.ptr(), qkv, (t, sh.qkv, sh.hidden), false)?;
            }
            let (qn, kn) = layer
                .qk_norm
                .as_ref()
                .map_or((0, 0), |(q, k)| (q.ptr(), k.ptr()));
            k.qkv_post(
                gpu,
                qkv,
                opt(&layer.qkv_bias),
                qn,
                kn,
                w.inv_freq.ptr(),
                at(plan.pos()),
                at(plan.slots()),
                q,
                cache.k[l].ptr(),
                cache.v[l].ptr(),
                t,
                &shape,
                interleaved,
                eps,
            )?;
            let args = AttnArgs {
                q,
                k_cache: cache.k[l].ptr(),
                v_cache: cache.v[l].ptr(),
                pos: at(plan.pos()),
                seq_of: at(plan.seq_of()),
                block_tables: at(plan.block_tables()),
                decode_list: at(plan.decode_list()),
                tile_list: at(plan.tile_list()),
                out: attn,
                part_acc,
                part_ml,
            };
            if plan.decode > 0 {
                k.decode_attention(gpu, &args, &shape, plan.decode, splits)?;
            }
            if plan.tiles > 0 {
                k.prefill_attention(gpu, &args, &shape, plan.tiles)?;
            }
            let (wo, w_gate_up, w_down) =
                (layer.wo.ptr(), layer.w_gate_up.ptr(), layer.w_down.ptr());
            if let Some(gemv) = few {
                gemv.add(gpu, attn, wo, x, (t, sh.hidden, sh.q))?;
                let norm = layer.ffn_norm.ptr();
                gemv.norm_silu(gpu, x, norm, eps, w_gate_up, act, (t, sh.inter, sh.hidden))?;
                gemv.add(gpu, act, w_down, x, (t, sh.hidden, sh.inter))?;
            } else {
                gpu.gemm(attn, wo, proj, (t, sh.hidden, sh.q), false)?;
                k.add_rmsnorm(gpu, x, proj, layer.ffn_norm.ptr(), h, 0, t, sh.hidden, eps)?;
                gpu.gemm(h, w_gate_up, gate_up, (t, 2 * sh.inter, sh.hidden), false)?;
                k.silu_mul(gpu, gate_up, act, t, sh.inter)?;
                gpu.gemm(act, w_down, proj, (t, sh.hidden, sh.inter), false)?;
            }
        }
        let n = plan.sampled;
        if n == 0 {
            return Ok(());
        }
        let final_norm = w.final_norm.ptr();
        if few.is_none() {
            // The last layer's residual add (its norm output is not used).
            k.add_rmsnorm(gpu, x, proj, final_norm, h, 0, t, sh.hidden, eps)?;
        }
        // The final norm of the sampled rows alone.
        k.add_rmsnorm(
            gpu,
            x,
            0,
            final_norm,
            proj,
            at(plan.sample_rows()),
            n,
            sh.hidden,
            eps,
        )?;
        let logits = ensure(gpu, &mut s.logits, n * c.vocab * 4)?;
        gpu.gemm(
            proj,
            w.lm_head().ptr(),
            logits,
            (n, c.vocab, sh.hidden),
            true,
        )
    }
}
