// pio's GPU sampler: picks the next token from one row of bf16 logits without copying the
// vocabulary to the host. Two kernels:
//   pio_topk_partial: each block takes a slice of the vocabulary, applies the repetition and
//     presence penalties, and keeps its K best (value, id) pairs;
//   pio_sample_final: one block merges the candidates, keeps the global K best, applies
//     temperature, top-p and min-p, draws with a counter-based RNG (seed, step), writes the
//     token id (also into the next step's input) and marks it as seen.
// K <= 64. Greedy decoding is K = 1.
typedef unsigned short bf16;
#define NEG_INF __int_as_float(0xff800000)
#define SLICE 2048
#define MAXK 64
#define MAXC 4864

__device__ __forceinline__ float bf2f(bf16 x) { return __uint_as_float(((unsigned)x) << 16); }

// Larger value first; on equal values the lower id.
__device__ __forceinline__ bool better(float a, int ia, float b, int ib) {
    return a > b || (a == b && ia < ib);
}

// Block-wide argmax over shared arrays; returns the winning index into the arrays.
__device__ int block_argmax(const float* v, const int* ids, int n, float* rv, int* ri) {
    float best = NEG_INF; int bid = 0x7fffffff; int bpos = -1;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (ids[i] >= 0 && (bpos < 0 || better(v[i], ids[i], best, bid))) { best = v[i]; bid = ids[i]; bpos = i; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oid = __shfl_xor_sync(0xffffffffu, bid, o);
        int op = __shfl_xor_sync(0xffffffffu, bpos, o);
        if (op >= 0 && (bpos < 0 || better(ov, oid, best, bid))) { best = ov; bid = oid; bpos = op; }
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) { rv[warp] = best; ri[warp] = bpos; }
    __syncthreads();
    if (threadIdx.x == 0) {
        int nw = (blockDim.x + 31) / 32; float b = NEG_INF; int bi = -1; int bidd = 0x7fffffff;
        for (int w = 0; w < nw; ++w) {
            int p = ri[w];
            if (p >= 0 && (bi < 0 || better(rv[w], ids[p], b, bidd))) { b = rv[w]; bi = p; bidd = ids[p]; }
        }
        ri[0] = bi;
    }
    __syncthreads();
    int r = ri[0];
    __syncthreads();
    return r;
}

extern "C" __global__ void pio_topk_partial(
    const bf16* __restrict__ logits, int vocab, int k,
    const unsigned char* __restrict__ seen, const int* __restrict__ gen_count,
    float repetition_penalty, float presence_penalty,
    float* __restrict__ cand_v, int* __restrict__ cand_i)
{
    __shared__ float v[SLICE];
    __shared__ int ids[SLICE];
    __shared__ float rv[32];
    __shared__ int ri[32];
    const int base = blockIdx.x * SLICE;
    for (int i = threadIdx.x; i < SLICE; i += blockDim.x) {
        int id = base + i;
        float x = NEG_INF;
        if (id < vocab) {
            x = bf2f(logits[id]);
            if (x != x) x = NEG_INF;  // NaN never wins
            if (repetition_penalty != 1.0f && seen[id]) x = x > 0.0f ? x / repetition_penalty : x * repetition_penalty;
            if (presence_penalty != 0.0f && gen_count[id] > 0) x -= presence_penalty;
        }
        v[i] = x;
        ids[i] = id < vocab ? id : -1;
    }
    __syncthreads();
    for (int j = 0; j < k; ++j) {
        int p = block_argmax(v, ids, SLICE, rv, ri);
        if (threadIdx.x == 0) {
            cand_v[blockIdx.x * k + j] = p >= 0 ? v[p] : NEG_INF;
            cand_i[blockIdx.x * k + j] = p >= 0 ? ids[p] : -1;
            if (p >= 0) ids[p] = -1;
        }
        __syncthreads();
    }
}

__device__ __forceinline__ unsigned long long splitmix(unsigned long long x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

extern "C" __global__ void pio_sample_final(
    const float* __restrict__ cand_v, const int* __restrict__ cand_i, int n_cand, int k,
    float temperature, float top_p, float min_p,
    unsigned long long seed, unsigned long long step,
    int* __restrict__ out_token, int* __restrict__ next_input,
    unsigned char* __restrict__ seen, int* __restrict__ gen_count)
{
    __shared__ float v[MAXC];
    __shared__ int ids[MAXC];
    __shared__ float rv[32];
    __shared__ int ri[32];
    __shared__ float top_v[MAXK];
    __shared__ int top_i[MAXK];
    for (int i = threadIdx.x; i < n_cand; i += blockDim.x) { v[i] = cand_v[i]; ids[i] = cand_i[i]; }
    __syncthreads();
    int kept = 0;
    for (int j = 0; j < k; ++j) {
        int p = block_argmax(v, ids, n_cand, rv, ri);
        if (threadIdx.x == 0) {
            top_v[j] = p >= 0 ? v[p] : NEG_INF;
            top_i[j] = p >= 0 ? ids[p] : -1;
            if (p >= 0) ids[p] = -1;
        }
        __syncthreads();
    }
    if (threadIdx.x != 0) return;
    for (int j = 0; j < k; ++j) if (top_i[j] >= 0 && top_v[j] != NEG_INF) kept = j + 1;
    int choice = top_i[0];
    if (temperature > 0.0f && kept > 1) {
        float p[MAXK]; float total = 0.0f;
        for (int j = 0; j < kept; ++j) { p[j] = __expf((top_v[j] - top_v[0]) / temperature); total += p[j]; }
        for (int j = 0; j < kept; ++j) p[j] /= total;
        // top-p: the smallest prefix with mass >= top_p; min-p: drop p < min_p * p_max.
        int n = kept; float mass = 0.0f;
        for (int j = 0; j < kept; ++j) { mass += p[j]; if (mass >= top_p) { n = j + 1; break; } }
        int m = n;
        for (int j = 1; j < n; ++j) if (p[j] < min_p * p[0]) { m = j; break; }
        float sum = 0.0f;
        for (int j = 0; j < m; ++j) sum += p[j];
        const double u = (double)(splitmix(seed ^ splitmix(step)) >> 11) * (1.0 / 9007199254740992.0) * sum;
        double acc = 0.0;
        choice = top_i[m - 1];
        for (int j = 0; j < m; ++j) { acc += p[j]; if (u < acc) { choice = top_i[j]; break; } }
    }
    *out_token = choice;
    *next_input = choice;
    if (choice >= 0) { seen[choice] = 1; gen_count[choice] += 1; }
}

// Greedy picks of a batch: the argmax of each of `rows` rows of bf16 logits (`vocab` each), the
// lowest id among equal values (as the host sampler picks); NaNs never win. One block per row.
extern "C" __global__ void pio_argmax_rows(const bf16* __restrict__ logits, int vocab,
                                           int* __restrict__ out)
{
    __shared__ float rv[32];
    __shared__ int ri[32];
    const bf16* row = logits + (size_t)blockIdx.x * vocab;
    float best = NEG_INF; int bid = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = bf2f(row[i]);
        if (v > best || (v == best && i < bid)) { best = v; bid = i; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const int oid = __shfl_xor_sync(0xffffffffu, bid, o);
        if (better(ov, oid, best, bid)) { best = ov; bid = oid; }
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) { rv[warp] = best; ri[warp] = bid; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x + 31) / 32; ++w)
            if (better(rv[w], ri[w], best, bid)) { best = rv[w]; bid = ri[w]; }
        // A row of -inf or NaN only: id 0, as the host's argmax gives.
        out[blockIdx.x] = bid == 0x7fffffff ? 0 : bid;
    }
}
