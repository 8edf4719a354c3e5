//! Choosing a worker among candidates: the policies and the KV cost.
//!
//! **KV cost** of sending a prompt of `L` tokens to worker `w`, in blocks of `B` tokens:
//!
//! ```text
//! cost(w) = overlap_weight × (L − B × overlap(w)) / B     new prefill: blocks w must compute
//!         + queued_prefill_tokens(w) / B                  prefill already waiting on w
//!         + active_blocks(w)                              decode work the request joins
//! ```
//!
//! `overlap(w)` is the run of the prompt's leading blocks `w` holds. The lowest cost wins; ties
//! (within a thousandth of a block) go to the worker with the least work, then to a random one,
//! so equal workers share the load. With `temperature > 0` the choice is random instead, with
//! probability ∝ `exp(−c / temperature)` over costs `c` scaled to [0, 1].
//!
//! Why new prefill weighs more than queued work (`overlap_weight`, default 16): a block computed
//! again where another worker holds it is work the whole fleet pays for, in every later
//! request's queue, while a longer queue on one worker costs only the requests in it. On the
//! Mooncake trace (`docs/benchmarks.md`), weights from 1 to 32 were swept in the simulator; at
//! high load 16 both kept ~93% of the ideal hit rate and gave the lowest TTFT.
//!
//! **Hot-spot guard.** A worker whose work (active blocks plus its prefill queue in blocks)
//! exceeds both `hotspot_factor ×` the mean over all candidates and the mean plus half this
//! prompt's blocks is left out, unless every candidate is: a deep cache hit does not justify
//! piling onto a worker busier than the rest. With one prefix shared by every request, this is
//! what spreads the prefix to other workers; the half-prompt allowance keeps a conversation on
//! its worker at low load, where one request is a large share of the mean.

use crate::load::Load;
use rand::Rng;
use std::fmt;
use std::str::FromStr;
use turbine_protocols::InstanceId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingPolicy {
    /// KV-cache overlap weighed against load (the cost above).
    #[default]
    Kv,
    RoundRobin,
    Random,
    /// The least work (active blocks plus prefill queue).
    LeastLoaded,
    /// The less loaded of two random workers.
    PowerOfTwo,
}

impl FromStr for RoutingPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "kv" => Self::Kv,
            "round-robin" => Self::RoundRobin,
            "random" => Self::Random,
            "least-loaded" => Self::LeastLoaded,
            "power-of-two" => Self::PowerOfTwo,
            other => {
                return Err(format!(
                    "unknown routing policy `{other}` (kv, round-robin, random, least-loaded, power-of-two)"
                ));
            }
        })
    }
}

impl fmt::Display for RoutingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kv => "kv",
            Self::RoundRobin => "round-robin",
            Self::Random => "random",
            Self::LeastLoaded => "least-loaded",
            Self::PowerOfTwo => "power-of-two",
        })
    }
}

/// The knobs of the KV cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostWeights {
    pub overlap_weight: f64,
    pub temperature: f64,
    pub hotspot_factor: f64,
}

impl Default for CostWeights {
    fn default() -> Self {
        Self {
            overlap_weight: 16.0,
            temperature: 0.0,
            hotspot_factor: 1.3,
        }
    }
}

/// One worker the request could go to.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub worker: InstanceId,
    /// Leading prompt blocks the worker holds.
    pub overlap_blocks: u32,
    pub load: Load,
}

/// What one choice needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct Prompt {
    pub tokens: usize,
    pub block_size: usize,
}

/// The KV cost of `candidate` (see the module docs).
pub fn kv_cost(candidate: &Candidate, prompt: Prompt, overlap_weight: f64) -> f64 {
    let bs = prompt.block_size.max(1) as f64;
    let cached_tokens = (candidate.overlap_blocks as f64 * bs).min(prompt.tokens as f64);
    let new = (prompt.tokens as f64 - cached_tokens) / bs;
    let queued = candidate.load.prefill_tokens as f64 / bs;
    overlap_weight * new + queued + candidate.load.active_blocks as f64
}

