{% include "common/pio.cuh" %}
// {{ doc }}
// Decode attention in one kernel for contexts of at most LIMIT tokens: a cluster of CL blocks
// per kv head (sm_90 thread-block clusters), each block owning a contiguous range of at most
// LIMIT / CL positions and serving all GROUP query heads of its kv head (each key and value row
// is read once). Every block computes its scores, rounded as HF's bf16 eager attention rounds
// them, bf16(bf16(q.k) * SCALE), and its softmax state (max, sum of exp(s - max)); the blocks
// read each other's states through distributed shared memory, so that every block rounds
// P = bf16(exp(s - max) / sum) with the global max and sum, as HF's eager softmax does; each
// block sums P.V (f32) over its positions, and the cluster adds the blocks' sums in position
// order. Longer contexts, and GPUs without clusters, are served by attention_decode +
// attention_values, which return at once for the contexts this kernel serves.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define GROUP (HEADS / KV_HEADS)
#define D {{ d }}
#define SCALE {{ scale }}
#define CL {{ cluster }}
#define LIMIT {{ limit }}
#define PER_MAX (LIMIT / CL)
#define CHUNK 64
#define THREADS 128
#define WARPS (THREADS / 32)

#if __CUDA_ARCH__ >= 900
#define CLUSTER_DIMS __cluster_dims__(1, CL, 1)
#else
#define CLUSTER_DIMS
#endif

__device__ __forceinline__ const bf16* cache_row(const bf16* c, int p, int kvh) {
    return c + ((size_t)p * KV_HEADS + kvh) * D;
}

{% if vec %}
// Value rows start + c0 + warp + b * WARPS (b < CHUNK / WARPS) of this block, 4 dims per lane;
// zero past the block's n rows and from position `upto` on.
__device__ __forceinline__ void load_values(uint2 (&raw)[CHUNK / WARPS], const bf16* vc, int kvh,
                                            int start, int c0, int n, int upto, int warp, int lane) {
#pragma unroll
    for (int b = 0; b < CHUNK / WARPS; ++b) {
        const int j = c0 + warp + b * WARPS;
        raw[b] = j < n && start + j < upto
            ? *reinterpret_cast<const uint2*>(cache_row(vc, start + j, kvh) + lane * 4)
            : make_uint2(0, 0);
    }
}
{% endif %}

