// Causal prefill attention on the tensor cores (FlashAttention-2 style) over the paged KV cache.
//
// One block per (PQ_HEADS query heads of one KV group, PQ_TOKENS consecutive new tokens of one
// sequence): the heads share every K/V tile, so a tile is loaded once per group instead of once
// per head. Each of the PQ_WARPS warps owns PQ_MT row tiles of 16 tokens of one head, so each K/V
// fragment read from shared memory feeds PQ_MT MMAs. Q is staged in shared memory and read back
// by ldmatrix per key tile (it would not fit in registers beside the accumulators). Tiles of KT
// keys are gathered from the pages by cp.async, two stages deep, so the next one loads while this
// one is used; softmax is online in registers, the causal mask applied only on tiles reaching the
// diagonal, and a warp skips the tiles wholly past its rows.
//
// Two blocks per multiprocessor (255 registers a thread, ~100 KiB of shared memory each).
// From the host: QT (tokens of a planned tile), PQ_HEADS, PQ_WARPS, PQ_MT. `tiles` holds (first
// token, count, sequence) triples; a tile is PQ_SPLIT blocks. Grid: (heads / PQ_HEADS,
// tiles * PQ_SPLIT).
#define KPAD (HEAD_DIM + 8)
#define PQ_ROWS (16 * PQ_MT)
#define PQ_WPH (PQ_WARPS / PQ_HEADS)
#define PQ_TOKENS (PQ_WPH * PQ_ROWS)
#define PQ_SPLIT (QT / PQ_TOKENS)

__device__ __forceinline__ void ldmatrix4(unsigned* r, const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_addr(p)));
}

__device__ __forceinline__ void ldmatrix4_trans(unsigned* r, const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_addr(p)));
}

// Online softmax over one 16-row tile's scores sc[N][4] (the C fragments of N m16n8 MMAs: rows
// gr and gr + 8, keys kb + 8n + c + {0, 1}): masks the keys past each row's position qp[half]
// where `masked`, updates the rows' maxima m (raw score units) and sums l (this thread's keys
// only), writes the probabilities as the bf16 A fragments pa[N / 2] of the PV MMAs (keys 16kk..
// 16kk + 15 in pa[kk]), and gives the factors corr by which the rows' outputs so far must be
// scaled. sc is only read: the Hopper kernel's next scores MMA may be in flight meanwhile.
template <int N>
__device__ __forceinline__ void softmax_tile(const float (*sc)[4], unsigned (*pa)[4], float* m,
                                             float* l, float* corr, const int* qp, int kb,
                                             bool masked, int c, float scale_log2) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
        auto score = [&](int n, int e) {
            bool hidden = masked && kb + n * 8 + c + e > qp[half];
            return hidden ? NEG_INF : sc[n][2 * half + e];
        };
        float mx = m[half];
#pragma unroll
        for (int n = 0; n < N; n++) mx = fmaxf(mx, fmaxf(score(n, 0), score(n, 1)));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // Key 0 is visible to every row, so the maxima are finite from the first tile on.
        corr[half] = exp2f((m[half] - mx) * scale_log2);
        float ms = mx * scale_log2;
        m[half] = mx;
        float rs = 0.0f;
#pragma unroll
        for (int n = 0; n < N; n++) {
            float p0 = exp2f(fmaf(score(n, 0), scale_log2, -ms));
            float p1 = exp2f(fmaf(score(n, 1), scale_log2, -ms));
            rs += p0 + p1;
            pa[n / 2][half + 2 * (n % 2)] = pack_bf16(p0, p1);
        }
        l[half] = l[half] * corr[half] + rs;
    }
}

// A prefill attention block's work: item blockIdx.y of the tile list read backwards (so the latest,
// longest parts of the latest tiles start first and the short ones fill the end), each tile
// `split` blocks of `tokens` tokens. False where the block falls past its tile's tokens.
struct PrefillBlock {
    int first;         // the block's first token
    int last_row;      // its last token is first + last_row
    const int* table;  // the sequence's block table
};

__device__ __forceinline__ bool prefill_block(const int* tiles, const int* block_tables,
                                              int max_blocks, int split, int tokens,
                                              PrefillBlock& blk) {
    int item = gridDim.y - 1 - blockIdx.y;
    const int* tile = tiles + 3 * (item / split);
    int tb = (item % split) * tokens;
    if (tb >= tile[1]) return false;
    blk.first = tile[0] + tb;
    blk.last_row = min(tile[1] - tb, tokens) - 1;
    blk.table = block_tables + (size_t)tile[2] * max_blocks;
    return true;
}

