//! The GGML tensor types the CPU kernels understand, and their block layouts.
//!
//! GGML stores a row of `n` elements as `n / block_size` consecutive blocks of `block_bytes`
//! bytes each (plain types have one-element "blocks"). Every row length must therefore be a
//! multiple of the type's block size; that is checked when a [`QMatrix`](super::QMatrix) is built.

use std::fmt;

/// A GGML tensor type that the CPU kernels can dequantize and multiply.
///
/// The discriminants are GGML's type ids (`ggml_type` in `ggml.h`, the `ggml_type` field of a GGUF
/// tensor info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(non_camel_case_types)] // GGML's names
pub enum DType {
    F32 = 0,
    F16 = 1,
    /// 32 elements in 18 bytes: `f16 d`, 16 bytes of nibbles; `x = d * (q - 8)`.
    Q4_0 = 2,
    /// 32 elements in 20 bytes: `f16 d`, `f16 m`, 16 bytes of nibbles; `x = d * q + m`.
    Q4_1 = 3,
    /// 32 elements in 34 bytes: `f16 d`, 32 `i8`; `x = d * q`.
    Q8_0 = 8,
    /// 256 elements in 144 bytes: `f16 d`, `f16 dmin`, 12 bytes of packed 6-bit scales and mins
    /// for 8 sub-blocks of 32, 128 bytes of nibbles; `x = d * sc * q - dmin * m`.
    Q4_K = 12,
    /// 256 elements in 210 bytes: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 `i8`
    /// scales (one per 16 elements), `f16 d`; `x = d * sc * (q - 32)`.
    Q6_K = 14,
    BF16 = 30,
}

impl DType {
    /// Every supported type, in GGML id order.
    pub const ALL: [DType; 8] = [
        DType::F32,
        DType::F16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q6_K,
        DType::BF16,
    ];

    /// The type for a GGML type id, or `None` when the kernels do not support it (report it with
    /// [`ggml_type_name`]).
    pub fn from_ggml(id: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|t| t.ggml_id() == id)
    }

    /// The GGML type id.
    pub fn ggml_id(self) -> u32 {
        self as u32
    }

    /// GGML's name for the type (`"Q4_K"`, `"BF16"`, ...).
    pub fn name(self) -> &'static str {
        ggml_type_name(self.ggml_id())
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q8_0 => 32,
            DType::Q4_K | DType::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q8_0 => 34,
            DType::Q4_K => 144,
            DType::Q6_K => 210,
        }
    }

    /// Bytes of a row of `cols` elements, or `None` when `cols` is not a multiple of the block
    /// size (or the size overflows).
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        if !cols.is_multiple_of(self.block_size()) {
            return None;
        }
        (cols / self.block_size()).checked_mul(self.block_bytes())
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// GGML's name for any type id, supported or not (`"?"` for ids GGML does not define), so that a
/// caller can say which type a file uses that the kernels cannot run.
pub fn ggml_type_name(id: u32) -> &'static str {
    match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unsupported_ids_are_named() {
        for t in DType::ALL {
            assert_eq!(DType::from_ggml(t.ggml_id()), Some(t));
        }
        assert_eq!(DType::from_ggml(13), None);
        assert_eq!(ggml_type_name(13), "Q5_K");
        assert_eq!(DType::Q6_K.to_string(), "Q6_K");
    }

    #[test]
    fn row_bytes_checks_the_block_size() {
        assert_eq!(DType::Q4_1.row_bytes(576), Some(18 * 20));
        assert_eq!(DType::Q4_K.row_bytes(576), None);
        assert_eq!(DType::Q6_K.row_bytes(512), Some(420));
        assert_eq!(DType::BF16.row_bytes(3), Some(6));
    }
}
