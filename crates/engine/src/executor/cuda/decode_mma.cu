// Decode attention on the tensor cores (appended to kernels.cu, whose helpers it uses), for
// GROUP <= 8 and HEAD_DIM <= 128: the same work and outputs as `decode_attention` (one item
// per listed token, KV head and split; partials for `decode_merge` when split), but each item
// is one warp whose GROUP query heads are the rows of m16n8k16 MMAs, 16 keys at a time.
//
// S = Q·Kᵀ takes Q as the A operand (row g of each thread: head g; rows g + 8 and past GROUP zero)
// and 8 keys a tile as B. A dot product does not care in which order the head dimensions are
// summed, so each thread loads 16 contiguous bytes of Q and of its key per 32 dimensions and
// hands them to two k16 steps (as the GEMVs do). The softmax runs online on S's fragments, whose
// rows are the heads, so the probabilities are already P's A fragments for O += P·V. V's B
// fragments need keys along k: each thread's 16 bytes of V (8 dimensions of key g) are four
// words of four 8 × 8 tiles, which `movmatrix` transposes in registers; the output dimensions
// come out permuted in the same way, and each thread writes its 16 contiguous bytes back. Each
// warp loads the next 16 keys while it computes on these (two sets of registers): with only a
// few warps per multiprocessor at this register count, that keeps the reads in flight.
#if GROUP <= 8 && HEAD_DIM <= 128

#define MMA_ITEMS 4                // warps (items) per block
#define DJ (HEAD_DIM / 32)         // 16-byte chunks of a key row per thread

__device__ __forceinline__ unsigned transpose8x8(unsigned v) {
    unsigned r;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(r) : "r"(v));
    return r;
}

