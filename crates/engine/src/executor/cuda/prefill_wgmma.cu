// Hopper prefill attention: the work of prefill.cu's kernel on warpgroup MMAs (wgmma, sm_90a),
// for head_dim 128 and KV groups of an even number of query heads.
//
// One block per (WG_HEADS query heads of one KV group, WG_TOKENS consecutive new tokens): 128
// query rows, 64 per warpgroup of the block's two. Q and tiles of WKT keys of K and V are copied
// by cp.async into shared memory in the 128-byte swizzled layout the MMAs read through matrix
// descriptors. Per tile and warpgroup, S = QKᵀ is one m64n128 MMA chain from shared memory,
// softmax runs on its accumulators in registers (they are mma.sync's C fragments, so prefill.cu's
// softmax_tile serves), and O += PV takes P from registers and V transposed from shared memory.
// Pipelined over WG_STAGES = 3 stages: the softmax of tile j + 1 runs while the PV MMAs of tile j
// do, and tile j + 2 loads meanwhile. Grid: (heads / WG_HEADS, tiles × WG_SPLIT).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && HEAD_DIM == 128 && GROUP % 2 == 0
#define WG_HEADS (GROUP % 4 == 0 ? 4 : 2)
#define WG_TOKENS (128 / WG_HEADS)
#define WG_SPLIT (QT / WG_TOKENS)
#define WKT 128
// Bytes of a 64-dim half of a row tile: rows of 128 bytes.
#define WG_HALF_Q (128 * 128)
#define WG_HALF_KV (WKT * 128)
#define WG_STAGE (4 * WG_HALF_KV)
#define WG_STAGES 3
#define WG_THREADS 256

// The 64 f32 accumulators of an m64n128 warpgroup MMA are d[0..63], laid out as 16 mma.sync
// m16n8 C fragments (d[4n..4n+3] for columns 8n..8n+7) per warp of 16 rows: operands %0..%63.
#define WGMMA_D_REGS \
    "%0, %1, %2, %3, %4, %5, %6, %7, " \
    "%8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, " \
    "%40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, " \
    "%56, %57, %58, %59, %60, %61, %62, %63"
#define WGMMA_D_OPERANDS \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), \
    "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), \
    "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), \
    "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), \
    "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), \
    "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), \
    "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), \
    "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), \
    "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// d (+)= A . B: A 64 x 16 and B 16 x 128 (keys x 16), both K-major in shared memory;
// `accumulate` 0 overwrites d.
__device__ __forceinline__ void wgmma_ss(float* d, unsigned long long a, unsigned long long b,
                                         int accumulate) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" WGMMA_D_REGS
        "}, %64, %65, p, 1, 1, 0, 0; }\n"
        : WGMMA_D_OPERANDS
        : "l"(a), "l"(b), "r"(accumulate));
}

// d += A . B: A 64 x 16 in registers (mma.sync's A fragment layout, per warp), B 16 x 128 in
// shared memory MN-major (transposed on the way in).
__device__ __forceinline__ void wgmma_rs_t(float* d, const unsigned* a, unsigned long long b) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" WGMMA_D_REGS
        "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1; }\n"
        : WGMMA_D_OPERANDS
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}

// Byte offset of dims d..d+7 (d a multiple of 8) of `row` in a tile of `rows` rows of 128 dims,
// stored as two halves of 64 dims, rows of 128 bytes whose 16-byte chunks are swizzled by row % 8.
__device__ __forceinline__ unsigned swizzled(int rows, int row, int d) {
    return (d / 64) * rows * 128 + row * 128 + ((((d % 64) / 8) ^ (row % 8)) << 4);
}

// A matrix descriptor of the 128-byte swizzle layout (its atoms 1024-byte aligned): start
// address, leading and stride byte offsets.
__device__ __forceinline__ unsigned long long descriptor(unsigned addr, unsigned lead,
                                                         unsigned stride) {
    return (unsigned long long)((addr & 0x3ffff) >> 4) | (unsigned long long)(lead >> 4) << 16 |
           (unsigned long long)(stride >> 4) << 32 | 1ull << 62;
}

__device__ __forceinline__ void copy16_to(unsigned dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(bytes));
}

