//! [`QMatrix`]: a weight matrix kept in its on-disk encoding.
//!
//! Invariants (checked by every constructor, relied on by the kernels):
//! - `rows >= 1`, `cols >= 1`, and `cols` is a multiple of the type's block size.
//! - The matrix is `rows * row_bytes` bytes starting at `offset` inside `data`, all in bounds;
//!   row `r` is `bytes[r * row_bytes..(r + 1) * row_bytes]` (row-major, GGML order: a row is one
//!   output feature, its `cols` elements the input features).
//! - Multi-byte values are little-endian (GGUF and safetensors both are); no alignment is assumed.

use std::fmt;
use std::sync::Arc;

use half::{bf16, f16};
use turbine_tokens::gguf::{GgufFile, TensorInfo};

use super::{DType, KernelError, dequantize_row};

/// Shared, immutable bytes a matrix reads from: a memory map, a `Vec<u8>`, ...
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A weight matrix `[rows = out_features][cols = in_features]` in a GGML encoding, read in place
/// from shared bytes (cloning is cheap: the bytes are shared).
#[derive(Clone)]
pub struct QMatrix {
    dtype: DType,
    rows: usize,
    cols: usize,
    data: SharedBytes,
    offset: usize,
    row_bytes: usize,
}

impl QMatrix {
    /// A `rows x cols` matrix of `dtype` stored in `data[offset..offset + len]`.
    ///
    /// Errors when `cols` is not a multiple of the block size, when `len` is not exactly the
    /// encoded size of the matrix, or when the range is not inside `data`.
    pub fn new(
        dtype: DType,
        rows: usize,
        cols: usize,
        data: SharedBytes,
        offset: usize,
        len: usize,
    ) -> Result<QMatrix, KernelError> {
        if rows == 0 || cols == 0 {
            return Err(KernelError::Layout(format!(
                "{dtype} matrix of {rows} x {cols}: empty matrices are not supported"
            )));
        }
        let row_bytes = dtype.row_bytes(cols).ok_or_else(|| {
            KernelError::Layout(format!(
                "{dtype} matrix of {rows} x {cols}: the row length is not a multiple of the \
                 block size {}",
                dtype.block_size()
            ))
        })?;
        let expected = row_bytes.checked_mul(rows).ok_or_else(|| {
            KernelError::Layout(format!("{dtype} matrix of {rows} x {cols}: size overflows"))
        })?;
        if len != expected {
            return Err(KernelError::Layout(format!(
                "{dtype} matrix of {rows} x {cols} takes {expected} bytes, got {len}"
            )));
        }
        let available = (*data).as_ref().len();
        if offset.checked_add(len).is_none_or(|end| end > available) {
            return Err(KernelError::Layout(format!(
                "{dtype} matrix of {rows} x {cols}: bytes {offset}..{offset}+{len} are outside \
                 the {available} bytes given"
            )));
        }
        Ok(QMatrix {
            dtype,
            rows,
            cols,
            data,
            offset,
            row_bytes,
        })
    }

    /// A matrix over owned bytes in `dtype`'s encoding (e.g. a safetensors tensor's data).
    pub fn from_bytes(
        dtype: DType,
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    ) -> Result<QMatrix, KernelError> {
        let len = bytes.len();
        QMatrix::new(dtype, rows, cols, Arc::new(bytes), 0, len)
    }

