//! Block hashing: the one implementation the engine's prefix cache and the router's index share.
//!
//! Contract (see DESIGN.md, "Block hashing"):
//! - A prompt is cut into blocks of `block_size` token ids; only full blocks are hashed, and a
//!   `block_size` of 0 hashes nothing.
//! - `local_hash(block) = xxh3_64_with_seed(le_bytes(tokens), seed)`, where `le_bytes` is each
//!   token id as 4 little-endian bytes and `seed` carries the LoRA adapter / cache salt.
//! - `seq_hash(0) = local_hash(0)`;
//!   `seq_hash(i) = xxh3_64(le(seq_hash(i-1)) ‖ le(local_hash(i)))`, unseeded.
//! - So two prompts share `seq_hash(i)` exactly when they share blocks `0..=i` (and the seed), up
//!   to hash collisions. The values are part of the wire contract: changing them breaks routing.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The seed of plain requests (no LoRA adapter, no cache salt); engine and router both use it.
pub const BLOCK_HASH_SEED: u64 = 0;

/// The hashes of one full block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHash {
    /// Hash of this block's tokens alone.
    pub local: u64,
    /// Hash of this block and every block before it.
    pub sequence: u64,
}

/// Hashes every full `block_size` block of `tokens`.
pub fn compute_block_hashes(tokens: &[u32], block_size: usize, seed: u64) -> Vec<BlockHash> {
    if block_size == 0 {
        return Vec::new();
    }
    let mut previous: Option<u64> = None;
    tokens
        .chunks_exact(block_size)
        .map(|block| {
            let hash = hash_block(previous, block, seed);
            previous = Some(hash.sequence);
            hash
        })
        .collect()
}

/// Hashes one full block whose predecessor has sequence hash `parent` (`None` for the first block),
/// so a growing sequence can be hashed block by block.
pub fn hash_block(parent: Option<u64>, block: &[u32], seed: u64) -> BlockHash {
    let mut bytes = [0u8; 4 * 64];
    let local = if block.len() <= 64 {
        for (chunk, token) in bytes.chunks_exact_mut(4).zip(block) {
            chunk.copy_from_slice(&token.to_le_bytes());
        }
        xxh3_64_with_seed(&bytes[..block.len() * 4], seed)
    } else {
        let owned: Vec<u8> = block.iter().flat_map(|t| t.to_le_bytes()).collect();
        xxh3_64_with_seed(&owned, seed)
    };
    let sequence = match parent {
        None => local,
        Some(parent) => {
            let mut pair = [0u8; 16];
            pair[..8].copy_from_slice(&parent.to_le_bytes());
            pair[8..].copy_from_slice(&local.to_le_bytes());
            xxh3_64(&pair)
        }
    };
    BlockHash { local, sequence }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_values_computed_independently() {
        // Expected values from Python's `xxhash` package:
        //   l0 = xxh3_64_intdigest(struct.pack('<4I', 1, 2, 3, 4), seed=0)
        //   l1 = xxh3_64_intdigest(struct.pack('<4I', 5, 6, 7, 8), seed=0)
        //   s1 = xxh3_64_intdigest(struct.pack('<QQ', l0, l1))
        let hashes = compute_block_hashes(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 4, 0);
        assert_eq!(
            hashes,
            vec![
                BlockHash {
                    local: 0x6fc1ebd4f4d6ea31,
                    sequence: 0x6fc1ebd4f4d6ea31,
                },
                BlockHash {
                    local: 0xc03f64119f038920,
                    sequence: 0x3a14937fd5340c7a,
                },
            ]
        );
        // xxh3_64_intdigest(struct.pack('<4I', 1, 2, 3, 4), seed=42)
        assert_eq!(
            compute_block_hashes(&[1, 2, 3, 4], 4, 42)[0].local,
            0xcabc6cf291a3ba46
        );
    }

    #[test]
    fn only_full_blocks_and_zero_block_size() {
        assert!(compute_block_hashes(&[1, 2, 3], 4, 0).is_empty());
        assert!(compute_block_hashes(&[1, 2, 3, 4], 0, 0).is_empty());
        assert!(compute_block_hashes(&[], 16, 0).is_empty());
        assert_eq!(compute_block_hashes(&[7; 47], 16, 0).len(), 2);
    }

    #[test]
    fn prefix_sharing_gives_shared_hashes() {
        let shared: Vec<u32> = (0..32).collect();
        let mut a = shared.clone();
        a.extend([100, 101, 102, 103]);
        let mut b = shared;
        b.extend([200, 201, 202, 203]);
        let (ha, hb) = (
            compute_block_hashes(&a, 4, 0),
            compute_block_hashes(&b, 4, 0),
        );
        assert_eq!(ha.len(), 9);
        assert_eq!(ha[..8], hb[..8]);
        assert_ne!(ha[8].sequence, hb[8].sequence);
    }

    #[test]
    fn same_block_after_different_prefixes_differs_only_in_sequence() {
        let a = compute_block_hashes(&[1, 1, 9, 9], 2, 0);
        let b = compute_block_hashes(&[2, 2, 9, 9], 2, 0);
        assert_eq!(a[1].local, b[1].local);
        assert_ne!(a[1].sequence, b[1].sequence);
    }

    #[test]
    fn seed_changes_every_hash() {
        let tokens: Vec<u32> = (0..16).collect();
        let plain = compute_block_hashes(&tokens, 4, 0);
        let salted = compute_block_hashes(&tokens, 4, 1);
        for (p, s) in plain.iter().zip(&salted) {
            assert_ne!(p.local, s.local);
            assert_ne!(p.sequence, s.sequence);
        }
    }
}