// Keeps the compiler from moving accesses of an MMA's registers across the wait for it, or
// their definitions into a span where MMAs are in flight (which would serialize the MMAs).
__device__ __forceinline__ void pin(float* r, int n) {
#pragma unroll
    for (int i = 0; i < n; i++) asm volatile("" : "+f"(r[i])::"memory");
}
__device__ __forceinline__ void pin(unsigned* r, int n) {
#pragma unroll
    for (int i = 0; i < n; i++) asm volatile("" : "+r"(r[i])::"memory");
}

__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// Waits until at most N of this warpgroup's MMA groups are in flight (they finish in order).
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

extern "C" __global__ void __launch_bounds__(WG_THREADS, 1)
prefill_attention_wgmma(const bf16* q, const bf16* k_cache, const bf16* v_cache, const int* pos,
                        const int* block_tables, const int* tiles, int max_blocks, int heads,
                        int kv_heads, float scale_log2, bf16* out) {
    TIMELINE_SCOPE;
    pdl_start();
    // Q, then per stage (WG_STAGES) K and V; from a 1024-byte boundary (the swizzle atoms'
    // alignment).
    extern __shared__ __align__(1024) unsigned char wsmem[];
    unsigned qs = (shared_addr(wsmem) + 1023) & ~1023u;
    unsigned kvs = qs + 2 * WG_HALF_Q;
    PrefillBlock blk;
    if (!prefill_block(tiles, block_tables, max_blocks, WG_SPLIT, WG_TOKENS, blk)) return;
    // Row r is token first + r % WG_TOKENS (the last one, first + last_row, repeated past the
    // block's tokens, not written) of head hb + r / WG_TOKENS.
    int first = blk.first, last_row = blk.last_row;
    const int* table = blk.table;
    int hb = blockIdx.x * WG_HEADS, g = hb / GROUP;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wg = warp / 4;
    int gr = lane / 4, c = (lane % 4) * 2;

    for (int i = threadIdx.x; i < 128 * 16; i += blockDim.x) {
        int row = i / 16, d = (i % 16) * 8;
        int t = first + min(row % WG_TOKENS, last_row);
        copy16_to(qs + swizzled(128, row, d),
                  q + ((size_t)t * heads + hb + row / WG_TOKENS) * HEAD_DIM + d, 16);
    }
    // This thread's rows: warp * 16 + gr and + 8.
    int qp[2];
#pragma unroll
    for (int half = 0; half < 2; half++) {
        qp[half] = pos[first + min((warp * 16 + half * 8 + gr) % WG_TOKENS, last_row)];
    }
    int n_keys = pos[first + last_row] + 1;
    int n_tiles = (n_keys + WKT - 1) / WKT;

    auto load_tile = [&](int tile, int stage) {
        unsigned ks = kvs + stage * WG_STAGE, vs = ks + 2 * WG_HALF_KV;
        // Key tid / 16 + 16 j, dims d.. of the tile for the j-th copy: the block-table reads of all
        // of them first (unrolled, so they are in flight at once), then the copies.
        constexpr int COPIES = WKT * 16 / WG_THREADS;
        int key0 = threadIdx.x / 16, d = (threadIdx.x % 16) * 8;
        size_t slot[COPIES];
#pragma unroll
        for (int j = 0; j < COPIES; j++) {
            slot[j] = paged_slot(table, min(tile * WKT + key0 + j * (WG_THREADS / 16), n_keys - 1));
        }
#pragma unroll
        for (int j = 0; j < COPIES; j++) {
            int key = key0 + j * (WG_THREADS / 16);
            // Keys past the last land as zeros.
            int bytes = tile * WKT + key < n_keys ? 16 : 0;
            size_t base = slot_offset(slot[j], kv_heads, g, d);
            unsigned at = swizzled(WKT, key, d);
            copy16_to(ks + at, k_cache + base, bytes);
            copy16_to(vs + at, v_cache + base, bytes);
        }
        asm volatile("cp.async.commit_group;\n" ::);
    };

    float o[16][4];
#pragma unroll
    for (int dn = 0; dn < 16; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};

    // S = QKᵀ of the tile in `stage`, into s (one wgmma group).
    auto scores = [&](float (*s)[4], int stage) {
        unsigned ks = kvs + stage * WG_STAGE;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < HEAD_DIM / 16; kk++) {
            // 16 dims: 32 bytes into the rows of their half.
            unsigned at = (kk % 4) * 32;
            unsigned long long a =
                descriptor(qs + (kk / 4) * WG_HALF_Q + wg * 64 * 128 + at, 16, 1024);
            unsigned long long b = descriptor(ks + (kk / 4) * WG_HALF_KV + at, 16, 1024);
            wgmma_ss(&s[0][0], a, b, kk > 0);
        }
        wgmma_commit();
    };
    // Softmax of the tile's scores s: probabilities into pa, the factors for O into corr.
    auto softmax = [&](float (*s)[4], unsigned (*pa)[4], float* corr, int tile) {
        int kb = tile * WKT;
        softmax_tile<WKT / 8>(s, pa, m, l, corr, qp, kb, kb + WKT - 1 > min(qp[0], qp[1]), c,
                              scale_log2);
    };
    // Waits for the tile loaded last and makes it visible to the MMAs (cp.async writes through
    // the generic proxy, the MMAs read through the async one).
    auto arrived = [&](int pending) {
        if (pending) {
            asm volatile("cp.async.wait_group 1;\n" ::);
        } else {
            asm volatile("cp.async.wait_group 0;\n" ::);
        }
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();
    };

    // While O += PV of tile j runs, S of tile j + 1 is in registers for its softmax and tile j + 2
    // loads. The rescale of O waits for the PV.
    float s[WKT / 8][4];
    unsigned pa[WKT / 16][4];
    load_tile(0, 0);
    if (n_tiles > 1) {
        load_tile(1, 1);
    } else {
        asm volatile("cp.async.commit_group;\n" ::);
    }
    arrived(1);
    scores(s, 0);
    wgmma_wait<0>();
    pin(&s[0][0], 64);
    {
        float corr[2];
        softmax(s, pa, corr, 0);
    }
    for (int tile = 0; tile < n_tiles; tile++) {
        int next = tile + 1;
        pin(&s[0][0], 64);
        pin(&o[0][0], 64);
        pin(&pa[0][0], 4 * WKT / 16);
        if (next < n_tiles) {
            arrived(0);
            scores(s, next % WG_STAGES);
            // Into the stage of tile - 1 (its MMAs finished before every thread passed the
            // barrier), while the tensor cores work on S.
            if (next + 1 < n_tiles) load_tile(next + 1, (next + 1) % WG_STAGES);
        }
        unsigned vs = kvs + (tile % WG_STAGES) * WG_STAGE + 2 * WG_HALF_KV;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < WKT / 16; kk++) {
            // 16 keys: 16 rows of 128 bytes; the two halves of the dims WG_HALF_KV apart.
            wgmma_rs_t(&o[0][0], pa[kk], descriptor(vs + kk * 16 * 128, WG_HALF_KV, 1024));
        }
        wgmma_commit();
        if (next < n_tiles) {
            wgmma_wait<1>();
            pin(&s[0][0], 64);
            float corr[2];
            unsigned pn[WKT / 16][4];
            softmax(s, pn, corr, next);
            wgmma_wait<0>();
            pin(&o[0][0], 64);
            // pa stays live (in its registers) until the MMAs reading it are done.
            pin(&pa[0][0], 4 * WKT / 16);
#pragma unroll
            for (int dn = 0; dn < 16; dn++) {
                o[dn][0] *= corr[0];
                o[dn][1] *= corr[0];
                o[dn][2] *= corr[1];
                o[dn][3] *= corr[1];
            }
#pragma unroll
            for (int kk = 0; kk < WKT / 16; kk++) {
#pragma unroll
                for (int w = 0; w < 4; w++) pa[kk][w] = pn[kk][w];
            }
        } else {
            wgmma_wait<0>();
            pin(&o[0][0], 64);
        }
    }
#pragma unroll
    for (int half = 0; half < 2; half++) {
        float sum = l[half];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        float inv = 1.0f / sum;
        int row = warp * 16 + half * 8 + gr;
        if (row % WG_TOKENS > last_row) continue;
        bf16* dst = out + ((size_t)(first + row % WG_TOKENS) * heads + hb + row / WG_TOKENS) *
                              HEAD_DIM + c;
#pragma unroll
        for (int dn = 0; dn < 16; dn++) {
            *(unsigned*)(dst + dn * 8) = pack_bf16(o[dn][2 * half] * inv, o[dn][2 * half + 1] * inv);
        }
    }
}
#endif
