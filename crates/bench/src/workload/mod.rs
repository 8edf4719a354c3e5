//! Workloads: plain lists of requests, as token ids with exact lengths, that any driver can replay —
//! `turbine bench` over HTTP, or a simulator in virtual time.
//!
//! Invariants every builder keeps:
//! - `requests[i].id == i`, in the order a closed loop should send them;
//! - `after`, when set, names an earlier request (multi-turn: the next turn waits for the answer);
//! - `prompt.len()` is the exact prompt length the server should see, and `max_tokens` the exact
//!   output length (sent with `ignore_eos`);
//! - where the vocabulary has a bos token, every prompt starts with it, so that a server which adds
//!   bos to text sees the same tokens as one given the ids.

pub mod multi_turn;
pub mod shared_prefix;
pub mod synthetic;
pub mod trace;
mod vocabulary;

pub use multi_turn::MultiTurn;
pub use shared_prefix::SharedPrefix;
pub use synthetic::Synthetic;
pub use trace::{TRACE_BLOCK_SIZE, TraceRecord, TraceReplay, read_trace};
pub use vocabulary::Vocabulary;

use crate::rng::Rng;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// When a request is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// As soon as the closed loop has a free slot.
    Closed,
    /// At this offset from the start of the run (open loop: Poisson or trace timestamps).
    At(Duration),
}

/// One request of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadRequest {
    pub id: usize,
    /// Ignored when `after` is set.
    pub arrival: Arrival,
    pub prompt: Vec<u32>,
    /// The exact number of tokens to generate.
    pub max_tokens: u32,
    /// Sent only once request `.0` has completed, `.1` (think time) later.
    pub after: Option<(usize, Duration)>,
}

/// Requests plus a one-line description of how they were made (scaling, seed), printed with the
/// results.
#[derive(Debug, Clone)]
pub struct Workload {
    pub requests: Vec<WorkloadRequest>,
    pub description: String,
}

impl Workload {
    /// Re-times the requests that do not wait for another as a Poisson process of `rate` requests
    /// per second, in id order.
    pub fn with_poisson_arrivals(mut self, rate: f64, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED_A441_7A15);
        let mut at = 0.0;
        for request in self.requests.iter_mut().filter(|r| r.after.is_none()) {
            at += rng.exponential(rate);
            request.arrival = Arrival::At(Duration::from_secs_f64(at));
        }
        self.description
            .push_str(&format!("; Poisson arrivals at {rate} req/s"));
        self
    }

    /// Makes every request that does not wait for another a closed-loop one.
    pub fn closed_loop(mut self) -> Self {
        for request in &mut self.requests {
            request.arrival = Arrival::Closed;
        }
        self
    }

    pub fn input_tokens(&self) -> u64 {
        self.requests.iter().map(|r| r.prompt.len() as u64).sum()
    }

    pub fn output_tokens(&self) -> u64 {
        self.requests.iter().map(|r| r.max_tokens as u64).sum()
    }
}

/// A token length: fixed (`128`) or uniform over an inclusive range (`64..256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Fixed(u32),
    Uniform { min: u32, max: u32 },
}

impl Length {
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        match *self {
            Length::Fixed(n) => n,
            Length::Uniform { min, max } => min + rng.below((max - min) as u64 + 1) as u32,
        }
    }
}

impl FromStr for Length {
    type Err = WorkloadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WorkloadError::Length(s.to_string());
        let number = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        match s.split_once("..") {
            None => Ok(Length::Fixed(number(s)?)),
            Some((min, max)) => {
                let (min, max) = (number(min)?, number(max)?);
                if min > max {
                    return Err(bad());
                }
                Ok(Length::Uniform { min, max })
            }
        }
    }
}

impl std::fmt::Display for Length {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Length::Fixed(n) => write!(f, "{n}"),
            Length::Uniform { min, max } => write!(f, "{min}..{max} (uniform)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("bad token length {0:?}: expected N or MIN..MAX")]
    Length(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {source}")]
    TraceLine {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: input_length {input_length} needs more than {blocks} blocks of 512")]
    TraceLength {
        path: PathBuf,
        line: usize,
        input_length: u64,
        blocks: usize,
    },
    #[error("the tokenizer has only {0} single-token words; text prompts need at least 256")]
    FewWords(usize),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] turbine_tokens::TokensError),
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_parse_and_sample_in_range() {
        assert_eq!("128".parse::<Length>().unwrap(), Length::Fixed(128));
        let range: Length = "4..6".parse().unwrap();
        assert_eq!(range, Length::Uniform { min: 4, max: 6 });
        assert!("6..4".parse::<Length>().is_err());
        assert!("x".parse::<Length>().is_err());
        let mut rng = Rng::new(3);
        let samples: Vec<u32> = (0..200).map(|_| range.sample(&mut rng)).collect();
        assert!(samples.iter().all(|n| (4..=6).contains(n)));
        assert!((4..=6).all(|n| samples.contains(&n)));
    }

    #[test]
    fn poisson_arrivals_have_the_rate_and_spare_follow_ups() {
        let vocabulary = Vocabulary::from_ids((10..100).collect(), None);
        let workload = Synthetic {
            requests: 20_000,
            input: Length::Fixed(1),
            output: Length::Fixed(1),
            seed: 0,
        }
        .build(&vocabulary)
        .with_poisson_arrivals(50.0, 42);
        let times: Vec<f64> = workload
            .requests
            .iter()
            .map(|r| match r.arrival {
                Arrival::At(t) => t.as_secs_f64(),
                Arrival::Closed => panic!("closed"),
            })
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        let gaps: Vec<f64> = std::iter::once(times[0])
            .chain(times.windows(2).map(|w| w[1] - w[0]))
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        // Exponential gaps: mean 1/rate = 20 ms and standard deviation equal to the mean.
        assert!((mean - 0.02).abs() < 0.0006, "mean gap {mean}");
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.03,
            "cv {}",
            var.sqrt() / mean
        );
        // A fixed seed gives the same arrivals.
        let again = Synthetic {
            requests: 3,
            input: Length::Fixed(1),
            output: Length::Fixed(1),
            seed: 0,
        }
        .build(&vocabulary)
        .with_poisson_arrivals(50.0, 42);
        assert_eq!(again.requests[2].arrival, workload.requests[2].arrival);
    }
}
