//! The CUDA executor: Llama-family models on one NVIDIA GPU, bf16 weights, paged bf16 KV.
//!
//! Nothing CUDA is needed to build: `libs` finds and loads the driver, NVRTC and cuBLASLt at run
//! time (cudarc with dynamic loading for the driver; `symbols` holds NVRTC's and cuBLASLt's
//! functions from the files chosen); `compile` turns `kernels.cu` (with `prefill.cu`,
//! `gemv.cu`, `decode_mma.cu` and `sample.cu` appended) into a CUBIN for the GPU in hand through
//! NVRTC, cached on disk; `device` holds the context, stream and buffers, `gemm` the GEMMs (cuBLASLt, each shape's
//! algorithm timed once, `gemm_cache` keeping the choices on disk); `kernels`
//! launches the custom kernels (`prefill` lays out the prefill attention's work) and `gemv` the
//! fused few-token projections; `weights` uploads or makes the weights;
//! `kv_cache` sizes and holds the paged cache; `plan` checks and packs a step's metadata;
//! `forward` runs one batched pass; `graph` captures and replays CUDA graphs and `graphs` runs
//! decode steps through them; `timeline` reads the kernels' own timing records (diagnostics,
//! off by default); `executor` plugs it into the engine.

mod compile;
mod device;
mod executor;
mod forward;
mod gemm;
mod gemm_cache;
mod gemv;
mod graph;
mod graphs;
mod kernels;
mod kv_cache;
mod libs;
mod plan;
mod prefill;
mod symbols;
mod timeline;
mod weights;

pub use executor::{CudaExecutor, CudaOptions, WeightSource};
pub use gemm::Choice as GemmChoice;
pub use timeline::Span;
