{% include "common/pio.cuh" %}
// {{ doc }}
// Decode attention, first half: the scores of one query token against the layer's KV cache
// ([ctx, KV_HEADS, D]), split-K: one block per (kv head, split of CHUNK keys) serves all GROUP
// query heads of that kv head, so each key row is read once. Scores are HF's bf16 eager ones,
// bf16(bf16(q.k) * SCALE); they go to scores[head, key], and each split's softmax state
// (max, sum of exp(s - max)) to stats[head, split]. attention_values.cu does the rest. Contexts
// of at most the cluster limit (on sm_90) are attention_cluster.cu's: this kernel returns.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define GROUP (HEADS / KV_HEADS)
#define D {{ d }}
#define SCALE {{ scale }}
#define CHUNK {{ chunk }}
#define SPLITS {{ splits }}
#define CTX {{ ctx }}
#define THREADS 128
#define WARPS (THREADS / 32)

extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const int* __restrict__ positions,
    float* __restrict__ scores, float* __restrict__ stats, int* __restrict__ done)
{
    const int kvh = blockIdx.x, split = blockIdx.y;
    // Positions are written before the step's first kernel, and cache rows before the current
    // position by earlier steps: both may be read before waiting for the previous kernel.
    const int pos = positions[0];
    const int len = pos + 1;
    const int start = split * CHUNK;
    const int n = min(CHUNK, len - start);
{% if cluster_limit > 0 %}
#if __CUDA_ARCH__ >= 900
    if (len <= {{ cluster_limit }}) {  // attention_cluster serves this context
        pdl_wait();
        pdl_launch_dependents();
        return;
    }
#endif
{% endif %}
{% if vec8 %}
    for (int j = threadIdx.x; j < n; j += THREADS)
        if (start + j < pos) prefetch_l2(kc + ((size_t)(start + j) * KV_HEADS + kvh) * D, D * 2);
{% endif %}
    pdl_wait();
    pdl_launch_dependents();
    // attention_values counts its finished blocks per kv head here.
    if (split == 0 && threadIdx.x == 0) done[kvh] = 0;
    if (start >= len) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __shared__ float qs[GROUP][D];
    __shared__ float sc[GROUP][CHUNK];
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS)
        qs[i / D][i % D] = bf2f(q[(size_t)(kvh * GROUP) * D + i]);
    __syncthreads();
    for (int p = threadIdx.x; p < n * GROUP; p += THREADS) {
        const int j = p / GROUP, g = p % GROUP;
        const bf16* krow = kc + ((size_t)(start + j) * KV_HEADS + kvh) * D;
        float s = 0.0f;
{% if vec8 %}
#pragma unroll
        for (int k = 0; k < D; k += 8) {
            float f[8];
            unpack8(*reinterpret_cast<const uint4*>(krow + k), f);
#pragma unroll
            for (int e = 0; e < 8; ++e) s = fmaf(qs[g][k + e], f[e], s);
        }
{% else %}
        for (int k = 0; k < D; ++k) s = fmaf(qs[g][k], bf2f(krow[k]), s);
{% endif %}
        s = rbf(rbf(s) * SCALE);
        sc[g][j] = s;
        scores[(size_t)(kvh * GROUP + g) * CTX + start + j] = s;
    }
    __syncthreads();
    for (int g = warp; g < GROUP; g += WARPS) {
        float m = NEG_INF;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, sc[g][j]);
        m = warp_max(m);
        float l = 0.0f;
        for (int j = lane; j < n; j += 32) l += __expf(sc[g][j] - m);
        l = warp_sum(l);
        if (lane == 0) {
            float* st = stats + ((size_t)(kvh * GROUP + g) * SPLITS + split) * 2;
            st[0] = m;
            st[1] = l;
        }
    }
}