__device__ __forceinline__ unsigned word(uint4 v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

extern "C" __global__ void __launch_bounds__(MMA_ITEMS * 32)
decode_attention_mma(const bf16* q, const bf16* k_cache, const bf16* v_cache, const int* pos,
                     const int* seq_of, const int* block_tables, const int* token_list,
                     int max_blocks, int heads, int kv_heads, int splits, int min_keys,
                     float scale_log2, bf16* out, float* part_acc, float* part_ml, int tokens) {
    TIMELINE_SCOPE;
    pdl_start();
    int item = blockIdx.x * MMA_ITEMS + threadIdx.x / 32;
    if (item >= tokens * kv_heads * splits) return;
    int split = item % splits, kvh = (item / splits) % kv_heads, listed = item / splits / kv_heads;
    int t = token_list[listed];
    int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    int ctx = pos[t] + 1;
    int chunk = split_chunk(ctx, splits, min_keys);
    int begin = split * chunk, end = min(ctx, begin + chunk);
    if (begin >= end) return;  // decode_merge reads only the splits that hold keys
    const int* table = block_tables + (size_t)seq_of[t] * max_blocks;

    // Q: row g is head kvh·GROUP + g (zero past GROUP).
    uint4 qr[DJ];
    const bf16* q_head = q + ((size_t)t * heads + kvh * GROUP + g) * HEAD_DIM + 8 * c;
    #pragma unroll
    for (int j = 0; j < DJ; j++) {
        qr[j] = g < GROUP ? *(const uint4*)(q_head + 32 * j) : make_uint4(0, 0, 0, 0);
    }
    // o[j][w][0..1]: row g; [2..3] belong to the zero rows g + 8.
    float o[DJ][4][4] = {};
    float m = NEG_INF, l = 0.0f;

    uint4 kr[2][DJ], vr[2][DJ];
    auto load = [&](int k0, uint4 (*kd)[DJ], uint4 (*vd)[DJ]) {
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            int p = min(k0 + 8 * h + g, end - 1);
            size_t base = slot_offset(paged_slot(table, p), kv_heads, kvh, 8 * c);
            #pragma unroll
            for (int j = 0; j < DJ; j++) {
                kd[h][j] = *(const uint4*)(k_cache + base + 32 * j);
                vd[h][j] = *(const uint4*)(v_cache + base + 32 * j);
            }
        }
    };
    load(begin, kr, vr);
    for (int k0 = begin; k0 < end; k0 += 16) {
        uint4 nk[2][DJ], nv[2][DJ];
        if (k0 + 16 < end) load(k0 + 16, nk, nv);
        // s[h][0..1]: row g × keys k0 + 8h + 2c + (0, 1) (2..3: the zero rows).
        float s[2][4] = {};
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            #pragma unroll
            for (int j = 0; j < DJ; j++) {
                unsigned a0[4] = {qr[j].x, 0u, qr[j].y, 0u};
                unsigned a1[4] = {qr[j].z, 0u, qr[j].w, 0u};
                mma_bf16(s[h], a0, kr[h][j].x, kr[h][j].y);
                mma_bf16(s[h], a1, kr[h][j].z, kr[h][j].w);
            }
        }
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            #pragma unroll
            for (int e = 0; e < 2; e++) {
                bool valid = k0 + 8 * h + 2 * c + e < end;
                s[h][e] = valid ? s[h][e] * scale_log2 : NEG_INF;
            }
        }
        // Online softmax of row g; its 16 scores are spread over its 4 threads (c).
        float mx = fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        float m_new = fmaxf(m, mx);  // finite: the tile has a valid key
        float corr = exp2f(m - m_new);
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            #pragma unroll
            for (int e = 0; e < 2; e++) s[h][e] = exp2f(s[h][e] - m_new);
        }
        l = l * corr + s[0][0] + s[0][1] + s[1][0] + s[1][1];
        m = m_new;
        #pragma unroll
        for (int j = 0; j < DJ; j++) {
            #pragma unroll
            for (int w = 0; w < 4; w++) {
                o[j][w][0] *= corr;
                o[j][w][1] *= corr;
            }
        }
        // P as A (keys along k: the first tile's columns, then the second's; rows g + 8 zero).
        unsigned pa[4] = {pack_bf16(s[0][0], s[0][1]), 0u, pack_bf16(s[1][0], s[1][1]), 0u};
        // V: word w of key g's chunk j holds dimensions 32j + 8c + 2w + (0, 1); transposed, thread
        // (g, c) holds keys 2c, 2c + 1 of dimension 32j + 8(g / 2) + 2w + g % 2.
        #pragma unroll
        for (int j = 0; j < DJ; j++) {
            #pragma unroll
            for (int w = 0; w < 4; w++) {
                mma_bf16(o[j][w], pa, transpose8x8(word(vr[0][j], w)),
                         transpose8x8(word(vr[1][j], w)));
            }
        }
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            #pragma unroll
            for (int j = 0; j < DJ; j++) {
                kr[h][j] = nk[h][j];
                vr[h][j] = nv[h][j];
            }
        }
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (g >= GROUP) return;
    // o[j][w][e]: row g, dimension 32j + 8c + 2w + e.
    int h = kvh * GROUP + g;
    #pragma unroll
    for (int j = 0; j < DJ; j++) {
        int dim = 32 * j + 8 * c;
        if (splits == 1) {
            float inv = 1.0f / l;
            unsigned packed[4];
            #pragma unroll
            for (int w = 0; w < 4; w++) packed[w] = pack_bf16(o[j][w][0] * inv, o[j][w][1] * inv);
            *(uint4*)(out + ((size_t)t * heads + h) * HEAD_DIM + dim) =
                make_uint4(packed[0], packed[1], packed[2], packed[3]);
        } else {
            size_t part = ((size_t)listed * heads + h) * splits + split;
            float* acc = part_acc + part * HEAD_DIM + dim;
            #pragma unroll
            for (int w = 0; w < 4; w++) *(float2*)(acc + 2 * w) = make_float2(o[j][w][0], o[j][w][1]);
            if (j == 0 && c == 0) {
                part_ml[2 * part] = m;
                part_ml[2 * part + 1] = l;
            }
        }
    }
}

#endif
