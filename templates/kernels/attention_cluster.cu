{% include "common/pio.cuh" %}
// {{ doc }}
// Decode attention of one query token against the layer's KV cache ([KV_HEADS, CTX, D]) in one
// kernel. The context is cut into spans, one per thread-block cluster of CL blocks (sm_90):
// spans of CL * PER_MIN positions while there are at most SPANS of them, else SPANS equal
// spans. Each block owns a contiguous range of its cluster's span (at most PER positions) and
// serves all GROUP query heads of its kv head (each key and value row is read once). Every
// block computes its scores, rounded as HF's bf16 eager attention rounds them,
// bf16(bf16(q.k) * SCALE), and its softmax state (max, sum of exp(s - max)); the blocks of a
// cluster read each other's states through distributed shared memory, so that every block
// rounds P = bf16(exp(s - max) / sum) with the span's max and sum; each block sums P.V (f32)
// over its positions, and the cluster adds the blocks' sums in position order. A context of one
// span (at most CL * PER_MIN tokens) is exactly HF's eager attention and written at once;
// longer ones write each span's output and softmax state, and the last cluster to finish
// (counted in `count`, which returns to 0) weighs the spans' outputs by their share of the
// softmax sum, its blocks sharing the outputs. Without clusters (before sm_90) a cluster is one
// block.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define GROUP (HEADS / KV_HEADS)
#define D {{ d }}
#define SCALE {{ scale }}
#define CTX {{ ctx }}
#define CL {{ cluster }}
#define PER {{ per_block }}
#define PER_MIN {{ per_min }}
#define SPANS {{ spans }}
#define THREADS {{ threads }}
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
// Spans per kv head, at most: without clusters every block is one.
#define SLOTS (CL * SPANS / NB)
// Spans the scratch has room for.
#define SPAN_SLOTS (CL * SPANS)

