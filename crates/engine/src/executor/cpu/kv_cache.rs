//! Paged KV storage for the CPU executor: per layer, `num_blocks × block_size` slots, each slot
//! holding K and V for every KV head. Position `p` of a sequence lives in slot
//! `block_table[p / block_size] * block_size + p % block_size`; the engine's block manager decides
//! which blocks a sequence owns, so a prefix-cache hit is simply two tables naming the same block.
//!
//! The element type is [`KvType`]: `f16` for GGUF models, as llama.cpp keeps its cache by default
//! (half the memory, and the same rounding of K and V as llama.cpp), `f32` for HF models.

use half::f16;
use half::slice::HalfFloatSliceExt;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_loadu_ps};

/// The element type of a [`KvCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
}

impl KvType {
    pub fn bytes(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }
}

/// A cache element: stored from and read back as `f32`.
pub trait KvElem: Copy + Default + Send + Sync + 'static {
    /// Converts `src` into `dst` (of the same length).
    fn to_f32(src: &[Self], dst: &mut [f32]);
    fn store(src: &[f32], dst: &mut [Self]);
    /// Rounds `x` to this type's precision in place: what multiplying by values of this type in
    /// this type (as llama.cpp does with the cache's Q·K and P·V products) does to the other
    /// factor.
    fn round(x: &mut [f32]);
    /// Eight elements as the lanes of a vector.
    ///
    /// # Safety
    /// The CPU must have AVX and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(src: &[Self; 8]) -> __m256;
}

impl KvElem for f32 {
    fn to_f32(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn store(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn round(_: &mut [f32]) {}
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(src: &[f32; 8]) -> __m256 {
        // SAFETY: `src` is 8 readable elements; the caller guarantees AVX.
        unsafe { _mm256_loadu_ps(src.as_ptr()) }
    }
}

impl KvElem for f16 {
    fn to_f32(src: &[f16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn store(src: &[f32], dst: &mut [f16]) {
        dst.convert_from_f32_slice(src);
    }
    fn round(x: &mut [f32]) {
        let mut halves = [f16::ZERO; 64];
        for chunk in x.chunks_mut(64) {
            let halves = &mut halves[..chunk.len()];
            halves.convert_from_f32_slice(chunk);
            halves.convert_to_f32_slice(chunk);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(src: &[f16; 8]) -> __m256 {
        // SAFETY: `src` is 16 readable bytes; the caller guarantees F16C.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(src.as_ptr().cast())) }
    }
}

pub struct KvCache<T> {
    /// Elements per slot: kv_heads × head_dim.
    width: usize,
    slots_per_layer: usize,
    block_size: usize,
    k: Vec<T>,
    v: Vec<T>,
}

impl<T: KvElem> KvCache<T> {
    pub fn new(
        layers: usize,
        num_blocks: usize,
        block_size: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Self {
        let width = kv_heads * head_dim;
        let slots_per_layer = num_blocks * block_size;
        Self {
            width,
            slots_per_layer,
            block_size,
            k: vec![T::default(); layers * slots_per_layer * width],
            v: vec![T::default(); layers * slots_per_layer * width],
        }
    }

    /// Elements per slot: kv_heads × head_dim.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Slot index of position `pos` in a sequence with `block_table`.
    #[inline]
    pub fn slot(&self, block_table: &[u32], pos: usize) -> usize {
        block_table[pos / self.block_size] as usize * self.block_size + pos % self.block_size
    }

    fn range(&self, layer: usize, slot: usize) -> std::ops::Range<usize> {
        let start = (layer * self.slots_per_layer + slot) * self.width;
        start..start + self.width
    }

    pub fn write(&mut self, layer: usize, slot: usize, k: &[f32], v: &[f32]) {
        let range = self.range(layer, slot);
        T::store(k, &mut self.k[range.clone()]);
        T::store(v, &mut self.v[range]);
    }

    /// K and V of every slot of `layer`: slot `s` is `s * width..(s + 1) * width` of each.
    pub fn layer(&self, layer: usize) -> (&[T], &[T]) {
        let range = self.range(layer, 0).start..self.range(layer + 1, 0).start;
        (&self.k[range.clone()], &self.v[range])
    }

    /// K and V of positions `0..len` of a sequence, one block's slots at a time, in order.
    pub fn blocks<'a>(
        &'a self,
        layer: usize,
        block_table: &'a [u32],
        len: usize,
    ) -> impl Iterator<Item = (&'a [T], &'a [T])> + 'a {
        let bs = self.block_size;
        block_table
            .iter()
            .take(len.div_ceil(bs))
            .enumerate()
            .map(move |(i, &block)| {
                let filled = (len - i * bs).min(bs);
                let start = (layer * self.slots_per_layer + block as usize * bs) * self.width;
                let range = start..start + filled * self.width;
                (&self.k[range.clone()], &self.v[range])
            })
    }
}

/// Bytes one block takes across all layers (K and V).
pub fn bytes_per_block(
    layers: usize,
    block_size: usize,
    kv_heads: usize,
    head_dim: usize,
    kv_type: KvType,
) -> usize {
    2 * layers * block_size * kv_heads * head_dim * kv_type.bytes()
}
