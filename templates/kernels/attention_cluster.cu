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
// block. With D = 128 and at most 8 query heads per kv head, q.k and P.V run on tensor cores
// (mma.sync m16n8k16, bf16 in, f32 accumulation; sm_80+), each warp loading its key and value
// rows from global memory straight into the fragments; otherwise in scalar f32.
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
// Tensor-core path (D = 128, GROUP <= 8): key and value rows per warp and round of loads.
#define RW {{ rows_per_warp }}
// Rounds of rows each warp streams into L2 ahead of its loads.
#define AHEAD {{ prefetch_rounds }}

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
#if __CUDA_ARCH__ < 800
#error "the tensor-core decode attention needs sm_80 or later"
#endif
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
    // mma fragment coordinates.
    const int quad = lane & 3, grp = lane >> 2;
    // Each warp's first AHEAD rounds of key rows start streaming into L2 (a bulk prefetch each;
    // rows before the current position only, which the previous kernel does not write).
    if (lane == 0) {
        const int m = min(n, pos - start);
#pragma unroll
        for (int a = 0; a < AHEAD; ++a) {
            const int r = warp * RW + a * WARPS * RW;
            if (r < m) prefetch_l2(cache_row(kc, start + r, kvh), min(RW, m - r) * D * 2);
        }
    }
{% endif %}
    pdl_wait();
    pdl_launch_dependents();

    __shared__ float sc[GROUP][PER];
    __shared__ float st[GROUP][2];
    __shared__ float gm[GROUP], gl[GROUP];
    __shared__ float part[GROUP][D];

    // Scores.
{% if vec %}
    {
        // On tensor cores: a warp takes 16 key rows at a time as the A operand (rows = keys,
        // k = dims) and q as the B operand (columns = query heads, zero from GROUP on). A lane
        // loads 16 bytes of rows grp and grp + 8 per 32 dims; A and B take the dims in the same
        // order, 32 c + 8 quad + 4 s + {0, 1} (k = 2 quad + {0, 1}) and + {2, 3} (k + 8) in
        // step s of chunk c, which leaves every dot product as it is.
        u32 qb[D / 32][2][2];
        const bf16* qrow = q + (size_t)(kvh * GROUP + min(grp, GROUP - 1)) * D + quad * 8;
#pragma unroll
        for (int c = 0; c < D / 32; ++c)
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                qb[c][s][0] = grp < GROUP ? ld_u32(qrow + c * 32 + s * 4) : 0u;
                qb[c][s][1] = grp < GROUP ? ld_u32(qrow + c * 32 + s * 4 + 2) : 0u;
            }
        for (int r0 = warp * RW; r0 < n; r0 += WARPS * RW) {
            uint4 kr[RW / 16][2][D / 32];
#pragma unroll
            for (int t = 0; t < RW / 16; ++t)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = r0 + 16 * t + 8 * h + grp;
                    const bf16* row = cache_row(kc, start + min(r, n - 1), kvh) + quad * 8;
#pragma unroll
                    for (int c = 0; c < D / 32; ++c)
                        kr[t][h][c] = r < n ? *reinterpret_cast<const uint4*>(row + c * 32)
                                            : make_uint4(0, 0, 0, 0);
                }
            // The warp's next rows stream into L2 meanwhile.
            if (lane == 0 && r0 + AHEAD * WARPS * RW < n)
                prefetch_l2(cache_row(kc, start + r0 + AHEAD * WARPS * RW, kvh),
                            min(RW, n - r0 - AHEAD * WARPS * RW) * D * 2);
