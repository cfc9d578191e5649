{% include "common/pio.cuh" %}
// {{ doc }}
// Prefill attention: causal grouped-query attention over the layer's KV cache
// ([ctx, KV_HEADS, D]); the query of a token at position p sees keys 0..=p. One block per
// (query head, tile of TQ tokens); each of its WARPS warps holds TQ / WARPS queries. Key and
// value rows pass through shared memory in tiles of 32 keys (one per lane), shared by all the
// tile's queries. The arithmetic is HF's bf16 eager attention: scores = bf16(bf16(q.k) * SCALE),
// softmax in f32 rounded to bf16, P.V accumulated in f32 and rounded. Two passes over the keys:
// the softmax maximum and sum (online), then the probabilities and P.V (scores recomputed).
// (Decode uses attention_decode.cu and attention_values.cu.)
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define D {{ d }}
#define WARPS {{ warps }}
#define SCALE {{ scale }}
#define Q_STRIDE {{ q_stride }}
#define TQ {{ tq }}
#define QPW (TQ / WARPS)
#define KT 32
#define PER_LANE ((D + 31) / 32)
{% if vec4 %}#define KS (D + 4){% else %}#define KS (D + 1){% endif %}

// q.k for one query row and one key row, both f32 in shared memory.
__device__ __forceinline__ float dot_shared(const float* qrow, const float* krow) {
    float s = 0.0f;
{% if vec4 %}
#pragma unroll 8
    for (int d = 0; d < D; d += 4) {
        const float4 a = *reinterpret_cast<const float4*>(qrow + d);
        const float4 b = *reinterpret_cast<const float4*>(krow + d);
        s = fmaf(a.x, b.x, s);
        s = fmaf(a.y, b.y, s);
        s = fmaf(a.z, b.z, s);
        s = fmaf(a.w, b.w, s);
    }
{% else %}
    for (int d = 0; d < D; ++d) s = fmaf(qrow[d], krow[d], s);
{% endif %}
    return rbf(rbf(s) * SCALE);
}

// Keys kb .. kb + KT of the layer's cache (zeros past `end`) into a shared tile.
__device__ __forceinline__ void load_tile(float (*tile)[KS], const bf16* __restrict__ cache, int kvh,
                                          int kb, int end) {
    for (int i = threadIdx.x; i < KT * D; i += WARPS * 32) {
        const int r = i / D, d = i % D, key = kb + r;
        tile[r][d] = key < end ? bf2f(cache[((size_t)key * KV_HEADS + kvh) * D + d]) : 0.0f;
    }
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, bf16* __restrict__ out, int tokens)
{
    pdl_wait();
    pdl_launch_dependents();
    const int h = blockIdx.x, kvh = h / (HEADS / KV_HEADS);
    const int t0 = blockIdx.y * TQ;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __shared__ __align__(16) float qs[TQ][KS];
    __shared__ __align__(16) float ks[KT][KS];
    __shared__ __align__(16) float vs[KT][KS];
    for (int i = threadIdx.x; i < TQ * D; i += WARPS * 32) {
        const int r = i / D, d = i % D;
        qs[r][d] = t0 + r < tokens ? bf2f(q[(size_t)(t0 + r) * Q_STRIDE + (size_t)h * D + d]) : 0.0f;
    }
    // Keys each of this warp's queries sees, and the keys the whole tile needs.
    int len[QPW];
#pragma unroll
    for (int i = 0; i < QPW; ++i) {
        const int t = t0 + warp * QPW + i;
        len[i] = t < tokens ? positions[t] + 1 : 0;
    }
    int end = 0;
    for (int r = 0; r < TQ && t0 + r < tokens; ++r) end = max(end, positions[t0 + r] + 1);

    // Pass 1: per lane, the maximum and the sum of exp(s - max) over the keys it scored.
    float m[QPW], l[QPW];
#pragma unroll
    for (int i = 0; i < QPW; ++i) { m[i] = NEG_INF; l[i] = 0.0f; }
    for (int kb = 0; kb < end; kb += KT) {
        __syncthreads();
        load_tile(ks, kc, kvh, kb, end);
        __syncthreads();
        const int key = kb + lane;
#pragma unroll
        for (int i = 0; i < QPW; ++i) {
            if (key < len[i]) {
                const float s = dot_shared(qs[warp * QPW + i], ks[lane]);
                const float mn = fmaxf(m[i], s);
                l[i] = l[i] * __expf(m[i] - mn) + __expf(s - mn);
                m[i] = mn;
            }
        }
    }
    float M[QPW], L[QPW];
#pragma unroll
    for (int i = 0; i < QPW; ++i) {
        M[i] = warp_max(m[i]);
        L[i] = warp_sum(m[i] == NEG_INF ? 0.0f : l[i] * __expf(m[i] - M[i]));
    }

    // Pass 2: probabilities rounded to bf16, then P.V; each lane owns dims lane + 32 e.
    float acc[QPW][PER_LANE];
#pragma unroll
    for (int i = 0; i < QPW; ++i)
#pragma unroll
        for (int e = 0; e < PER_LANE; ++e) acc[i][e] = 0.0f;
    for (int kb = 0; kb < end; kb += KT) {
        __syncthreads();
        load_tile(ks, kc, kvh, kb, end);
        load_tile(vs, vc, kvh, kb, end);
        __syncthreads();
        const int key = kb + lane;
        float p[QPW];
#pragma unroll
        for (int i = 0; i < QPW; ++i)
            p[i] = key < len[i]
                ? rbf(__fdiv_rn(__expf(dot_shared(qs[warp * QPW + i], ks[lane]) - M[i]), L[i]))
                : 0.0f;
        for (int j = 0; j < KT; ++j) {
            float pj[QPW];
#pragma unroll
            for (int i = 0; i < QPW; ++i) pj[i] = __shfl_sync(0xffffffffu, p[i], j);
#pragma unroll
            for (int e = 0; e < PER_LANE; ++e) {
                const int d = lane + 32 * e;
                const float v = d < D ? vs[j][d] : 0.0f;
#pragma unroll
                for (int i = 0; i < QPW; ++i) acc[i][e] = fmaf(pj[i], v, acc[i][e]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < QPW; ++i) {
        const int t = t0 + warp * QPW + i;
        if (t >= tokens) continue;
#pragma unroll
        for (int e = 0; e < PER_LANE; ++e) {
            const int d = lane + 32 * e;
            if (d < D) out[((size_t)t * HEADS + h) * D + d] = f2bf(acc[i][e]);
        }
    }
}