__device__ __forceinline__ const bf16* cache_row(const bf16* c, int p, int kvh) {
    return c + ((size_t)kvh * CTX + p) * D;
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
    const int* __restrict__ positions, float* __restrict__ span_out, float* __restrict__ span_state,
    unsigned* __restrict__ count, bf16* __restrict__ out)
{
    // grid.y == CL * SPANS: the cluster is the span, the rank the block within it (without
    // clusters, every block is a span).
    const int kvh = blockIdx.x;
#if __CUDA_ARCH__ >= 900
    const int span = blockIdx.y / CL, rank = blockIdx.y % CL;
#else
    const int span = blockIdx.y, rank = 0;
#endif
    // Positions are written before the step's first kernel.
    const int pos = positions[0];
    const int len = pos + 1;
    const int spans = min(SLOTS, (len + NB * PER_MIN - 1) / (NB * PER_MIN));
    if (span >= spans) {  // the same for every block of a cluster
        pdl_wait();
        pdl_launch_dependents();
        return;
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Positions per span, a multiple of NB (a span may be empty: its state weighs nothing).
    const int span_size = NB * ((len + spans * NB - 1) / (spans * NB));
    const int span_start = span * span_size, span_len = max(0, min(span_size, len - span_start));
    const int per = (span_len + NB - 1) / NB;
    const int start = span_start + rank * per;
    const int n = max(0, min(per, span_len - rank * per));
    // Cache rows before the current position were written by earlier steps: they may be read
    // before waiting for the previous kernel.
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
    __shared__ float sc[GROUP][PER];
    __shared__ float st[GROUP][2];
    __shared__ float gm[GROUP], gl[GROUP];
    __shared__ float part[GROUP][D];
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
    // outputs: the output itself for a one-span context, else the span's output and (rank 0)
    // its softmax state.
    cluster_sync();
    for (int i = rank * THREADS + threadIdx.x; i < GROUP * D; i += NB * THREADS) {
        const int g = i / D, d = i % D;
        float v[NB];
#pragma unroll
        for (int r = 0; r < NB; ++r) v[r] = ld_cluster(&part[g][d], r);
        float o = 0.0f;
#pragma unroll
        for (int r = 0; r < NB; ++r) o += v[r];
        if (spans == 1)
            out[(size_t)(kvh * GROUP + g) * D + d] = f2bf(o);
        else
            span_out[((size_t)(kvh * SPAN_SLOTS + span) * GROUP + g) * D + d] = o;
    }
    if (spans > 1 && rank == 0 && threadIdx.x < GROUP) {
        float* sst = span_state + ((size_t)(kvh * SPAN_SLOTS + span) * GROUP + threadIdx.x) * 2;
        sst[0] = gm[threadIdx.x];
        sst[1] = gl[threadIdx.x];
    }
    __threadfence();
    // No block leaves while another may still read its shared memory.
    cluster_sync();
    if (spans == 1) return;
    // The last span to finish adds the spans' outputs, each weighed by its share of the sum:
    // rank 0 counts the span done (all its blocks' outputs are visible), then every block of
    // the last cluster takes a share of the outputs.
    __shared__ float last;
    if (rank == 0 && threadIdx.x == 0)
        last = atomicInc(&count[kvh], spans - 1) == (unsigned)(spans - 1) ? 1.0f : 0.0f;
    cluster_sync();
    const bool is_last = ld_cluster(&last, 0) != 0.0f;
    // Rank 0's shared memory stays until every block has read it.
    cluster_sync();
    if (!is_last) return;
    __threadfence();
#if __CUDA_ARCH__ >= 900
    // Each span's weight: its share of the softmax sum (a warp per query head), then the
    // weighted sum of the spans' outputs, their loads independent of each other.
    __shared__ float weight[GROUP][SPANS];
    for (int g = warp; g < GROUP; g += WARPS) {
        float mx = NEG_INF;
        for (int c = lane; c < spans; c += 32)
            mx = fmaxf(mx, __ldcg(span_state + ((size_t)(kvh * SPAN_SLOTS + c) * GROUP + g) * 2));
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int c = lane; c < spans; c += 32) {
            const float* sst = span_state + ((size_t)(kvh * SPAN_SLOTS + c) * GROUP + g) * 2;
            const float w = __ldcg(sst + 1) * __expf(__ldcg(sst) - mx);
            weight[g][c] = w;
            sum += w;
        }
        sum = warp_sum(sum);
        for (int c = lane; c < spans; c += 32) weight[g][c] /= sum;
    }
    __syncthreads();
    for (int i = rank * THREADS + threadIdx.x; i < GROUP * D; i += NB * THREADS) {
        const int g = i / D, d = i % D;
        const float* so = span_out + ((size_t)(kvh * SPAN_SLOTS) * GROUP + g) * D + d;
        float o = 0.0f;
#pragma unroll 8
        for (int c = 0; c < spans; ++c) o = fmaf(weight[g][c], __ldcg(so + (size_t)c * GROUP * D), o);
        out[(size_t)(kvh * GROUP + g) * D + d] = f2bf(o);
    }
#else
    // Every block is a span here (up to CL * SPANS of them): the weights on the fly.
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS) {
        const int g = i / D, d = i % D;
        float mx = NEG_INF;
        for (int c = 0; c < spans; ++c)
            mx = fmaxf(mx, __ldcg(span_state + ((size_t)(kvh * SPAN_SLOTS + c) * GROUP + g) * 2));
        float sum = 0.0f, o = 0.0f;
        for (int c = 0; c < spans; ++c) {
            const float* sst = span_state + ((size_t)(kvh * SPAN_SLOTS + c) * GROUP + g) * 2;
            const float w = __ldcg(sst + 1) * __expf(__ldcg(sst) - mx);
            sum += w;
            o = fmaf(w, __ldcg(span_out + ((size_t)(kvh * SPAN_SLOTS + c) * GROUP + g) * D + d), o);
        }
        out[(size_t)(kvh * GROUP + g) * D + d] = f2bf(o / sum);
    }
#endif
}