#pragma unroll
            for (int t = 0; t < RW / 16; ++t) {
                float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int c = 0; c < D / 32; ++c) {
                    const u32 a0[4] = {kr[t][0][c].x, kr[t][1][c].x, kr[t][0][c].y, kr[t][1][c].y};
                    const u32 a1[4] = {kr[t][0][c].z, kr[t][1][c].z, kr[t][0][c].w, kr[t][1][c].w};
                    mma_bf16(acc, a0, qb[c][0][0], qb[c][0][1]);
                    mma_bf16(acc, a1, qb[c][1][0], qb[c][1][1]);
                }
                // acc[0..1]: key r0 + 16 t + grp, heads 2 quad + {0, 1}; acc[2..3]: key + 8.
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int r = r0 + 16 * t + grp + (e >> 1) * 8, g = 2 * quad + (e & 1);
                    if (g < GROUP && r < n) sc[g][r] = rbf(rbf(acc[e]) * SCALE);
                }
            }
        }
    }
{% else %}
    __shared__ float qs[GROUP][D];
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS)
        qs[i / D][i % D] = bf2f(q[(size_t)(kvh * GROUP) * D + i]);
    __syncthreads();
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
        // On tensor cores: P as the A operand (rows = query heads, zero from GROUP on; k =
        // keys), values as the B operand (k = keys, columns = dims). A lane loads 8 bytes (4 dims)
        // of keys 2 quad + {0, 1} and + 8 per 32 dims and pairs two keys' values of a dim with a
        // byte permute: column grp of tile (c, t) is dim 32 c + 4 grp + t.
        __shared__ float red[WARPS][GROUP][D];
        float acc[D / 32][4][4];
#pragma unroll
        for (int c = 0; c < D / 32; ++c)
#pragma unroll
            for (int t = 0; t < 4; ++t)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[c][t][e] = 0.0f;
        const int gp = min(grp, GROUP - 1);
        for (int k0 = warp * RW; k0 < n; k0 += WARPS * RW) {
            uint2 vr[RW / 16][4][D / 32];
#pragma unroll
            for (int t = 0; t < RW / 16; ++t)
#pragma unroll
                for (int h = 0; h < 4; ++h) {
                    const int r = k0 + 16 * t + 2 * quad + (h & 1) + (h >> 1) * 8;
                    const bf16* row = cache_row(vc, start + min(r, n - 1), kvh) + grp * 4;
#pragma unroll
                    for (int c = 0; c < D / 32; ++c)
                        vr[t][h][c] = r < n ? *reinterpret_cast<const uint2*>(row + c * 32)
                                            : make_uint2(0, 0);
                }
            if (lane == 0 && k0 + AHEAD * WARPS * RW < n)
                prefetch_l2(cache_row(vc, start + k0 + AHEAD * WARPS * RW, kvh),
                            min(RW, n - k0 - AHEAD * WARPS * RW) * D * 2);
#pragma unroll
            for (int t = 0; t < RW / 16; ++t) {
                const int ka = k0 + 16 * t + 2 * quad, kb = ka + 8;
                const bool on = grp < GROUP;
                const u32 pa[4] = {
                    on ? pack_bf16(ka < n ? sc[gp][ka] : 0.0f, ka + 1 < n ? sc[gp][ka + 1] : 0.0f) : 0u, 0u,
                    on ? pack_bf16(kb < n ? sc[gp][kb] : 0.0f, kb + 1 < n ? sc[gp][kb + 1] : 0.0f) : 0u, 0u};
#pragma unroll
                for (int c = 0; c < D / 32; ++c) {
                    const u32 lo[4] = {vr[t][0][c].x, vr[t][1][c].x, vr[t][2][c].x, vr[t][3][c].x};
                    const u32 hi[4] = {vr[t][0][c].y, vr[t][1][c].y, vr[t][2][c].y, vr[t][3][c].y};
#pragma unroll
                    for (int d = 0; d < 4; ++d) {
                        const u32* w = d < 2 ? lo : hi;
                        const unsigned sel = (d & 1) ? 0x7632u : 0x5410u;
                        mma_bf16(acc[c][d], pa, __byte_perm(w[0], w[1], sel), __byte_perm(w[2], w[3], sel));
                    }
                }
            }
        }
        // acc[c][d][0..1]: head grp, dims 32 c + 4 (2 quad + {0, 1}) + d.
        if (grp < GROUP)
#pragma unroll
            for (int c = 0; c < D / 32; ++c)
#pragma unroll
                for (int d = 0; d < 4; ++d) {
                    red[warp][grp][32 * c + 8 * quad + d] = acc[c][d][0];
                    red[warp][grp][32 * c + 8 * quad + 4 + d] = acc[c][d][1];
                }
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