extern "C" __global__ void __launch_bounds__(PQ_WARPS * 32, 2)
prefill_attention(const bf16* q, const bf16* k_cache, const bf16* v_cache, const int* pos,
                  const int* block_tables, const int* tiles, int max_blocks,
                  int heads, int kv_heads, float scale_log2, bf16* out) {
    TIMELINE_SCOPE;
    pdl_start();
    extern __shared__ __align__(16) bf16 smem[];
    // Q as [warp][row][KPAD], then K as [stage][key][KPAD], then V the same.
    bf16* qs = smem;
    bf16* ks = qs + PQ_WARPS * PQ_ROWS * KPAD;
    bf16* vs = ks + 2 * KT * KPAD;
    PrefillBlock blk;
    if (!prefill_block(tiles, block_tables, max_blocks, PQ_SPLIT, PQ_TOKENS, blk)) return;
    // Rows past the block's tokens (first + [0, last_row]) repeat the last one and are not written.
    int first = blk.first, last_row = blk.last_row;
    const int* table = blk.table;
    int hb = blockIdx.x * PQ_HEADS, g = hb / GROUP;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int h = hb + warp / PQ_WPH;
    int wt = (warp % PQ_WPH) * PQ_ROWS;  // the warp's first row among the block's tokens
    int gr = lane / 4, c = (lane % 4) * 2;

    for (int i = threadIdx.x; i < PQ_WARPS * PQ_ROWS * (HEAD_DIM / 8); i += blockDim.x) {
        int row = i / (HEAD_DIM / 8), d = (i % (HEAD_DIM / 8)) * 8;
        int w = row / PQ_ROWS;
        int t = first + min((w % PQ_WPH) * PQ_ROWS + row % PQ_ROWS, last_row);
        copy16(qs + row * KPAD + d, q + ((size_t)t * heads + hb + w / PQ_WPH) * HEAD_DIM + d, 16);
    }

    // Positions of this thread's rows: row tile mt, rows gr and gr + 8.
    int qp[PQ_MT][2];
#pragma unroll
    for (int mt = 0; mt < PQ_MT; mt++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            qp[mt][half] = pos[first + min(wt + mt * 16 + half * 8 + gr, last_row)];
        }
    }
    int first_pos = pos[first + min(wt, last_row)];
    int warp_last = pos[first + min(wt + PQ_ROWS - 1, last_row)];
    int n_keys = pos[first + last_row] + 1;
    int n_tiles = (n_keys + KT - 1) / KT;

    float o[PQ_MT][HEAD_DIM / 8][4];
#pragma unroll
    for (int mt = 0; mt < PQ_MT; mt++) {
#pragma unroll
        for (int dn = 0; dn < HEAD_DIM / 8; dn++) {
            o[mt][dn][0] = o[mt][dn][1] = o[mt][dn][2] = o[mt][dn][3] = 0.0f;
        }
    }
    // Row maxima (in raw score units) and sums, per row tile and half.
    float m[PQ_MT][2], l[PQ_MT][2];
