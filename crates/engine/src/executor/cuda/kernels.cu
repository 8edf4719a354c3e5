// The CUDA executor's kernels, compiled by NVRTC at start-up with the model's shape defined:
// HEAD_DIM (a multiple of 64, at most 256), GROUP (query heads per KV head) and BLOCK_SIZE
// (tokens per KV block); prefill.cu's layout too.
// bf16 is kept as raw 16-bit words, converted with single instructions (sm_80 and later): NVRTC
// has no cuda_bf16.h of its own.

typedef unsigned short bf16;

#define NEG_INF (-__int_as_float(0x7f800000))

// Programmatic dependent launch (sm_90 and later; no-ops before): every kernel is launched so
// that it may start while the previous one is still running. `pdl_wait` blocks until the
// previous kernels have finished and their writes are visible, so a kernel calls it before
// reading anything they wrote (reading weights before it is fine) and before writing anything
// an earlier kernel may still read; `pdl_trigger` lets the next kernel start. Since a kernel
// finishes only after its own wait, waiting on the previous kernel waits on all before it.
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
// Both, at the top of kernels that read nothing before waiting. The trigger comes first, so a
// chain of small kernels (qkv_post, attention, merge) lets the GEMV after it start streaming
// its weights as soon as multiprocessors free up (batch-1 decode 0.7-1.2% faster on an H200).
__device__ __forceinline__ void pdl_start() {
    pdl_trigger();
    pdl_wait();
}

// A timeline of the kernels (diagnostics; compiled in only where TIMELINE, a record count, is
// defined: `TURBINE_CUDA_TIMELINE`, timeline.rs): each warp's first lane appends its kernel's
// source line, grid id, multiprocessor and global-timer start and end (ns), when the warp
// leaves the kernel. Profilers serialize kernels; this shows them overlapped as they run.
#ifdef TIMELINE
struct TimelineRecord {
    unsigned long long grid, start, end;
    unsigned line, sm;
};
__device__ unsigned timeline_count;
__device__ TimelineRecord timeline[TIMELINE];
__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
struct TimelineScope {
    unsigned long long start;
    unsigned line;
    __device__ explicit TimelineScope(unsigned l) : start(global_ns()), line(l) {}
    __device__ ~TimelineScope() {
        if (threadIdx.x % 32 != 0) return;
        unsigned i = atomicAdd(&timeline_count, 1u);
        if (i >= TIMELINE) return;
        unsigned long long grid;
        unsigned sm;
        asm volatile("mov.u64 %0, %%gridid;" : "=l"(grid));
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
        timeline[i] = TimelineRecord{grid, start, global_ns(), line, sm};
    }
};
#define TIMELINE_SCOPE TimelineScope timeline_scope(__LINE__)
#else
#define TIMELINE_SCOPE
#endif

__device__ __forceinline__ float bf2f(bf16 x) { return __uint_as_float(((unsigned)x) << 16); }

