{% include "common/pio.cuh" %}
// {{ doc }}
// Prefill attention: causal grouped-query attention over the layer's KV cache
// ([KV_HEADS, CTX, D]); a query at position p sees keys 0..=p. One block per (query head, token),
// warps over keys. The arithmetic is HF's bf16 eager attention: scores = bf16(bf16(q.k) * SCALE),
// softmax in f32 rounded to bf16, then P.V accumulated in f32 and rounded. Three passes over the
// keys (max, sum, P.V); scores of the first SC_MAX keys are kept in shared memory, later ones
// are recomputed. Used for head sizes that are not a multiple of 16; the others prefill on tensor
// cores (attention_mma.cu). Decode uses attention_cluster.cu.
// Paged (BS > 0, the batching engine's batch steps): token t belongs to sequence seq_index[t],
// whose block table (MAX_BLOCKS entries) names the pool block of each BS positions; a block
// holds every layer's rows (BLOCK_ELEMS bf16), this layer's at kc / vc as [KV_HEADS, BS, D]; a
// query at position p sees keys 0..=p of its own sequence.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define D {{ d }}
#define WARPS {{ warps }}
#define SCALE {{ scale }}
#define Q_STRIDE {{ q_stride }}
{% if block_size > 0 %}
#define BS {{ block_size }}
#define BLOCK_ELEMS {{ block_elems }}
#define MAX_BLOCKS {{ max_blocks }}
{% else %}
#define CTX {{ ctx }}
{% endif %}
#define SC_MAX {{ sc_max }}
#define PER_LANE ((D + 31) / 32)

// The rounded score of one key: a warp's dot product, summed over its lanes.
__device__ __forceinline__ float score(const float (&qv)[PER_LANE], const bf16* __restrict__ krow,
                                       int lane) {
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        int i = lane + 32 * j;
        if (i < D) s = fmaf(qv[j], bf2f(krow[i]), s);
    }
    return rbf(rbf(warp_sum(s)) * SCALE);
}

// The row of position `key` of kv head `kvh` (in a sequence's blocks when paged).
__device__ __forceinline__ const bf16* row(const bf16* __restrict__ base,
                                           const int* __restrict__ table, int kvh, int key) {
{% if block_size > 0 %}
    return base + (size_t)table[key / BS] * BLOCK_ELEMS + ((size_t)kvh * BS + key % BS) * D;
{% else %}
    return base + ((size_t)kvh * CTX + key) * D;
{% endif %}
}

// The block's reduction of one value per warp (lane 0's), max or sum.
__device__ __forceinline__ float block_reduce(float v, bool is_max, float* red) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = red[0];
#pragma unroll
    for (int w = 1; w < WARPS; ++w) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    __syncthreads();
    return r;
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions,{% if block_size > 0 %} const int* __restrict__ seq_index,
    const int* __restrict__ block_tables,{% endif %} bf16* __restrict__ out)
{
    pdl_wait();
    pdl_launch_dependents();
    const int h = blockIdx.x;
    const int t = blockIdx.y;
    const int kvh = h / (HEADS / KV_HEADS);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int len = positions[t] + 1;
    __shared__ float sc[SC_MAX], red[WARPS], sacc[WARPS][D];
    float qv[PER_LANE], acc[PER_LANE];
    const bf16* qrow = q + (size_t)t * Q_STRIDE + (size_t)h * D;
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        int i = lane + 32 * j;
        qv[j] = i < D ? bf2f(qrow[i]) : 0.0f;
        acc[j] = 0.0f;
    }
{% if block_size > 0 %}
    const int* table = block_tables + (size_t)seq_index[t] * MAX_BLOCKS;
{% else %}
    const int* table = nullptr;
{% endif %}
    // Pass 1: scores and their maximum.
    float m = NEG_INF;
    for (int key = warp; key < len; key += WARPS) {
        const float s = score(qv, row(kc, table, kvh, key), lane);
        if (key < SC_MAX && lane == 0) sc[key] = s;
        m = fmaxf(m, s);
    }
    const float M = block_reduce(m, true, red);
    // Pass 2: the softmax denominator.
    float l = 0.0f;
    for (int key = warp; key < len; key += WARPS) {
        const float s = key < SC_MAX ? sc[key] : score(qv, row(kc, table, kvh, key), lane);
        l += __expf(s - M);
    }
    const float L = block_reduce(l, false, red);
    // Pass 3: P.V with P rounded to bf16.
    for (int key = warp; key < len; key += WARPS) {
        const float s = key < SC_MAX ? sc[key] : score(qv, row(kc, table, kvh, key), lane);
        const float p = rbf(__fdiv_rn(__expf(s - M), L));
        const bf16* vrow = row(vc, table, kvh, key);
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            int i = lane + 32 * j;
            if (i < D) acc[j] = fmaf(p, bf2f(vrow[i]), acc[j]);
        }
    }
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        int i = lane + 32 * j;
        if (i < D) sacc[warp][i] = acc[j];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < D; i += WARPS * 32) {
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) o += sacc[w][i];
        out[((size_t)t * HEADS + h) * D + i] = f2bf(o);
    }
}
