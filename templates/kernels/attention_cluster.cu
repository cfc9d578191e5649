{% include "common/pio.cuh" %}
// {{ doc }}
// Decode attention of one query token against the layer's KV cache ([ctx, KV_HEADS, D]) in one
// kernel: a thread-block cluster of CL blocks per kv head (sm_90), each block owning a
// contiguous range of positions and serving all GROUP query heads of its kv head (each key and
// value row is read once). Every block computes its scores, rounded as HF's bf16 eager
// attention rounds them, bf16(bf16(q.k) * SCALE), and its softmax state (max, sum of
// exp(s - max)); the blocks read each other's states through distributed shared memory, so that
// every block rounds P = bf16(exp(s - max) / sum) with the global max and sum, as HF's eager
// softmax does; each block sums P.V (f32) over its positions, and the cluster adds the blocks'
// sums in position order. Scores stay in shared memory for ranges of up to SC_SHARED positions
// per block, else in the global `scores` scratch ([HEADS, CTX]). Without clusters (before
// sm_90) the first block of each kv head does it all.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define GROUP (HEADS / KV_HEADS)
#define D {{ d }}
#define SCALE {{ scale }}
#define CL {{ cluster }}
#define CTX {{ ctx }}
#define SC_SHARED {{ sc_shared }}
#define THREADS 128
#define WARPS (THREADS / 32)
// Key rows per round of loads (half a warp per row, 8 rows per warp and load batch) and value
// rows per round (a warp per row, 4 dims per lane).
#define KROWS (WARPS * 2 * 8)
#define VROWS (WARPS * 16)

#if __CUDA_ARCH__ >= 900
#define NB CL
#define CLUSTER_DIMS __cluster_dims__(1, CL, 1)
#else
#define NB 1
#define CLUSTER_DIMS
#endif

__device__ __forceinline__ const bf16* cache_row(const bf16* c, int p, int kvh) {
    return c + ((size_t)p * KV_HEADS + kvh) * D;
}

{% if vec %}
// Value rows start + c0 + warp + b * WARPS (b < VROWS / WARPS) of this block, 4 dims per lane;
// zero past the block's n rows and from position `upto` on.
__device__ __forceinline__ void load_values(uint2 (&raw)[VROWS / WARPS], const bf16* vc, int kvh,
                                            int start, int c0, int n, int upto, int warp, int lane) {
#pragma unroll
    for (int b = 0; b < VROWS / WARPS; ++b) {
        const int j = c0 + warp + b * WARPS;
        raw[b] = j < n && start + j < upto
            ? *reinterpret_cast<const uint2*>(cache_row(vc, start + j, kvh) + lane * 4)
            : make_uint2(0, 0);
    }
}
{% endif %}

