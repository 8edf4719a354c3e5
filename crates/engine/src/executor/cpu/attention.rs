//! Causal attention of a step's tokens over the paged KV cache, in llama.cpp's arithmetic (see
//! [`ggml`](super::ggml)).
//!
//! A token attends over positions `0..=pos` of its sequence, read as `f32` from a [`Context`]: a
//! contiguous copy of the sequence's K and V. The tokens of a sequence prefilled in this step
//! share one copy, gathered once per layer (prefill attention is quadratic, the copy linear). A
//! decoding token reads the cache's blocks directly where [`attention_avx2`] runs (the AVX2
//! build's arithmetic on an AVX2 CPU), and otherwise gathers its own copy into a per-thread
//! buffer.

use std::cell::RefCell;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::attention_avx2;
use super::forward::TokenRow;
use super::ggml::{self, Order, Width, fma_fn};
use super::kv_cache::{KvCache, KvElem};

/// K and V of positions `0..len` of a sequence, `len × width` each, as `f32`.
#[derive(Default)]
pub struct Context {
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Context {
    fn gather<T: KvElem>(&mut self, cache: &KvCache<T>, layer: usize, table: &[u32], len: usize) {
        let width = cache.width();
        self.k.resize(len * width, 0.0);
        self.v.resize(len * width, 0.0);
        let mut at = 0;
        for (k, v) in cache.blocks(layer, table, len) {
            T::to_f32(k, &mut self.k[at..at + k.len()]);
            T::to_f32(v, &mut self.v[at..at + v.len()]);
            at += k.len();
        }
    }
}

/// The shape of the attention: query heads, KV heads, head size.
#[derive(Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Per-thread buffers.
#[derive(Default)]
struct Scratch {
    /// A decoding token's context, where [`attention_avx2`] does not run.
    context: Context,
    /// A decoding token's row offsets, for [`attention_avx2`].
    rows: Vec<usize>,
    scores: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Attention of every row (`q`: `rows × heads × head_dim`, rounded to the cache's type) into
/// `out` (same shape), layer `layer`, after the rows' K and V are in `cache`, in the arithmetic
/// of the `width` build of llama.cpp. `shared` keeps the prefilled sequences' contexts between
/// calls (their memory is reused).
#[allow(clippy::too_many_arguments)]
pub fn attention<T: KvElem>(
    cache: &KvCache<T>,
    layer: usize,
    rows: &[TokenRow<'_>],
    q: &[f32],
    shape: Heads,
    width: Width,
    shared: &mut Vec<Context>,
    out: &mut [f32],
) {
    // Runs of rows that are one sequence's new tokens (consecutive positions, order `Tiled`):
    // (first row, rows).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let continues = i > 0 && row.order == Order::Tiled && {
            let prev = &rows[i - 1];
            prev.order == Order::Tiled
                && std::ptr::eq(prev.block_table, row.block_table)
                && prev.pos + 1 == row.pos
        };
        match runs.last_mut() {
            Some((_, n)) if continues => *n += 1,
            _ if row.order == Order::Tiled => runs.push((i, 1)),
            _ => {}
        }
    }
    if shared.len() < runs.len() {
        shared.resize_with(runs.len(), Context::default);
    }
    shared
        .par_iter_mut()
        .zip(&runs)
        .for_each(|(context, &(first, n))| {
            let last = &rows[first + n - 1];
            context.gather(cache, layer, last.block_table, last.pos + 1);
        });
    // Row `i`'s shared context, if it has one.
    let mut context_of = vec![None; rows.len()];
    for (r, &(first, n)) in runs.iter().enumerate() {
        context_of[first..first + n].fill(Some(r));
    }
    let q_dim = shape.heads * shape.head_dim;
    let shared: &[Context] = shared;
    out.par_chunks_exact_mut(q_dim)
        .zip(q.par_chunks_exact(q_dim))
        .zip(rows.par_iter().zip(context_of))
        .for_each(|((out, q), (row, context))| {
            SCRATCH.with_borrow_mut(|s| {
                let shared = context.map(|r| &shared[r]);
                attend_row(cache, layer, row, shared, q, shape, width, s, out);
            })
        });
}

/// Attention of `row` into `out` (see [`attention`]), over `shared`, its sequence's gathered
/// context, if it has one; otherwise (a decoding token) over the cache.
#[allow(clippy::too_many_arguments)]
fn attend_row<T: KvElem>(
    cache: &KvCache<T>,
    layer: usize,
    row: &TokenRow<'_>,
    shared: Option<&Context>,
    q: &[f32],
    shape: Heads,
    width: Width,
    s: &mut Scratch,
    out: &mut [f32],
) {
    let len = row.pos + 1;
    let context = match shared {
        Some(context) => context,
        None => {
            #[cfg(target_arch = "x86_64")]
            if width == Width::Avx2
                && row.order == Order::Vector
                && attention_avx2::fits(shape.head_dim)
                && attention_avx2::available()
            {
                let (table, rows, scores) = (row.block_table, &mut s.rows, &mut s.scores);
                // SAFETY: the CPU features were just detected, and the head size fits.
                return unsafe {
                    attention_avx2::decode(cache, layer, table, len, q, shape, rows, scores, out)
                };
            }
            s.context.gather(cache, layer, row.block_table, len);
            &s.context
        }
    };
    attend::<T>(context, len, q, shape, row.order, width, &mut s.scores, out);
}

fma_fn! {
    /// One token's attention (all its query heads) over positions `0..len` of `context`. The
    /// heads that share a KV head are done together, so each K row is read once.
    ///
    /// As llama.cpp: the products with K and V are taken in the cache's precision (`q` is
    /// rounded to it, and the softmax weights are rounded here), summed in `order`; for V,
    /// position `p` goes to lane `p % W` of accumulator `(p / W) % slots` (`W` the lanes of
    /// `width`), each lane's chain computed for up to 32 dimensions at once.
    #[allow(clippy::too_many_arguments)]
    fn attend<T: KvElem>(
        context: &Context,
        len: usize,
        q: &[f32],
        shape: Heads,
        order: Order,
        width: Width,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        match width {
            Width::Avx2 => attend_lanes::<T, 8>(context, len, q, shape, order, scores, out),
            Width::Avx512 => attend_lanes::<T, 16>(context, len, q, shape, order, scores, out),
        }
    }
}

/// [`attend`] with `W` lanes.
#[inline(always)]
fn attend_lanes<T: KvElem, const W: usize>(
    context: &Context,
    len: usize,
    q: &[f32],
    shape: Heads,
    order: Order,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let Heads {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    let group = heads / kv_heads;
    let width = kv_heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    // scores[h_in_group * len + p]
    scores.resize(group * len, 0.0);
    for g in 0..kv_heads {
        for (p, k) in head_rows(&context.k, len, width, g * hd, hd).enumerate() {
            for j in 0..group {
                let h = g * group + j;
                let qh = &q[h * hd..(h + 1) * hd];
                scores[j * len + p] = ggml::dot::<W>(qh, k, order) * scale;
            }
        }
        for j in 0..group {
            ggml::softmax::<W>(&mut scores[j * len..(j + 1) * len]);
        }
        T::round(scores);
        for j in 0..group {
            let h = g * group + j;
            let w = &scores[j * len..(j + 1) * len];
            let out = &mut out[h * hd..(h + 1) * hd];
            // 32 dimensions at a time (4 registers), then 8, then 1.
            let mut d = 0;
            while d + 32 <= hd {
                let sum: [f32; 32] = weighted_sum::<32, W>(&context.v, w, width, g * hd + d, order);
                out[d..d + 32].copy_from_slice(&sum);
                d += 32;
            }
            while d + 8 <= hd {
                let sum: [f32; 8] = weighted_sum::<8, W>(&context.v, w, width, g * hd + d, order);
                out[d..d + 8].copy_from_slice(&sum);
                d += 8;
            }
            for (d, o) in out.iter_mut().enumerate().skip(d) {
                [*o] = weighted_sum::<1, W>(&context.v, w, width, g * hd + d, order);
            }
        }
    }
}

/// `sum_p w[p] * v[p][at..at + D]` over the rows of `width` in `v`, in `order` with positions
/// as the summed elements, `W` lanes.
#[inline(always)]
fn weighted_sum<const D: usize, const W: usize>(
    v: &[f32],
    w: &[f32],
    width: usize,
    at: usize,
    order: Order,
) -> [f32; D] {
    let slots = order.slots();
    let stride = W * slots;
    let mut acc = [[[0f32; D]; W]; 4];
    // One lane's chain at a time, in registers: its positions in order, `stride` apart.
    for (s, slot) in acc.iter_mut().enumerate().take(slots) {
        for (l, lane) in slot.iter_mut().enumerate() {
            let mut sum = [0f32; D];
            for (p, &wp) in w.iter().enumerate().skip(s * W + l).step_by(stride) {
                let row: &[f32; D] = v[p * width + at..][..D].try_into().unwrap();
                for (a, x) in sum.iter_mut().zip(row) {
                    *a = wp.mul_add(*x, *a);
                }
            }
            *lane = sum;
        }
    }
    order.finish(&acc[..slots])
}

/// The `hd` values at `offset` of each of the first `len` rows of `width` in `m`.
#[inline(always)]
fn head_rows(
    m: &[f32],
    len: usize,
    width: usize,
    offset: usize,
    hd: usize,
) -> impl Iterator<Item = &[f32]> {
    m[..len * width]
        .chunks_exact(width)
        .map(move |row| &row[offset..offset + hd])
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use half::f16;

    use super::*;

    /// A deterministic spread of values in about `-2..2`.
    fn values(seed: usize, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((seed * 7919 + i * 104_729) as f32 * 0.001).sin() * 2.0)
            .collect()
    }

    /// [`attention_avx2::decode`] against the gathered context's [`attend`], bit for bit, over
    /// lengths around the 8-position groups and 32-position chains, in shuffled blocks.
    fn decode_matches_attend<T: KvElem>() {
        if !attention_avx2::available() {
            return;
        }
        let shape = Heads {
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
        };
        let width = shape.kv_heads * shape.head_dim;
        let table = [5, 2, 9, 0, 7, 11, 3, 1];
        let mut cache = KvCache::<T>::new(2, 12, 16, shape.kv_heads, shape.head_dim);
        for layer in 0..2 {
            for p in 0..table.len() * 16 {
                let slot = cache.slot(&table, p);
                let (k, v) = (values(2 * p + layer, width), values(2 * p + 1, width));
                cache.write(layer, slot, &k, &v);
            }
        }
        let mut scratch = Scratch::default();
        for len in [1, 7, 8, 9, 31, 32, 33, 100, 128] {
            let mut q = values(len, shape.heads * shape.head_dim);
            T::round(&mut q);
            let mut want = vec![0f32; q.len()];
            let s = &mut scratch;
            s.context.gather(&cache, 1, &table, len);
            let (order, width) = (Order::Vector, Width::Avx2);
            attend::<T>(
                &s.context,
                len,
                &q,
                shape,
                order,
                width,
                &mut s.scores,
                &mut want,
            );
            let mut got = vec![0f32; q.len()];
            let (rows, scores) = (&mut s.rows, &mut s.scores);
            // SAFETY: the CPU features were just detected; head_dim 64 fits.
            unsafe {
                attention_avx2::decode(&cache, 1, &table, len, &q, shape, rows, scores, &mut got)
            };
            let bits = |x: &[f32]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "len {len}");
        }
    }

    #[test]
    fn avx2_decode_equals_attend_f16() {
        decode_matches_attend::<f16>();
    }

    #[test]
    fn avx2_decode_equals_attend_f32() {
        decode_matches_attend::<f32>();
    }
}
