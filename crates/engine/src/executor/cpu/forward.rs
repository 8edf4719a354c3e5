//! One batched forward pass: the new tokens of every sequence in the step go through the layers
//! together (one matmul per weight for the whole batch); attention reads each sequence's context
//! from the paged KV cache; logits are computed only for the rows that are sampled.

use super::attention::{Context, Heads, attention};
use super::ggml::{self, Order, Width};
use super::kernels::QMatrix;
use super::kv_cache::{KvCache, KvElem};
use super::model::Model;
use super::ops;
use rayon::prelude::*;

/// One token of the batch.
pub struct TokenRow<'a> {
    pub token: u32,
    pub pos: usize,
    pub block_table: &'a [u32],
    /// How llama.cpp would sum this token's attention products: [`Order::Vector`] when it is
    /// its sequence's only new token in the step, [`Order::Tiled`] otherwise.
    pub order: Order,
}

/// Scratch buffers reused across steps, sized for the largest batch seen.
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// RoPE `[cos, sin]` pairs of each row's position.
    angles: Vec<f32>,
    /// The K and V of the sequences prefilled in a step.
    contexts: Vec<Context>,
}

fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

/// Runs `rows` through the model, writing their K and V into `cache`, and returns the logits of
/// the rows listed in `logit_rows` (vocab-sized rows, in that order). Attention and SiLU follow
/// the `width` build of llama.cpp.
pub fn forward<T: KvElem>(
    model: &Model,
    cache: &mut KvCache<T>,
    rows: &[TokenRow<'_>],
    logit_rows: &[usize],
    width: Width,
    s: &mut Scratch,
) -> Vec<f32> {
    let c = &model.config;
    let t = rows.len();
    let (hidden, hd) = (c.hidden, c.head_dim);
    let (q_dim, kv_dim) = (c.heads * hd, c.kv_heads * hd);
    let heads = Heads {
        heads: c.heads,
        kv_heads: c.kv_heads,
        head_dim: hd,
    };

    let angles = sized(&mut s.angles, t * hd);
    for (row, out) in rows.iter().zip(angles.chunks_exact_mut(hd)) {
        model.rope.angles(row.pos, out);
    }
    let x = sized(&mut s.x, t * hidden);
    for (row, out) in rows.iter().zip(x.chunks_exact_mut(hidden)) {
        model.embed(row.token, out);
    }
    for (l, layer) in model.layers.iter().enumerate() {
        let h = sized(&mut s.h, t * hidden);
        ops::rms_norm(&s.x, &layer.attn_norm, c.rms_eps, h);
        let q = sized(&mut s.q, t * q_dim);
        let k = sized(&mut s.k, t * kv_dim);
        let v = sized(&mut s.v, t * kv_dim);
        QMatrix::matmul_many([&layer.wq, &layer.wk, &layer.wv], h, [q, k, v]);
        if let Some((bq, bk, bv)) = &layer.qkv_bias {
            add_bias(q, bq);
            add_bias(k, bk);
            add_bias(v, bv);
        }
        if let Some((qn, kn)) = &layer.qk_norm {
            ops::rms_norm_heads(q, qn, c.rms_eps);
            ops::rms_norm_heads(k, kn, c.rms_eps);
        }
        q.par_chunks_exact_mut(q_dim)
            .zip(k.par_chunks_exact_mut(kv_dim))
            .zip(s.angles.par_chunks_exact(hd))
            .with_min_len(16)
            .for_each(|((q, k), angles)| {
                ops::rope(q, angles, c.rope_style);
                ops::rope(k, angles, c.rope_style);
                T::round(q);
            });
        for (i, row) in rows.iter().enumerate() {
            let slot = cache.slot(row.block_table, row.pos);
            cache.write(
                l,
                slot,
                &k[i * kv_dim..(i + 1) * kv_dim],
                &v[i * kv_dim..(i + 1) * kv_dim],
            );
        }
        let attn = sized(&mut s.attn, t * q_dim);
        attention(cache, l, rows, q, heads, width, &mut s.contexts, attn);
        let proj = sized(&mut s.proj, t * hidden);
        layer.wo.matmul(attn, proj);
        add_in_place(&mut s.x, &s.proj);

        let h = sized(&mut s.h, t * hidden);
        ops::rms_norm(&s.x, &layer.ffn_norm, c.rms_eps, h);
        let gate = sized(&mut s.gate, t * c.intermediate);
        let up = sized(&mut s.up, t * c.intermediate);
        QMatrix::matmul_many([&layer.w_gate, &layer.w_up], h, [gate, up]);
        ggml::silu_mul(width, gate, up);
        let proj = sized(&mut s.proj, t * hidden);
        layer.w_down.matmul(gate, proj);
        add_in_place(&mut s.x, &s.proj);
    }
    let picked = sized(&mut s.h, logit_rows.len() * hidden);
    for (out, &r) in picked.chunks_exact_mut(hidden).zip(logit_rows) {
        ops::rms_norm(
            &s.x[r * hidden..(r + 1) * hidden],
            &model.final_norm,
            c.rms_eps,
            out,
        );
    }
    let mut logits = vec![0.0; logit_rows.len() * c.vocab];
    model.output().matmul(picked, &mut logits);
    logits
}

fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