// The low and high bf16 of a 32-bit word, one integer instruction each.
__device__ __forceinline__ float lo_bf(unsigned w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float hi_bf(unsigned w) { return __uint_as_float(w & 0xffff0000u); }

// N consecutive bf16 (N even) as floats, in the widest aligned loads.
template <int N>
__device__ __forceinline__ void load_bf16(const bf16* p, float* out) {
    if constexpr (N % 8 == 0) {
        for (int e = 0; e < N; e += 8) {
            uint4 u = *(const uint4*)(p + e);
            unsigned w[4] = {u.x, u.y, u.z, u.w};
            for (int k = 0; k < 4; k++) {
                out[e + 2 * k] = lo_bf(w[k]);
                out[e + 2 * k + 1] = hi_bf(w[k]);
            }
        }
    } else if constexpr (N % 4 == 0) {
        for (int e = 0; e < N; e += 4) {
            uint2 u = *(const uint2*)(p + e);
            out[e] = lo_bf(u.x);
            out[e + 1] = hi_bf(u.x);
            out[e + 2] = lo_bf(u.y);
            out[e + 3] = hi_bf(u.y);
        }
    } else {
        for (int e = 0; e < N; e += 2) {
            unsigned u = *(const unsigned*)(p + e);
            out[e] = lo_bf(u);
            out[e + 1] = hi_bf(u);
        }
    }
}

// N consecutive bf16 (N even) as N / 2 raw 32-bit words, in the widest aligned loads.
template <int N>
__device__ __forceinline__ void load_raw(const bf16* p, unsigned* out) {
    if constexpr (N % 8 == 0) {
        for (int e = 0; e < N; e += 8) {
            uint4 u = *(const uint4*)(p + e);
            out[e / 2] = u.x;
            out[e / 2 + 1] = u.y;
            out[e / 2 + 2] = u.z;
            out[e / 2 + 3] = u.w;
        }
    } else if constexpr (N % 4 == 0) {
        for (int e = 0; e < N; e += 4) {
            uint2 u = *(const uint2*)(p + e);
            out[e / 2] = u.x;
            out[e / 2 + 1] = u.y;
        }
    } else {
        for (int e = 0; e < N; e += 2) out[e / 2] = *(const unsigned*)(p + e);
    }
}

// Element e of raw bf16 words.
__device__ __forceinline__ float raw_at(const unsigned* raw, int e) {
    return e % 2 == 0 ? lo_bf(raw[e / 2]) : hi_bf(raw[e / 2]);
}

// Round to nearest even; NaN stays NaN.
__device__ __forceinline__ bf16 f2bf(float f) {
    bf16 r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
    return r;
}

// Two floats as bf16 in one word, `lo` in the low half.
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// A layer's paged KV cache is [slot][kv head][dim]; a sequence's block table lists its blocks
// of BLOCK_SIZE slots. The cache slot of key p:
__device__ __forceinline__ size_t paged_slot(const int* table, int p) {
    return (size_t)table[p / BLOCK_SIZE] * BLOCK_SIZE + p % BLOCK_SIZE;
}

// Where dims d.. of KV head g of cache slot `slot` lie, in elements.
__device__ __forceinline__ size_t slot_offset(size_t slot, int kv_heads, int g, int d) {
    return (slot * kv_heads + g) * HEAD_DIM + d;
}

// `op` over a warp's values (xor butterfly); every lane gets the result.
template <typename Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float add(float a, float b) { return a + b; }

__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, add); }

// `op` over a block of at most 1024 threads (`identity` pads the missing warps); every thread
// gets the result.
template <typename Op>
__device__ float block_reduce(float v, Op op, float identity) {
    __shared__ float partial[32];
    __shared__ float total;
    v = warp_reduce(v, op);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < (blockDim.x + 31) / 32 ? partial[lane] : identity;
        w = warp_reduce(w, op);
        if (lane == 0) total = w;
    }
    __syncthreads();
    float t = total;
    __syncthreads();
    return t;
}

__device__ float block_sum(float v) { return block_reduce(v, add, 0.0f); }

__device__ float block_max(float v) {
    return block_reduce(v, [](float a, float b) { return fmaxf(a, b); }, NEG_INF);
}

// x[t] = table[tokens[t]] (the f32 residual stream). Grid: tokens.
extern "C" __global__ void embed(const int* tokens, const bf16* table, float* x, int hidden) {
    TIMELINE_SCOPE;
    pdl_start();
    const bf16* row = table + (size_t)tokens[blockIdx.x] * hidden;
    float* out = x + (size_t)blockIdx.x * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = bf2f(row[i]);
}

// The residual add fused with the next RMSNorm: x += delta (when given), out = norm(x) * w.
// With `rows`, output row b normalizes input row rows[b] (the sampled rows before the LM head);
// `delta` must then be null. Grid: output rows.
extern "C" __global__ void add_rmsnorm(float* x, const bf16* delta, const bf16* w, bf16* out,
                                       const int* rows, int hidden, float eps) {
    TIMELINE_SCOPE;
    pdl_start();
    int row = rows ? rows[blockIdx.x] : blockIdx.x;
    float* xr = x + (size_t)row * hidden;
    const bf16* dr = delta ? delta + (size_t)row * hidden : 0;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        float v = xr[i];
        if (dr) {
            v += bf2f(dr[i]);
            xr[i] = v;
        }
        ss += v * v;
    }
    float scale = rsqrtf(block_sum(ss) / hidden + eps);
    bf16* o = out + (size_t)blockIdx.x * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = f2bf(xr[i] * scale * bf2f(w[i]));
}

