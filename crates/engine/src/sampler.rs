//! Per-sequence token sampling: penalties, then greedy or temperature sampling with top-k, top-p
//! and min-p, on one row of logits at a time.
//!
//! Invariants:
//! - **Batch independence.** Each [`SequenceSampler`] owns its RNG (seeded from the request's
//!   `seed`, else from the engine's fallback seed) and its penalty state, so a seeded request
//!   produces the same tokens whatever else is in the batch and in whatever order rows are sampled.
//! - **Reproducibility.** Given the same options, prompt, seed and logits, the output is the same
//!   on every platform and in every release: the RNG sequence is frozen (see [`crate::rng`]); the
//!   exponential is the portable `exp_nonpositive` (basic IEEE operations only, no libm; the AVX2
//!   build of the same code gives the same bits); every sum runs in a fixed order; and every
//!   ordering of candidates is total (weight descending, then token id ascending), so nothing
//!   depends on the sort algorithms in `std`. A random-path `sample` consumes exactly one
//!   `next_f64` draw, whatever the row; greedy sampling and `record` consume none. Changing any of
//!   this changes seeded outputs: treat it as a breaking change.
//! - **Semantics follow vLLM**, in this order:
//!   1. repetition penalty (HF/CTRL): for every token in the prompt or the generated output,
//!      `logit / penalty` if `logit > 0`, else `logit * penalty`;
//!   2. frequency penalty: `logit -= penalty * count`, count = occurrences in the generated output;
//!   3. presence penalty: `logit -= penalty` if the token occurs in the generated output;
//!   4. temperature `< 1e-5` (vLLM's epsilon) or NaN: greedy argmax, ties to the lowest id;
//!   5. otherwise divide by the temperature, then top-k (keeps every token whose logit is at least
//!      the k-th largest, so ties at the boundary are kept, as in vLLM and HF), then top-p (the
//!      smallest set, by probability descending, whose mass reaches `top_p`; at least one token),
//!      then min-p (drops tokens whose probability is below `min_p` times the largest; `min_p` is
//!      capped at 1), then softmax over what is left and one draw.
//! - **Never panics on logits.** NaN logits are never chosen; `-inf` means "never". An empty row,
//!   or one with no token above `-inf`, yields token 0. `+inf` logits share all the probability
//!   equally (greedy: the lowest such id). Prompt or recorded ids outside the row are ignored by
//!   the penalties. Penalty values that are not finite (or a repetition penalty `<= 0`) count as
//!   disabled; the frontend validates them anyway.
//! - **No per-call allocation** once the scratch buffers kept in the sampler have grown (to at
//!   most 8 bytes per vocabulary entry, for large top-p or min-p candidate sets), and work is
//!   skipped for disabled features: penalty state is kept only for penalties that are on; plain
//!   temperature sampling walks the row in place; top-k selects in one pass (no sort); top-p skips
//!   tokens that cannot be in the nucleus and sorts only the bucket of weights where it ends.
//! - Weights (probabilities relative to the most likely token) below `e^-87` count as 0.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use turbine_protocols::SamplingOptions;

use crate::executor::Draw;
use crate::rng::Rng;

/// Temperatures below this are greedy (vLLM's `_SAMPLING_EPS`).
const GREEDY_TEMPERATURE: f32 = 1e-5;

/// Sums and sampling walks go over blocks of this many weights; scans skip blocks this size.
const BLOCK: usize = 64;

/// Top-p sorts candidate sets up to this size outright; larger ones go through a histogram first.
const NUCLEUS_SORT_MAX: usize = 512;

/// Mantissa bits kept in a top-p histogram bucket (weights within about 3% share a bucket).
const BUCKET_MANTISSA_BITS: u32 = 5;

/// Buckets for weights in `(0, 1]`: every positive f32 up to 1.0, keyed by its high bits.
const BUCKETS: usize = ((1.0f32.to_bits() >> (23 - BUCKET_MANTISSA_BITS)) + 1) as usize;

/// Sampling state of one sequence: its options, its RNG, its penalty bookkeeping and reusable
/// scratch buffers. See the module documentation for the invariants.
#[derive(Debug, Clone)]
pub struct SequenceSampler {
    options: SamplingOptions,
    rng: Rng,
    greedy: bool,
    /// `Some(penalty)` when the repetition penalty is on.
    repetition: Option<f32>,
    /// True when the frequency or presence penalty is on.
    output_penalties: bool,
    /// Distinct prompt and generated tokens; kept only when the repetition penalty is on.
    seen: HashSet<u32>,
    /// Occurrences of each generated token; kept only when frequency or presence penalty is on.
    counts: HashMap<u32, u32>,
    scratch: Scratch,
}

/// Buffers reused between calls, so that sampling stops allocating once they have grown.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// Top-k buffer, then the candidates with their weights.
    candidates: Vec<Candidate>,
    /// Top-p: the candidates of the bucket where the nucleus ends.
    boundary: Vec<Candidate>,
    /// Top-p: weight per bucket.
    bucket_mass: Vec<f64>,
    /// Weight per block of a dense row.
    block_sums: Vec<f64>,
}

/// A token and a value: its logit while selecting top-k, its unnormalized probability after.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    value: f32,
    id: u32,
}

/// Value descending, then id ascending: a total order, so results do not depend on the sort.
#[inline]
fn by_value_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.value.total_cmp(&a.value).then(a.id.cmp(&b.id))
}

impl SequenceSampler {
    /// `fallback_seed` is used when the request has no seed (the engine passes a fresh random one).
    pub fn new(options: SamplingOptions, prompt: &[u32], fallback_seed: u64) -> Self {
        let rp = options.repetition_penalty;
        let repetition = (rp.is_finite() && rp > 0.0 && rp != 1.0).then_some(rp);
        let enabled = |p: f32| p.is_finite() && p != 0.0;
        let output_penalties =
            enabled(options.frequency_penalty) || enabled(options.presence_penalty);
        let seen = match repetition {
            Some(_) => prompt.iter().copied().collect(),
            None => HashSet::new(),
        };
        Self {
            rng: Rng::new(options.seed.unwrap_or(fallback_seed)),
            greedy: options.temperature.is_nan() || options.temperature < GREEDY_TEMPERATURE,
            repetition,
            output_penalties,
            seen,
            counts: HashMap::new(),
            scratch: Scratch::default(),
            options,
        }
    }