    /// An `F32` matrix from row-major values.
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> Result<QMatrix, KernelError> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        QMatrix::from_bytes(DType::F32, rows, cols, bytes)
    }

    /// An `F16` matrix from row-major values.
    pub fn from_f16(rows: usize, cols: usize, values: &[f16]) -> Result<QMatrix, KernelError> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        QMatrix::from_bytes(DType::F16, rows, cols, bytes)
    }

    /// A `BF16` matrix from row-major values.
    pub fn from_bf16(rows: usize, cols: usize, values: &[bf16]) -> Result<QMatrix, KernelError> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        QMatrix::from_bytes(DType::BF16, rows, cols, bytes)
    }

    /// The tensor `info` of `file`, read in place from the file's memory map (which `file` keeps
    /// alive). GGUF dims are innermost first: `dims[0]` is `cols`, the product of the others
    /// `rows` (1 for a vector).
    pub fn from_gguf(file: &Arc<GgufFile>, info: &TensorInfo) -> Result<QMatrix, KernelError> {
        let dtype = DType::from_ggml(info.ggml_type).ok_or_else(|| {
            let e = KernelError::unsupported(info.ggml_type);
            KernelError::Layout(format!("tensor {}: {e}", info.name))
        })?;
        let dim = |d: u64| usize::try_from(d).ok();
        let (cols, rows) = match info.dims.split_first() {
            Some((&c, rest)) => (
                dim(c),
                rest.iter()
                    .try_fold(1usize, |acc, &d| acc.checked_mul(dim(d)?)),
            ),
            None => (None, None),
        };
        let (Some(cols), Some(rows)) = (cols, rows) else {
            return Err(KernelError::Layout(format!(
                "tensor {}: dims {:?} do not fit a matrix",
                info.name, info.dims
            )));
        };
        let len = file.tensor_data(info).len();
        let bytes = TensorBytes {
            file: Arc::clone(file),
            info: info.clone(),
        };
        QMatrix::new(dtype, rows, cols, Arc::new(bytes), 0, len)
            .map_err(|e| KernelError::Layout(format!("tensor {}: {e}", info.name)))
    }

    /// Rows `start..start + count` as a matrix over the same bytes.
    pub fn slice_rows(&self, start: usize, count: usize) -> Result<QMatrix, KernelError> {
        if start.checked_add(count).is_none_or(|end| end > self.rows) {
            return Err(KernelError::Layout(format!(
                "rows {start}..{start}+{count} of a matrix of {} rows",
                self.rows
            )));
        }
        QMatrix::new(
            self.dtype,
            count,
            self.cols,
            Arc::clone(&self.data),
            self.offset + start * self.row_bytes,
            count * self.row_bytes,
        )
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The whole matrix's encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &(*self.data).as_ref()[self.offset..self.offset + self.rows * self.row_bytes]
    }

    /// Encoded bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The encoded bytes of row `r`; `r < rows`.
    #[inline]
    pub(crate) fn row_data(&self, r: usize) -> &[u8] {
        let start = self.offset + r * self.row_bytes;
        &(*self.data).as_ref()[start..start + self.row_bytes]
    }

    /// Dequantizes row `r` into `out` (`cols` long): an embedding lookup.
    pub fn row(&self, r: usize, out: &mut [f32]) -> Result<(), KernelError> {
        if r >= self.rows {
            return Err(KernelError::RowOutOfRange {
                row: r,
                rows: self.rows,
            });
        }
        if out.len() != self.cols {
            return Err(KernelError::Layout(format!(
                "row of {} elements read into a buffer of {}",
                self.cols,
                out.len()
            )));
        }
        dequantize_row(self.dtype, self.row_data(r), out)
    }

    /// The whole matrix as row-major `f32` (for tests and for small tensors such as norms).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, o) in out.chunks_exact_mut(self.cols).enumerate() {
            // Cannot fail: the constructor checked the layout.
            let _ = dequantize_row(self.dtype, self.row_data(r), o);
        }
        out
    }
}

impl fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QMatrix")
            .field("dtype", &self.dtype)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// One GGUF tensor's bytes, keeping the file (and its map) alive.
struct TensorBytes {
    file: Arc<GgufFile>,
    info: TensorInfo,
}

impl AsRef<[u8]> for TensorBytes {
    fn as_ref(&self) -> &[u8] {
        self.file.tensor_data(&self.info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructor_checks_layout() {
        let err = QMatrix::from_bytes(DType::Q4_0, 2, 48, vec![0; 36]).unwrap_err();
        assert!(err.to_string().contains("block size 32"), "{err}");
        let err = QMatrix::from_bytes(DType::Q4_0, 2, 64, vec![0; 71]).unwrap_err();
        assert!(err.to_string().contains("takes 72 bytes, got 71"), "{err}");
        let data: SharedBytes = Arc::new(vec![0u8; 80]);
        let err = QMatrix::new(DType::Q4_0, 2, 64, data.clone(), 10, 72).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        let m = QMatrix::new(DType::Q4_0, 2, 64, data, 8, 72).unwrap();
        assert_eq!((m.rows(), m.cols(), m.row_bytes()), (2, 64, 36));
        assert!(QMatrix::from_f32(0, 4, &[]).is_err());
    }

    #[test]
    fn rows_and_slices() {
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let m = QMatrix::from_f32(3, 4, &values).unwrap();
        let mut out = [0f32; 4];
        m.row(2, &mut out).unwrap();
        assert_eq!(out, [8.0, 9.0, 10.0, 11.0]);
        assert_eq!(
            m.row(3, &mut out),
            Err(KernelError::RowOutOfRange { row: 3, rows: 3 })
        );
        assert!(m.row(0, &mut [0f32; 3]).is_err());
        let s = m.slice_rows(1, 2).unwrap();
        assert_eq!(s.to_f32(), values[4..].to_vec());
        assert!(m.slice_rows(2, 2).is_err());
        let b = QMatrix::from_bf16(1, 2, &[bf16::from_f32(1.5), bf16::from_f32(-2.0)]).unwrap();
        assert_eq!(b.to_f32(), vec![1.5, -2.0]);
    }
}
