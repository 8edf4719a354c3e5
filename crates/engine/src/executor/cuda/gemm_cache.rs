//! The timed GEMM algorithm choices, kept on disk beside the cached CUBINs: every process on a
//! machine then runs the same cuBLASLt kernel for a shape, so the same request gives the same
//! logits after a restart (and two binaries compared side by side run the same GEMMs), and a
//! shape is timed once per machine rather than once per process. cuBLASLt documents its
//! algorithm struct as trivially serializable for the same library version; the file is keyed by
//! the GPU, that version and the workspace size, and `Lt` uses an entry only where it equals one
//! of the heuristic's candidates for the shape, so a stale or foreign entry is timed again.
//!
//! One line per shape: `t n k f32_out` then the struct's eight words, in decimal.

use super::compile::write_atomically;
use super::gemm::Shape;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// cuBLASLt's opaque `cublasLtMatmulAlgo_t`, as its eight words.
pub type AlgoWords = [u64; 8];

pub struct GemmCache {
    /// None where there is no cache directory: choices then last for the process only.
    path: Option<PathBuf>,
    entries: HashMap<Shape, AlgoWords>,
}

impl GemmCache {
    /// The choices kept in `dir` for this GPU (`gpu`: its name and compute capability), cuBLASLt
    /// version and workspace size; an unreadable or missing file is an empty cache.
    pub fn open(dir: Option<&Path>, gpu: &str, cublaslt: usize, workspace: usize) -> Self {
        let key = format!("{gpu}\ncublasLt {cublaslt}\nworkspace {workspace}");
        let path = dir.map(|d| {
            let digest = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
            d.join(format!("gemm-{digest:016x}.txt"))
        });
        let entries = path.as_deref().map(read).unwrap_or_default();
        Self { path, entries }
    }

    pub fn get(&self, shape: Shape) -> Option<AlgoWords> {
        self.entries.get(&shape).copied()
    }

    /// Keeps `shape`'s choice, merged into what the file holds now (another process may have
    /// added shapes since this one read it). A file that cannot be written is skipped.
    pub fn put(&mut self, shape: Shape, algo: AlgoWords) {
        self.entries.insert(shape, algo);
        let Some(path) = &self.path else { return };
        let mut all = read(path);
        all.insert(shape, algo);
        if let Err(err) = write_atomically(path, format(&all).as_bytes()) {
            tracing::warn!("cannot keep GEMM choices in {}: {err}", path.display());
        }
    }
}

fn read(path: &Path) -> HashMap<Shape, AlgoWords> {
    std::fs::read_to_string(path)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// The file's entries; a malformed line is skipped.
fn parse(text: &str) -> HashMap<Shape, AlgoWords> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<(Shape, AlgoWords)> {
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [t, n, k, f32_out, words @ ..] = fields.as_slice() else {
        return None;
    };
    let words: AlgoWords = words.try_into().ok()?;
    let f32_out = match f32_out {
        0 => false,
        1 => true,
        _ => return None,
    };
    let dim = |v: u64| usize::try_from(v).ok();
    Some(((dim(*t)?, dim(*n)?, dim(*k)?, f32_out), words))
}

/// The file's text, shapes in order.
fn format(entries: &HashMap<Shape, AlgoWords>) -> String {
    let mut shapes: Vec<&Shape> = entries.keys().collect();
    shapes.sort();
    let mut text = String::new();
    for shape in shapes {
        let (t, n, k, f32_out) = *shape;
        text.push_str(&format!("{t} {n} {k} {}", u8::from(f32_out)));
        for word in entries[shape] {
            text.push_str(&format!(" {word}"));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("turbine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn choices_round_trip_and_bad_lines_are_skipped() {
        let mut entries = HashMap::new();
        entries.insert((1, 128256, 4096, true), [u64::MAX, 1, 2, 3, 4, 5, 6, 7]);
        entries.insert((64, 4096, 14336, false), [9; 8]);
        let text = format(&entries);
        assert_eq!(parse(&text), entries);
        let noisy =
            format!("{text}1 2 3\n1 2 3 2 0 0 0 0 0 0 0 0\nx\n\n4 4 4 0 1 2 3 4 5 6 7 8 9\n");
        assert_eq!(parse(&noisy), entries);
    }

    #[test]
    fn a_choice_is_kept_for_the_next_process_of_the_same_gpu_and_library() {
        let dir = scratch("gemm-cache");
        let shape = (8, 6144, 4096, false);
        let mut first = GemmCache::open(Some(&dir), "H100 (9, 0)", 130000, 32 << 20);
        assert_eq!(first.get(shape), None);
        first.put(shape, [7; 8]);
        // Another process's choice made meanwhile is merged, not overwritten.
        let mut other = GemmCache::open(Some(&dir), "H100 (9, 0)", 130000, 32 << 20);
        other.put((1, 4096, 4096, false), [3; 8]);
        first.put((2, 4096, 4096, false), [5; 8]);
        let next = GemmCache::open(Some(&dir), "H100 (9, 0)", 130000, 32 << 20);
        assert_eq!(next.get(shape), Some([7; 8]));
        assert_eq!(next.get((1, 4096, 4096, false)), Some([3; 8]));
        assert_eq!(next.get((2, 4096, 4096, false)), Some([5; 8]));
        // Another library version or GPU starts empty.
        let newer = GemmCache::open(Some(&dir), "H100 (9, 0)", 130100, 32 << 20);
        assert_eq!(newer.get(shape), None);
        let h200 = GemmCache::open(Some(&dir), "H200 (9, 0)", 130000, 32 << 20);
        assert_eq!(h200.get(shape), None);
        // Without a directory, choices last for the process.
        let mut alone = GemmCache::open(None, "H100 (9, 0)", 130000, 32 << 20);
        alone.put(shape, [1; 8]);
        assert_eq!(alone.get(shape), Some([1; 8]));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
