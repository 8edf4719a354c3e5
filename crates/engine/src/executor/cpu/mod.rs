//! The native CPU executor: Llama-family models (GGUF or HF safetensors) run through the engine
//! core's paged KV cache, with quantized weights kept quantized.
//!
//! `config` reads the model's shape, `model` loads its weights, `kernels` multiplies them,
//! `ops` holds norms and RoPE, `attention` attention, `ggml` llama.cpp's element-wise arithmetic
//! (which the rest follows bit for bit), `kv_cache` the paged KV memory, `forward` one
//! batched pass, and `executor` plugs it into the engine.

mod attention;
#[cfg(target_arch = "x86_64")]
mod attention_avx2;
pub mod config;
pub mod executor;
mod forward;
mod ggml;
pub mod kernels;
pub mod kv_cache;
pub mod model;
mod ops;

pub use executor::CpuExecutor;
pub use ggml::Width;
pub use model::Model;
