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

pub struct Model<'a> {
    pub gpu: &'a Gpu,
    pub kernels: &'a Kernels,
    pub config: &'a ModelConfig,
    pub weights: &'a Weights,
}

impl Model<'_> {
    /// Runs the step, leaving `plan.sampled` rows of f32 logits in `s.logits`.
    pub fn forward(&self, plan: &StepPlan, cache: &GpuKvCache, s: &mut Scratch) -> GpuResult<()> {
        let (gpu, k, c, w) = (self.gpu, self.kernels, self.config, self.weights);
        let sh = Shapes::of(c);
        let t = plan.tokens;
        let meta = ensure(gpu, &mut s.meta, plan.packed.len() * 4)?;
        gpu.copy_to(s.meta.as_ref().ok_or("no metadata buffer")?, &plan.packed)?;
        let at = |offset: usize| meta + 4 * offset as u64;
        let x = ensure(gpu, &mut s.x, t * sh.hidden * 4)?;
        let h = ensure(gpu, &mut s.h, t * sh.hidden * 2)?;
        let qkv = ensure(gpu, &mut s.qkv, t * sh.qkv * 2)?;
        let q = ensure(gpu, &mut s.q, t * sh.q * 2)?;
        let attn = ensure(gpu, &mut s.attn, t * sh.q * 2)?;
        let proj = ensure(gpu, &mut s.proj, t * sh.hidden * 2)?;
        let gate_up = ensure(gpu, &mut s.gate_up, t * 2 * sh.inter * 2)?;
        let act = ensure(gpu, &mut s.act, t * sh.inter * 2)?;
        let shape = AttnShape {
            heads: c.heads as i32,
            kv_heads: c.kv_heads as i32,
            max_blocks: plan.max_blocks as i32,
        };
        let splits = k.decode_splits(gpu, plan.decode, &shape, plan.max_ctx, MAX_PARTIALS);
        let partials = if splits > 1 {
            plan.decode * c.heads * splits
        } else {
            1
        };
        let part_acc = ensure(gpu, &mut s.part_acc, partials * c.head_dim * 4)?;
        let part_ml = ensure(gpu, &mut s.part_ml, partials * 2 * 4)?;
        let interleaved = c.rope_style == RopeStyle::Interleaved;
        let opt = |b: &Option<DeviceBuffer>| b.as_ref().map_or(0, DeviceBuffer::ptr);

        // Steps of a few tokens run their projections as fused GEMVs, which add into the
        // residual stream themselves; larger ones use cuBLAS, each residual add fused with the
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
