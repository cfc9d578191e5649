{% include "common/pio.cuh" %}
// {{ doc }}
// Prefill attention: causal grouped-query attention over the layer's KV cache
// ([ctx, KV_HEADS, D]); a query at position p sees keys 0..=p. Online softmax in f32, one block
// per (query head, token), warps over keys. (Decode uses attention_decode.cu.)
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define D {{ d }}
#define WARPS {{ warps }}
#define SCALE {{ scale }}
#define Q_STRIDE {{ q_stride }}
#define PER_LANE ((D + 31) / 32)

extern "C" __global__ void __launch_bounds__(WARPS * 32) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, bf16* __restrict__ out)
{
    const int h = blockIdx.x;
    const int t = blockIdx.y;
    const int kvh = h / (HEADS / KV_HEADS);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int len = positions[t] + 1;
    const int start = 0, end = len;
    float qv[PER_LANE], acc[PER_LANE];
    const bf16* qrow = q + (size_t)t * Q_STRIDE + (size_t)h * D;
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        int i = lane + 32 * j;
        qv[j] = i < D ? bf2f(qrow[i]) : 0.0f;
        acc[j] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    for (int key = start + warp; key < end; key += WARPS) {
        const bf16* krow = kc + ((size_t)key * KV_HEADS + kvh) * D;
        const bf16* vrow = vc + ((size_t)key * KV_HEADS + kvh) * D;
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            int i = lane + 32 * j;
            if (i < D) s = fmaf(qv[j], bf2f(krow[i]), s);
        }
        s = warp_sum(s) * SCALE;
        const float m_new = fmaxf(m, s);
        const float corr = __expf(m - m_new), p = __expf(s - m_new);
        l = l * corr + p;
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            int i = lane + 32 * j;
            acc[j] = acc[j] * corr + (i < D ? p * bf2f(vrow[i]) : 0.0f);
        }
        m = m_new;
    }
    // Combine the warps' partial softmax states.
    __shared__ float sm[WARPS], sl[WARPS], sacc[WARPS][D];
    if (lane == 0) { sm[warp] = m; sl[warp] = l; }
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        int i = lane + 32 * j;
        if (i < D) sacc[warp][i] = acc[j];
    }
    __syncthreads();
    float M = NEG_INF;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) M = fmaxf(M, sm[w]);
    float L = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) L += sm[w] == NEG_INF ? 0.0f : sl[w] * __expf(sm[w] - M);
    for (int i = threadIdx.x; i < D; i += WARPS * 32) {
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) o += sm[w] == NEG_INF ? 0.0f : sacc[w][i] * __expf(sm[w] - M);
        out[((size_t)t * HEADS + h) * D + i] = f2bf(o / L);
    }
}
