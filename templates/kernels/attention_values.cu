{% include "common/pio.cuh" %}
// {{ doc }}
// Decode attention, second half: per (kv head, split of CHUNK keys), the softmax max and sum over
// all splits from attention_decode's stats, P = bf16(exp(s - max) / sum) as HF's eager softmax
// rounds it, and the split's P.V partial sums (f32) for the GROUP query heads, with value rows
// read coalesced. The last block of a kv head to finish (counted in `done`) adds the partials in
// split order and writes the bf16 output. Contexts of at most the cluster limit (on sm_90) are
// attention_cluster.cu's: this kernel returns.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define GROUP (HEADS / KV_HEADS)
#define D {{ d }}
#define CHUNK {{ chunk }}
#define SPLITS {{ splits }}
#define CTX {{ ctx }}
#define THREADS 128
#define WARPS (THREADS / 32)

extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ vc, const int* __restrict__ positions,
    const float* __restrict__ scores, const float* __restrict__ stats, float* part,
    int* done, bf16* __restrict__ out)
{
    const int kvh = blockIdx.x, split = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Positions are written before the step's first kernel, and cache rows before the current
    // position by earlier steps: both may be read before waiting for the previous kernel.
    const int pos = positions[0];
    const int len = pos + 1;
    const int start = split * CHUNK;
    const int n = min(CHUNK, len - start);
    const int nsplit = (len + CHUNK - 1) / CHUNK;
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
    // This warp's value rows (every WARPS-th key of the split; 4 consecutive dims per lane),
    // loaded first so that their latency overlaps the wait and the softmax below.
    uint2 raw[D / 128][CHUNK / WARPS];
#pragma unroll
    for (int c = 0; c < D / 128; ++c)
#pragma unroll
        for (int b = 0; b < CHUNK / WARPS; ++b) {
            const int j = warp + b * WARPS;
            raw[c][b] = j < n && start + j < pos
                ? *reinterpret_cast<const uint2*>(vc + ((size_t)(start + j) * KV_HEADS + kvh) * D + c * 128 + lane * 4)
                : make_uint2(0, 0);
        }
{% endif %}
    pdl_wait();
    pdl_launch_dependents();
    if (start >= len) return;
{% if vec8 %}
    // The current position's row was written by the previous kernel.
#pragma unroll
    for (int c = 0; c < D / 128; ++c)
#pragma unroll
        for (int b = 0; b < CHUNK / WARPS; ++b)
            if (start + warp + b * WARPS == pos)
                raw[c][b] = *reinterpret_cast<const uint2*>(vc + ((size_t)pos * KV_HEADS + kvh) * D + c * 128 + lane * 4);
{% endif %}
    __shared__ float gm[GROUP], gl[GROUP];
    __shared__ float ps[GROUP][CHUNK];
    for (int g = warp; g < GROUP; g += WARPS) {
        const float* st = stats + (size_t)(kvh * GROUP + g) * SPLITS * 2;
        float m = NEG_INF;
        for (int s = lane; s < nsplit; s += 32) m = fmaxf(m, st[2 * s]);
        m = warp_max(m);
        float l = 0.0f;
        for (int s = lane; s < nsplit; s += 32) l += st[2 * s + 1] * __expf(st[2 * s] - m);
        l = warp_sum(l);
        if (lane == 0) { gm[g] = m; gl[g] = l; }
    }
    __syncthreads();
    for (int p = threadIdx.x; p < n * GROUP; p += THREADS) {
        const int j = p / GROUP, g = p % GROUP;
        const float s = scores[(size_t)(kvh * GROUP + g) * CTX + start + j];
        ps[g][j] = rbf(__fdiv_rn(__expf(s - gm[g]), gl[g]));
    }
    __syncthreads();
{% if vec8 %}
    // P.V over the rows loaded above; the warps' sums are added in shared memory.
    __shared__ float red[WARPS][GROUP][D];
    float acc[GROUP][D / 32];
#pragma unroll
    for (int g = 0; g < GROUP; ++g)
#pragma unroll
        for (int e = 0; e < D / 32; ++e) acc[g][e] = 0.0f;
#pragma unroll
    for (int c = 0; c < D / 128; ++c) {
#pragma unroll
        for (int b = 0; b < CHUNK / WARPS; ++b) {
            const int j = warp + b * WARPS;
            if (j < n) {
                const uint2 r = raw[c][b];
                const float f[4] = {__uint_as_float(r.x << 16), __uint_as_float(r.x & 0xffff0000u),
                                    __uint_as_float(r.y << 16), __uint_as_float(r.y & 0xffff0000u)};
#pragma unroll
                for (int g = 0; g < GROUP; ++g)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc[g][c * 4 + e] = fmaf(ps[g][j], f[e], acc[g][c * 4 + e]);
            }
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
        part[((size_t)(kvh * GROUP + g) * SPLITS + split) * D + d] = o;
    }
{% else %}
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS) {
        const int g = i / D, d = i % D;
        const bf16* vcol = vc + (size_t)kvh * D + d;
        float o = 0.0f;
        for (int j = 0; j < n; ++j) o = fmaf(ps[g][j], bf2f(vcol[(size_t)(start + j) * KV_HEADS * D]), o);
        part[((size_t)(kvh * GROUP + g) * SPLITS + split) * D + d] = o;
    }
{% endif %}
    // The last block of this kv head adds every split's partial sums.
    __shared__ int is_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) is_last = atomicAdd(&done[kvh], 1) == nsplit - 1;
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS) {
        const int g = i / D, d = i % D;
        const float* pp = part + (size_t)(kvh * GROUP + g) * SPLITS * D + d;
        float o = 0.0f;
        for (int s = 0; s < nsplit; ++s) o += __ldcg(pp + (size_t)s * D);
        out[(size_t)(kvh * GROUP + g) * D + d] = f2bf(o);
    }
}
