{% include "common/pio.cuh" %}
// {{ doc }}
// Prefill attention on tensor cores (sm_80+): causal grouped-query attention of a step's tokens
// over the layer's KV cache ([KV_HEADS, CTX, D]); a query at position p sees keys 0..=p. A block
// takes BQ = 64 tokens of one query head, a warp 16 of them, and walks the keys in tiles of
// BK = 64 staged in shared memory. The arithmetic is HF's bf16 eager attention: scores
// s = bf16(bf16(q.k) * SCALE) (q.k on tensor cores, f32 accumulation); a first pass finds each
// row's max M and sum L of exp(s - M) (rescaled per tile); a second pass computes the scores
// again, rounds P = bf16(exp(s - M) / L) and adds P.V on tensor cores in f32, rounded once.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define D {{ d }}
#define SCALE {{ scale }}
#define Q_STRIDE {{ q_stride }}
#define CTX {{ ctx }}
{% if block_size > 0 %}
// Paged (a batching-engine chunk of one sequence): key rows through the sequence's block table,
// BS positions per pool block of BLOCK_ELEMS elements, this layer's rows [KV_HEADS, BS, D].
#define BS {{ block_size }}
#define BLOCK_ELEMS {{ block_elems }}
#define MAX_BLOCKS {{ max_blocks }}
{% endif %}
#define BQ 64
#define BK 64
#define THREADS 128
// Shared-memory row stride in elements: 16 bytes of padding keep ldmatrix free of bank conflicts.
#define LDS (D + 8)

#if __CUDA_ARCH__ < 800
#error "the tensor-core prefill attention needs sm_80 or later"
#endif

__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], const bf16* p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 { %0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], const bf16* p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 { %0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

// Copies 16 bytes to shared memory asynchronously; zeros where `valid` is false.
__device__ __forceinline__ void cp_async16(bf16* dst, const bf16* src, bool valid) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(a), "l"(src),
                 "r"(valid ? 16 : 0) : "memory");
}

__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_all;" ::: "memory");
}

// Keys (or values) k0 .. k0 + BK of kv head kvh into shared memory; rows from kv_len on are zero.
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* __restrict__ cache, int k0,
                                          int kv_len, int kvh, const int* __restrict__ table) {
    constexpr int CHUNKS = D / 8;  // 16-byte chunks per row
    for (int i = threadIdx.x; i < BK * CHUNKS; i += THREADS) {
        const int r = i / CHUNKS, c = i % CHUNKS;
        const bool valid = k0 + r < kv_len;
        const int key = valid ? k0 + r : 0;
{% if block_size > 0 %}
        const bf16* src = cache + (size_t)table[key / BS] * BLOCK_ELEMS
            + ((size_t)kvh * BS + key % BS) * D + c * 8;
{% else %}
        const bf16* src = cache + ((size_t)kvh * CTX + key) * D + c * 8;
{% endif %}
        cp_async16(dst + r * LDS + c * 8, src, valid);
    }
}

// Stages key tile `tile` (and, when vs is given, the value tile) for the whole block: waits for
// every thread to be done with the previous tile first, and for the copies after.
__device__ __forceinline__ void stage_tile(bf16* ks, bf16* vs, const bf16* __restrict__ kc,
                                           const bf16* __restrict__ vc, int tile, int kv_len,
                                           int kvh, const int* __restrict__ table) {
    __syncthreads();
    load_tile(ks, kc, tile * BK, kv_len, kvh, table);
    if (vs) load_tile(vs, vc, tile * BK, kv_len, kvh, table);
    cp_async_wait_all();
    __syncthreads();
}

// The rounded, masked scores of this warp's 16 rows against the BK keys in ks: s[j] holds keys
// k0 + 8j + 2 * (lane % 4) + {0, 1} of rows lane / 4 (s[j][0..1]) and lane / 4 + 8 (s[j][2..3]).
__device__ __forceinline__ void scores(float (&s)[BK / 8][4], const u32 (&qa)[D / 16][4],
                                       const bf16* ks, int k0, int p0, int p1, int lane) {
#pragma unroll
    for (int j = 0; j < BK / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
#pragma unroll
    for (int j = 0; j < BK / 8; j += 2) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            u32 b[4];
            ldmatrix_x4(b, ks + (j * 8 + (lane & 7) + ((lane >> 4) << 3)) * LDS + kk * 16 +
                               ((lane >> 3) & 1) * 8);
            mma_bf16(s[j], qa[kk], b[0], b[1]);
            mma_bf16(s[j + 1], qa[kk], b[2], b[3]);
        }
    }
    const int col = k0 + 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < BK / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int key = col + 8 * j + (e & 1);
            const float v = rbf(rbf(s[j][e]) * SCALE);
            s[j][e] = key <= (e < 2 ? p0 : p1) ? v : NEG_INF;
        }
}

extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, bf16* __restrict__ out, int tokens{% if block_size > 0 %},
    const int* __restrict__ seq_index, const int* __restrict__ block_tables{% endif %})
{
    pdl_wait();
    pdl_launch_dependents();
    __shared__ __align__(16) bf16 ks[BK * LDS];
    __shared__ __align__(16) bf16 vs[BK * LDS];
    const int h = blockIdx.x, t0 = blockIdx.y * BQ;
    const int kvh = h / (HEADS / KV_HEADS);
{% if block_size > 0 %}
    // Every token of a chunk is one sequence's.
    const int* table = block_tables + (size_t)seq_index[0] * MAX_BLOCKS;
{% else %}
    const int* table = nullptr;
{% endif %}
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // This thread's rows (tokens) r0 and r1 = r0 + 8 and their positions (-1: no such token).
    const int r0 = t0 + warp * 16 + (lane >> 2), r1 = r0 + 8;
    const int p0 = r0 < tokens ? positions[r0] : -1, p1 = r1 < tokens ? positions[r1] : -1;
    // Positions grow with the token index: the block's last token sees the most keys, and so
    // does the warp's.
    const int kv_len = positions[min(t0 + BQ, tokens) - 1] + 1;
    const int warp_keys = positions[max(0, min(t0 + warp * 16 + 15, tokens - 1))] + 1;
    const int tiles = (kv_len + BK - 1) / BK;

    // Q as mma A fragments: rows r0 / r1, dims 16 kk + 2 (lane % 4) + {0, 1} (+ 8).
    u32 qa[D / 16][4];
    {
        const bf16* q0 = q + (size_t)min(r0, tokens - 1) * Q_STRIDE + (size_t)h * D + 2 * (lane & 3);
        const bf16* q1 = q + (size_t)min(r1, tokens - 1) * Q_STRIDE + (size_t)h * D + 2 * (lane & 3);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            qa[kk][0] = p0 >= 0 ? ld_u32(q0 + kk * 16) : 0u;
            qa[kk][1] = p1 >= 0 ? ld_u32(q1 + kk * 16) : 0u;
            qa[kk][2] = p0 >= 0 ? ld_u32(q0 + kk * 16 + 8) : 0u;
            qa[kk][3] = p1 >= 0 ? ld_u32(q1 + kk * 16 + 8) : 0u;
        }
    }

    // Pass 1: each row's max and sum of exp(s - max), over the 4 lanes that share the row.
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.0f, l1 = 0.0f;
    for (int tile = 0; tile < tiles; ++tile) {
        stage_tile(ks, nullptr, kc, vc, tile, kv_len, kvh, table);
        if (tile * BK >= warp_keys) continue;
        float s[BK / 8][4];
        scores(s, qa, ks, tile * BK, p0, p1, lane);
        float x0 = NEG_INF, x1 = NEG_INF;
#pragma unroll
        for (int j = 0; j < BK / 8; ++j) {
            x0 = fmaxf(x0, fmaxf(s[j][0], s[j][1]));
            x1 = fmaxf(x1, fmaxf(s[j][2], s[j][3]));
        }
#pragma unroll
        for (int o = 1; o < 4; o <<= 1) {
            x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, o));
            x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, o));
        }
        const float n0 = fmaxf(m0, x0), n1 = fmaxf(m1, x1);
        float a0 = 0.0f, a1 = 0.0f;
#pragma unroll
        for (int j = 0; j < BK / 8; ++j) {
            a0 += __expf(s[j][0] - n0) + __expf(s[j][1] - n0);
            a1 += __expf(s[j][2] - n1) + __expf(s[j][3] - n1);
        }
        // A row with no key yet keeps max -inf and sum 0.
        if (n0 != NEG_INF) l0 = (m0 == NEG_INF ? 0.0f : l0 * __expf(m0 - n0)) + a0;
        if (n1 != NEG_INF) l1 = (m1 == NEG_INF ? 0.0f : l1 * __expf(m1 - n1)) + a1;
        m0 = n0;
        m1 = n1;
    }
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, o);
        l1 += __shfl_xor_sync(0xffffffffu, l1, o);
    }

    // Pass 2: P rounded to bf16, times V.
    float acc[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[n][e] = 0.0f;
    for (int tile = 0; tile < tiles; ++tile) {
        stage_tile(ks, vs, kc, vc, tile, kv_len, kvh, table);
        if (tile * BK >= warp_keys) continue;
        float s[BK / 8][4];
        scores(s, qa, ks, tile * BK, p0, p1, lane);
#pragma unroll
        for (int j = 0; j < BK / 8; ++j) {
            s[j][0] = s[j][0] == NEG_INF ? 0.0f : rbf(__fdiv_rn(__expf(s[j][0] - m0), l0));
            s[j][1] = s[j][1] == NEG_INF ? 0.0f : rbf(__fdiv_rn(__expf(s[j][1] - m0), l0));
            s[j][2] = s[j][2] == NEG_INF ? 0.0f : rbf(__fdiv_rn(__expf(s[j][2] - m1), l1));
            s[j][3] = s[j][3] == NEG_INF ? 0.0f : rbf(__fdiv_rn(__expf(s[j][3] - m1), l1));
        }
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            const u32 pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                               pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                               pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int n = 0; n < D / 8; n += 2) {
                u32 b[4];
                ldmatrix_x4_trans(b, vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS +
                                         n * 8 + (lane >> 4) * 8);
                mma_bf16(acc[n], pa, b[0], b[1]);
                mma_bf16(acc[n + 1], pa, b[2], b[3]);
            }
        }
    }

    const int col = 2 * (lane & 3);
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        if (p0 >= 0) {
            bf16* o = out + ((size_t)r0 * HEADS + h) * D + n * 8 + col;
            *reinterpret_cast<u32*>(o) = pack_bf16(acc[n][0], acc[n][1]);
        }
        if (p1 >= 0) {
            bf16* o = out + ((size_t)r1 * HEADS + h) * D + n * 8 + col;
            *reinterpret_cast<u32*>(o) = pack_bf16(acc[n][2], acc[n][3]);
        }
    }
}