/// Picks an index into `candidates` (which must not be empty) by `policy`. `round_robin` is the
/// caller's counter for that policy.
pub fn choose(
    policy: RoutingPolicy,
    candidates: &[Candidate],
    prompt: Prompt,
    weights: CostWeights,
    round_robin: usize,
    rng: &mut impl Rng,
) -> usize {
    let n = candidates.len();
    debug_assert!(n > 0);
    let work = |i: usize| candidates[i].load.blocks_of_work(prompt.block_size);
    match policy {
        RoutingPolicy::RoundRobin => round_robin % n,
        RoutingPolicy::Random => rng.random_range(0..n),
        RoutingPolicy::LeastLoaded => lowest(&(0..n).collect::<Vec<_>>(), work, |_| 0.0, rng),
        RoutingPolicy::PowerOfTwo => {
            if n == 1 {
                return 0;
            }
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            if work(b) < work(a) { b } else { a }
        }
        RoutingPolicy::Kv => choose_kv(candidates, prompt, weights, rng),
    }
}

fn choose_kv(
    candidates: &[Candidate],
    prompt: Prompt,
    weights: CostWeights,
    rng: &mut impl Rng,
) -> usize {
    let work: Vec<f64> = candidates
        .iter()
        .map(|c| c.load.blocks_of_work(prompt.block_size))
        .collect();
    let mean = work.iter().sum::<f64>() / work.len() as f64;
    // At low load one request is a large share of the mean: half a prompt above it is noise.
    let prompt_blocks = prompt.tokens as f64 / prompt.block_size.max(1) as f64;
    let limit = (weights.hotspot_factor * mean).max(mean + prompt_blocks / 2.0);
    let mut allowed: Vec<usize> = (0..candidates.len())
        .filter(|&i| weights.hotspot_factor <= 0.0 || work[i] <= limit)
        .collect();
    if allowed.is_empty() {
        allowed = (0..candidates.len()).collect();
    }
    let cost = |i: usize| kv_cost(&candidates[i], prompt, weights.overlap_weight);
    if weights.temperature > 0.0 {
        return softmax_sample(&allowed, cost, weights.temperature, rng);
    }
    lowest(&allowed, cost, |i| work[i], rng)
}

/// The index with the lowest `primary`; near-ties by the lowest `secondary`, then at random.
fn lowest(
    indices: &[usize],
    primary: impl Fn(usize) -> f64,
    secondary: impl Fn(usize) -> f64,
    rng: &mut impl Rng,
) -> usize {
    const EPSILON: f64 = 1e-3;
    let best = indices
        .iter()
        .map(|&i| primary(i))
        .fold(f64::INFINITY, f64::min);
    let near: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| primary(i) <= best + EPSILON)
        .collect();
    let least = near
        .iter()
        .map(|&i| secondary(i))
        .fold(f64::INFINITY, f64::min);
    let ties: Vec<usize> = near
        .into_iter()
        .filter(|&i| secondary(i) <= least + EPSILON)
        .collect();
    ties[rng.random_range(0..ties.len())]
}

