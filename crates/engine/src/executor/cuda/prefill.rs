//! How the prefill attention divides its work for a head shape: the defines `prefill.cu` is
//! compiled with, and the shared memory and launch shape of its kernel or, where the module has
//! it, of `prefill_wgmma.cu`'s.

use super::plan::PREFILL_TILE;

/// Warps per block at most.
const MAX_WARPS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrefillLayout {
    /// Query heads of one KV group per block (PQ_HEADS): they share each K/V tile.
    heads: usize,
    /// Warps per block (PQ_WARPS).
    warps: usize,
    /// 16-token MMA row tiles per warp (PQ_MT).
    row_tiles: usize,
    /// Keys per shared-memory tile (KT).
    key_tile: usize,
    head_dim: usize,
    /// `prefill_attention_wgmma`: unpadded swizzled rows from a 1024-byte boundary.
    hopper: bool,
}

impl PrefillLayout {
    pub fn new(head_dim: usize, group: usize) -> Self {
        // Two row tiles' accumulators fit in the registers beside the scores up to head_dim 128.
        let (row_tiles, key_tile) = if head_dim <= 128 { (2, 64) } else { (1, 32) };
        let heads = [4, 2, 1]
            .into_iter()
            .find(|h| group.is_multiple_of(*h))
            .unwrap_or(1);
        let warps_per_head = (PREFILL_TILE / (16 * row_tiles)).min(MAX_WARPS / heads);
        Self {
            heads,
            warps: heads * warps_per_head,
            row_tiles,
            key_tile,
            head_dim,
            hopper: false,
        }
    }

    /// The layout of `prefill_attention_wgmma` (compiled where the GPU, head_dim 128 and an even
    /// group allow): two warpgroups of 64 rows per block, 128-key tiles.
    pub fn hopper(group: usize) -> Self {
        Self {
            heads: if group.is_multiple_of(4) { 4 } else { 2 },
            warps: 8,
            row_tiles: 1,
            key_tile: 128,
            head_dim: 128,
            hopper: true,
        }
    }

    pub fn defines(&self) -> [(&'static str, String); 5] {
        [
            ("QT", PREFILL_TILE.to_string()),
            ("KT", self.key_tile.to_string()),
            ("PQ_HEADS", self.heads.to_string()),
            ("PQ_WARPS", self.warps.to_string()),
            ("PQ_MT", self.row_tiles.to_string()),
        ]
    }

    pub fn threads(&self) -> u32 {
        (self.warps * 32) as u32
    }

    /// (heads / PQ_HEADS, tiles × blocks per tile).
    pub fn grid(&self, heads: usize, tiles: usize) -> (u32, u32, u32) {
        let tokens = self.warps / self.heads * 16 * self.row_tiles;
        let split = PREFILL_TILE / tokens;
        ((heads / self.heads) as u32, (tiles * split) as u32, 1)
    }

    /// The block's Q rows, then two stages of K and V tiles, rows padded by 8 elements; or, for
    /// the Hopper kernel, three stages of swizzled rows aligned by the kernel.
    pub fn shared_bytes(&self) -> u32 {
        let q_rows = self.warps * 16 * self.row_tiles;
        if self.hopper {
            // Three stages (WG_STAGES).
            ((q_rows + 3 * 2 * self.key_tile) * self.head_dim * 2 + 1024) as u32
        } else {
            ((q_rows + 2 * 2 * self.key_tile) * (self.head_dim + 8) * 2) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_four_share_a_block_per_32_tokens() {
        let l = PrefillLayout::new(128, 4);
        assert_eq!((l.heads, l.warps, l.row_tiles, l.key_tile), (4, 4, 2, 64));
        assert_eq!(l.grid(32, 10), (8, 20, 1));
        assert_eq!(l.shared_bytes(), 104_448);
        // Groups of 8: two blocks per group.
        assert_eq!(PrefillLayout::new(128, 8).grid(32, 1), (8, 2, 1));
    }

    #[test]
    fn small_groups_take_more_tokens_per_block() {
        let l = PrefillLayout::new(64, 2);
        assert_eq!((l.heads, l.warps), (2, 4));
        assert_eq!(l.grid(4, 3), (2, 3, 1));
        let l = PrefillLayout::new(128, 3);
        assert_eq!((l.heads, l.warps, l.threads()), (1, 2, 64));
        assert_eq!(l.grid(6, 3), (6, 3, 1));
    }

    #[test]
    fn hopper_blocks_hold_128_rows() {
        let l = PrefillLayout::hopper(4);
        assert_eq!((l.threads(), l.grid(32, 10)), (256, (8, 20, 1)));
        // Q, three stages of K and V, the alignment slack: one block per multiprocessor.
        assert_eq!(l.shared_bytes(), 230_400);
        assert!(l.shared_bytes() <= 227 * 1024);
        assert_eq!(PrefillLayout::hopper(2).grid(4, 3), (2, 3, 1));
    }

    #[test]
    fn wide_heads_use_one_row_tile_per_warp() {
        let l = PrefillLayout::new(256, 4);
        assert_eq!((l.heads, l.warps, l.row_tiles, l.key_tile), (4, 4, 1, 32));
        assert_eq!(l.grid(8, 1), (2, 4, 1));
        // Two blocks fit in a multiprocessor's 227 KiB.
        assert!(2 * l.shared_bytes() < 227 * 1024);
    }
}