    /// The options this sampler was built with.
    pub fn options(&self) -> &SamplingOptions {
        &self.options
    }

    /// Samples the next token from `logits` (one row, vocab-sized; may be modified in place) and
    /// records it.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.apply_penalties(logits);
        let u = self.next_u();
        self.pick(logits, u)
    }

    /// The next token's draw for an executor that samples by itself, consuming the random
    /// number `sample` would; `None` (consuming nothing) when penalties need the logits here.
    pub fn next_draw(&mut self) -> Option<Draw> {
        if self.repetition.is_some() || self.output_penalties {
            return None;
        }
        let u = self.next_u();
        let o = &self.options;
        Some(Draw {
            temperature: if self.greedy { 0.0 } else { o.temperature },
            top_k: o.top_k,
            top_p: o.top_p,
            min_p: o.min_p,
            u,
        })
    }

    /// `sample` with a draw already taken by `next_draw` (the executor gave logits after all),
    /// and records the token.
    pub fn sample_drawn(&mut self, logits: &mut [f32], draw: &Draw) -> u32 {
        self.pick(logits, draw.u)
    }

    /// The uniform number of the next token: one draw of the stream, none when greedy.
    fn next_u(&mut self) -> f64 {
        if self.greedy {
            0.0
        } else {
            self.rng.next_f64()
        }
    }

    /// Greedy or random choice from penalized logits with the draw `u`, recorded.
    fn pick(&mut self, logits: &mut [f32], u: f64) -> u32 {
        let token = if self.greedy {
            argmax(logits)
        } else {
            self.sample_random(logits, u)
        };
        self.record(token);
        token
    }

    /// Records a token produced without sampling (e.g. by a mock executor or a forced token), so
    /// penalties stay right.
    pub fn record(&mut self, token: u32) {
        if self.repetition.is_some() {
            self.seen.insert(token);
        }
        if self.output_penalties {
            let c = self.counts.entry(token).or_insert(0);
            *c = c.saturating_add(1);
        }
    }

    /// Penalties in vLLM's order: repetition, frequency, presence.
    fn apply_penalties(&self, logits: &mut [f32]) {
        if let Some(penalty) = self.repetition {
            for &t in &self.seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
                }
            }
        }
        if self.output_penalties {
            let finite_or_zero = |p: f32| if p.is_finite() { p } else { 0.0 };
            let frequency = finite_or_zero(self.options.frequency_penalty);
            let presence = finite_or_zero(self.options.presence_penalty);
            for (&t, &count) in &self.counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= frequency * count as f32;
                    *l -= presence;
                }
            }
        }
    }

    /// Temperature, top-k, top-p, min-p, then one draw `u` in `[0, 1)`.
    fn sample_random(&mut self, logits: &mut [f32], u: f64) -> u32 {
        let o = &self.options;
        let inv_t = 1.0 / o.temperature;
        let top_k = o.top_k as usize;
        let top_p = (o.top_p < 1.0).then_some(o.top_p.max(0.0) as f64);
        // Above 1 min-p would drop even the most likely token; at 1 it keeps the ties for first.
        let min_p = (o.min_p > 0.0).then_some(o.min_p.min(1.0));
        let Scratch {
            candidates: cands,
            boundary,
            bucket_mass,
            block_sums,
        } = &mut self.scratch;
        cands.clear();

        // Top-k: leave the surviving (logit, id) pairs in `cands`, in id order.
        let sparse = top_k > 0 && top_k < logits.len() && top_k_candidates(logits, top_k, cands);

        // Weights exp((logit - max) / T): in `cands` (sparse) or in place in `logits` (dense).
        let total = if sparse {
            let max = cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.value));
            for c in cands.iter_mut() {
                c.value = weight(c.value, max, inv_t);
            }
            sum_candidates(cands, block_sums)
        } else {
            let max = max_valid(logits);
            if max == f32::NEG_INFINITY {
                return 0;
            }
            weigh_row(logits, max, inv_t, block_sums)
        };
        if top_p.is_none() && min_p.is_none() {
            return if sparse {
                walk_candidates(cands, block_sums, u * total)
            } else {
                walk_row(logits, block_sums, u * total)
            };
        }

        // Drop what min-p drops, and what cannot be in the nucleus: a token in the nucleus has
        // weight > (1 - top_p) * total / n, since every token at or below it (at most n of them)
        // together carry more than (1 - top_p) of the mass. 0.999 keeps rounding on the safe side.
        // The smallest positive f32 as a floor keeps zero weights out.
        let mut threshold = min_p.unwrap_or(0.0).max(f32::from_bits(1));
        if let Some(p) = top_p {
            let n = if sparse { cands.len() } else { logits.len() };
            let bound = ((1.0 - p) * total / n as f64 * 0.999) as f32;
            threshold = threshold.max(bound);
        }
        match (top_p, sparse) {
            (Some(p), true) => nucleus_sparse(cands, p * total, threshold, boundary, bucket_mass),
            (Some(p), false) => {
                let target = p * total;
                nucleus_dense(logits, target, threshold, cands, boundary, bucket_mass)
            }
            (None, true) => cands.retain(|c| c.value >= threshold),
            (None, false) => collect_above(logits, threshold, cands),
        }
        let kept = sum_candidates(cands, block_sums);
        walk_candidates(cands, block_sums, u * kept)
    }
}

