//! GGUF (v2 and v3) reader over a memory map: header, metadata, tensor infos and tensor bytes.
//!
//! Invariants:
//! - Parsing never panics and never allocates more than the file could hold: every array length is
//!   checked against the bytes left in the file (each element needs at least its minimum encoded
//!   size) before anything is reserved, and array nesting is bounded.
//! - Every tensor returned by [`GgufFile::tensors`] has a known ggml type, an in-bounds byte range
//!   inside the data section, and a byte size that fits in `usize`, so [`GgufFile::tensor_data`]
//!   is a plain slice of the map.
//! - Tensor offsets are relative to the data section, which starts at the end of the tensor infos
//!   rounded up to `general.alignment` (32 when absent).
//! - Duplicate metadata keys or tensor names are rejected, as llama.cpp does.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::TokensError;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest array-of-array nesting accepted (real files use at most one level).
const MAX_ARRAY_DEPTH: usize = 8;
/// ggml never has more than 4 dimensions; a little slack for future formats.
const MAX_DIMS: u32 = 8;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array, stored by element type so large arrays (vocabularies, scores) stay compact.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<GgufArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl GgufArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            GgufArray::U8(v) => v.len(),
            GgufArray::I8(v) => v.len(),
            GgufArray::U16(v) => v.len(),
            GgufArray::I16(v) => v.len(),
            GgufArray::U32(v) => v.len(),
            GgufArray::I32(v) => v.len(),
            GgufArray::F32(v) => v.len(),
            GgufArray::Bool(v) => v.len(),
            GgufArray::String(v) => v.len(),
            GgufArray::Array(v) => v.len(),
            GgufArray::U64(v) => v.len(),
            GgufArray::I64(v) => v.len(),
            GgufArray::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl GgufValue {
    /// The value as an unsigned 64-bit integer, from any integer type that holds it exactly.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file and how it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order (innermost first).
    pub dims: Vec<u64>,
    /// The ggml type id (0 = F32, 1 = F16, 2 = Q4_0, ..., 30 = BF16).
    pub ggml_type: u32,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Size of the tensor's data in bytes.
    pub size: u64,
}

/// An open GGUF file: parsed metadata and tensor infos, tensor bytes served from the map.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    version: u32,
    metadata: HashMap<String, GgufValue>,
    tensors: Vec<TensorInfo>,
    data_start: usize,
}

impl GgufFile {
    /// Maps and parses `path`. Errors name the file and what is wrong with it.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, TokensError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| TokensError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_err)?;
        // SAFETY: the map is read-only and private to this value. Another process truncating or
        // rewriting the file while it is mapped is outside what this reader can defend against
        // (the same assumption every mmap-based model loader makes).
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        let parsed = parse(&map).map_err(|reason| TokensError::Gguf {
            path: path.clone(),
            reason,
        })?;
        Ok(GgufFile {
            path,
            map,
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            data_start: parsed.data_start,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All metadata, keyed by name.
    pub fn metadata_map(&self) -> &HashMap<String, GgufValue> {
        &self.metadata
    }

    pub fn metadata(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.metadata(key)? {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An integer of any GGUF integer type that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.metadata(key)?
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.metadata(key)? {
            GgufValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn get_str_array(&self, key: &str) -> Option<&[String]> {
        match self.metadata(key)? {
            GgufValue::Array(GgufArray::String(v)) => Some(v),
            _ => None,
        }
    }

    pub fn get_f32_array(&self, key: &str) -> Option<&[f32]> {
        match self.metadata(key)? {
            GgufValue::Array(GgufArray::F32(v)) => Some(v),
            _ => None,
        }
    }

    pub fn get_i32_array(&self, key: &str) -> Option<&[i32]> {
        match self.metadata(key)? {
            GgufValue::Array(GgufArray::I32(v)) => Some(v),
            _ => None,
        }
    }

    /// `general.architecture`, e.g. "llama" or "qwen2".
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor of this file (empty for an info that does not belong to it).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let range = usize::try_from(info.offset)
            .ok()
            .zip(usize::try_from(info.size).ok())
            .and_then(|(offset, size)| {
                let start = self.data_start.checked_add(offset)?;
                Some(start..start.checked_add(size)?)
            });
        range.and_then(|r| self.map.get(r)).unwrap_or(&[])
    }
}

/// `(elements per block, bytes per block)` for each ggml type id this reader knows.
fn ggml_type_layout(ggml_type: u32) -> Option<(u64, u64)> {
    Some(match ggml_type {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        _ => return None,
    })
}

#[derive(Debug)]
struct Parsed {
    version: u32,
    metadata: HashMap<String, GgufValue>,
    tensors: Vec<TensorInfo>,
    data_start: usize,
}

fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4)
        .map_err(|_| "file too short for a GGUF header".to_string())?
        != MAGIC
    {
        return Err("bad magic (not a GGUF file)".into());
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format!("unsupported GGUF version {version} (2 and 3 are)"));
    }
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;

    // A key-value pair takes at least 8 (key length) + 4 (type) + 1 (smallest value) bytes.
    r.check_count(kv_count, 13, "metadata entries")?;
    let mut metadata = HashMap::with_capacity(kv_count as usize);
    for _ in 0..kv_count {
        let key = r.string()?;
        let value_type = r.u32()?;
        let value = r.value(value_type, 0).map_err(|e| format!("{key}: {e}"))?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(format!("duplicate metadata key {key}"));
        }
    }

    // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
    r.check_count(tensor_count, 24, "tensor infos")?;
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut names = std::collections::HashSet::with_capacity(tensor_count as usize);
    for _ in 0..tensor_count {
        let info = r.tensor_info()?;
        if !names.insert(info.name.clone()) {
            return Err(format!("duplicate tensor name {}", info.name));
        }
        tensors.push(info);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => v
            .as_u64()
            .filter(|a| a.is_power_of_two())
            .ok_or_else(|| format!("general.alignment must be a power of two, got {v:?}"))?,
    };
    let data_start = (r.pos as u64)
        .checked_next_multiple_of(alignment)
        .ok_or("data section offset overflows")?;
    let file_len = bytes.len() as u64;
    if tensor_count > 0 && data_start > file_len {
        return Err(format!(
            "data section starts at {data_start}, past the end of the file ({file_len} bytes)"
        ));
    }
    let data_len = file_len.saturating_sub(data_start);
    for t in &tensors {
        if t.offset % alignment != 0 {
            return Err(format!(
                "tensor {} offset {} is not aligned to {alignment}",
                t.name, t.offset
            ));
        }
        let end = t.offset.checked_add(t.size);
        if end.is_none_or(|end| end > data_len) {
            return Err(format!(
                "tensor {} data ({} bytes at offset {}) runs past the end of the file",
                t.name, t.size, t.offset
            ));
        }
    }
    Ok(Parsed {
        version,
        metadata,
        tensors,
        data_start: usize::try_from(data_start).map_err(|_| "data section offset overflows")?,
    })
}

