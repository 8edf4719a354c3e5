//! Paged KV on the GPU, bf16, in the CPU cache's layout: per layer, `num_blocks × block_size`
//! slots of `kv_heads × head_dim`. Sized from the memory left once the weights are loaded.

use super::device::{DeviceBuffer, Gpu, GpuResult};

pub struct GpuKvCache {
    pub k: Vec<DeviceBuffer>,
    pub v: Vec<DeviceBuffer>,
    pub num_blocks: usize,
}

impl GpuKvCache {
    pub fn new(gpu: &Gpu, layers: usize, num_blocks: usize, block_width: usize) -> GpuResult<Self> {
        let bytes = num_blocks * block_width * 2;
        let mut k = Vec::with_capacity(layers);
        let mut v = Vec::with_capacity(layers);
        // Zeroed: a slot is read only after it is written, but benchmarks read unwritten ones,
        // and whatever memory held before must not make their arithmetic differ.
        for _ in 0..layers {
            k.push(gpu.alloc_zeroed(bytes)?);
            v.push(gpu.alloc_zeroed(bytes)?);
        }
        Ok(Self { k, v, num_blocks })
    }
}

/// Bytes of K and V one block takes over all layers: `block_size × kv_heads × head_dim` values
/// of 2 bytes each, twice, per layer.
pub fn bytes_per_block(layers: usize, block_size: usize, kv_width: usize) -> usize {
    2 * layers * block_size * kv_width * 2
}

/// How many blocks fit: the process may use `utilization` of the GPU's `total` memory; `used` is
/// already taken (weights, other processes), `reserve` is kept for activations.
pub fn blocks_that_fit(
    total: usize,
    used: usize,
    utilization: f64,
    reserve: usize,
    per_block: usize,
) -> Result<usize, String> {
    if !(utilization > 0.0 && utilization <= 1.0) {
        return Err(format!(
            "--gpu-memory-utilization must be in (0, 1], not {utilization}"
        ));
    }
    let allowed = (total as f64 * utilization) as usize;
    let left = allowed.saturating_sub(used).saturating_sub(reserve);
    let blocks = left / per_block.max(1);
    if blocks == 0 {
        return Err(format!(
            "no room for the KV cache: {:.1} GiB allowed ({utilization} of {:.1} GiB), {:.1} GiB in \
             use, {:.1} GiB kept for activations",
            gib(allowed),
            gib(total),
            gib(used),
            gib(reserve)
        ));
    }
    Ok(blocks)
}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fill_what_is_allowed_and_left() {
        let gib = 1usize << 30;
        // 80 GiB card at 0.75: 60 GiB allowed, 16 used, 4 reserved: 40 GiB of 2 MiB blocks.
        let per = bytes_per_block(32, 16, 1024);
        assert_eq!(per, 2 << 20);
        assert_eq!(
            blocks_that_fit(80 * gib, 16 * gib, 0.75, 4 * gib, per).unwrap(),
            40 * 512
        );
        assert!(blocks_that_fit(80 * gib, 80 * gib, 0.9, 0, per).is_err());
        assert!(blocks_that_fit(80 * gib, 0, 1.5, 0, per).is_err());
        assert!(blocks_that_fit(80 * gib, 0, f64::NAN, 0, per).is_err());
    }
}