// After the fused QKV projection: bias, Qwen3's per-head q/k RMSNorm, RoPE, then q to `q_out` and
// k, v into the paged cache at each token's slot. qkv rows are [q heads | k heads | v heads].
// Grid: (tokens, heads + kv_heads in blocks of `per_block` heads); block: HEAD_DIM / 2 threads,
// one rotation pair each, looping over the block's heads (a long prefill's millions of one-head
// blocks cost more to launch than their work, and each computed its rotation again).
extern "C" __global__ void qkv_post(const bf16* qkv, const bf16* bias, const bf16* q_norm,
                                    const bf16* k_norm, const float* inv_freq, const int* pos,
                                    const int* slots, bf16* q_out, bf16* k_cache, bf16* v_cache,
                                    int heads, int kv_heads, int interleaved, float eps,
                                    int per_block) {
    TIMELINE_SCOPE;
    pdl_start();
    int t = blockIdx.x, i = threadIdx.x;
    int width = (heads + 2 * kv_heads) * HEAD_DIM;
    const bf16* row = qkv + (size_t)t * width;
    int a = interleaved ? 2 * i : i;
    int b = interleaved ? 2 * i + 1 : i + HEAD_DIM / 2;
    float s, c;
    sincosf((float)pos[t] * inv_freq[i], &s, &c);
    int first = blockIdx.y * per_block, last = min(first + per_block, heads + kv_heads);
    for (int h = first; h < last; h++) {
        int col = h * HEAD_DIM;
        float xa = bf2f(row[col + a]), xb = bf2f(row[col + b]);
        if (bias) {
            xa += bf2f(bias[col + a]);
            xb += bf2f(bias[col + b]);
        }
        bool is_q = h < heads;
        const bf16* norm = is_q ? q_norm : k_norm;
        if (norm) {
            float scale = rsqrtf(block_sum(xa * xa + xb * xb) / HEAD_DIM + eps);
            xa = xa * scale * bf2f(norm[a]);
            xb = xb * scale * bf2f(norm[b]);
        }
        float ra = xa * c - xb * s, rb = xb * c + xa * s;
        if (is_q) {
            bf16* q = q_out + ((size_t)t * heads + h) * HEAD_DIM;
            q[a] = f2bf(ra);
            q[b] = f2bf(rb);
            continue;
        }
        // A negative slot: a padding row of a CUDA graph's batch, which writes nothing.
        if (slots[t] < 0) continue;
        int g = h - heads;
        size_t dst = slot_offset(slots[t], kv_heads, g, 0);
        k_cache[dst + a] = f2bf(ra);
        k_cache[dst + b] = f2bf(rb);
        int vcol = (heads + kv_heads + g) * HEAD_DIM;
        float va = bf2f(row[vcol + a]), vb = bf2f(row[vcol + b]);
        if (bias) {
            va += bf2f(bias[vcol + a]);
            vb += bf2f(bias[vcol + b]);
        }
        v_cache[dst + a] = f2bf(va);
        v_cache[dst + b] = f2bf(vb);
    }
}

// The keys of split `split` of a token's `ctx`, dealt to `splits` chunks of at least `min_keys`:
// the later splits of a short context are empty. The split count can then come from a bound on
// the context (a CUDA graph's grid) and still give each token the same chunks as one chosen
// from its own length.
__device__ __forceinline__ int split_chunk(int ctx, int splits, int min_keys) {
    return max(min_keys, (ctx + splits - 1) / splits);
}

#define ATTN_WARPS 4
// Lanes per key in decode attention: as few as keep each lane's share of the GROUP heads' query
// and accumulators within 32 floats (registers bound occupancy), so a warp reads 32 / KL keys at
// once.
#if GROUP * HEAD_DIM <= 256
#define KL 8
#elif GROUP * HEAD_DIM <= 512
#define KL 16
#else
#define KL 32
#endif
#define KE (HEAD_DIM / KL)
#define STREAMS (ATTN_WARPS * 32 / KL)
// Keys each group loads per round.
#define DU 4

