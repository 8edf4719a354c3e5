//! Errors of the CPU kernels: building a matrix from bytes, or reading one of its rows.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// The GGML type id is not one of [`DType`](super::DType)'s.
    #[error("unsupported ggml tensor type {name} (id {id})")]
    UnsupportedType { id: u32, name: &'static str },
    /// Sizes that do not fit the type's block layout, or byte ranges that do not match the shape.
    #[error("{0}")]
    Layout(String),
    /// A row index past the end of the matrix (an embedding lookup of an out-of-vocabulary token).
    #[error("row {row} out of range for a matrix of {rows} rows")]
    RowOutOfRange { row: usize, rows: usize },
}

impl KernelError {
    /// The error for an unsupported GGML type id, with GGML's name for it.
    pub fn unsupported(id: u32) -> KernelError {
        KernelError::UnsupportedType {
            id,
            name: super::ggml_type_name(id),
        }
    }
}