#pragma unroll
    for (int mt = 0; mt < PQ_MT; mt++) {
        m[mt][0] = m[mt][1] = NEG_INF;
        l[mt][0] = l[mt][1] = 0.0f;
    }

    auto load_tile = [&](int tile, int stage) {
        for (int i = threadIdx.x; i < KT * HEAD_DIM / 8; i += blockDim.x) {
            int key = i / (HEAD_DIM / 8), d = (i % (HEAD_DIM / 8)) * 8;
            int p = tile * KT + key;
            // Keys past the last read nothing and land as zeros.
            size_t base = p < n_keys ? slot_offset(paged_slot(table, p), kv_heads, g, d) : 0;
            int bytes = p < n_keys ? 16 : 0;
            copy16(ks + (stage * KT + key) * KPAD + d, k_cache + base, bytes);
            copy16(vs + (stage * KT + key) * KPAD + d, v_cache + base, bytes);
        }
        asm volatile("cp.async.commit_group;\n" ::);
    };

    // A fragments: lane l addresses row l % 16 at dims kk*16 + (l / 16)*8.
    const bf16* qrow = qs + (warp * PQ_ROWS + lane % 16) * KPAD + (lane / 16) * 8;
    load_tile(0, 0);
    for (int tile = 0; tile < n_tiles; tile++) {
        int stage = tile & 1;
        if (tile + 1 < n_tiles) {
            load_tile(tile + 1, stage ^ 1);
        } else {
            asm volatile("cp.async.commit_group;\n" ::);
        }
        asm volatile("cp.async.wait_group 1;\n" ::);
        __syncthreads();
        int kb = tile * KT;
        if (kb <= warp_last) {
            const bf16* kt = ks + stage * KT * KPAD;
            const bf16* vt = vs + stage * KT * KPAD;
            float sc[PQ_MT][KT / 8][4];
#pragma unroll
            for (int mt = 0; mt < PQ_MT; mt++) {
#pragma unroll
                for (int n = 0; n < KT / 8; n++) {
                    sc[mt][n][0] = sc[mt][n][1] = sc[mt][n][2] = sc[mt][n][3] = 0.0f;
                }
            }
            // K's fragments: lane l addresses key n*8 + l%8 at dims (kk + l/16)*16 + (l/8 % 2)*8,
            // giving the B fragments of kk and kk + 1.
            const bf16* krow = kt + (lane % 8) * KPAD + (lane / 16) * 16 + ((lane / 8) % 2) * 8;
#pragma unroll
            for (int kk = 0; kk < HEAD_DIM / 16; kk += 2) {
                unsigned qa[PQ_MT][2][4];
#pragma unroll
                for (int mt = 0; mt < PQ_MT; mt++) {
                    ldmatrix4(qa[mt][0], qrow + mt * 16 * KPAD + kk * 16);
                    ldmatrix4(qa[mt][1], qrow + mt * 16 * KPAD + kk * 16 + 16);
                }
#pragma unroll
                for (int n = 0; n < KT / 8; n++) {
                    unsigned b[4];
                    ldmatrix4(b, krow + n * 8 * KPAD + kk * 16);
#pragma unroll
                    for (int mt = 0; mt < PQ_MT; mt++) {
                        mma_bf16(sc[mt][n], qa[mt][0], b[0], b[1]);
                        mma_bf16(sc[mt][n], qa[mt][1], b[2], b[3]);
                    }
                }
            }
            // Only tiles reaching past a row's position need the causal mask.
            bool masked = kb + KT - 1 > first_pos;
            unsigned pa[PQ_MT][KT / 16][4];
#pragma unroll
            for (int mt = 0; mt < PQ_MT; mt++) {
                float corr[2];
                softmax_tile<KT / 8>(sc[mt], pa[mt], m[mt], l[mt], corr, qp[mt], kb, masked, c,
                                     scale_log2);
#pragma unroll
                for (int dn = 0; dn < HEAD_DIM / 8; dn++) {
                    o[mt][dn][0] *= corr[0];
                    o[mt][dn][1] *= corr[0];
                    o[mt][dn][2] *= corr[1];
                    o[mt][dn][3] *= corr[1];
                }
            }
            // Lanes 0-15 address keys kk*16 + 0..15 of dims dn*8.., lanes 16-31 those of
            // (dn+1)*8..; transposed, they land as the B fragments of dn and dn + 1.
            int mi = lane / 8;
            const bf16* vrow = vt + ((mi & 1) * 8 + lane % 8) * KPAD + (mi >> 1) * 8;
#pragma unroll
            for (int kk = 0; kk < KT / 16; kk++) {
#pragma unroll
                for (int dn = 0; dn < HEAD_DIM / 8; dn += 2) {
                    unsigned b[4];
                    ldmatrix4_trans(b, vrow + kk * 16 * KPAD + dn * 8);
#pragma unroll
                    for (int mt = 0; mt < PQ_MT; mt++) {
                        mma_bf16(o[mt][dn], pa[mt][kk], b[0], b[1]);
                        mma_bf16(o[mt][dn + 1], pa[mt][kk], b[2], b[3]);
                    }
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < PQ_MT; mt++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            float sum = l[mt][half];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            float inv = 1.0f / sum;
            int row = wt + mt * 16 + half * 8 + gr;
            if (row > last_row) continue;
            bf16* dst = out + ((size_t)(first + row) * heads + h) * HEAD_DIM + c;
#pragma unroll
            for (int dn = 0; dn < HEAD_DIM / 8; dn++) {
                *(unsigned*)(dst + dn * 8) =
                    pack_bf16(o[mt][dn][2 * half] * inv, o[mt][dn][2 * half + 1] * inv);
            }
        }
    }
}
