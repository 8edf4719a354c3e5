//! Mooncake trace replay. Each hash id becomes one block of token ids drawn from a generator seeded
//! by the id, so equal hash ids give identical blocks and the prompts share exactly the prefixes the
//! trace says; the last block is cut to the input length. Lengths scale with the block size:
//! `block_size` 16 turns the trace's 512-token blocks into 16-token ones and every length (input
//! and output) into 16/512 of itself, rounded up.

use super::{Arrival, Vocabulary, Workload, WorkloadError, WorkloadRequest};
use crate::rng::Rng;
use serde::Deserialize;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

/// Tokens per hash id in the published traces.
pub const TRACE_BLOCK_SIZE: u32 = 512;

/// One line of a Mooncake trace.
#[derive(Debug, Clone, Deserialize)]
pub struct TraceRecord {
    /// Milliseconds from the trace start.
    pub timestamp: f64,
    pub input_length: u64,
    pub output_length: u64,
    pub hash_ids: Vec<u64>,
}

/// Reads a JSON-lines trace, checking that every input fits its blocks.
pub fn read_trace(path: &Path) -> Result<Vec<TraceRecord>, WorkloadError> {
    let io = |source| WorkloadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut records = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let record: TraceRecord =
            serde_json::from_str(&line).map_err(|source| WorkloadError::TraceLine {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?;
        if record.input_length > record.hash_ids.len() as u64 * TRACE_BLOCK_SIZE as u64 {
            return Err(WorkloadError::TraceLength {
                path: path.to_path_buf(),
                line: i + 1,
                input_length: record.input_length,
                blocks: record.hash_ids.len(),
            });
        }
        records.push(record);
    }
    Ok(records)
}

#[derive(Debug, Clone)]
pub struct TraceReplay {
    /// Tokens per hash id; [`TRACE_BLOCK_SIZE`] keeps the trace's lengths.
    pub block_size: u32,
    /// Timestamps are divided by this.
    pub speed: f64,
    /// The slice of the trace replayed: records from `start` (trace time) ...
    pub start: Duration,
    /// ... for this long ...
    pub duration: Option<Duration>,
    /// ... and at most this many.
    pub max_requests: Option<usize>,
    /// Changes every block's tokens, keeping the sharing structure.
    pub seed: u64,
}

impl TraceReplay {
    /// `source` names the trace in the description.
    pub fn build(
        &self,
        records: &[TraceRecord],
        source: &str,
        vocabulary: &Vocabulary,
    ) -> Result<Workload, WorkloadError> {
        if self.block_size == 0 || !self.speed.is_finite() || self.speed <= 0.0 {
            return Err(WorkloadError::Invalid(
                "trace block size and speed must be positive".into(),
            ));
        }
        let start_ms = self.start.as_secs_f64() * 1000.0;
        let end_ms = self.duration.map(|d| start_ms + d.as_secs_f64() * 1000.0);
        let requests: Vec<WorkloadRequest> = records
            .iter()
            .filter(|r| r.timestamp >= start_ms && end_ms.is_none_or(|end| r.timestamp < end))
            .take(self.max_requests.unwrap_or(usize::MAX))
            .enumerate()
            .map(|(id, record)| {
                let input = self.scale(record.input_length) as usize;
                let mut prompt =
                    Vec::with_capacity(record.hash_ids.len() * self.block_size as usize);
                for &hash_id in &record.hash_ids {
                    let mut rng = Rng::new(hash_id ^ self.seed.rotate_left(32));
                    vocabulary.draw(&mut rng, self.block_size as usize, &mut prompt);
                }
                prompt.truncate(input);
                vocabulary.start(&mut prompt);
                let at = (record.timestamp - start_ms) / self.speed / 1000.0;
                WorkloadRequest {
                    id,
                    arrival: Arrival::At(Duration::from_secs_f64(at)),
                    prompt,
                    max_tokens: self.scale(record.output_length) as u32,
                    after: None,
                }
            })
            .collect();
        let window = match self.duration {
            Some(d) => format!("{} s + {} s", self.start.as_secs_f64(), d.as_secs_f64()),
            None => format!("from {} s", self.start.as_secs_f64()),
        };
        let description = format!(
            "trace {source}: {} of {} requests (window {window}), block size {} (lengths x {}/{}), \
             timestamps / {}, seed {}",
            requests.len(),
            records.len(),
            self.block_size,
            self.block_size,
            TRACE_BLOCK_SIZE,
            self.speed,
            self.seed
        );
        Ok(Workload {
            requests,
            description,
        })
    }

    /// A trace length at this block size, rounded up, at least 1.
    fn scale(&self, length: u64) -> u64 {
        (length * self.block_size as u64)
            .div_ceil(TRACE_BLOCK_SIZE as u64)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(timestamp: f64, input_length: u64, hash_ids: &[u64]) -> TraceRecord {
        TraceRecord {
            timestamp,
            input_length,
            output_length: 100,
            hash_ids: hash_ids.to_vec(),
        }
    }

    fn replay(block_size: u32) -> TraceReplay {
        TraceReplay {
            block_size,
            speed: 2.0,
            start: Duration::ZERO,
            duration: None,
            max_requests: None,
            seed: 0,
        }
    }

    #[test]
    fn equal_hash_ids_give_equal_blocks() {
        let records = [
            record(0.0, 1024, &[1, 2]),
            record(10.0, 1500, &[1, 2, 3]),
            record(20.0, 600, &[1, 4]),
            record(30.0, 512, &[5]),
        ];
        let vocabulary = Vocabulary::from_ids((0..50_000).collect(), None);
        let workload = replay(16).build(&records, "t", &vocabulary).unwrap();
        let p: Vec<&[u32]> = workload.requests.iter().map(|r| &r.prompt[..]).collect();
        // 1500 * 16 / 512 = 46.875 -> 47; 600 -> 18.75 -> 19.
        assert_eq!(
            p.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [32, 47, 19, 16]
        );
        assert_eq!(p[1][..32], *p[0]);
        assert_eq!(p[2][..16], p[0][..16]);
        assert_ne!(p[2][16..], p[0][16..19]);
        assert_ne!(p[3][..16], p[0][..16]);
        assert_eq!(workload.requests[1].max_tokens, 4); // 100 * 16 / 512 = 3.125 -> 4
        assert_eq!(
            workload.requests[3].arrival,
            Arrival::At(Duration::from_millis(15))
        );
        // Unscaled, block 2 of request 1 is the whole of its 512 tokens but the last 476.
        let full = replay(TRACE_BLOCK_SIZE)
            .build(&records, "t", &vocabulary)
            .unwrap();
        assert_eq!(full.requests[1].prompt.len(), 1500);
        assert_eq!(full.requests[1].prompt[..1024], full.requests[0].prompt[..]);
    }

    #[test]
    fn window_and_cap_take_a_slice() {
        let records: Vec<TraceRecord> = (0..10)
            .map(|i| record(i as f64 * 1000.0, 10, &[i]))
            .collect();
        let vocabulary = Vocabulary::from_ids((0..100).collect(), None);
        let slice = TraceReplay {
            start: Duration::from_secs(2),
            duration: Some(Duration::from_secs(5)),
            max_requests: Some(3),
            ..replay(16)
        }
        .build(&records, "t", &vocabulary)
        .unwrap();
        assert_eq!(slice.requests.len(), 3);
        assert_eq!(slice.requests[0].arrival, Arrival::At(Duration::ZERO));
        assert_eq!(
            slice.requests[2].arrival,
            Arrival::At(Duration::from_secs(1))
        );
        assert_eq!(slice.requests[2].id, 2);
    }

    #[test]
    fn reads_the_shared_traces() {
        // Read at run time, not by `env!`: a reused test binary keeps its checkout's path.
        let dir = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
            .join("../../../shared/traces");
        let records = read_trace(&dir.join("mooncake_synthetic.jsonl")).expect("trace");
        assert_eq!(records.len(), 3993);
    }
}
