// Few-token projections of decode steps (appended to kernels.cu, whose helpers they use):
// y[r][row] = x[r] · w[row] for up to 8 tokens, bf16 weights streamed once near the memory
// roofline, with the residual add, RMSNorm and SiLU·up folded in, so a layer takes four of
// these instead of four GEMMs plus the small kernels between them.
//
// A block owns one multiprocessor and loops over groups of 16 output rows (16 gate + 16 up rows
// for the gate-up pair). A producer warp streams the rows through a ring of shared-memory
// stages, GEMV_KT columns a stage, with bulk asynchronous copies (one per row) that complete on
// an mbarrier; it runs ahead of the consumers by the whole ring, so every multiprocessor keeps ~100 KB of
// reads in flight. It needs nothing the previous kernel writes, so it starts before `pdl_wait`.
// Eight consumer warps split each stage's columns and multiply on the tensor cores, one
// m16n8k16 MMA per 16 rows × 16 columns × 8 tokens: the weights are the A operand and the (at
// most 8) tokens the B operand. A dot product does not care in which order its columns are
// summed, so each thread hands its 16 bytes (8 consecutive columns) of rows g and g + 8 to two
// MMAs as fragments of two k16 steps, and reads the tokens' inputs at the same columns. The
// consumers' partial sums meet in shared memory at the end of a group.
//
// Kernels:
//  - gemv_norm_store: the input is the f32 residual stream, RMS-normalized with `norm` into
//    shared memory by every block (as add_rmsnorm writes it); the rows are stored as bf16 (the
//    QKV projection).
//  - gemv_norm_silu: the same input; rows j and n + j are the gate and up rows of column j,
//    out[j] = silu(gate) · up (the gate-up projection).
//  - gemv_add: a bf16 input; the rows, rounded to bf16 as a GEMM would write them, are added to
//    the f32 residual stream (the output and down projections).
//
// The host defines GEMV_KT (columns a stage holds of each row, a multiple of 256) and each
// kernel's ring depth, GEMV_STAGES_{STORE,SILU,ADD} (gemv.rs: GemvLayout). Dynamic shared memory
// (the host computes the same): the ring, STAGES × rows × (GEMV_KT + GEMV_KT_PAD) bf16, then with
// NORM the normalized input, t × (k + GEMV_PAD) bf16.

// Bulk copies and mbarrier transaction counts need sm_90; the host uses cuBLAS before that.
#if __CUDA_ARCH__ >= 900

#define GEMV_CONSUMERS 8
#define GEMV_THREADS ((GEMV_CONSUMERS + 1) * 32)
// Row padding of a stage, in bf16 (64 bytes): rows g and g + 1 land 16 banks apart.
#define GEMV_KT_PAD 32
// Row padding of the normalized input, in bf16: spreads the 8 tokens' rows over the banks.
#define GEMV_PAD 8
#define OUT_STORE 0
#define OUT_SILU 1
#define OUT_ADD 2

__device__ __forceinline__ float round_bf(float v) { return bf2f(f2bf(v)); }

__device__ __forceinline__ void mbar_init(unsigned long long* bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_addr(bar)), "r"(count));
}

__device__ __forceinline__ void mbar_expect(unsigned long long* bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_addr(bar)),
                 "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbar_arrive(unsigned long long* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(shared_addr(bar)) : "memory");
}

// Until the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(unsigned long long* bar, unsigned parity) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "wait:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra wait;\n"
        "}\n" ::"r"(shared_addr(bar)),
        "r"(parity)
        : "memory");
}

// `bytes` (a multiple of 16) from global to shared memory, completing on `bar`.
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, unsigned bytes,
                                          unsigned long long* bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
        ::"r"(shared_addr(dst)), "l"(src), "r"(bytes), "r"(shared_addr(bar))
        : "memory");
}

// A barrier of the consumer warps alone (the producer runs on).
__device__ __forceinline__ void consumers_sync() {
    asm volatile("bar.sync 1, %0;" ::"n"(GEMV_CONSUMERS * 32) : "memory");
}