extern "C" __global__ void CLUSTER_DIMS __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, float* __restrict__ scores, bf16* __restrict__ out)
{
    const int kvh = blockIdx.x, rank = blockIdx.y;  // grid.y == CL: the rank in the cluster
    if (rank >= NB) {
        pdl_wait();
        pdl_launch_dependents();
        return;
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Positions are written before the step's first kernel, and cache rows before the current
    // position by earlier steps: both may be read before waiting for the previous kernel.
    const int pos = positions[0];
    const int len = pos + 1;
    const int per = (len + NB - 1) / NB;
    const int start = rank * per;
    const int n = max(0, min(per, len - start));
{% if vec %}
    for (int j = threadIdx.x; j < min(n, KROWS); j += THREADS)
        if (start + j < pos) prefetch_l2(cache_row(kc, start + j, kvh), D * 2);
    // The first value rows go straight into registers.
    uint2 raw[VROWS / WARPS];
    load_values(raw, vc, kvh, start, 0, n, pos, warp, lane);
{% endif %}
    pdl_wait();
    pdl_launch_dependents();

    __shared__ float qs[GROUP][D];
    __shared__ float sc_shared[GROUP][SC_SHARED];
    __shared__ float st[GROUP][2];
    __shared__ float gm[GROUP], gl[GROUP];
    __shared__ float part[GROUP][D];
    // Row g of this block's scores: shared memory, or its range of the global scratch.
    const bool in_shared = n <= SC_SHARED;
    float* const sc0 = in_shared ? &sc_shared[0][0] : scores + (size_t)(kvh * GROUP) * CTX + start;
    const int sc_stride = in_shared ? SC_SHARED : CTX;
#define SC(g, j) sc0[(g) * sc_stride + (j)]
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS)
        qs[i / D][i % D] = bf2f(q[(size_t)(kvh * GROUP) * D + i]);
    __syncthreads();

    // Scores.
{% if vec %}
    {
        // Half a warp per key row, 8 dims per lane; KROWS rows per round, their loads first.
        const int sub = lane >> 4, l16 = lane & 15;
        float qv[GROUP][8];
#pragma unroll
        for (int g = 0; g < GROUP; ++g)
#pragma unroll
            for (int e = 0; e < 8; ++e) qv[g][e] = qs[g][l16 * 8 + e];
        for (int r0 = 0; r0 < n; r0 += KROWS) {
            uint4 kr[8];
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int r = r0 + (u * WARPS + warp) * 2 + sub;
                kr[u] = r < n ? *reinterpret_cast<const uint4*>(cache_row(kc, start + r, kvh) + l16 * 8)
                              : make_uint4(0, 0, 0, 0);
            }
            // The next round streams into L2 meanwhile.
            for (int j = r0 + KROWS + threadIdx.x; j < min(n, r0 + 2 * KROWS); j += THREADS)
                prefetch_l2(cache_row(kc, start + j, kvh), D * 2);
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int r = r0 + (u * WARPS + warp) * 2 + sub;
                float f[8];
                unpack8(kr[u], f);
#pragma unroll
                for (int g = 0; g < GROUP; ++g) {
                    float s = 0.0f;
#pragma unroll
                    for (int e = 0; e < 8; ++e) s = fmaf(qv[g][e], f[e], s);
#pragma unroll
                    for (int o = 8; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                    if (l16 == 0 && r < n) SC(g, r) = rbf(rbf(s) * SCALE);
                }
            }
        }
    }
{% else %}
    for (int p = threadIdx.x; p < n * GROUP; p += THREADS) {
        const int j = p / GROUP, g = p % GROUP;
        const bf16* krow = cache_row(kc, start + j, kvh);
        float s = 0.0f;
        for (int k = 0; k < D; ++k) s = fmaf(qs[g][k], bf2f(krow[k]), s);
        SC(g, j) = rbf(rbf(s) * SCALE);
    }
{% endif %}
    __syncthreads();

    // This block's softmax state, then the cluster's.
    for (int g = warp; g < GROUP; g += WARPS) {
        float m = NEG_INF;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, SC(g, j));
        m = warp_max(m);
        float l = 0.0f;
        for (int j = lane; j < n; j += 32) l += __expf(SC(g, j) - m);
        l = warp_sum(l);
        if (lane == 0) {
            st[g][0] = m;
            st[g][1] = l;
        }
    }
    cluster_sync();
    for (int g = warp; g < GROUP; g += WARPS) {
        const float m = lane < NB ? ld_cluster(&st[g][0], lane) : NEG_INF;
        const float l = lane < NB ? ld_cluster(&st[g][1], lane) : 0.0f;
        const float mx = warp_max(m);
        const float sum = warp_sum(l > 0.0f ? l * __expf(m - mx) : 0.0f);
        if (lane == 0) {
            gm[g] = mx;
            gl[g] = sum;
        }
    }
    __syncthreads();
    for (int p = threadIdx.x; p < n * GROUP; p += THREADS) {
        const int j = p / GROUP, g = p % GROUP;
        SC(g, j) = rbf(__fdiv_rn(__expf(SC(g, j) - gm[g]), gl[g]));
    }
    __syncthreads();

    // P.V over this block's positions.
{% if vec %}
    {
        __shared__ float red[WARPS][GROUP][D];
        float acc[GROUP][4];
#pragma unroll
        for (int g = 0; g < GROUP; ++g)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[g][e] = 0.0f;
        // The current position's row was written by the previous kernel.
#pragma unroll
        for (int b = 0; b < VROWS / WARPS; ++b)
            if (warp + b * WARPS < n && start + warp + b * WARPS == pos)
                raw[b] = *reinterpret_cast<const uint2*>(cache_row(vc, pos, kvh) + lane * 4);
        for (int c0 = 0; c0 < n; c0 += VROWS) {
            if (c0 > 0) load_values(raw, vc, kvh, start, c0, n, len, warp, lane);
            for (int j = c0 + VROWS + threadIdx.x; j < min(n, c0 + 2 * VROWS); j += THREADS)
                prefetch_l2(cache_row(vc, start + j, kvh), D * 2);
#pragma unroll
            for (int b = 0; b < VROWS / WARPS; ++b) {
                const int j = c0 + warp + b * WARPS;
                if (j < n) {
                    const uint2 r = raw[b];
                    const float f[4] = {__uint_as_float(r.x << 16), __uint_as_float(r.x & 0xffff0000u),
                                        __uint_as_float(r.y << 16), __uint_as_float(r.y & 0xffff0000u)};
#pragma unroll
                    for (int g = 0; g < GROUP; ++g)
#pragma unroll
                        for (int e = 0; e < 4; ++e) acc[g][e] = fmaf(SC(g, j), f[e], acc[g][e]);
                }
            }
        }
#pragma unroll
        for (int g = 0; g < GROUP; ++g)
#pragma unroll
            for (int e = 0; e < 4; ++e) red[warp][g][lane * 4 + e] = acc[g][e];
        __syncthreads();
        for (int i = threadIdx.x; i < GROUP * D; i += THREADS) {
            const int g = i / D, d = i % D;
            float o = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; ++w) o += red[w][g][d];
            part[g][d] = o;
        }
    }
{% else %}
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS) {
        const int g = i / D, d = i % D;
        float o = 0.0f;
        for (int j = 0; j < n; ++j) o = fmaf(SC(g, j), bf2f(cache_row(vc, start + j, kvh)[d]), o);
        part[g][d] = o;
    }
{% endif %}
#undef SC

    // The cluster adds the blocks' sums in rank (= position) order, each block a share of the
    // outputs; no block leaves while another may still read its shared memory.
    cluster_sync();
    for (int i = rank * THREADS + threadIdx.x; i < GROUP * D; i += NB * THREADS) {
        const int g = i / D, d = i % D;
        float v[NB];
#pragma unroll
        for (int r = 0; r < NB; ++r) v[r] = ld_cluster(&part[g][d], r);
        float o = 0.0f;
#pragma unroll
        for (int r = 0; r < NB; ++r) o += v[r];
        out[(size_t)(kvh * GROUP + g) * D + d] = f2bf(o);
    }
    cluster_sync();
}
