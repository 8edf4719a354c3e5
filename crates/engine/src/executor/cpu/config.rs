//! A Llama-family model's shape, read from GGUF metadata or an HF `config.json`.
//!
//! Architectures: Llama (2, 3, 3.1 with rope scaling), Mistral and SmolLM (Llama's shape), Qwen2
//! (q/k/v biases), Qwen3 (per-head q/k RMSNorm). Anything else is an error naming it.

use serde_json::Value;
use turbine_tokens::GgufFile;
use turbine_tokens::gguf::GgufValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

/// How RoPE pairs up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimension `i` with `i + head_dim/2` (HF's `rotate_half`; GGUF's "neox").
    Neox,
    /// Dimension `2i` with `2i + 1` (GGUF's llama: its converter permutes Q and K to match).
    Interleaved,
}

/// How a long-context model stretches its RoPE frequencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1's: by wavelength, low frequencies divided by `factor`, high ones kept.
    Llama3(Llama3Scaling),
    /// Every frequency divided by `factor` (position interpolation).
    Linear { factor: f32 },
}

impl RopeScaling {
    /// Scaled `inv_freq` (one RoPE frequency).
    fn apply(self, inv_freq: f64) -> f64 {
        match self {
            RopeScaling::Llama3(s) => llama3_scale(inv_freq, s),
            RopeScaling::Linear { factor } => inv_freq / factor as f64,
        }
    }
}

/// Llama 3.1's frequency-dependent RoPE scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_context: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_embeddings: bool,
    pub qkv_bias: bool,
    pub qk_norm: bool,
}

pub type ConfigError = String;

fn arch_of(name: &str) -> Result<Arch, ConfigError> {
    match name {
        "llama" | "mistral" | "smollm" | "LlamaForCausalLM" | "MistralForCausalLM" => {
            Ok(Arch::Llama)
        }
        "qwen2" | "Qwen2ForCausalLM" => Ok(Arch::Qwen2),
        "qwen3" | "Qwen3ForCausalLM" => Ok(Arch::Qwen3),
        other => Err(format!(
            "unsupported architecture `{other}` (supported: Llama, Mistral, SmolLM, Qwen2, Qwen3)"
        )),
    }
}

impl ModelConfig {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, ConfigError> {
        let name = gguf
            .architecture()
            .ok_or("the GGUF file has no general.architecture")?;
        let arch = arch_of(name)?;
        let key = |k: &str| format!("{name}.{k}");
        let int = |k: &str| -> Result<usize, ConfigError> {
            gguf.get_u32(&key(k))
                .map(|v| v as usize)
                .ok_or_else(|| format!("GGUF metadata lacks {}", key(k)))
        };
        let float = |k: &str| -> Option<f32> {
            match gguf.metadata(&key(k))? {
                GgufValue::F32(v) => Some(*v),
                GgufValue::F64(v) => Some(*v as f32),
                other => other.as_u64().map(|v| v as f32),
            }
        };
        let hidden = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let head_dim = gguf
            .get_u32(&key("attention.key_length"))
            .map(|v| v as usize)
            .unwrap_or(hidden / heads.max(1));
        let vocab = match gguf.get_u32(&key("vocab_size")) {
            Some(v) => v as usize,
            None => gguf
                .get_str_array("tokenizer.ggml.tokens")
                .map(|t| t.len())
                .ok_or("GGUF metadata lacks the vocabulary")?,
        };
        let rope_scaling = match gguf.get_str(&key("rope.scaling.type")) {
            Some("llama3") => Some(RopeScaling::Llama3(Llama3Scaling {
                factor: float("rope.scaling.factor").unwrap_or(8.0),
                low_freq_factor: float("rope.scaling.low_freq_factor").unwrap_or(1.0),
                high_freq_factor: float("rope.scaling.high_freq_factor").unwrap_or(4.0),
                original_context: float("rope.scaling.original_context_length").unwrap_or(8192.0),
            })),
            Some("linear") => Some(RopeScaling::Linear {
                factor: float("rope.scaling.factor")
                    .ok_or("linear RoPE scaling without a factor")?,
            }),
            None | Some("none") => None,
            Some(other) => return Err(format!("unsupported rope.scaling.type `{other}`")),
        };
        let config = Self {
            arch,
            hidden,
            layers: int("block_count")?,
            heads,
            kv_heads: gguf
                .get_u32(&key("attention.head_count_kv"))
                .map(|v| v as usize)
                .unwrap_or(heads),
            head_dim,
            intermediate: int("feed_forward_length")?,
            vocab,
            rms_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_theta: float("rope.freq_base").unwrap_or(10_000.0),
            rope_style: if arch == Arch::Llama {
                RopeStyle::Interleaved
            } else {
                RopeStyle::Neox
            },
            rope_scaling,
            tie_embeddings: gguf.tensor("output.weight").is_none(),
            qkv_bias: gguf.tensor("blk.0.attn_q.bias").is_some(),
            qk_norm: gguf.tensor("blk.0.attn_q_norm.weight").is_some(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads an HF `config.json`.
    pub fn from_hf_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| format!("invalid {}: {e}", path.display()))?;
        Self::from_hf(&json)
    }