// Attention of single-token (decode) steps over their sequence's paged KV (positions 0..=pos).
// One block per (listed token, KV head, split); the split's keys are dealt to STREAMS groups of
// KL lanes, each keeping an online softmax for the GROUP query heads that share the KV head;
// the groups then merge. With one split the block writes the output; with more it writes an
// unnormalized partial (acc, max, sum) that `decode_merge` combines, so long contexts fill the
// GPU at batch 1.
extern "C" __global__ void __launch_bounds__(ATTN_WARPS * 32)
decode_attention(const bf16* q, const bf16* k_cache, const bf16* v_cache, const int* pos,
                 const int* seq_of, const int* block_tables, const int* token_list, int max_blocks,
                 int heads, int kv_heads, int splits, int min_keys, float scale_log2, bf16* out,
                 float* part_acc, float* part_ml) {
    TIMELINE_SCOPE;
    pdl_start();
    int item = blockIdx.x, g = blockIdx.y, split = blockIdx.z;
    int t = token_list[item];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int sub = lane / KL, sl = lane % KL;
    int stream = warp * (32 / KL) + sub;
    int ctx = pos[t] + 1;
    int chunk = split_chunk(ctx, splits, min_keys);
    int begin = split * chunk;
    int end = min(ctx, begin + chunk);
    if (begin >= end) return;  // decode_merge reads only the splits that hold keys
    const int* table = block_tables + (size_t)seq_of[t] * max_blocks;

    float qr[GROUP][KE];
    for (int j = 0; j < GROUP; j++) {
        load_bf16<KE>(q + ((size_t)t * heads + g * GROUP + j) * HEAD_DIM + sl * KE, qr[j]);
        for (int e = 0; e < KE; e++) qr[j][e] *= scale_log2;
    }
    float m[GROUP], l[GROUP], acc[GROUP][KE];
    for (int j = 0; j < GROUP; j++) {
        m[j] = NEG_INF;
        l[j] = 0.0f;
        for (int e = 0; e < KE; e++) acc[j][e] = 0.0f;
    }
    // Each group takes DU keys per round, all their loads issued before any is used, to keep
    // enough reads in flight. The loop condition is uniform across the warp (the shuffles need
    // every lane); a key past the end computes on zeros and leaves the state alone.
    for (int first = begin + warp * (32 / KL); first < end; first += STREAMS * DU) {
        size_t base[DU];
        #pragma unroll
        for (int u = 0; u < DU; u++) {
            int p = min(first + sub + u * STREAMS, end - 1);
            base[u] = slot_offset(paged_slot(table, p), kv_heads, g, sl * KE);
        }
        unsigned kraw[DU][KE / 2], vraw[DU][KE / 2];
        #pragma unroll
        for (int u = 0; u < DU; u++) {
            load_raw<KE>(k_cache + base[u], kraw[u]);
            load_raw<KE>(v_cache + base[u], vraw[u]);
        }
        #pragma unroll
        for (int u = 0; u < DU; u++) {
            bool ok = first + sub + u * STREAMS < end;
            #pragma unroll
            for (int j = 0; j < GROUP; j++) {
                float s = 0.0f;
                #pragma unroll
                for (int e = 0; e < KE; e++) s += qr[j][e] * raw_at(kraw[u], e);
                #pragma unroll
                for (int o = KL / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                if (ok) {
                    float m_new = fmaxf(m[j], s);
                    float corr = exp2f(m[j] - m_new);
                    float pr = exp2f(s - m_new);
                    l[j] = l[j] * corr + pr;
                    #pragma unroll
                    for (int e = 0; e < KE; e++) acc[j][e] = acc[j][e] * corr + pr * raw_at(vraw[u], e);
                    m[j] = m_new;
                }
            }
        }
    }
    __shared__ float sm_m[STREAMS][GROUP], sm_l[STREAMS][GROUP];
    __shared__ float sm_acc[STREAMS][GROUP][HEAD_DIM];
    for (int j = 0; j < GROUP; j++) {
        if (sl == 0) {
            sm_m[stream][j] = m[j];
            sm_l[stream][j] = l[j];
        }
        for (int e = 0; e < KE; e++) sm_acc[stream][j][sl * KE + e] = acc[j][e];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < GROUP * HEAD_DIM; idx += blockDim.x) {
        int j = idx / HEAD_DIM, d = idx % HEAD_DIM;
        float mm = NEG_INF;
        for (int w = 0; w < STREAMS; w++) mm = fmaxf(mm, sm_m[w][j]);
        float ll = 0.0f, aa = 0.0f;
        if (mm != NEG_INF) {
            for (int w = 0; w < STREAMS; w++) {
                float f = exp2f(sm_m[w][j] - mm);
                ll += sm_l[w][j] * f;
                aa += sm_acc[w][j][d] * f;
            }
        }
        int h = g * GROUP + j;
        if (splits == 1) {
            out[((size_t)t * heads + h) * HEAD_DIM + d] = f2bf(aa / ll);
        } else {
            size_t part = ((size_t)item * heads + h) * splits + split;
            part_acc[part * HEAD_DIM + d] = aa;
            if (d == 0) {
                part_ml[2 * part] = mm;
                part_ml[2 * part + 1] = ll;
            }
        }
    }
}

// Splits a `decode_merge` block weighs at a time (its shared memory).
#define MERGE_CHUNK 256

// Merges the partials of the splits of `decode_attention` that hold keys. Grid: (listed tokens,
// heads); block: HEAD_DIM threads. A batch-1 step merges ~32 splits a head, so the kernel is
// bound by load latency, not bandwidth: no thread's loads wait on one another. The block finds
// the splits' largest maximum (a thread a split), weighs each split in shared memory, then every
// thread sums its dimension over the splits, eight loads in flight. The sums run in split
// order, as one thread a dimension summing alone would.
extern "C" __global__ void decode_merge(const float* part_acc, const float* part_ml,
                                        const int* token_list, const int* pos, int heads,
                                        int splits, int min_keys, bf16* out) {
    TIMELINE_SCOPE;
    __shared__ float weight[MERGE_CHUNK], sum[MERGE_CHUNK];
    pdl_start();
    int item = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
    int t = token_list[item];
    int ctx = pos[t] + 1, chunk = split_chunk(ctx, splits, min_keys);
    int used = (ctx + chunk - 1) / chunk;
    const float* ml = part_ml + 2 * ((size_t)item * heads + h) * splits;
    const float* acc = part_acc + ((size_t)item * heads + h) * splits * HEAD_DIM + d;
    float mm = NEG_INF;
    for (int s = d; s < used; s += HEAD_DIM) mm = fmaxf(mm, ml[2 * s]);
    mm = block_max(mm);
    float ll = 0.0f, aa = 0.0f;
    for (int s0 = 0; s0 < used; s0 += MERGE_CHUNK) {
        int n = min(MERGE_CHUNK, used - s0);
        for (int i = d; i < n; i += HEAD_DIM) {
            float ms = ml[2 * (s0 + i)];
            weight[i] = ms == NEG_INF ? 0.0f : exp2f(ms - mm);
            sum[i] = ml[2 * (s0 + i) + 1];
        }
        __syncthreads();
        for (int i = 0; i < n; i += 8) {
            // Eight loads issued before the first is used.
            float v[8];
            #pragma unroll
            for (int j = 0; j < 8; j++) {
                v[j] = i + j < n ? acc[(size_t)(s0 + i + j) * HEAD_DIM] : 0.0f;
            }
            #pragma unroll
            for (int j = 0; j < 8; j++) {
                if (i + j < n) {
                    ll += sum[i + j] * weight[i + j];
                    aa += v[j] * weight[i + j];
                }
            }
        }
        __syncthreads();
    }
    out[((size_t)t * heads + h) * HEAD_DIM + d] = f2bf(aa / ll);
}

// Tensor-core and asynchronous-copy helpers of the attention kernels (decode_mma.cu, prefill.cu).
__device__ __forceinline__ void mma_bf16(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned shared_addr(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// 16 bytes global -> shared without registers; `bytes` 0 writes zeros and reads nothing.
__device__ __forceinline__ void copy16(void* dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_addr(dst)),
                 "l"(src), "r"(bytes));
}

__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + __expf(-g)) * u; }