extern "C" __global__ void CLUSTER_DIMS __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, bf16* __restrict__ out)
{
#if __CUDA_ARCH__ >= 900
    // Positions are written before the step's first kernel, and cache rows before the current
    // position by earlier steps: both may be read before waiting for the previous kernel.
    const int pos = positions[0];
    const int len = pos + 1;
    if (len > LIMIT) {
        pdl_wait();
        pdl_launch_dependents();
        return;  // the whole cluster: len is the same for every block
    }
    const int kvh = blockIdx.x, rank = blockIdx.y;  // grid.y == CL: the rank in the cluster
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int per = (len + CL - 1) / CL;
    const int start = rank * per;
    const int n = max(0, min(per, len - start));
{% if vec %}
    for (int j = threadIdx.x; j < n; j += THREADS)
        if (start + j < pos) {
            prefetch_l2(cache_row(kc, start + j, kvh), D * 2);
            prefetch_l2(cache_row(vc, start + j, kvh), D * 2);
        }
    // The first CHUNK value rows go straight into registers.
    uint2 raw[CHUNK / WARPS];
    load_values(raw, vc, kvh, start, 0, n, pos, warp, lane);
{% endif %}
    pdl_wait();
    pdl_launch_dependents();

    __shared__ float qs[GROUP][D];
    __shared__ float sc[GROUP][PER_MAX];
    __shared__ float st[GROUP][2];
    __shared__ float gm[GROUP], gl[GROUP];
    __shared__ float part[GROUP][D];
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS)
        qs[i / D][i % D] = bf2f(q[(size_t)(kvh * GROUP) * D + i]);
    __syncthreads();

    // Scores.
{% if vec %}
    // Half a warp per key row, 8 dims per lane; 64 rows per round, loads issued first.
    {
        const int sub = lane >> 4, l16 = lane & 15;
        float qv[GROUP][8];
#pragma unroll
        for (int g = 0; g < GROUP; ++g)
#pragma unroll
            for (int e = 0; e < 8; ++e) qv[g][e] = qs[g][l16 * 8 + e];
        for (int r0 = 0; r0 < n; r0 += 64) {
            uint4 kr[8];
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int r = r0 + u * 8 + warp * 2 + sub;
                kr[u] = r < n ? *reinterpret_cast<const uint4*>(cache_row(kc, start + r, kvh) + l16 * 8)
                              : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int r = r0 + u * 8 + warp * 2 + sub;
                float f[8];
                unpack8(kr[u], f);
#pragma unroll
                for (int g = 0; g < GROUP; ++g) {
                    float s = 0.0f;
#pragma unroll
                    for (int e = 0; e < 8; ++e) s = fmaf(qv[g][e], f[e], s);
#pragma unroll
                    for (int o = 8; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                    if (l16 == 0 && r < n) sc[g][r] = rbf(rbf(s) * SCALE);
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
        sc[g][j] = rbf(rbf(s) * SCALE);
    }
{% endif %}
    __syncthreads();

    // This block's softmax state, then the cluster's.
    for (int g = warp; g < GROUP; g += WARPS) {
        float m = NEG_INF;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, sc[g][j]);
        m = warp_max(m);
        float l = 0.0f;
        for (int j = lane; j < n; j += 32) l += __expf(sc[g][j] - m);
        l = warp_sum(l);
        if (lane == 0) {
            st[g][0] = m;
            st[g][1] = l;
        }
    }
    cluster_sync();
    for (int g = warp; g < GROUP; g += WARPS) {
        const float m = lane < CL ? ld_cluster(&st[g][0], lane) : NEG_INF;
        const float l = lane < CL ? ld_cluster(&st[g][1], lane) : 0.0f;
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
        sc[g][j] = rbf(__fdiv_rn(__expf(sc[g][j] - gm[g]), gl[g]));
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
        for (int b = 0; b < CHUNK / WARPS; ++b)
            if (warp + b * WARPS < n && start + warp + b * WARPS == pos)
                raw[b] = *reinterpret_cast<const uint2*>(cache_row(vc, pos, kvh) + lane * 4);
        for (int c0 = 0; c0 < n; c0 += CHUNK) {
            if (c0 > 0) load_values(raw, vc, kvh, start, c0, n, len, warp, lane);
#pragma unroll
            for (int b = 0; b < CHUNK / WARPS; ++b) {
                const int j = c0 + warp + b * WARPS;
                if (j < n) {
                    const uint2 r = raw[b];
                    const float f[4] = {__uint_as_float(r.x << 16), __uint_as_float(r.x & 0xffff0000u),
                                        __uint_as_float(r.y << 16), __uint_as_float(r.y & 0xffff0000u)};
#pragma unroll
                    for (int g = 0; g < GROUP; ++g)
#pragma unroll
                        for (int e = 0; e < 4; ++e) acc[g][e] = fmaf(sc[g][j], f[e], acc[g][e]);
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
        for (int j = 0; j < n; ++j) o = fmaf(sc[g][j], bf2f(cache_row(vc, start + j, kvh)[d]), o);
        part[g][d] = o;
    }
{% endif %}

    // The cluster adds the blocks' sums in rank (= position) order, each block a share of the
    // outputs; no block leaves while another may still read its shared memory.
    cluster_sync();
    for (int i = rank * THREADS + threadIdx.x; i < GROUP * D; i += CL * THREADS) {
        const int g = i / D, d = i % D;
        float v[CL];
#pragma unroll
        for (int r = 0; r < CL; ++r) v[r] = ld_cluster(&part[g][d], r);
        float o = 0.0f;
#pragma unroll
        for (int r = 0; r < CL; ++r) o += v[r];
        out[(size_t)(kvh * GROUP + g) * D + d] = f2bf(o);
    }
    cluster_sync();
#else
    // No clusters before sm_90: attention_decode + attention_values serve every context.
    pdl_wait();
    pdl_launch_dependents();
#endif
}