/// Bounds-checked little-endian cursor. Errors are reasons (the caller adds the path).
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: needed {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    /// Fails unless `count` elements of at least `min_size` bytes each could fit in what is left.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<(), String> {
        if count.saturating_mul(min_size) > self.remaining() as u64 {
            return Err(format!(
                "{count} {what} cannot fit in the {} bytes left at offset {}",
                self.remaining(),
                self.pos
            ));
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.u64()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= self.remaining())
            .ok_or_else(|| {
                format!(
                    "string of {len} bytes at offset {} runs past the end",
                    self.pos
                )
            })?;
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn value(&mut self, value_type: u32, depth: usize) -> Result<GgufValue, String> {
        Ok(match value_type {
            0 => GgufValue::U8(u8::from_le_bytes(self.array()?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array()?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array()?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array()?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array()?)),
            7 => GgufValue::Bool(self.bool()?),
            8 => GgufValue::String(self.string()?),
            9 => GgufValue::Array(self.array_value(depth)?),
            10 => GgufValue::U64(u64::from_le_bytes(self.array()?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown value type {other}")),
        })
    }

    fn bool(&mut self) -> Result<bool, String> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("invalid bool byte {b}")),
        }
    }

    fn array_value(&mut self, depth: usize) -> Result<GgufArray, String> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
        }
        let elem_type = self.u32()?;
        let count = self.u64()?;
        // Smallest encoding of one element: fixed size for scalars, the length prefix for strings,
        // type + count for nested arrays.
        let min_size = match elem_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            other => return Err(format!("unknown array element type {other}")),
        };
        self.check_count(count, min_size, "array elements")?;
        let n = count as usize;
        Ok(match elem_type {
            0 => GgufArray::U8(self.take(n)?.to_vec()),
            1 => GgufArray::I8(self.fixed(n, i8::from_le_bytes)?),
            2 => GgufArray::U16(self.fixed(n, u16::from_le_bytes)?),
            3 => GgufArray::I16(self.fixed(n, i16::from_le_bytes)?),
            4 => GgufArray::U32(self.fixed(n, u32::from_le_bytes)?),
            5 => GgufArray::I32(self.fixed(n, i32::from_le_bytes)?),
            6 => GgufArray::F32(self.fixed(n, f32::from_le_bytes)?),
            7 => GgufArray::Bool((0..n).map(|_| self.bool()).collect::<Result<_, _>>()?),
            8 => GgufArray::String((0..n).map(|_| self.string()).collect::<Result<_, _>>()?),
            9 => GgufArray::Array(
                (0..n)
                    .map(|_| self.array_value(depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            10 => GgufArray::U64(self.fixed(n, u64::from_le_bytes)?),
            11 => GgufArray::I64(self.fixed(n, i64::from_le_bytes)?),
            _ => GgufArray::F64(self.fixed(n, f64::from_le_bytes)?),
        })
    }

    /// `n` fixed-size little-endian scalars (length already checked against the file).
    fn fixed<T, const N: usize>(
        &mut self,
        n: usize,
        conv: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, String> {
        let raw = self.take(n * N)?;
        Ok(raw
            .chunks_exact(N)
            .map(|c| {
                let mut b = [0u8; N];
                b.copy_from_slice(c);
                conv(b)
            })
            .collect())
    }

    fn tensor_info(&mut self) -> Result<TensorInfo, String> {
        let name = self.string()?;
        let n_dims = self.u32()?;
        if n_dims > MAX_DIMS {
            return Err(format!("tensor {name} has {n_dims} dimensions"));
        }
        let dims = (0..n_dims)
            .map(|_| self.u64())
            .collect::<Result<Vec<_>, _>>()?;
        let ggml_type = self.u32()?;
        let offset = self.u64()?;
        let (block, block_bytes) = ggml_type_layout(ggml_type)
            .ok_or_else(|| format!("tensor {name} has unknown ggml type {ggml_type}"))?;
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor {name} element count overflows"))?;
        if dims.first().is_some_and(|&d| d % block != 0) {
            return Err(format!(
                "tensor {name}: row length {} is not a multiple of the type's block size {block}",
                dims[0]
            ));
        }
        let size = (elements / block)
            .checked_mul(block_bytes)
            .ok_or_else(|| format!("tensor {name} byte size overflows"))?;
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf_writer::GgufWriter;

    fn sample() -> GgufWriter {
        let mut w = GgufWriter::new();
        w.add("general.architecture", GgufValue::String("llama".into()))
            .add("u8", GgufValue::U8(7))
            .add("i8", GgufValue::I8(-7))
            .add("u16", GgufValue::U16(700))
            .add("i16", GgufValue::I16(-700))
            .add("u32", GgufValue::U32(70_000))
            .add("i32", GgufValue::I32(-70_000))
            .add("f32", GgufValue::F32(1.5))
            .add("bool", GgufValue::Bool(true))
            .add("u64", GgufValue::U64(1 << 40))
            .add("i64", GgufValue::I64(-(1 << 40)))
            .add("f64", GgufValue::F64(-2.25))
            .add(
                "strs",
                GgufValue::Array(GgufArray::String(vec![
                    "a".into(),
                    "βγ".into(),
                    String::new(),
                ])),
            )
            .add("f32s", GgufValue::Array(GgufArray::F32(vec![0.5, -1.0])))
            .add("i32s", GgufValue::Array(GgufArray::I32(vec![1, -2, 3])))
            .add(
                "nested",
                GgufValue::Array(GgufArray::Array(vec![
                    GgufArray::U8(vec![1, 2]),
                    GgufArray::Array(vec![GgufArray::Bool(vec![true, false])]),
                ])),
            )
            .add_tensor("a", &[4, 2], 0, (0..32).collect())
            .add_tensor("b", &[32], 8, vec![9; 34])
            .add_tensor("c", &[3], 1, vec![1, 2, 3, 4, 5, 6]);
        w
    }

    fn open_bytes(bytes: &[u8], name: &str) -> Result<GgufFile, TokensError> {
        let path =
            std::env::temp_dir().join(format!("turbine-gguf-{}-{name}.gguf", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        let result = GgufFile::open(&path);
        std::fs::remove_file(&path).ok();
        result
    }

    #[test]
    fn round_trip_of_every_value_type_and_tensors() {
        let f = open_bytes(&sample().to_bytes(), "roundtrip").expect("valid file");
        assert_eq!(f.version(), 3);
        assert_eq!(f.architecture(), Some("llama"));
        assert_eq!(f.get_u32("u8"), Some(7));
        assert_eq!(f.get_u32("u16"), Some(700));
        assert_eq!(f.get_u32("u32"), Some(70_000));
        assert_eq!(f.get_u32("i32"), None, "negative does not fit u32");
        assert_eq!(f.get_u32("u64"), None, "too large for u32");
        assert_eq!(f.metadata("i8"), Some(&GgufValue::I8(-7)));
        assert_eq!(f.metadata("i16"), Some(&GgufValue::I16(-700)));
        assert_eq!(f.metadata("f32"), Some(&GgufValue::F32(1.5)));
        assert_eq!(f.metadata("i64"), Some(&GgufValue::I64(-(1 << 40))));
        assert_eq!(f.metadata("f64"), Some(&GgufValue::F64(-2.25)));
        assert_eq!(f.get_bool("bool"), Some(true));
        assert_eq!(f.get_str_array("strs").map(<[String]>::len), Some(3));
        assert_eq!(f.get_str_array("strs").map(|s| s[1].as_str()), Some("βγ"));
        assert_eq!(f.get_f32_array("f32s"), Some(&[0.5, -1.0][..]));
        assert_eq!(f.get_i32_array("i32s"), Some(&[1, -2, 3][..]));
        assert_eq!(f.get_str("u8"), None, "wrong type");
        assert_eq!(f.get_str("missing"), None);
        let Some(GgufValue::Array(GgufArray::Array(nested))) = f.metadata("nested") else {
            panic!("nested array missing");
        };
        assert_eq!(nested[0], GgufArray::U8(vec![1, 2]));
        assert_eq!(
            nested[1],
            GgufArray::Array(vec![GgufArray::Bool(vec![true, false])])
        );

        let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let a = f.tensor("a").expect("tensor a");
        assert_eq!(
            (a.dims.as_slice(), a.ggml_type, a.size),
            (&[4, 2][..], 0, 32)
        );
        assert_eq!(f.tensor_data(a), (0..32).collect::<Vec<u8>>());
        let b = f.tensor("b").expect("tensor b");
        assert_eq!((b.offset, b.size), (32, 34));
        assert_eq!(f.tensor_data(b), vec![9; 34]);
        let c = f.tensor("c").expect("tensor c");
        assert_eq!(c.offset % 32, 0);
        assert_eq!(f.tensor_data(c), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn custom_alignment() {
        let mut w = sample();
        w.add("general.alignment", GgufValue::U32(64));
        let bytes = w.to_bytes();
        let parsed = parse(&bytes).expect("valid");
        assert_eq!(parsed.data_start % 64, 0);
        assert!(parsed.tensors.iter().all(|t| t.offset % 64 == 0));
        w.add("general.alignment", GgufValue::U32(48));
        // Duplicate key, and 48 is not a power of two either way.
        assert!(parse(&w.to_bytes()).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            assert!(
                parse(&bytes[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
        let err = open_bytes(&bytes[..100], "truncated").expect_err("truncated");
        assert!(matches!(err, TokensError::Gguf { .. }), "{err}");
    }

    #[test]
    fn garbage_is_an_error() {
        let err = open_bytes(b"not a gguf file at all, just text", "garbage").expect_err("garbage");
        assert!(err.to_string().contains("bad magic"), "{err}");
        assert!(open_bytes(b"", "empty").is_err());

        let mut bad_version = sample().to_bytes();
        bad_version[4] = 1;
        assert!(parse(&bad_version).unwrap_err().contains("version 1"));

        // Pseudo-random bytes after a valid magic and version (fixed seed).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let mut bytes = b"GGUF\x03\0\0\0".to_vec();
            for _ in 0..256 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn huge_counts_fail_without_allocating() {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
        bytes.extend(3u64.to_le_bytes());
        bytes.extend(b"arr");
        bytes.extend(9u32.to_le_bytes()); // array
        bytes.extend(8u32.to_le_bytes()); // of strings
        bytes.extend(u64::MAX.to_le_bytes());
        let reason = parse(&bytes).unwrap_err();
        assert!(reason.contains("cannot fit"), "{reason}");

        let mut many_kv = b"GGUF".to_vec();
        many_kv.extend(3u32.to_le_bytes());
        many_kv.extend(u64::MAX.to_le_bytes());
        many_kv.extend(u64::MAX.to_le_bytes());
        assert!(parse(&many_kv).unwrap_err().contains("cannot fit"));
    }

    #[test]
    fn tensor_problems_are_errors() {
        let mut w = GgufWriter::new();
        w.add_tensor("t", &[4], 0, vec![0; 8]); // needs 16 bytes
        assert!(parse(&w.to_bytes()).unwrap_err().contains("past the end"));

        let mut w = GgufWriter::new();
        w.add_tensor("t", &[4], 77, vec![0; 16]);
        assert!(
            parse(&w.to_bytes())
                .unwrap_err()
                .contains("unknown ggml type 77")
        );

        let mut w = GgufWriter::new();
        w.add_tensor("t", &[33], 2, vec![0; 64]); // Q4_0 rows must be multiples of 32
        assert!(parse(&w.to_bytes()).unwrap_err().contains("block size"));

        let mut w = GgufWriter::new();
        w.add_tensor("t", &[4], 0, vec![0; 16])
            .add_tensor("t", &[4], 0, vec![0; 16]);
        assert!(
            parse(&w.to_bytes())
                .unwrap_err()
                .contains("duplicate tensor")
        );

        let mut w = GgufWriter::new();
        w.add_tensor("t", &[u64::MAX, 4], 0, vec![]);
        assert!(parse(&w.to_bytes()).unwrap_err().contains("overflows"));
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let mut array = GgufArray::U8(vec![1]);
        for _ in 0..MAX_ARRAY_DEPTH + 1 {
            array = GgufArray::Array(vec![array]);
        }
        let mut w = GgufWriter::new();
        w.add("deep", GgufValue::Array(array));
        assert!(parse(&w.to_bytes()).unwrap_err().contains("nested deeper"));
    }
}