fn softmax_sample(
    indices: &[usize],
    cost: impl Fn(usize) -> f64,
    temperature: f64,
    rng: &mut impl Rng,
) -> usize {
    let costs: Vec<f64> = indices.iter().map(|&i| cost(i)).collect();
    let min = costs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = costs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if max > min { max - min } else { 1.0 };
    let weights: Vec<f64> = costs
        .iter()
        .map(|c| (-(c - min) / span / temperature).exp())
        .collect();
    let mut pick = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (k, w) in weights.iter().enumerate() {
        if pick < *w {
            return indices[k];
        }
        pick -= w;
    }
    indices[indices.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn candidate(worker: u64, overlap: u32, active: u64, prefill: u64) -> Candidate {
        Candidate {
            worker: InstanceId(worker),
            overlap_blocks: overlap,
            load: Load {
                active_blocks: active,
                prefill_tokens: prefill,
                requests: 0,
                total_blocks: Some(10_000),
            },
        }
    }

    const PROMPT: Prompt = Prompt {
        tokens: 1024,
        block_size: 16,
    };

    fn kv(candidates: &[Candidate], weights: CostWeights) -> u64 {
        let mut rng = StdRng::seed_from_u64(7);
        let i = choose(RoutingPolicy::Kv, candidates, PROMPT, weights, 0, &mut rng);
        candidates[i].worker.0
    }

    #[test]
    fn cache_affinity_wins_when_loads_are_equal() {
        let c = [
            candidate(1, 0, 100, 0),
            candidate(2, 48, 100, 0),
            candidate(3, 10, 100, 0),
        ];
        assert_eq!(kv(&c, CostWeights::default()), 2);
    }

    #[test]
    fn load_wins_when_one_worker_is_saturated() {
        // Worker 2 holds the whole prompt but runs 2000 blocks of decode; the others are idle.
        let c = [
            candidate(1, 0, 10, 0),
            candidate(2, 64, 2000, 0),
            candidate(3, 0, 12, 0),
        ];
        assert_eq!(kv(&c, CostWeights::default()), 1);
        // A long prefill queue counts as well.
        let c = [candidate(1, 0, 10, 0), candidate(2, 64, 10, 64_000)];
        assert_eq!(kv(&c, CostWeights::default()), 1);
    }

    #[test]
    fn the_hotspot_guard_overrides_a_cheaper_cost() {
        // With overlap weighted heavily, worker 2's hit outweighs its load...
        let heavy = CostWeights {
            overlap_weight: 20.0,
            hotspot_factor: 0.0,
            ..Default::default()
        };
        let c = [
            candidate(1, 0, 100, 0),
            candidate(2, 64, 600, 0),
            candidate(3, 0, 100, 0),
        ];
        assert_eq!(kv(&c, heavy), 2);
        // ...unless it is far above the mean (600 > 1.5 × 266, and > 266 + 64 / 2).
        let guarded = CostWeights {
            hotspot_factor: 1.5,
            ..heavy
        };
        assert_ne!(kv(&c, guarded), 2);
    }

    #[test]
    fn ties_spread_over_equal_workers() {
        let c: Vec<Candidate> = (1..=4).map(|w| candidate(w, 0, 50, 0)).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let i = choose(
                RoutingPolicy::Kv,
                &c,
                PROMPT,
                CostWeights::default(),
                0,
                &mut rng,
            );
            seen.insert(i);
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn other_policies() {
        let c = [
            candidate(1, 0, 30, 0),
            candidate(2, 0, 5, 0),
            candidate(3, 0, 20, 0),
        ];
        let mut rng = StdRng::seed_from_u64(3);
        let w = CostWeights::default();
        let pick = |p, rr, rng: &mut StdRng| choose(p, &c, PROMPT, w, rr, rng);
        assert_eq!(pick(RoutingPolicy::RoundRobin, 4, &mut rng), 1);
        assert_eq!(pick(RoutingPolicy::LeastLoaded, 0, &mut rng), 1);
        for _ in 0..50 {
            // Power of two never picks the most loaded of three.
            assert_ne!(pick(RoutingPolicy::PowerOfTwo, 0, &mut rng), 0);
            assert!(pick(RoutingPolicy::Random, 0, &mut rng) < 3);
        }
        let soft = CostWeights {
            temperature: 0.5,
            ..w
        };
        let mut counts = [0; 3];
        for _ in 0..600 {
            counts[choose(RoutingPolicy::Kv, &c, PROMPT, soft, 0, &mut rng)] += 1;
        }
        assert!(counts[1] > counts[2] && counts[2] > counts[0], "{counts:?}");
        assert_eq!("power-of-two".parse(), Ok(RoutingPolicy::PowerOfTwo));
        assert!("fastest".parse::<RoutingPolicy>().is_err());
    }
}