// out = silu(gate) * up, from the fused gate|up projection's rows [gate | up], 8 columns per
// thread in 16-byte accesses when `inter` allows. Grid: (column blocks, tokens).
extern "C" __global__ void silu_mul(const bf16* gate_up, bf16* out, int inter) {
    TIMELINE_SCOPE;
    pdl_start();
    const bf16* row = gate_up + (size_t)blockIdx.y * 2 * inter;
    bf16* o = out + (size_t)blockIdx.y * inter;
    int stride = gridDim.x * blockDim.x;
    int vec = inter % 8 == 0 ? inter / 8 : 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < vec; i += stride) {
        unsigned g[4], u[4], r[4];
        load_raw<8>(row + 8 * i, g);
        load_raw<8>(row + inter + 8 * i, u);
        for (int k = 0; k < 4; k++) {
            r[k] = pack_bf16(silu_times(raw_at(g, 2 * k), raw_at(u, 2 * k)),
                             silu_times(raw_at(g, 2 * k + 1), raw_at(u, 2 * k + 1)));
        }
        *(uint4*)(o + 8 * i) = make_uint4(r[0], r[1], r[2], r[3]);
    }
    for (int c = 8 * vec + blockIdx.x * blockDim.x + threadIdx.x; c < inter; c += stride) {
        o[c] = f2bf(silu_times(bf2f(row[c]), bf2f(row[inter + c])));
    }
}

// Dummy weights: `center` plus uniform noise in [-spread, spread], from a hash of (seed, index),
// so any size is made on the GPU without host transfers.
extern "C" __global__ void fill_random(bf16* out, long long n, unsigned seed, float center,
                                       float spread) {
    TIMELINE_SCOPE;
    pdl_start();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        unsigned long long z = (unsigned long long)i * 0x9E3779B97F4A7C15ull + seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float u = (float)(z >> 40) * (1.0f / 16777216.0f);
        out[i] = f2bf(center + spread * (2.0f * u - 1.0f));
    }
}