/// Whether `f` holds for some element; evaluates all of them, without branches, so it vectorizes.
#[inline(always)]
fn any(xs: &[f32], f: impl Fn(f32) -> bool) -> bool {
    xs.iter().fold(false, |acc, &x| acc | f(x))
}

/// Greedy: the largest logit, lowest id on ties, NaN never; 0 if nothing is above `-inf`.
fn argmax(logits: &[f32]) -> u32 {
    let max = max_valid(logits);
    if max == f32::NEG_INFINITY {
        return 0;
    }
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        if any(block, |l| l == max)
            && let Some(i) = block.iter().position(|&l| l == max)
        {
            return (b * BLOCK + i) as u32;
        }
    }
    0
}

/// The largest non-NaN value (`-inf` for an empty or all-NaN row). Eight lanes so it vectorizes.
fn max_valid(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            // NaN compares false and is skipped.
            *m = if x > *m { x } else { *m };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &x in lanes.iter().chain(chunks.remainder()) {
        max = if x > max { x } else { max };
    }
    max
}

/// The unnormalized probability of `logit` at inverse temperature `inv_t`, given the maximum
/// `max` (finite or `+inf`) of the values it is compared with. NaN and `-inf` give 0; tokens
/// equal to `max` give 1.
#[inline]
fn weight(logit: f32, max: f32, inv_t: f32) -> f32 {
    if max == f32::INFINITY {
        if logit == max { 1.0 } else { 0.0 }
    } else {
        // exp(0) is exactly 1, so the maximum gets weight 1 here too.
        exp_nonpositive((logit - max) * inv_t)
    }
}

/// [`weight`] over a whole row, in place, recording the sum of each block of `BLOCK` weights
/// in `block_sums`; returns their sum, added in order. On x86-64 CPUs with AVX2 the same code
/// runs compiled for AVX2: wider vectors, the same operations in the same order, so the same
/// bits (no FMA is enabled, and Rust never fuses or reorders float operations).
fn weigh_row(row: &mut [f32], max: f32, inv_t: f32, block_sums: &mut Vec<f64>) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { weigh_row_avx2(row, max, inv_t, block_sums) };
    }
    weigh_row_portable(row, max, inv_t, block_sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn weigh_row_avx2(row: &mut [f32], max: f32, inv_t: f32, block_sums: &mut Vec<f64>) -> f64 {
    weigh_row_portable(row, max, inv_t, block_sums)
}

#[inline(always)]
fn weigh_row_portable(row: &mut [f32], max: f32, inv_t: f32, block_sums: &mut Vec<f64>) -> f64 {
    block_sums.clear();
    let mut total = 0.0;
    for block in row.chunks_mut(BLOCK) {
        if max == f32::INFINITY {
            for l in block.iter_mut() {
                *l = if *l == max { 1.0 } else { 0.0 };
            }
        } else {
            for l in block.iter_mut() {
                *l = exp_nonpositive((*l - max) * inv_t);
            }
        }
        let s = block_sum(block);
        block_sums.push(s);
        total += s;
    }
    total
}

/// `e^x` for `x <= 0`, from basic IEEE operations only (so it gives the same bits everywhere and
/// vectorizes): Cephes' `expf` range reduction and polynomial, within 2 ulp. Returns 0 for
/// `x < -87`, for `-inf` and for NaN; `exp_nonpositive(0.0) == 1.0` exactly.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let in_range = x >= -87.0;
    let xc = if in_range { x } else { -87.0 };
    // n = round(xc * log2 e), in [-126, 0].
    let shifted = xc * LOG2E + ROUND;
    let nf = shifted - ROUND;
    let n = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let r = xc - nf * LN2_HI - nf * LN2_LO;
    let r2 = r * r;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let poly = p * r2 + r + 1.0;
    // 2^n, a normal number since n >= -126.
    let scale = f32::from_bits(n.wrapping_add(127) << 23);
    if in_range { poly * scale } else { 0.0 }
}

/// Finds the k-th largest valid logit `t` (1 <= k < len) and fills `out` with every token whose
/// logit is `>= t`, in id order. Returns false, leaving `out` empty, when fewer than `k` logits
/// are above `-inf` (top-k then keeps everything).
///
/// One pass keeps a buffer of tokens above a running threshold; whenever it fills, a selection
/// keeps its k largest and raises the threshold to the k-th. Linear time whatever the order.
fn top_k_candidates(logits: &[f32], k: usize, out: &mut Vec<Candidate>) -> bool {
    let cap = 2 * k + 1024;
    let mut threshold = f32::NEG_INFINITY;
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        // NaN and -inf never pass.
        if !any(block, |l| l > threshold) {
            continue;
        }
        for (i, &l) in block.iter().enumerate() {
            if l > threshold {
                out.push(Candidate {
                    value: l,
                    id: (b * BLOCK + i) as u32,
                });
                if out.len() == cap {
                    out.select_nth_unstable_by(k - 1, by_value_desc);
                    out.truncate(k);
                    threshold = out[k - 1].value;
                }
            }
        }
    }
    if out.len() < k {
        out.clear();
        return false;
    }
    out.select_nth_unstable_by(k - 1, by_value_desc);
    let kth = out[k - 1].value;
    out.clear();
    collect_above(logits, kth, out);
    true
}

/// Appends every `(value, id)` of `row` with `value >= threshold` to `out`, in id order.
fn collect_above(row: &[f32], threshold: f32, out: &mut Vec<Candidate>) {
    for (b, block) in row.chunks(BLOCK).enumerate() {
        if !any(block, |x| x >= threshold) {
            continue;
        }
        for (i, &x) in block.iter().enumerate() {
            if x >= threshold {
                out.push(Candidate {
                    value: x,
                    id: (b * BLOCK + i) as u32,
                });
            }
        }
    }
}

// Top-p keeps the smallest set of candidates, taken by weight descending and id ascending, whose
// weight reaches the target, and at least one. Small sets are sorted. Otherwise a histogram of
// weight per bucket (a bucket is the high bits of a weight, which is in (0, 1]) finds the bucket
// where the nucleus ends: everything above it is kept in id order, and only that bucket is
// sorted and walked. Either way the kept candidates end up in `cands` in a deterministic order.