    pub fn from_hf(config: &Value) -> Result<Self, ConfigError> {
        let arch_name = config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .or_else(|| config.get("model_type").and_then(Value::as_str))
            .ok_or("config.json names no architecture")?;
        let arch = arch_of(arch_name)?;
        let int = |k: &str| -> Result<usize, ConfigError> {
            config
                .get(k)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| format!("config.json lacks `{k}`"))
        };
        let float = |k: &str| config.get(k).and_then(Value::as_f64).map(|v| v as f32);
        let hidden = int("hidden_size")?;
        let heads = int("num_attention_heads")?;
        // transformers 5 writes `rope_parameters` (theta and scaling together) instead of
        // `rope_theta` and `rope_scaling`.
        let rope_parameters = config.get("rope_parameters").filter(|s| !s.is_null());
        let scaling = config
            .get("rope_scaling")
            .filter(|s| !s.is_null())
            .or(rope_parameters);
        let rope_theta = float("rope_theta")
            .or_else(|| {
                rope_parameters
                    .and_then(|r| r.get("rope_theta"))
                    .and_then(Value::as_f64)
                    .map(|v| v as f32)
            })
            .unwrap_or(10_000.0);
        let rope_scaling = match scaling {
            None => None,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let num =
                    |k: &str, d: f32| s.get(k).and_then(Value::as_f64).map_or(d, |v| v as f32);
                match kind {
                    "llama3" => Some(RopeScaling::Llama3(Llama3Scaling {
                        factor: num("factor", 8.0),
                        low_freq_factor: num("low_freq_factor", 1.0),
                        high_freq_factor: num("high_freq_factor", 4.0),
                        original_context: num("original_max_position_embeddings", 8192.0),
                    })),
                    "linear" => Some(RopeScaling::Linear {
                        factor: s
                            .get("factor")
                            .and_then(Value::as_f64)
                            .ok_or("linear rope_scaling without a factor")?
                            as f32,
                    }),
                    "default" | "" => None,
                    other => return Err(format!("unsupported rope_scaling type `{other}`")),
                }
            }
        };
        let config = Self {
            arch,
            hidden,
            layers: int("num_hidden_layers")?,
            heads,
            kv_heads: int("num_key_value_heads").unwrap_or(heads),
            head_dim: int("head_dim").unwrap_or(hidden / heads.max(1)),
            intermediate: int("intermediate_size")?,
            vocab: int("vocab_size")?,
            rms_eps: float("rms_norm_eps").unwrap_or(1e-6),
            rope_theta,
            rope_style: RopeStyle::Neox,
            rope_scaling,
            tie_embeddings: config
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            qkv_bias: match arch {
                Arch::Qwen2 => true,
                _ => config
                    .get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            },
            qk_norm: arch == Arch::Qwen3,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            self.hidden,
            self.layers,
            self.heads,
            self.kv_heads,
            self.head_dim,
            self.intermediate,
            self.vocab,
        ];
        if positive.contains(&0) {
            return Err(format!("model dimensions must be positive: {self:?}"));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "{} attention heads are not a multiple of {} KV heads",
                self.heads, self.kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim {} is odd; RoPE needs pairs",
                self.head_dim
            ));
        }
        Ok(())
    }

    /// RoPE inverse frequencies, one per dimension pair, with the model's scaling applied.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim as f64;
        (0..self.head_dim / 2)
            .map(|i| {
                let base = (self.rope_theta as f64).powf(-(2.0 * i as f64) / d);
                self.rope_scaling.map_or(base, |s| s.apply(base)) as f32
            })
            .collect()
    }
}

