//! A Llama-family model's weights, loaded from a GGUF file (quantized weights stay quantized and
//! are read in place from the memory map) or an HF safetensors directory (F32/F16/BF16, single or
//! sharded).

use super::config::ModelConfig;
use super::kernels::QMatrix;
use super::kv_cache::KvType;
use super::ops::Rope;
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use turbine_tokens::GgufFile;

pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: QMatrix,
    pub wk: QMatrix,
    pub wv: QMatrix,
    pub wo: QMatrix,
    /// Qwen2's q, k and v biases.
    pub qkv_bias: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    /// Qwen3's per-head q and k norms.
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: QMatrix,
    pub w_up: QMatrix,
    pub w_down: QMatrix,
}

pub struct Model {
    pub config: ModelConfig,
    pub embed: QMatrix,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Vec<f32>,
    /// `None` when the output projection is tied to the embeddings.
    lm_head: Option<QMatrix>,
    /// RoPE inverse frequencies, scaling included (for the CUDA executor).
    pub inv_freq: Vec<f32>,
    /// RoPE angles as the CPU forward computes them.
    pub(crate) rope: Rope,
    /// The KV cache's element type: `f16` for GGUF files (llama.cpp's default), `f32` otherwise.
    pub kv_type: KvType,
}

pub type LoadError = String;