/// The top-p bucket of a weight in `(0, 1]`: its bits without the low mantissa bits.
#[inline(always)]
fn bucket(w: f32) -> usize {
    (w.to_bits() >> (23 - BUCKET_MANTISSA_BITS)) as usize
}

/// The smallest weight in bucket `b`.
fn bucket_floor(b: usize) -> f32 {
    f32::from_bits((b as u32) << (23 - BUCKET_MANTISSA_BITS))
}

/// Adds `w` to its bucket (weights above 1.0, which do not occur, are ignored, not a panic).
#[inline(always)]
fn add_to_bucket(bucket_mass: &mut [f64], w: f32) {
    if let Some(m) = bucket_mass.get_mut(bucket(w)) {
        *m += w as f64;
    }
}

/// The bucket where the nucleus ends and the weight of the buckets above it, or `None` when
/// the buckets never reach `target` (rounding, or min-p removed the tail: keep everything).
fn boundary_bucket(bucket_mass: &[f64], target: f64) -> Option<(usize, f64)> {
    let mut above = 0.0f64;
    for (b, &m) in bucket_mass.iter().enumerate().rev() {
        if m > 0.0 {
            if above + m >= target {
                return Some((b, above));
            }
            above += m;
        }
    }
    None
}

/// Top-p over sparse candidates (weights in place), after dropping those below `threshold`.
fn nucleus_sparse(
    cands: &mut Vec<Candidate>,
    target: f64,
    threshold: f32,
    boundary: &mut Vec<Candidate>,
    bucket_mass: &mut Vec<f64>,
) {
    cands.retain(|c| c.value >= threshold);
    if cands.len() <= NUCLEUS_SORT_MAX {
        cands.sort_unstable_by(by_value_desc);
        truncate_at(cands, 0, 0.0, target);
        return;
    }
    bucket_mass.clear();
    bucket_mass.resize(BUCKETS, 0.0);
    for c in cands.iter() {
        add_to_bucket(bucket_mass, c.value);
    }
    let Some((last, above)) = boundary_bucket(bucket_mass, target) else {
        return;
    };
    let lower = bucket_floor(last + 1);
    boundary.clear();
    cands.retain(|c| {
        if bucket(c.value) == last {
            boundary.push(*c);
        }
        c.value >= lower
    });
    finish_nucleus(cands, boundary, above, target);
}

/// Top-p over a dense row of weights, ignoring those below `threshold`; fills `cands`.
fn nucleus_dense(
    row: &[f32],
    target: f64,
    threshold: f32,
    cands: &mut Vec<Candidate>,
    boundary: &mut Vec<Candidate>,
    bucket_mass: &mut Vec<f64>,
) {
    bucket_mass.clear();
    bucket_mass.resize(BUCKETS, 0.0);
    // Blocks without a weight above the threshold are skipped; in the others every weight is
    // counted, without a branch. Weights below the threshold are never in the nucleus, so they
    // cannot move the boundary: they only add to buckets the walk from the top does not reach
    // first, and the bucket holding the threshold is then walked over kept weights only.
    for block in row.chunks(BLOCK) {
        if any(block, |w| w >= threshold) {
            for &w in block {
                add_to_bucket(bucket_mass, w);
            }
        }
    }
    let Some((last, above)) = boundary_bucket(bucket_mass, target) else {
        collect_above(row, threshold, cands);
        return;
    };
    let lower = bucket_floor(last + 1).max(threshold);
    boundary.clear();
    for (b, block) in row.chunks(BLOCK).enumerate() {
        if !any(block, |w| w >= threshold) {
            continue;
        }
        for (i, &w) in block.iter().enumerate() {
            let c = Candidate {
                value: w,
                id: (b * BLOCK + i) as u32,
            };
            if w >= lower {
                cands.push(c);
            } else if w >= threshold && bucket(w) == last {
                boundary.push(c);
            }
        }
    }
    finish_nucleus(cands, boundary, above, target);
}

/// Appends the boundary bucket, sorted, to the candidates kept above it (weighing `above`), and
/// cuts it where the running weight reaches `target`.
fn finish_nucleus(cands: &mut Vec<Candidate>, boundary: &mut [Candidate], above: f64, target: f64) {
    boundary.sort_unstable_by(by_value_desc);
    let start = cands.len();
    cands.extend_from_slice(boundary);
    truncate_at(cands, start, above, target);
}

/// Walks `cands[start..]` adding weights to `cum` and truncates after the first candidate where
/// `cum` reaches `target`, keeping at least one candidate overall.
fn truncate_at(cands: &mut Vec<Candidate>, start: usize, mut cum: f64, target: f64) {
    for j in start..cands.len() {
        cum += cands[j].value as f64;
        if cum >= target {
            cands.truncate(j + 1);
            return;
        }
    }
}

