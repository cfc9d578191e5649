{% include "common/pio.cuh" %}
// {{ doc }}
// Decode attention (one query token) over the layer's KV cache ([ctx, KV_HEADS, D]), split-K:
// one block per (kv head, split of CHUNK keys) serves all GROUP query heads of that kv head, so
// each key and value row is read once. Scores for the split are staged in shared memory, softmax
// per head, then P·V with threads over (head, dim) reading value rows coalesced. The partial
// (acc[D], max, sum) per (query head, split) is combined by attention_reduce.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define GROUP (HEADS / KV_HEADS)
#define D {{ d }}
#define SCALE {{ scale }}
#define CHUNK {{ chunk }}
#define SPLITS {{ splits }}
#define THREADS 128
#define WARPS (THREADS / 32)

extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, float* __restrict__ part)
{
    const int kvh = blockIdx.x, split = blockIdx.y;
    const int len = positions[0] + 1;
    const int start = split * CHUNK;
    if (start >= len) return;
    const int n = min(CHUNK, len - start);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __shared__ float qs[GROUP][D];
    __shared__ float sc[GROUP][CHUNK];
    __shared__ float gm[GROUP], gl[GROUP];
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
        sc[g][j] = s * SCALE;
    }
    __syncthreads();
    for (int g = warp; g < GROUP; g += WARPS) {
        float m = NEG_INF;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, sc[g][j]);
        m = warp_max(m);
        float l = 0.0f;
        for (int j = lane; j < n; j += 32) {
            const float e = __expf(sc[g][j] - m);
            sc[g][j] = e;
            l += e;
        }
        l = warp_sum(l);
        if (lane == 0) { gm[g] = m; gl[g] = l; }
    }
    __syncthreads();
{% if vec8 %}
    // P·V: each warp takes every WARPS-th key; each lane holds 4 consecutive dims of every head
    // (8-byte value loads, a whole row per warp); the warps' sums are added in shared memory.
    __shared__ float red[WARPS][GROUP][D];
    float acc[GROUP][D / 32];
#pragma unroll
    for (int g = 0; g < GROUP; ++g)
#pragma unroll
        for (int e = 0; e < D / 32; ++e) acc[g][e] = 0.0f;
    for (int j = warp; j < n; j += WARPS) {
        const bf16* vrow = vc + ((size_t)(start + j) * KV_HEADS + kvh) * D;
#pragma unroll
        for (int c = 0; c < D / 128; ++c) {
            const uint2 raw = *reinterpret_cast<const uint2*>(vrow + c * 128 + lane * 4);
            const float f[4] = {__uint_as_float(raw.x << 16), __uint_as_float(raw.x & 0xffff0000u),
                                __uint_as_float(raw.y << 16), __uint_as_float(raw.y & 0xffff0000u)};
#pragma unroll
            for (int g = 0; g < GROUP; ++g)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[g][c * 4 + e] = fmaf(sc[g][j], f[e], acc[g][c * 4 + e]);
        }
    }
#pragma unroll
    for (int g = 0; g < GROUP; ++g)
#pragma unroll
        for (int c = 0; c < D / 128; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) red[warp][g][c * 128 + lane * 4 + e] = acc[g][c * 4 + e];
    __syncthreads();
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS) {
        const int g = i / D, d = i % D;
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) o += red[w][g][d];
        float* out = part + ((size_t)(kvh * GROUP + g) * SPLITS + split) * (D + 2);
        out[d] = o;
        if (d == 0) { out[D] = gm[g]; out[D + 1] = gl[g]; }
    }
{% else %}
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS) {
        const int g = i / D, d = i % D;
        const bf16* vcol = vc + (size_t)kvh * D + d;
        float acc = 0.0f;
        for (int j = 0; j < n; ++j) acc = fmaf(sc[g][j], bf2f(vcol[(size_t)(start + j) * KV_HEADS * D]), acc);
        float* out = part + ((size_t)(kvh * GROUP + g) * SPLITS + split) * (D + 2);
        out[d] = acc;
        if (d == 0) { out[D] = gm[g]; out[D + 1] = gl[g]; }
    }
{% endif %}
}
