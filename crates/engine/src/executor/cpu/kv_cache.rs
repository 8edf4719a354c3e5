//! Paged KV storage for the CPU executor: per layer, `num_blocks × block_size` slots, each slot
//! holding K and V for every KV head. Position `p` of a sequence lives in slot
//! `block_table[p / block_size] * block_size + p % block_size`; the engine's block manager decides
//! which blocks a sequence owns, so a prefix-cache hit is simply two tables naming the same block.

pub struct KvCache {
    /// Floats per slot: kv_heads × head_dim.
    width: usize,
    slots_per_layer: usize,
    block_size: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl KvCache {
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
            k: vec![0.0; layers * slots_per_layer * width],
            v: vec![0.0; layers * slots_per_layer * width],
        }
    }

    /// Bytes one block takes across all layers (K and V, f32).
    pub fn bytes_per_block(
        layers: usize,
        block_size: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> usize {
        2 * layers * block_size * kv_heads * head_dim * std::mem::size_of::<f32>()
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
        self.k[range.clone()].copy_from_slice(k);
        self.v[range].copy_from_slice(v);
    }

    /// K and V of positions `0..len` of a sequence, one block's slots at a time, in order.
    pub fn blocks<'a>(
        &'a self,
        layer: usize,
        block_table: &'a [u32],
        len: usize,
    ) -> impl Iterator<Item = (&'a [f32], &'a [f32])> + 'a {
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
