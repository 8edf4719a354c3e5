//! The model's weights on the GPU, all bf16, laid out for the forward pass: q, k and v fused into
//! one matrix (one GEMM), gate and up likewise. Loaded from a CPU [`Model`] (safetensors or GGUF,
//! dequantized), or made up on the GPU (`--load-format dummy`) from a config alone.

use super::device::{DeviceBuffer, Gpu, GpuResult};
use super::kernels::Kernels;
use crate::executor::cpu::Model;
use crate::executor::cpu::config::ModelConfig;
use crate::executor::cpu::kernels::QMatrix;
use half::bf16;
use rayon::prelude::*;

pub struct Layer {
    pub attn_norm: DeviceBuffer,
    /// Rows: q heads, k heads, v heads.
    pub wqkv: DeviceBuffer,
    pub qkv_bias: Option<DeviceBuffer>,
    pub qk_norm: Option<(DeviceBuffer, DeviceBuffer)>,
    pub wo: DeviceBuffer,
    pub ffn_norm: DeviceBuffer,
    /// Rows: gate, then up.
    pub w_gate_up: DeviceBuffer,
    pub w_down: DeviceBuffer,
}

pub struct Weights {
    pub embed: DeviceBuffer,
    /// `None` when tied to the embeddings.
    pub lm_head: Option<DeviceBuffer>,
    pub final_norm: DeviceBuffer,
    pub layers: Vec<Layer>,
    /// RoPE inverse frequencies (f32), scaling included.
    pub inv_freq: DeviceBuffer,
}

impl Weights {
    pub fn lm_head(&self) -> &DeviceBuffer {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Uploads a loaded model, converting every weight to bf16.
    pub fn upload(gpu: &Gpu, model: &Model) -> GpuResult<Self> {
        let matrices = |ms: &[&QMatrix]| -> GpuResult<DeviceBuffer> { gpu.upload(&to_bf16(ms)?) };
        let vectors = |vs: &[&[f32]]| -> GpuResult<DeviceBuffer> {
            let v: Vec<bf16> = vs
                .iter()
                .flat_map(|v| v.iter())
                .map(|&x| bf16::from_f32(x))
                .collect();
            gpu.upload(&v)
        };
        let layers = model
            .layers
            .iter()
            .map(|w| {
                Ok(Layer {
                    attn_norm: vectors(&[&w.attn_norm])?,
                    wqkv: matrices(&[&w.wq, &w.wk, &w.wv])?,
                    qkv_bias: match &w.qkv_bias {
                        Some((q, k, v)) => Some(vectors(&[q, k, v])?),
                        None => None,
                    },
                    qk_norm: match &w.qk_norm {
                        Some((q, k)) => Some((vectors(&[q])?, vectors(&[k])?)),
                        None => None,
                    },
                    wo: matrices(&[&w.wo])?,
                    ffn_norm: vectors(&[&w.ffn_norm])?,
                    w_gate_up: matrices(&[&w.w_gate, &w.w_up])?,
                    w_down: matrices(&[&w.w_down])?,
                })
            })
            .collect::<GpuResult<Vec<_>>>()?;
        let tied = std::ptr::eq(model.output(), &model.embed);
        Ok(Self {
            embed: matrices(&[&model.embed])?,
            lm_head: if tied {
                None
            } else {
                Some(matrices(&[model.output()])?)
            },
            final_norm: vectors(&[&model.final_norm])?,
            layers,
            inv_freq: gpu.upload(&model.inv_freq)?,
        })
    }

    /// Random weights of `config`'s shape, made on the GPU: matrices uniform with standard
    /// deviation 0.02 (HF's initializer range), norms 1, biases 0.
    pub fn dummy(gpu: &Gpu, kernels: &Kernels, config: &ModelConfig) -> GpuResult<Self> {
        let mut seed = 0u32;
        let mut fill = |len: usize, center: f32, spread: f32| -> GpuResult<DeviceBuffer> {
            let buf = gpu.alloc(len * 2)?;
            seed += 1;
            kernels.fill_random(
                gpu,
                buf.ptr(),
                len,
                seed.wrapping_mul(0x9E37_79B9),
                center,
                spread,
            )?;
            Ok(buf)
        };
        let spread = 0.02 * 3f32.sqrt();
        let s = Shapes::of(config);
        let mut layers = Vec::with_capacity(config.layers);
        for _ in 0..config.layers {
            layers.push(Layer {
                attn_norm: fill(s.hidden, 1.0, 0.0)?,
                wqkv: fill(s.qkv * s.hidden, 0.0, spread)?,
                qkv_bias: if config.qkv_bias {
                    Some(fill(s.qkv, 0.0, 0.0)?)
                } else {
                    None
                },
                qk_norm: if config.qk_norm {
                    Some((
                        fill(config.head_dim, 1.0, 0.0)?,
                        fill(config.head_dim, 1.0, 0.0)?,
                    ))
                } else {
                    None
                },
                wo: fill(s.hidden * s.q, 0.0, spread)?,
                ffn_norm: fill(s.hidden, 1.0, 0.0)?,
                w_gate_up: fill(2 * s.inter * s.hidden, 0.0, spread)?,
                w_down: fill(s.hidden * s.inter, 0.0, spread)?,
            });
        }
        Ok(Self {
            embed: fill(config.vocab * s.hidden, 0.0, spread)?,
            lm_head: if config.tie_embeddings {
                None
            } else {
                Some(fill(config.vocab * s.hidden, 0.0, spread)?)
            },
            final_norm: fill(s.hidden, 1.0, 0.0)?,
            layers,
            inv_freq: gpu.upload(&config.inv_freq())?,
        })
    }
}

/// The widths the forward pass works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shapes {
    pub hidden: usize,
    pub q: usize,
    pub kv: usize,
    /// q + 2·kv: the fused projection's output width.
    pub qkv: usize,
    pub inter: usize,
}