/// Sum of a block of weights, eight f64 lanes combined in a fixed order.
#[inline(always)]
fn block_sum(ws: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = ws.chunks_exact(8);
    for chunk in &mut chunks {
        for (s, &w) in lanes.iter_mut().zip(chunk) {
            *s += w as f64;
        }
    }
    for (s, &w) in lanes.iter_mut().zip(chunks.remainder()) {
        *s += w as f64;
    }
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// The first token of a weighed row where the running weight exceeds `x`, finding its block
/// through `block_sums` first. Falls back to the last positive weight of the block when rounding
/// runs past its end, and to 0 when no block has weight.
fn walk_row(row: &[f32], block_sums: &[f64], x: f64) -> u32 {
    let mut cum = 0.0f64;
    let mut found = None;
    for (b, &s) in block_sums.iter().enumerate() {
        if s > 0.0 {
            found = Some((b, cum));
            if cum + s > x {
                break;
            }
            cum += s;
        }
    }
    let Some((b, mut cum)) = found else { return 0 };
    let base = b * BLOCK;
    let block = &row[base..(base + BLOCK).min(row.len())];
    let mut last = base;
    for (i, &w) in block.iter().enumerate() {
        if w > 0.0 {
            cum += w as f64;
            last = base + i;
            if cum > x {
                break;
            }
        }
    }
    last as u32
}

/// Total weight of the candidates, recording the sum of each block of `BLOCK` candidates in
/// `block_sums`; returns their sum, added in order.
fn sum_candidates(cands: &[Candidate], block_sums: &mut Vec<f64>) -> f64 {
    block_sums.clear();
    let mut total = 0.0;
    for block in cands.chunks(BLOCK) {
        let mut lanes = [0.0f64; 8];
        let mut chunks = block.chunks_exact(8);
        for chunk in &mut chunks {
            for (s, c) in lanes.iter_mut().zip(chunk) {
                *s += c.value as f64;
            }
        }
        for (s, c) in lanes.iter_mut().zip(chunks.remainder()) {
            *s += c.value as f64;
        }
        let s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
            + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
        block_sums.push(s);
        total += s;
    }
    total
}

/// The first candidate where the running weight exceeds `x`, finding its block through
/// `block_sums` (from [`sum_candidates`]) first; the last candidate of that block when rounding
/// runs past its end; 0 if there are no candidates.
fn walk_candidates(cands: &[Candidate], block_sums: &[f64], x: f64) -> u32 {
    let mut cum = 0.0f64;
    let mut found = None;
    for (b, &s) in block_sums.iter().enumerate() {
        if s > 0.0 {
            found = Some((b, cum));
            if cum + s > x {
                break;
            }
            cum += s;
        }
    }
    let Some((b, mut cum)) = found else {
        return cands.last().map_or(0, |c| c.id);
    };
    let block = &cands[b * BLOCK..((b + 1) * BLOCK).min(cands.len())];
    for c in block {
        cum += c.value as f64;
        if cum > x {
            return c.id;
        }
    }
    block.last().map_or(0, |c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(temperature: f32) -> SamplingOptions {
        SamplingOptions {
            temperature,
            seed: Some(1234),
            ..SamplingOptions::default()
        }
    }

    /// Deterministic pseudo-logits in roughly [-scale, scale].
    fn logits(vocab: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..vocab)
            .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
            .collect()
    }

    fn softmax(ls: &[f32], t: f32) -> Vec<f64> {
        let max = ls.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = ls
            .iter()
            .map(|&l| ((l as f64 - max) / t as f64).exp())
            .collect();
        let z: f64 = e.iter().sum();
        e.iter().map(|x| x / z).collect()
    }

    #[test]
    fn exp_matches_std() {
        let mut x = 0.0f32;
        while x > -90.0 {
            let got = exp_nonpositive(x);
            let want = (x as f64).exp();
            if x >= -87.0 {
                let rel = ((got as f64 - want) / want).abs();
                assert!(rel < 3e-7, "exp({x}) = {got}, want {want}");
            } else {
                assert_eq!(got, 0.0);
            }
            x -= 0.013;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(f32::NAN), 0.0);
    }

    #[test]
    fn weighing_is_the_same_with_and_without_avx2() {
        let row = logits(10_000 + 37, 9, 30.0);
        let (mut a, mut b) = (row.clone(), row);
        let (mut sa, mut sb) = (Vec::new(), Vec::new());
        let ta = weigh_row(&mut a, 30.0, 1.3, &mut sa);
        let tb = weigh_row_portable(&mut b, 30.0, 1.3, &mut sb);
        assert_eq!(ta.to_bits(), tb.to_bits());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(sa, sb);
    }

    #[test]
    fn a_drawn_sample_equals_the_sampled_one() {
        let options = SamplingOptions {
            temperature: 0.8,
            top_p: 0.9,
            seed: Some(3),
            ..Default::default()
        };
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let mut a = SequenceSampler::new(options.clone(), &[], 0);
        let mut b = SequenceSampler::new(options, &[], 0);
        for _ in 0..20 {
            let token = a.sample(&mut logits.clone());
            let draw = b.next_draw().unwrap();
            assert_eq!(b.sample_drawn(&mut logits.clone(), &draw), token);
        }
    }

    #[test]
    fn penalties_keep_sampling_on_the_host() {
        for options in [
            SamplingOptions {
                presence_penalty: 0.5,
                ..Default::default()
            },
            SamplingOptions {
                repetition_penalty: 1.2,
                ..Default::default()
            },
        ] {
            assert_eq!(SequenceSampler::new(options, &[1], 0).next_draw(), None);
        }
        let greedy = SamplingOptions {
            temperature: 0.0,
            ..Default::default()
        };
        let draw = SequenceSampler::new(greedy, &[1], 0).next_draw().unwrap();
        assert_eq!((draw.temperature, draw.u), (0.0, 0.0));
    }

    #[test]
    fn greedy_picks_argmax() {
        let mut s = SequenceSampler::new(options(0.0), &[], 0);
        let mut row = logits(1000, 5, 4.0);
        row[617] = 10.0;
        assert_eq!(s.sample(&mut row.clone()), 617);
        // Ties go to the lowest id; NaN is never chosen.
        row[3] = 10.0;
        row[0] = f32::NAN;
        assert_eq!(s.sample(&mut row.clone()), 3);
        // A tiny temperature is greedy too.
        let mut s = SequenceSampler::new(options(1e-6), &[], 0);
        assert_eq!(s.sample(&mut row), 3);
    }

    #[test]
    fn same_seed_same_tokens() {
        let run = |seed: u64| -> Vec<u32> {
            let o = SamplingOptions {
                seed: Some(seed),
                temperature: 0.9,
                top_p: 0.9,
                top_k: 40,
                ..SamplingOptions::default()
            };
            let mut s = SequenceSampler::new(o, &[1, 2, 3], 99);
            (0..50)
                .map(|step| s.sample(&mut logits(500, step, 3.0)))
                .collect()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        // Without a seed, the fallback seed decides.
        let o = SamplingOptions::default();
        let draw = |fallback| {
            let mut s = SequenceSampler::new(o.clone(), &[], fallback);
            (0..20)
                .map(|step| s.sample(&mut logits(500, step, 3.0)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn batch_independence() {
        let o = |seed| SamplingOptions {
            seed: Some(seed),
            temperature: 1.0,
            top_p: 0.95,
            presence_penalty: 0.5,
            ..SamplingOptions::default()
        };
        let steps = 40;
        let alone: Vec<u32> = {
            let mut s = SequenceSampler::new(o(11), &[4, 5], 0);
            (0..steps)
                .map(|i| s.sample(&mut logits(300, i, 2.0)))
                .collect()
        };
        // Same request in a "batch" with others, sampled in a varying order.
        let mut batch: Vec<SequenceSampler> = vec![
            SequenceSampler::new(o(1), &[9], 1),
            SequenceSampler::new(o(11), &[4, 5], 0),
            SequenceSampler::new(o(2), &[], 2),
            SequenceSampler::new(o(11), &[4, 5], 0),
        ];
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..steps {
            let order: &[usize] = if i % 2 == 0 {
                &[0, 1, 2, 3]
            } else {
                &[3, 2, 1, 0]
            };
            for &r in order {
                let t = batch[r].sample(&mut logits(300, i, 2.0));
                match r {
                    1 => a.push(t),
                    3 => b.push(t),
                    _ => {}
                }
            }
        }
        assert_eq!(a, alone);
        assert_eq!(b, alone);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let o = SamplingOptions {
            top_k: 1,
            seed: Some(3),
            ..SamplingOptions::default()
        };
        let mut s = SequenceSampler::new(o, &[], 0);
        let mut g = SequenceSampler::new(options(0.0), &[], 0);
        for i in 0..100 {
            let row = logits(2000, i, 5.0);
            assert_eq!(s.sample(&mut row.clone()), g.sample(&mut row.clone()));
        }
    }

    /// Draws many tokens from a fixed row and returns how often each token came out.
    fn histogram(o: SamplingOptions, row: &[f32], draws: usize) -> Vec<usize> {
        let mut s = SequenceSampler::new(o, &[], 0);
        let mut hist = vec![0; row.len()];
        for _ in 0..draws {
            hist[s.sample(&mut row.to_vec()) as usize] += 1;
        }
        hist
    }

    // Probabilities at temperature 1: 0.4, 0.3, 0.15, 0.1, 0.05.
    fn crafted() -> Vec<f32> {
        [0.4f32, 0.3, 0.15, 0.1, 0.05]
            .iter()
            .map(|p| p.ln())
            .collect()
    }

    #[test]
    fn filters_never_sample_outside_their_set() {
        let row = crafted();
        let base = SamplingOptions {
            seed: Some(17),
            ..SamplingOptions::default()
        };
        let cases = [
            // top-k 2 keeps {0, 1}.
            (
                SamplingOptions {
                    top_k: 2,
                    ..base.clone()
                },
                2,
            ),
            // top-p 0.7: 0.4 + 0.3 reaches 0.7 → {0, 1}. 0.71 needs a third → {0, 1, 2}.
            (
                SamplingOptions {
                    top_p: 0.69,
                    ..base.clone()
                },
                2,
            ),
            (
                SamplingOptions {
                    top_p: 0.71,
                    ..base.clone()
                },
                3,
            ),
            // top-p tiny keeps the top token only.
            (
                SamplingOptions {
                    top_p: 0.01,
                    ..base.clone()
                },
                1,
            ),
            // min-p 0.3: threshold 0.12 → {0, 1, 2}. 0.5: threshold 0.2 → {0, 1}.
            (
                SamplingOptions {
                    min_p: 0.3,
                    ..base.clone()
                },
                3,
            ),
            (
                SamplingOptions {
                    min_p: 0.5,
                    ..base.clone()
                },
                2,
            ),
            // Combined: top-k 4, top-p 0.9 ({0,1,2,3} by mass 0.95 of the top-4), min-p 0.3.
            (
                SamplingOptions {
                    top_k: 4,
                    top_p: 0.9,
                    min_p: 0.3,
                    ..base.clone()
                },
                3,
            ),
        ];
        for (o, allowed) in cases {
            let hist = histogram(o.clone(), &row, 4000);
            assert!(
                hist[allowed..].iter().all(|&c| c == 0),
                "{o:?}: {hist:?} uses tokens outside the first {allowed}"
            );
            assert!(
                hist[..allowed].iter().all(|&c| c > 0),
                "{o:?}: {hist:?} never uses some of the first {allowed}"
            );
        }
    }

    #[test]
    fn frequencies_match_softmax() {
        let row = [1.0f32, 0.0, -0.5, 2.0];
        for t in [1.0f32, 0.7] {
            let o = SamplingOptions {
                temperature: t,
                seed: Some(2024),
                ..SamplingOptions::default()
            };
            let draws = 20_000;
            let hist = histogram(o, &row, draws);
            for (p, c) in softmax(&row, t).iter().zip(&hist) {
                let f = *c as f64 / draws as f64;
                // ~4.5 standard deviations at p = 0.5.
                assert!((f - p).abs() < 0.016, "t={t}: {hist:?} vs {p}");
            }
        }
    }

    #[test]
    fn top_p_renormalizes_over_the_nucleus() {
        // Nucleus {0, 1} of 0.4 / 0.3 → 4/7 and 3/7.
        let o = SamplingOptions {
            top_p: 0.6,
            seed: Some(5),
            ..SamplingOptions::default()
        };
        let draws = 20_000;
        let hist = histogram(o, &crafted(), draws);
        let f0 = hist[0] as f64 / draws as f64;
        assert!((f0 - 4.0 / 7.0).abs() < 0.016, "{hist:?}");
    }

    #[test]
    fn repetition_penalty_is_exact() {
        let o = SamplingOptions {
            repetition_penalty: 1.5,
            ..options(0.0)
        };
        // Prompt tokens 0 and 2; token 1 will be generated.
        let mut s = SequenceSampler::new(o, &[0, 2, 2], 0);
        let mut row = vec![3.0f32, -2.0, 0.0, 1.0, 5.0];
        s.apply_penalties(&mut row);
        assert_eq!(row, vec![2.0, -2.0, 0.0, 1.0, 5.0]);
        s.record(1);
        let mut row = vec![3.0f32, -2.0, 0.0, 1.0, 5.0];
        s.apply_penalties(&mut row);
        assert_eq!(row, vec![2.0, -3.0, 0.0, 1.0, 5.0]);
        // Repeats do not compound.
        s.record(1);
        let mut row = vec![3.0f32, -2.0, 0.0, 1.0, 5.0];
        s.apply_penalties(&mut row);
        assert_eq!(row, vec![2.0, -3.0, 0.0, 1.0, 5.0]);
    }

    #[test]
    fn frequency_and_presence_penalties_are_exact() {
        let o = SamplingOptions {
            frequency_penalty: 0.5,
            presence_penalty: 0.25,
            ..options(0.0)
        };
        // Prompt tokens do not count for these two.
        let mut s = SequenceSampler::new(o, &[0, 1, 2, 3], 0);
        let base = vec![1.0f32, 1.0, 1.0, 1.0];
        let mut row = base.clone();
        s.apply_penalties(&mut row);
        assert_eq!(row, base);
        s.record(1);
        s.record(3);
        s.record(3);
        s.record(3);
        s.record(99); // outside the row: ignored
        let mut row = base.clone();
        s.apply_penalties(&mut row);
        assert_eq!(row, vec![1.0, 1.0 - 0.5 - 0.25, 1.0, 1.0 - 1.5 - 0.25]);
        // Sampling records too: greedy picks 0 or 2 (tie → 0), which then gets penalized.
        assert_eq!(s.sample(&mut base.clone()), 0);
        let mut row = base.clone();
        s.apply_penalties(&mut row);
        assert_eq!(row, vec![0.25, 0.25, 1.0, -0.75]);
        // Negative penalties reward repetition.
        let o = SamplingOptions {
            presence_penalty: -1.0,
            ..options(0.0)
        };
        let mut s = SequenceSampler::new(o, &[], 0);
        s.record(2);
        assert_eq!(s.sample(&mut [1.0, 1.5, 1.0]), 2);
    }

    #[test]
    fn penalties_change_the_choice() {
        let o = SamplingOptions {
            repetition_penalty: 2.0,
            ..options(0.0)
        };
        let mut s = SequenceSampler::new(o, &[0], 0);
        // 4.0 / 2 = 2.0 < 3.0.
        assert_eq!(s.sample(&mut [4.0, 3.0]), 1);
        // Both seen now: 2.0 vs 1.5.
        assert_eq!(s.sample(&mut [4.0, 3.0]), 0);
    }

    #[test]
    fn degenerate_rows_do_not_panic() {
        let nan = f32::NAN;
        let inf = f32::INFINITY;
        let ninf = f32::NEG_INFINITY;
        let rows: Vec<(Vec<f32>, Option<u32>)> = vec![
            (vec![], Some(0)),
            (vec![nan; 10], Some(0)),
            (vec![ninf; 10], Some(0)),
            (vec![nan, ninf, nan], Some(0)),
            (vec![nan, ninf, 1.0, nan], Some(2)),
            (vec![nan, inf, 1.0, nan], Some(1)),
            (vec![1.0, inf, inf, f32::MAX], None),
            (vec![f32::MAX, f32::MIN, f32::MAX], None),
            (vec![0.0; 7], None),
            (vec![1e30, -1e30, nan, 3.0], None),
        ];
        let variants = [
            options(0.0),
            options(1.0),
            options(1e-4),
            options(1e6),
            options(f32::INFINITY),
            options(f32::NAN),
            SamplingOptions {
                top_k: 2,
                top_p: 0.5,
                min_p: 0.5,
                repetition_penalty: 1.3,
                frequency_penalty: 0.2,
                presence_penalty: 0.1,
                ..options(0.8)
            },
            SamplingOptions {
                top_p: 0.0,
                min_p: 1.0,
                ..options(1.0)
            },
            SamplingOptions {
                min_p: 5.0,
                top_k: 3,
                ..options(1.0)
            },
            SamplingOptions {
                top_p: -1.0,
                min_p: 5.0,
                ..options(1.0)
            },
            SamplingOptions {
                top_p: f32::NAN,
                min_p: f32::NAN,
                repetition_penalty: f32::NAN,
                frequency_penalty: f32::INFINITY,
                presence_penalty: f32::NAN,
                ..options(1.0)
            },
        ];
        for o in variants {
            let mut s = SequenceSampler::new(o.clone(), &[0, 1, u32::MAX], 0);
            for (row, expected) in &rows {
                for _ in 0..20 {
                    let t = s.sample(&mut row.clone());
                    assert!(
                        (row.is_empty() && t == 0) || (t as usize) < row.len(),
                        "{o:?} {row:?} -> {t}"
                    );
                    let chosen = row.get(t as usize).copied().unwrap_or(0.0);
                    // NaN only through the documented fallback to token 0.
                    assert!(!chosen.is_nan() || !row.iter().any(|&l| l > ninf));
                    // Without penalties, the documented answers hold.
                    if o.repetition_penalty == 1.0
                        && o.frequency_penalty == 0.0
                        && o.presence_penalty == 0.0
                        && let Some(e) = expected
                    {
                        assert_eq!(t, *e, "{o:?} {row:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn inf_logits_share_the_probability() {
        let inf = f32::INFINITY;
        let hist = histogram(options(1.0), &[0.0, inf, 5.0, inf], 2000);
        assert_eq!(hist[0] + hist[2], 0);
        assert!(hist[1] > 800 && hist[3] > 800, "{hist:?}");
    }

    #[test]
    fn top_k_keeps_ties_and_works_on_large_rows() {
        // Ties at the boundary are all kept.
        let o = SamplingOptions {
            top_k: 2,
            seed: Some(8),
            ..SamplingOptions::default()
        };
        let hist = histogram(o.clone(), &[1.0, 3.0, 1.0, 0.0, 1.0], 3000);
        assert_eq!(hist[3], 0);
        assert!(hist[0] > 0 && hist[2] > 0 && hist[4] > 0, "{hist:?}");
        // Large rows in every order: only the top 50 ever come out.
        for order in 0..3 {
            let vocab = 20_000;
            let row: Vec<f32> = match order {
                0 => (0..vocab).map(|i| i as f32 * 1e-3).collect(),
                1 => (0..vocab).map(|i| -(i as f32) * 1e-3).collect(),
                _ => logits(vocab, 77, 1.0),
            };
            let mut sorted = row.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let kth = sorted[49];
            let o = SamplingOptions {
                top_k: 50,
                temperature: 0.01,
                seed: Some(order),
                ..SamplingOptions::default()
            };
            let mut s = SequenceSampler::new(o, &[], 0);
            let mut seen = HashSet::new();
            for _ in 0..300 {
                let t = s.sample(&mut row.clone()) as usize;
                assert!(row[t] >= kth);
                seen.insert(t);
            }
            assert!(seen.len() > 1);
        }
    }

    #[test]
    fn nucleus_on_a_large_row_matches_a_full_sort() {
        // Dense rows (histogram path), and top-k leaving more candidates than are sorted outright.
        let cases = [
            (1u64, 0.95f32, 0u32),
            (2, 0.5, 0),
            (3, 0.999, 0),
            (4, 0.1, 0),
            (5, 0.0, 0),
            (6, 0.95, 8_000),
            (7, 0.3, 2_000),
        ];
        for (seed, p, top_k) in cases {
            let row = logits(12_000, seed, 8.0);
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            if top_k > 0 {
                order.truncate(top_k as usize);
            }
            let kept: Vec<f32> = order.iter().map(|&i| row[i]).collect();
            let probs = softmax(&kept, 0.8);
            let mut cum = 0.0;
            let mut nucleus = HashSet::new();
            for (&i, &q) in order.iter().zip(&probs) {
                nucleus.insert(i);
                cum += q;
                if cum >= p as f64 {
                    break;
                }
            }
            let o = SamplingOptions {
                temperature: 0.8,
                top_p: p,
                top_k,
                seed: Some(seed),
                ..SamplingOptions::default()
            };
            let mut s = SequenceSampler::new(o, &[], 0);
            let mut seen = HashSet::new();
            for _ in 0..100 {
                let t = s.sample(&mut row.clone()) as usize;
                assert!(nucleus.contains(&t), "p={p} k={top_k}: {t} outside nucleus");
                seen.insert(t);
            }
            assert!(seen.len() > 1 || nucleus.len() == 1);
        }
    }

    /// Timing, not a pass/fail check: `cargo test --release -p turbine-engine sampler_speed --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sampler_speed() {
        use std::time::Instant;
        let vocab = 49_152;
        let (batches, per_batch) = (30, 50);
        // Two shapes: "peaked" (a few dominant tokens over a wide spread, like a trained model)
        // and "flat" (uniform in [-1, 1]: the worst case for top-p, the nucleus is most of the row).
        let peaked: Vec<f32> = {
            let mut r = logits(vocab, 1, 1.0);
            let mut rng = Rng::new(2);
            for l in r.iter_mut() {
                // Roughly exponential tail: most tokens far below the top.
                *l -= 6.0 * -(rng.next_f32().max(1e-7)).ln();
            }
            for i in 0..20 {
                r[(i * 2377) % vocab] = 8.0 - i as f32 * 0.3;
            }
            r
        };
        let flat = logits(vocab, 3, 1.0);
        let cases = [
            ("greedy", options(0.0)),
            (
                "temperature 0.8 + top_p 0.95",
                SamplingOptions {
                    temperature: 0.8,
                    top_p: 0.95,
                    ..options(0.8)
                },
            ),
            (
                "top_k 50",
                SamplingOptions {
                    top_k: 50,
                    ..options(1.0)
                },
            ),
            ("temperature 1 only", options(1.0)),
            (
                "min_p 0.05",
                SamplingOptions {
                    min_p: 0.05,
                    ..options(1.0)
                },
            ),
        ];
        for (shape, row) in [("peaked", &peaked), ("flat", &flat)] {
            for (name, o) in &cases {
                let mut s = SequenceSampler::new(o.clone(), &[], 0);
                let mut buf = row.clone();
                let mut sink = 0u64;
                // The best of several batches, to see through other work on a shared machine;
                // the copy of the row is timed the same way and subtracted.
                let best = |f: &mut dyn FnMut()| {
                    (0..batches)
                        .map(|_| {
                            let start = Instant::now();
                            for _ in 0..per_batch {
                                f();
                            }
                            start.elapsed().as_secs_f64() / per_batch as f64
                        })
                        .fold(f64::INFINITY, f64::min)
                };
                let copy = best(&mut || {
                    buf.copy_from_slice(row);
                    std::hint::black_box(&mut buf);
                });
                let total = best(&mut || {
                    buf.copy_from_slice(row);
                    sink += s.sample(std::hint::black_box(&mut buf)) as u64;
                });
                let us = (total - copy).max(0.0) * 1e6;
                println!("sampler_speed vocab={vocab} {shape:6} {name:30} {us:8.1} µs/call");
                std::hint::black_box(sink);
            }
        }
    }
}
