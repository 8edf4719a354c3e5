//! Writes GGUF v3 files: for tests and tools that need a small model or tokenizer on disk.
//!
//! Invariants:
//! - Output is what [`crate::GgufFile`] (and llama.cpp) read back: metadata in insertion order,
//!   tensor infos in insertion order, each tensor's data at an offset aligned to
//!   `general.alignment` (32 unless that key is set to a power of two) from an aligned data section.
//! - The writer does not check that a tensor's bytes match its dims and type; the reader does.

use std::path::Path;

use crate::error::TokensError;
use crate::gguf::{GgufArray, GgufValue};

/// Builds a GGUF file in memory.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: u32,
    data: Vec<u8>,
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Adds a metadata entry.
    pub fn add(&mut self, key: impl Into<String>, value: GgufValue) -> &mut GgufWriter {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds a tensor: `dims` in ggml order (innermost first), `data` its raw bytes.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: u32,
        data: Vec<u8>,
    ) -> &mut GgufWriter {
        self.tensors.push(PendingTensor {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type,
            data,
        });
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = self
            .metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| a.is_power_of_two())
            .unwrap_or(32) as usize;
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        put_u32(&mut out, 3);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.metadata.len() as u64);
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            put_u32(&mut out, value_type(value));
            put_value(&mut out, value);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            put_u32(&mut out, t.dims.len() as u32);
            t.dims.iter().for_each(|&d| put_u64(&mut out, d));
            put_u32(&mut out, t.ggml_type);
            put_u64(&mut out, offset as u64);
            offset = (offset + t.data.len()).next_multiple_of(alignment);
        }
        for t in &self.tensors {
            out.resize(out.len().next_multiple_of(alignment), 0);
            out.extend_from_slice(&t.data);
        }
        out
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), TokensError> {
        std::fs::write(path.as_ref(), self.to_bytes()).map_err(|source| TokensError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        })
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn value_type(value: &GgufValue) -> u32 {
    match value {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn element_type(array: &GgufArray) -> u32 {
    match array {
        GgufArray::U8(_) => 0,
        GgufArray::I8(_) => 1,
        GgufArray::U16(_) => 2,
        GgufArray::I16(_) => 3,
        GgufArray::U32(_) => 4,
        GgufArray::I32(_) => 5,
        GgufArray::F32(_) => 6,
        GgufArray::Bool(_) => 7,
        GgufArray::String(_) => 8,
        GgufArray::Array(_) => 9,
        GgufArray::U64(_) => 10,
        GgufArray::I64(_) => 11,
        GgufArray::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.push(*v),
        GgufValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::Array(a) => put_array(out, a),
        GgufValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, array: &GgufArray) {
    put_u32(out, element_type(array));
    put_u64(out, array.len() as u64);
    fn each<T>(out: &mut Vec<u8>, items: &[T], put: impl Fn(&mut Vec<u8>, &T)) {
        items.iter().for_each(|item| put(out, item));
    }
    match array {
        GgufArray::U8(v) => out.extend_from_slice(v),
        GgufArray::I8(v) => each(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        GgufArray::U16(v) => each(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        GgufArray::I16(v) => each(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        GgufArray::U32(v) => each(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        GgufArray::I32(v) => each(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        GgufArray::F32(v) => each(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        GgufArray::Bool(v) => each(out, v, |o, x| o.push(u8::from(*x))),
        GgufArray::String(v) => each(out, v, |o, x| put_str(o, x)),
        GgufArray::Array(v) => each(out, v, put_array),
        GgufArray::U64(v) => each(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        GgufArray::I64(v) => each(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        GgufArray::F64(v) => each(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
    }
}