impl Model {
    /// Loads a `.gguf` file or an HF model directory.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        if path.is_dir() {
            Self::from_safetensors(path)
        } else {
            let gguf = GgufFile::open(path).map_err(|e| e.to_string())?;
            Self::from_gguf(Arc::new(gguf))
        }
    }

    /// The output projection (the embeddings when tied).
    pub fn output(&self) -> &QMatrix {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// The embedding of `token` into `out`; the caller has checked `token < vocab`.
    pub fn embed(&self, token: u32, out: &mut [f32]) {
        if let Err(err) = self.embed.row(token as usize, out) {
            debug_assert!(false, "embedding lookup failed: {err}");
            out.fill(0.0);
        }
    }

    pub fn from_gguf(gguf: Arc<GgufFile>) -> Result<Self, LoadError> {
        let config = ModelConfig::from_gguf(&gguf)?;
        let matrix = |name: &str| -> Result<QMatrix, LoadError> {
            let info = gguf
                .tensor(name)
                .ok_or_else(|| format!("the GGUF file lacks tensor {name}"))?;
            QMatrix::from_gguf(&gguf, info).map_err(|e| e.to_string())
        };
        let vector = |name: &str| matrix(name).map(|m| m.to_f32());
        let layers = (0..config.layers)
            .map(|l| load_layer(&config, &matrix, |w| format!("blk.{l}.{w}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut inv_freq = config.inv_freq();
        let mut divisors = vec![1.0; inv_freq.len()];
        // Llama 3.1 GGUFs carry their RoPE scaling as per-frequency divisors.
        if gguf.tensor("rope_freqs.weight").is_some() {
            divisors = vector("rope_freqs.weight")?;
            if divisors.len() != inv_freq.len() {
                return Err(format!(
                    "rope_freqs has {} values, expected {}",
                    divisors.len(),
                    inv_freq.len()
                ));
            }
            for (f, d) in inv_freq.iter_mut().zip(&divisors) {
                *f /= d;
            }
        }
        let rope = Rope::new(config.rope_theta, config.head_dim, divisors);
        let model = Self {
            embed: matrix("token_embd.weight")?,
            lm_head: if config.tie_embeddings {
                None
            } else {
                Some(matrix("output.weight")?)
            },
            final_norm: vector("output_norm.weight")?,
            layers,
            inv_freq,
            rope,
            kv_type: KvType::F16,
            config,
        };
        model.check_shapes()?;
        Ok(model)
    }

    pub fn from_safetensors(dir: &Path) -> Result<Self, LoadError> {
        let config = ModelConfig::from_hf_file(&dir.join("config.json"))?;
        let tensors = SafetensorsFiles::open(dir)?;
        let matrix = |name: &str| tensors.matrix(name);
        let vector = |name: &str| tensors.matrix(name).map(|m| m.to_f32());
        let layers = (0..config.layers)
            .map(|l| {
                load_layer(&config, &matrix, |w| {
                    format!("model.layers.{l}.{}", hf_name(w))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tie = config.tie_embeddings || !tensors.contains("lm_head.weight");
        let model = Self {
            embed: matrix("model.embed_tokens.weight")?,
            lm_head: if tie {
                None
            } else {
                Some(matrix("lm_head.weight")?)
            },
            final_norm: vector("model.norm.weight")?,
            layers,
            inv_freq: config.inv_freq(),
            rope: Rope::new(config.rope_theta, config.head_dim, config.rope_divisors()),
            kv_type: KvType::F32,
            config,
        };
        model.check_shapes()?;
        Ok(model)
    }

    /// Every matrix has the shape the config implies, so the forward pass never indexes out of
    /// bounds whatever the file says.
    fn check_shapes(&self) -> Result<(), LoadError> {
        let c = &self.config;
        let (q, kv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let expect = |what: &str, m: &QMatrix, rows: usize, cols: usize| {
            if m.rows() == rows && m.cols() == cols {
                Ok(())
            } else {
                Err(format!(
                    "{what} is {} x {}, expected {rows} x {cols}",
                    m.rows(),
                    m.cols()
                ))
            }
        };
        let expect_len = |what: &str, v: &[f32], len: usize| {
            if v.len() == len {
                Ok(())
            } else {
                Err(format!("{what} has {} values, expected {len}", v.len()))
            }
        };
        expect("the embeddings", &self.embed, c.vocab, c.hidden)?;
        expect("the output projection", self.output(), c.vocab, c.hidden)?;
        expect_len("the final norm", &self.final_norm, c.hidden)?;
        for (l, w) in self.layers.iter().enumerate() {
            let what = |name: &str| format!("layer {l} {name}");
            expect(&what("q"), &w.wq, q, c.hidden)?;
            expect(&what("k"), &w.wk, kv, c.hidden)?;
            expect(&what("v"), &w.wv, kv, c.hidden)?;
            expect(&what("o"), &w.wo, c.hidden, q)?;
            expect(&what("gate"), &w.w_gate, c.intermediate, c.hidden)?;
            expect(&what("up"), &w.w_up, c.intermediate, c.hidden)?;
            expect(&what("down"), &w.w_down, c.hidden, c.intermediate)?;
            expect_len(&what("attention norm"), &w.attn_norm, c.hidden)?;
            expect_len(&what("MLP norm"), &w.ffn_norm, c.hidden)?;
            if let Some((bq, bk, bv)) = &w.qkv_bias {
                expect_len(&what("q bias"), bq, q)?;
                expect_len(&what("k bias"), bk, kv)?;
                expect_len(&what("v bias"), bv, kv)?;
            }
            if let Some((qn, kn)) = &w.qk_norm {
                expect_len(&what("q norm"), qn, c.head_dim)?;
                expect_len(&what("k norm"), kn, c.head_dim)?;
            }
        }
        Ok(())
    }
}

/// One layer's weights; `name` maps a weight's GGUF name (`attn_q.weight`) to the file's name.
fn load_layer(
    config: &ModelConfig,
    matrix: &impl Fn(&str) -> Result<QMatrix, LoadError>,
    name: impl Fn(&str) -> String,
) -> Result<LayerWeights, LoadError> {
    let m = |w: &str| matrix(&name(w));
    let v = |w: &str| m(w).map(|m| m.to_f32());
    Ok(LayerWeights {
        attn_norm: v("attn_norm.weight")?,
        wq: m("attn_q.weight")?,
        wk: m("attn_k.weight")?,
        wv: m("attn_v.weight")?,
        wo: m("attn_output.weight")?,
        qkv_bias: if config.qkv_bias {
            Some((v("attn_q.bias")?, v("attn_k.bias")?, v("attn_v.bias")?))
        } else {
            None
        },
        qk_norm: if config.qk_norm {
            Some((v("attn_q_norm.weight")?, v("attn_k_norm.weight")?))
        } else {
            None
        },
        ffn_norm: v("ffn_norm.weight")?,
        w_gate: m("ffn_gate.weight")?,
        w_up: m("ffn_up.weight")?,
        w_down: m("ffn_down.weight")?,
    })
}

/// The HF (transformers) name of a layer weight given by its GGUF name.
fn hf_name(gguf: &str) -> String {
    let (base, kind) = gguf.rsplit_once('.').unwrap_or((gguf, "weight"));
    let hf = match base {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => other,
    };
    format!("{hf}.{kind}")
}

/// The `*.safetensors` files of a directory, memory-mapped, with an index of tensor names.
struct SafetensorsFiles {
    maps: Vec<(PathBuf, Mmap)>,
    /// Tensor name → index into `maps`.
    index: HashMap<String, usize>,
}

impl SafetensorsFiles {
    fn open(dir: &Path) -> Result<Self, LoadError> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(format!("{} has no *.safetensors files", dir.display()));
        }
        let mut maps = Vec::new();
        let mut index = HashMap::new();
        for path in paths {
            let file = std::fs::File::open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            // SAFETY: the file is mapped read-only; like every mmap-based loader we assume it is
            // not truncated while the server runs.
            let map = unsafe { Mmap::map(&file) }
                .map_err(|e| format!("cannot map {}: {e}", path.display()))?;
            let names = SafeTensors::deserialize(&map)
                .map_err(|e| format!("invalid safetensors file {}: {e}", path.display()))?
                .names()
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
            for name in names {
                index.insert(name, maps.len());
            }
            maps.push((path, map));
        }
        Ok(Self { maps, index })
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// A 1-D or 2-D tensor as a matrix (1-D: one row), converted from F32, F16 or BF16.
    fn matrix(&self, name: &str) -> Result<QMatrix, LoadError> {
        let &file = self
            .index
            .get(name)
            .ok_or_else(|| format!("the model lacks tensor {name}"))?;
        let (path, map) = &self.maps[file];
        let tensors =
            SafeTensors::deserialize(map).map_err(|e| format!("{}: {e}", path.display()))?;
        let view = tensors.tensor(name).map_err(|e| format!("{name}: {e}"))?;
        let (rows, cols) = match view.shape() {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            other => {
                return Err(format!(
                    "tensor {name} has shape {other:?}; expected 1 or 2 dimensions"
                ));
            }
        };
        let bytes = view.data();
        let result = match view.dtype() {
            Dtype::F32 => {
                let values: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                QMatrix::from_f32(rows, cols, &values)
            }
            Dtype::F16 => {
                let values: Vec<f16> = bytes
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]))
                    .collect();
                QMatrix::from_f16(rows, cols, &values)
            }
            Dtype::BF16 => {
                let values: Vec<bf16> = bytes
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]))
                    .collect();
                QMatrix::from_bf16(rows, cols, &values)
            }
            other => {
                return Err(format!(
                    "tensor {name} has dtype {other:?}; supported: F32, F16, BF16"
                ));
            }
        };
        result.map_err(|e| format!("{name}: {e}"))
    }
}
