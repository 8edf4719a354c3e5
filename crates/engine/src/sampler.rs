//! Per-sequence token sampling: penalties, greedy or temperature sampling with top-k, top-p and
//! min-p, on one row of logits at a time.
//!
//! Invariants:
//! - **Batch independence.** Each [`SequenceSampler`] owns its RNG (seeded from the request's `seed`,
//!   else from the engine's fallback seed) and its penalty state, so a seeded request produces the
//!   same tokens whatever else is in the batch, in whatever order rows are sampled.
//! - **Reproducibility.** Given the same options, prompt, seed and logits, the output is the same on
//!   every platform and in every release: the RNG sequence is frozen (see [`crate::rng`]), the
//!   exponential is computed by the portable [`exp_nonpositive`] (basic IEEE operations only, no
//!   libm), every sum runs in a fixed order, and every ordering of candidates is total (weight
//!   descending, then token id ascending), so it does not depend on the sort algorithm in `std`.
//!   A random-path `sample` consumes exactly one `next_f64` draw; greedy sampling and `record`
//!   consume none.
//! - **Semantics follow vLLM**, in this order:
//!   1. repetition penalty (HF/CTRL): for every token in the prompt or the generated output,
//!      `logit / penalty` if `logit > 0`, else `logit * penalty`;
//!   2. frequency penalty: `logit -= penalty * count`, count = occurrences in the generated output;
//!   3. presence penalty: `logit -= penalty` if the token occurs in the generated output;
//!   4. temperature `< 1e-5` (vLLM's epsilon; also NaN): greedy argmax, ties to the lowest id;
//!   5. otherwise divide by the temperature, then top-k (keeps every token whose logit is at least
//!      the k-th largest, so ties at the boundary are kept, as in vLLM and HF), then top-p (the
//!      smallest set, by probability descending, whose mass is at least `top_p`; at least one token
//!      is kept), then min-p (drops tokens whose probability is below `min_p` times the largest),
//!      then softmax over what is left and one draw.
//! - **Never panics on logits.** NaN logits are never chosen; `-inf` means "never" (probability 0).
//!   An empty row, or a row with no token above `-inf`, yields token 0. `+inf` logits share all the
//!   probability equally (greedy: the lowest such id). Prompt or recorded ids outside the row are
//!   ignored by the penalties. Penalty values that are not finite (or a repetition penalty `<= 0`)
//!   are treated as disabled; the frontend validates them anyway.
//! - **No per-call allocation** beyond the reusable scratch buffer kept in the sampler, and work
//!   is skipped for disabled features: penalty state is only kept when that penalty is on, top-k
//!   with a small k selects (no full sort), and top-p sorts only the candidates that can be in the
//!   nucleus, growing the sorted prefix geometrically.
//! - Relative weights below `e^-87` (about 1.6e-38) are treated as 0.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use turbine_protocols::SamplingOptions;

use crate::rng::Rng;

/// Temperatures below this are greedy (vLLM's `_SAMPLING_EPS`).
const GREEDY_TEMPERATURE: f32 = 1e-5;

/// Sums and sampling walks go over blocks of this many weights.
const BLOCK: usize = 64;

/// Sampling state of one sequence: its options, its RNG, its penalty bookkeeping and a scratch
/// buffer. See the module documentation for the invariants.
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
    /// Reused between calls: top-k buffer, then the candidates with their weights.
    scratch: Vec<Candidate>,
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
            greedy: !(options.temperature >= GREEDY_TEMPERATURE),
            repetition,
            output_penalties,
            seen,
            counts: HashMap::new(),
            scratch: Vec::new(),
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
        let token = if self.greedy {
            argmax(logits)
        } else {
            let u = self.rng.next_f64();
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
        let min_p = (o.min_p > 0.0).then_some(o.min_p);
        let scratch = &mut self.scratch;
        scratch.clear();

        // Top-k: leave the surviving (logit, id) pairs in `scratch`, in id order.
        let sparse = top_k > 0 && top_k < logits.len() && top_k_candidates(logits, top_k, scratch);

        // Weights exp((logit - max) / T): in `scratch` (sparse) or in place in `logits` (dense).
        let total = if sparse {
            let max = scratch
                .iter()
                .fold(f32::NEG_INFINITY, |m, c| m.max(c.value));
            if !(max > f32::NEG_INFINITY) {
                return 0;
            }
            for c in scratch.iter_mut() {
                c.value = weight(c.value, max, inv_t);
            }
            sum_candidates(scratch)
        } else {
            let max = max_valid(logits);
            if !(max > f32::NEG_INFINITY) {
                return 0;
            }
            for l in logits.iter_mut() {
                *l = weight(*l, max, inv_t);
            }
            if top_p.is_none() && min_p.is_none() {
                // Plain temperature sampling: walk the row itself.
                return walk_dense(logits, u * sum_dense(logits));
            }
            sum_dense(logits)
        };

        // Drop what min-p drops, and what cannot be in the nucleus: a token in the nucleus has
        // weight > (1 - top_p) * total / n, since every token at or below it (at most n of them)
        // together carry more than (1 - top_p) of the mass. 0.999 keeps rounding on the safe side.
        let mut threshold = min_p.unwrap_or(0.0);
        if let Some(p) = top_p {
            let n = if sparse { scratch.len() } else { logits.len() };
            let bound = ((1.0 - p) * total / n as f64 * 0.999) as f32;
            threshold = threshold.max(bound);
        }
        if sparse {
            scratch.retain(|c| c.value > 0.0 && c.value >= threshold);
        } else {
            scratch.extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|&(_, &w)| w > 0.0 && w >= threshold)
                    .map(|(i, &w)| Candidate {
                        value: w,
                        id: i as u32,
                    }),
            );
        }

        if let Some(p) = top_p {
            nucleus(scratch, p * total);
        }
        let kept = sum_candidates(scratch);
        walk_candidates(scratch, u * kept)
    }
}