// Sum over the consumer threads; every one gets the total.
__device__ float consumers_sum(float v) {
    __shared__ float partial[GEMV_CONSUMERS];
    v = warp_sum(v);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    consumers_sync();
    float total = 0.0f;
    for (int w = 0; w < GEMV_CONSUMERS; w++) total += partial[w];
    consumers_sync();
    return total;
}

// Two k16 MMAs over one thread's 16-byte columns: `lo` from row g, `hi` from row g + 8, `x`
// from token g.
__device__ __forceinline__ void mma_columns(float* acc, uint4 lo, uint4 hi, uint4 x) {
    unsigned a0[4] = {lo.x, hi.x, lo.y, hi.y}, a1[4] = {lo.z, hi.z, lo.w, hi.w};
    mma_bf16(acc, a0, x.x, x.y);
    mma_bf16(acc, a1, x.z, x.w);
}

// `in`: f32 residual rows (NORM) or bf16 rows, t × k; `out`: bf16 t × n (OUT_STORE), bf16
// t × n (OUT_SILU: n = inter) or the f32 residual t × n (OUT_ADD). n % 16 == 0, k % 32 == 0,
// t <= 8.
template <bool NORM, int OUT>
__device__ __forceinline__ void gemv(const void* in, const bf16* norm, float eps, const bf16* w,
                                     int n, int k, int t, void* out) {
    constexpr int PARTS = OUT == OUT_SILU ? 2 : 1;  // row sets of a group: gate and up
    constexpr int ROWS = 16 * PARTS;
    constexpr int STAGES = OUT == OUT_SILU    ? GEMV_STAGES_SILU
                           : OUT == OUT_STORE ? GEMV_STAGES_STORE
                                              : GEMV_STAGES_ADD;
    constexpr int STRIDE = GEMV_KT + GEMV_KT_PAD;
    constexpr int STEPS = GEMV_KT / 32 / GEMV_CONSUMERS;  // of 32 columns, per warp and stage
    extern __shared__ __align__(128) bf16 smem[];
    __shared__ __align__(8) unsigned long long full[STAGES], empty[STAGES];
    __shared__ float partial[GEMV_CONSUMERS][PARTS][32][4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int groups = n / 16, tiles = (k + GEMV_KT - 1) / GEMV_KT;
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], GEMV_CONSUMERS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();

    if (warp == GEMV_CONSUMERS) {
        // The producer: row `lane` of each group's tiles into the ring.
        int it = 0;
        for (int group = blockIdx.x; group < groups; group += gridDim.x) {
            int row = (lane / 16) * n + group * 16 + lane % 16;
            for (int tile = 0; tile < tiles; tile++, it++) {
                int stage = it % STAGES, use = it / STAGES;
                int cols = min(GEMV_KT, k - tile * GEMV_KT);
                if (use > 0) mbar_wait(&empty[stage], (use - 1) & 1);
                if (lane == 0) mbar_expect(&full[stage], ROWS * cols * 2);
                __syncwarp();
                if (lane < ROWS) {
                    bulk_copy(smem + (stage * ROWS + lane) * STRIDE,
                              w + (size_t)row * k + tile * GEMV_KT, cols * 2, &full[stage]);
                }
            }
        }
        return;
    }

    pdl_wait();
    pdl_trigger();
    const int g = lane / 4, c = lane % 4;
    const int stride = NORM ? k + GEMV_PAD : k;
    const bf16* x;
    if constexpr (NORM) {
        // One token at a time: a single pass over all of them measured slower.
        bf16* normed = smem + STAGES * ROWS * STRIDE;
        const float* res = (const float*)in;
        for (int r = 0; r < t; r++) {
            const float* xr = res + (size_t)r * k;
            float ss = 0.0f;
            for (int i = threadIdx.x; i < k; i += GEMV_CONSUMERS * 32) ss += xr[i] * xr[i];
            float scale = rsqrtf(consumers_sum(ss) / k + eps);
            for (int i = threadIdx.x; i < k; i += GEMV_CONSUMERS * 32) {
                normed[r * stride + i] = f2bf(xr[i] * scale * bf2f(norm[i]));
            }
        }
        consumers_sync();
        x = normed;
    } else {
        x = (const bf16*)in;
    }
    const bf16* xg = x + (size_t)g * stride + 8 * c;  // token g's columns of this thread

    int it = 0;
    for (int group = blockIdx.x; group < groups; group += gridDim.x) {
        float acc[PARTS][4] = {};
        for (int tile = 0; tile < tiles; tile++, it++) {
            int stage = it % STAGES, steps = min(GEMV_KT, k - tile * GEMV_KT) / 32;
            // The inputs first (they do not depend on the stage), then the weights.
            uint4 xv[STEPS];
            #pragma unroll
            for (int j = 0; j < STEPS; j++) {
                int s = warp + GEMV_CONSUMERS * j;
                bool ok = g < t && s < steps;
                const uint4* at = (const uint4*)(xg + tile * GEMV_KT + 32 * s);
                xv[j] = ok ? *at : make_uint4(0, 0, 0, 0);
            }
            mbar_wait(&full[stage], (it / STAGES) & 1);
            const bf16* rows = smem + stage * ROWS * STRIDE + g * STRIDE + 8 * c;
            #pragma unroll
            for (int j = 0; j < STEPS; j++) {
                int s = warp + GEMV_CONSUMERS * j;
                if (s >= steps) break;
                #pragma unroll
                for (int p = 0; p < PARTS; p++) {
                    const bf16* r = rows + p * 16 * STRIDE + 32 * s;
                    mma_columns(acc[p], *(const uint4*)r, *(const uint4*)(r + 8 * STRIDE), xv[j]);
                }
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(&empty[stage]);
        }
        // acc[p][0..1]: row g, tokens 2c, 2c + 1; acc[p][2..3]: row g + 8, the same tokens.
        #pragma unroll
        for (int p = 0; p < PARTS; p++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) partial[warp][p][lane][i] = acc[p][i];
        }
        consumers_sync();
        if (warp == 0) {
            #pragma unroll
            for (int p = 0; p < PARTS; p++) {
                #pragma unroll
                for (int i = 0; i < 4; i++) {
                    float v = 0.0f;
                    for (int wi = 0; wi < GEMV_CONSUMERS; wi++) v += partial[wi][p][lane][i];
                    acc[p][i] = v;
                }
            }
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                int token = 2 * c + i % 2, row = group * 16 + g + 8 * (i / 2);
                if (token >= t) continue;
                size_t at = (size_t)token * n + row;
                if constexpr (OUT == OUT_STORE) {
                    ((bf16*)out)[at] = f2bf(acc[0][i]);
                } else if constexpr (OUT == OUT_SILU) {
                    float gate = round_bf(acc[0][i]), up = round_bf(acc[PARTS - 1][i]);
                    ((bf16*)out)[at] = f2bf(silu_times(gate, up));
                } else {
                    ((float*)out)[at] += round_bf(acc[0][i]);
                }
            }
        }
        consumers_sync();
    }
}

extern "C" __global__ void __launch_bounds__(GEMV_THREADS)
gemv_norm_store(const float* x, const bf16* norm, float eps, const bf16* w, int n, int k, int t,
                bf16* out) {
    TIMELINE_SCOPE;
    gemv<true, OUT_STORE>(x, norm, eps, w, n, k, t, out);
}

extern "C" __global__ void __launch_bounds__(GEMV_THREADS)
gemv_norm_silu(const float* x, const bf16* norm, float eps, const bf16* w, int inter, int k, int t,
               bf16* out) {
    TIMELINE_SCOPE;
    gemv<true, OUT_SILU>(x, norm, eps, w, inter, k, t, out);
}

extern "C" __global__ void __launch_bounds__(GEMV_THREADS)
gemv_add(const bf16* in, const bf16* w, int n, int k, int t, float* x) {
    TIMELINE_SCOPE;
    gemv<false, OUT_ADD>(in, 0, 0.0f, w, n, k, t, x);
}

#endif
