//! Linear algebra on GGML-encoded weights for the CPU executor: tensor types ([`DType`]),
//! weight matrices read in place ([`QMatrix`]), dequantization ([`dequantize_row`], embedding
//! lookups with [`QMatrix::row`]) and the matmul of the forward pass ([`QMatrix::matmul`]).
//!
//! Layout of the module, one job per file:
//! - `dtype`: the supported GGML types and their block sizes; `blocks`: byte-level helpers of
//!   the block formats.
//! - `dequant`: GGML-exact dequantization of every type.
//! - `q8`: activation quantization (Q8 blocks of 32, Q8_K blocks of 256).
//! - `scalar` and `avx2`: per-row dot products, portable and x86_64 AVX2 (picked at run time);
//!   `lanes`: AVX2 kernels for Q4_0/Q4_1/Q8_0 with many tokens (tokens in lanes).
//! - `matrix`: [`QMatrix`] and its constructors; `matmul`: the multithreaded driver.
//!
//! Invariants: a [`QMatrix`] is validated when built (block-multiple rows, exact byte length, in
//! bounds), so the kernels index without further checks on file data; a [`Backend`] exists only
//! for an instruction set the CPU has, so the `unsafe` SIMD kernels run only where they may.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod blocks;
mod dequant;
mod dtype;
mod error;
#[cfg(target_arch = "x86_64")]
mod lanes;
mod matmul;
mod matrix;
mod q8;
mod scalar;

pub use dequant::dequantize_row;
pub use dtype::{DType, ggml_type_name};
pub use error::KernelError;
pub use matmul::{Backend, PACKED_MIN_TOKENS, TOKEN_TILE};
pub use matrix::{QMatrix, SharedBytes};