impl ModelConfig {
    /// What the model's scaling divides each RoPE frequency by (all 1 without scaling).
    pub fn rope_divisors(&self) -> Vec<f32> {
        let d = self.head_dim as f64;
        (0..self.head_dim / 2)
            .map(|i| match self.rope_scaling {
                None => 1.0,
                Some(s) => {
                    let base = (self.rope_theta as f64).powf(-(2.0 * i as f64) / d);
                    (base / s.apply(base)) as f32
                }
            })
            .collect()
    }
}

/// transformers' `_compute_llama3_parameters`, per frequency.
fn llama3_scale(inv_freq: f64, s: Llama3Scaling) -> f64 {
    let (factor, low, high, original) = (
        s.factor as f64,
        s.low_freq_factor as f64,
        s.high_freq_factor as f64,
        s.original_context as f64,
    );
    let low_freq_wavelen = original / low;
    let high_freq_wavelen = original / high;
    let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
    if wavelen < high_freq_wavelen {
        inv_freq
    } else if wavelen > low_freq_wavelen {
        inv_freq / factor
    } else {
        let smooth = (original / wavelen - low) / (high - low);
        (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformers_5_rope_parameters_are_read() {
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 128, "vocab_size": 10,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}
        });
        let c = ModelConfig::from_hf(&config).unwrap();
        assert_eq!(c.rope_theta, 500_000.0);
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Llama3(s)) if s.factor == 8.0));
        let mut plain = config.clone();
        plain["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1e6});
        let c = ModelConfig::from_hf(&plain).unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling), (1e6, None));
    }

    fn hf_with_scaling(scaling: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 128, "vocab_size": 10,
            "rope_theta": 10000.0, "rope_scaling": scaling
        })
    }

    #[test]
    fn linear_rope_scaling_divides_every_frequency() {
        let linear = hf_with_scaling(serde_json::json!({"type": "linear", "factor": 4.0}));
        let c = ModelConfig::from_hf(&linear).unwrap();
        let plain = ModelConfig::from_hf(&hf_with_scaling(serde_json::Value::Null)).unwrap();
        for (scaled, base) in c.inv_freq().iter().zip(plain.inv_freq()) {
            assert!(
                (scaled - base / 4.0).abs() <= 1e-7 * base,
                "{scaled} {base}"
            );
        }
        assert!(c.rope_divisors().iter().all(|&d| (d - 4.0).abs() < 1e-5));
        let no_factor = hf_with_scaling(serde_json::json!({"rope_type": "linear"}));
        assert!(ModelConfig::from_hf(&no_factor).is_err());
        let yarn = hf_with_scaling(serde_json::json!({"rope_type": "yarn", "factor": 4.0}));
        let err = ModelConfig::from_hf(&yarn).unwrap_err();
        assert!(err.contains("yarn"), "{err}");
    }

    #[test]
    fn gguf_rope_scaling_is_read_or_refused() {
        use turbine_tokens::{GgufFile, GgufValue, GgufWriter};
        let dir = std::env::temp_dir().join(format!("turbine-rope-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let load = |kind: Option<&str>| {
            let mut w = GgufWriter::new();
            w.add("general.architecture", GgufValue::String("llama".into()));
            for (k, v) in [
                ("embedding_length", 64),
                ("block_count", 1),
                ("attention.head_count", 2),
                ("feed_forward_length", 128),
                ("vocab_size", 10),
            ] {
                w.add(format!("llama.{k}"), GgufValue::U32(v));
            }
            if let Some(kind) = kind {
                w.add("llama.rope.scaling.type", GgufValue::String(kind.into()));
                w.add("llama.rope.scaling.factor", GgufValue::F32(2.0));
            }
            let path = dir.join("m.gguf");
            w.write(&path).unwrap();
            ModelConfig::from_gguf(&GgufFile::open(&path).unwrap())
        };
        assert_eq!(load(None).unwrap().rope_scaling, None);
        assert_eq!(load(Some("none")).unwrap().rope_scaling, None);
        assert_eq!(
            load(Some("linear")).unwrap().rope_scaling,
            Some(RopeScaling::Linear { factor: 2.0 })
        );
        let err = load(Some("yarn")).unwrap_err();
        assert!(err.contains("yarn"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
