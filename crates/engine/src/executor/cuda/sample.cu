// Sampling on the GPU (appended to kernels.cu, whose helpers it uses): one block per row of
// logits, with the row's draw in `params` as 5 floats (temperature, top_k, top_p, min_p, u),
// the token id to `out`. Only the ids go back to the host.
//
// Temperature 0 is greedy: the largest logit, ties to the lowest id. Otherwise the kept tokens
// are those whose logit is at or above one cut, the highest of: the k-th largest logit (top-k);
// the highest cut whose kept probability mass still reaches top_p of the top-k set's (top-p);
// max + T·ln(min_p) (min-p). Each cut is found by bisection on the logit value with block-wide
// counts or sums over the row (which stays in L2), so ties at a cut are all kept. Then u times
// the kept mass picks a token by inverse CDF over the kept tokens in a fixed order (each
// thread's strided elements in turn): a draw from the same distribution as in any other order.

#define SAMPLE_THREADS 1024
// Bisection steps: enough to close the gap between two adjacent floats.
#define BISECT 40

// The lowest index of the block whose `v` equals `best`.
__device__ int block_first_index(float v, int index, float best) {
    __shared__ int first;
    if (threadIdx.x == 0) first = 0x7fffffff;
    __syncthreads();
    if (v == best) atomicMin(&first, index);
    __syncthreads();
    int r = first;
    __syncthreads();
    return r;
}

// Exclusive prefix sum of `v` over the block in thread order; `total` gets the sum.
__device__ float block_exclusive_scan(float v, float* total) {
    __shared__ float warp_sums[32];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float inclusive = v;
    for (int o = 1; o < 32; o <<= 1) {
        float up = __shfl_up_sync(0xffffffffu, inclusive, o);
        if (lane >= o) inclusive += up;
    }
    if (lane == 31) warp_sums[warp] = inclusive;
    __syncthreads();
    float before = 0.0f, all = 0.0f;
    for (int w = 0; w < (blockDim.x + 31) / 32; w++) {
        if (w < warp) before += warp_sums[w];
        all += warp_sums[w];
    }
    __syncthreads();
    *total = all;
    return before + inclusive - v;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
sample(const float* logits, int vocab, const float* params, int* out) {
    TIMELINE_SCOPE;
    pdl_start();
    const float* row = logits + (size_t)blockIdx.x * vocab;
    const float* p = params + 5 * blockIdx.x;
    float temperature = p[0], top_k = p[1], top_p = p[2], min_p = p[3], u = p[4];

    float best = NEG_INF, lowest = -NEG_INF;
    int index = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        float v = row[i];
        if (v > best) {
            best = v;
            index = i;
        }
        lowest = fminf(lowest, v);
    }
    float mx = block_max(best);
    int first = block_first_index(best, index, mx);
    lowest = -block_max(-lowest);
    if (temperature <= 0.0f || !(mx > NEG_INF)) {
        if (threadIdx.x == 0) out[blockIdx.x] = first < vocab ? first : 0;
        return;
    }
    // Weight of a logit relative to the largest: exp((v - mx) / T) as exp2.
    const float scale = 1.4426950408889634f / temperature;
    auto count = [&](float cut) {
        float n = 0.0f;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) n += row[i] >= cut ? 1.0f : 0.0f;
        return block_sum(n);
    };
    auto mass = [&](float cut) {
        float m = 0.0f;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            float v = row[i];
            if (v >= cut) m += exp2f((v - mx) * scale);
        }
        return block_sum(m);
    };
    float cut = lowest;
    if (top_k > 0.0f && top_k < (float)vocab) {
        float lo = lowest, hi = mx;
        for (int s = 0; s < BISECT; s++) {
            float mid = 0.5f * (lo + hi);
            if (count(mid) >= top_k) lo = mid; else hi = mid;
        }
        cut = lo;
    }
    if (top_p < 1.0f) {
        float want = fmaxf(top_p, 0.0f) * mass(cut);
        float lo = cut, hi = mx;
        for (int s = 0; s < BISECT; s++) {
            float mid = 0.5f * (lo + hi);
            if (mass(mid) >= want) lo = mid; else hi = mid;
        }
        cut = lo;
    }
    if (min_p > 0.0f) cut = fmaxf(cut, mx + temperature * logf(fminf(min_p, 1.0f)));

    float mine = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        float v = row[i];
        if (v >= cut) mine += exp2f((v - mx) * scale);
    }
    float total;
    float before = block_exclusive_scan(mine, &total);
    float target = u * total;
    __shared__ int chosen;
    if (threadIdx.x == 0) chosen = -1;
    __syncthreads();
    if (before <= target && target < before + mine) {
        float acc = before;
        int last = -1;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            float v = row[i];
            if (v < cut) continue;
            last = i;
            acc += exp2f((v - mx) * scale);
            if (acc > target) break;
        }
        chosen = last;  // at most one thread's range holds the target
    }
    __syncthreads();
    // Rounding can leave the target past every range: the most likely token then.
    if (threadIdx.x == 0) out[blockIdx.x] = chosen >= 0 ? chosen : first;
}