impl Shapes {
    pub fn of(c: &ModelConfig) -> Self {
        let (q, kv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        Self {
            hidden: c.hidden,
            q,
            kv,
            qkv: q + 2 * kv,
            inter: c.intermediate,
        }
    }

    /// Bytes of the matrices a decode step reads (the LM head once), in bf16: the numerator of
    /// the decode roofline.
    pub fn weight_bytes(&self, c: &ModelConfig) -> usize {
        let per_layer = self.hidden * (self.qkv + self.q + 3 * self.inter) + 2 * self.hidden;
        2 * (c.layers * per_layer + c.vocab * self.hidden + self.hidden)
    }
}

/// The rows of `matrices`, one after another, dequantized to bf16.
fn to_bf16(matrices: &[&QMatrix]) -> GpuResult<Vec<bf16>> {
    let cols = matrices[0].cols();
    let rows: usize = matrices.iter().map(|m| m.rows()).sum();
    let mut out = vec![bf16::ZERO; rows * cols];
    let mut offset = 0;
    for m in matrices {
        let part = &mut out[offset * cols..(offset + m.rows()) * cols];
        part.par_chunks_mut(cols).enumerate().try_for_each_init(
            || vec![0f32; cols],
            |row, (r, dst)| {
                m.row(r, row).map_err(|e| e.to_string())?;
                for (d, &v) in dst.iter_mut().zip(row.iter()) {
                    *d = bf16::from_f32(v);
                }
                Ok::<(), String>(())
            },
        )?;
        offset += m.rows();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_matrices_are_rows_one_after_another_in_bf16() {
        let a = QMatrix::from_f32(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let b = QMatrix::from_f32(1, 3, &[-1.0, 0.5, 1.0 / 3.0]).unwrap();
        let fused: Vec<f32> = to_bf16(&[&a, &b])
            .unwrap()
            .iter()
            .map(|v| v.to_f32())
            .collect();
        let third = bf16::from_f32(1.0 / 3.0).to_f32();
        assert_eq!(fused, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -1.0, 0.5, third]);
    }

    #[test]
    fn llama_8b_shapes_and_bytes() {
        let json = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
            "vocab_size": 128256
        });
        let c = ModelConfig::from_hf(&json).unwrap();
        let s = Shapes::of(&c);
        assert_eq!((s.q, s.kv, s.qkv), (4096, 1024, 6144));
        // 8.03 B parameters less the embeddings (a step reads only its tokens' rows): 15.0 GB.
        let gb = s.weight_bytes(&c) as f64 / 1e9;
        assert!((14.9..15.1).contains(&gb), "{gb}");
    }
}