/// Greedy: the largest logit, lowest id on ties, NaN never; 0 if nothing is above `-inf`.
fn argmax(logits: &[f32]) -> u32 {
    let max = max_valid(logits);
    if !(max > f32::NEG_INFINITY) {
        return 0;
    }
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
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

/// The unnormalized probability of `logit` at inverse temperature `inv_t`, given the row's
/// maximum `max` (finite or `+inf`). NaN and `-inf` give 0; tokens equal to `max` give 1.
#[inline(always)]
fn weight(logit: f32, max: f32, inv_t: f32) -> f32 {
    if logit == max {
        1.0
    } else {
        exp_nonpositive((logit - max) * inv_t)
    }
}

/// `e^x` for `x <= 0`, from basic IEEE operations only (so it gives the same bits everywhere and
/// vectorizes): Cephes' `expf` range reduction and polynomial, within 2 ulp. Returns 0 for
/// `x < -87`, for `-inf` and for NaN.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let in_range = x >= -87.0;
    let xc = if in_range { x } else { -87.0 };
    // Round to nearest (xc * LOG2E is in [-125.6, 0]); `as` truncates toward zero.
    let n = (xc * LOG2E - 0.5) as i32;
    let nf = n as f32;
    let r = xc - nf * LN2_HI - nf * LN2_LO;
    let r2 = r * r;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let poly = p * r2 + r + 1.0;
    // n is in [-126, 0], so this is a normal power of two.
    let scale = f32::from_bits(((n + 127) as u32) << 23);
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
    for (i, &l) in logits.iter().enumerate() {
        // NaN and -inf never pass.
        if l > threshold {
            out.push(Candidate {
                value: l,
                id: i as u32,
            });
            if out.len() == cap {
                out.select_nth_unstable_by(k - 1, by_value_desc);
                out.truncate(k);
                threshold = out[k - 1].value;
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
    out.extend(
        logits
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l >= kth)
            .map(|(i, &l)| Candidate {
                value: l,
                id: i as u32,
            }),
    );
    true
}

/// Top-p: reorders `cands` by weight descending (id ascending on ties) as far as needed and
/// truncates it to the smallest prefix whose weight reaches `target` (at least one token). The
/// prefix is sorted in steps that grow fourfold, each step selecting before sorting, so a small
/// nucleus in a large candidate set costs a few linear passes, not a full sort.
fn nucleus(cands: &mut Vec<Candidate>, target: f64) {
    let n = cands.len();
    let mut sorted = 0;
    let mut step = 64;
    let mut cum = 0.0f64;
    while sorted < n {
        let end = (sorted + step).min(n);
        let rest = &mut cands[sorted..];
        if end < n {
            rest.select_nth_unstable_by(end - sorted - 1, by_value_desc);
        }
        rest[..end - sorted].sort_unstable_by(by_value_desc);
        for j in sorted..end {
            cum += cands[j].value as f64;
            if cum >= target {
                cands.truncate(j + 1);
                return;
            }
        }
        sorted = end;
        step *= 4;
    }
    // The target was not reached (rounding, or min-p removed the tail): keep everything.
}

/// Sum of a block of weights, eight f64 lanes combined in a fixed order.
#[inline]
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

/// Total weight of a row: block sums added in order (the same order `walk_dense` uses).
fn sum_dense(ws: &[f32]) -> f64 {
    ws.chunks(BLOCK).map(block_sum).fold(0.0, |a, b| a + b)
}

/// The first token where the running weight exceeds `x`, skipping whole blocks at a time.
/// Falls back to the last positive weight when rounding runs past the end.
fn walk_dense(ws: &[f32], x: f64) -> u32 {
    let mut cum = 0.0f64;
    let mut last_positive = None;
    for (b, block) in ws.chunks(BLOCK).enumerate() {
        let s = block_sum(block);
        if s > 0.0 {
            let base = b * BLOCK;
            if cum + s > x {
                let mut c = cum;
                for (i, &w) in block.iter().enumerate() {
                    if w > 0.0 {
                        c += w as f64;
                        last_positive = Some(base + i);
                        if c > x {
                            return (base + i) as u32;
                        }
                    }
                }
            } else if let Some(i) = block.iter().rposition(|&w| w > 0.0) {
                last_positive = Some(base + i);
            }
            cum += s;
        }
    }
    last_positive.unwrap_or(0) as u32
}

/// Total weight of the candidates, in their order.
fn sum_candidates(cands: &[Candidate]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let mut chunks = cands.chunks_exact(4);
    for chunk in &mut chunks {
        for (s, c) in lanes.iter_mut().zip(chunk) {
            *s += c.value as f64;
        }
    }
    for (s, c) in lanes.iter_mut().zip(chunks.remainder()) {
        *s += c.value as f64;
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// The first candidate where the running weight exceeds `x`; the last one if rounding runs past
/// the end; 0 if there are none.
fn walk_candidates(cands: &[Candidate], x: f64) -> u32 {
    let mut cum = 0.0f64;
    for c in cands {
        cum += c.value as f64;
        if cum > x {
            return c.id;
        }
    }
    cands.last().map_or(0, |c| c.id)
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
        assert_eq!(s.sample(&mut vec![1.0, 1.5, 1.0]), 2);
    }

    #[test]
    fn penalties_change_the_choice() {
        let o = SamplingOptions {
            repetition_penalty: 2.0,
            ..options(0.0)
        };
        let mut s = SequenceSampler::new(o, &[0], 0);
        // 4.0 / 2 = 2.0 < 3.0.
        assert_eq!(s.sample(&mut vec![4.0, 3.0]), 1);
        // Both seen now: 2.0 vs 1.5.
        assert_eq!(s.sample(&mut vec![4.0, 3.0]), 0);
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
        for (seed, p) in [(1u64, 0.95f32), (2, 0.5), (3, 0.999), (4, 0.1)] {
            let row = logits(30_000, seed, 8.0);
            let probs = softmax(&row, 0.8);
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            let mut cum = 0.0;
            let mut nucleus = HashSet::new();
            for &i in &order {
                nucleus.insert(i);
                cum += probs[i];
                if cum >= p as f64 {
                    break;
                }
            }
            let o = SamplingOptions {
                temperature: 0.8,
                top_p: p,
                seed: Some(seed),
                ..SamplingOptions::default()
            };
            let mut s = SequenceSampler::new(o, &[], 0);
            for _ in 0..200 {
                let t = s.sample(&mut row.clone()) as usize;
                assert!(nucleus.contains(&t), "p={p}: {t} outside nucleus");
            }
        }
    }

    /// Timing, not a pass/fail check: `cargo test --release -p turbine-engine sampler_speed --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sampler_speed() {
        use std::time::Instant;
        let vocab = 49_152;
        let iters = 2000;
        // Two shapes: "peaked" (a few dominant tokens over a wide spread, like a trained model)
        // and "flat" (uniform in [-1, 1]: the worst case for top-p, the nucleus is most of the row).
        let peaked: Vec<f32> = {
            let mut r = logits(vocab, 1, 1.0);
            let mut rng = Rng::new(2);
            for l in r.iter_mut() {
                // Roughly exponential tail: most tokens far below the top.
                *l = -6.0 * (-(rng.next_f32().max(1e-7)).ln()) + *l;
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
                // Warm up, then time; the copy of the row is timed separately and subtracted.
                for _ in 0..50 {
                    buf.copy_from_slice(row);
                    sink += s.sample(&mut buf) as u64;
                }
                let start = Instant::now();
                for _ in 0..iters {
                    buf.copy_from_slice(row);
                    std::hint::black_box(&mut buf);
                }
                let copy = start.elapsed();
                let start = Instant::now();
                for _ in 0..iters {
                    buf.copy_from_slice(row);
                    sink += s.sample(std::hint::black_box(&mut buf)) as u64;
                }
                let total = start.elapsed();
                let us = (total.saturating_sub(copy)).as_secs_f64() * 1e6 / iters as f64;
                println!("sampler_speed vocab={vocab} {shape:6} {name:30} {us:8.1} µs/call");
                std::hint::black_box(sink);
            }
        }
    }
}
