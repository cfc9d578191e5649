// The tensor-core prefill attention's pieces, shared by attention_mma.cu (a block walks all of
// its keys) and attention_mma_split.cu (the keys split over blocks): causal grouped-query
// attention of a step's tokens over the layer's KV cache ([KV_HEADS, CTX, D], or the paged pool);
// a query at position p sees keys 0..=p. A block takes BQ tokens of one query head, a warp 16 of
// them, and walks keys in tiles of BK staged in (dynamic) shared memory, double-buffered: the
// next tile's cp.async copies are in flight while the warps compute on this one. Blocks of the
// last tokens (the most keys) start first. The arithmetic is HF's bf16 eager attention: scores
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
// Paged (a batching-engine chunk step of one or more sequences, each one's rows contiguous): key
// rows through the sequence's block table, BS positions per pool block of BLOCK_ELEMS elements,
// this layer's rows [KV_HEADS, BS, D].
#define BS {{ block_size }}
#define BLOCK_ELEMS {{ block_elems }}
#define MAX_BLOCKS {{ max_blocks }}
{% endif %}
#define BQ {{ tile }}
#define BK {{ tile }}
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

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}

// Waits until at most N of this thread's committed copy groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Keys (or values) k0 .. k0 + BK of kv head kvh into shared memory; rows from kv_len on are zero.
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* __restrict__ cache, int k0,
                                          int kv_len, int kvh, const int* __restrict__ table) {
    constexpr int CHUNKS = D / 8;  // 16-byte chunks per row
{% if load_unroll > 0 %}
    // Fewer row addresses live at once (the one-pass kernel: 218 -> 167 registers, 3 blocks
    // per SM instead of 2, head_dim 128).
#pragma unroll {{ load_unroll }}
{% endif %}
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

// One tile's rows in shared memory: BK rows of LDS elements.
#define TILE_ELEMS (BK * LDS)

// Starts copying key tile `tile` (and, when vs is given, the value tile) into shared memory, as
// one commit group.
__device__ __forceinline__ void issue_tile(bf16* ks, bf16* vs, const bf16* __restrict__ kc,
                                           const bf16* __restrict__ vc, int tile, int kv_len,
                                           int kvh, const int* __restrict__ table) {
    load_tile(ks, kc, tile * BK, kv_len, kvh, table);
    if (vs) load_tile(vs, vc, tile * BK, kv_len, kvh, table);
    cp_async_commit();
}

// Waits for tile `tile`'s copies (the next tile's may stay in flight) and makes them visible to
// the block; the caller has issued tile + 1 already where there is one.
__device__ __forceinline__ void wait_tile(int tile, int tiles) {
    if (tile + 1 < tiles) cp_async_wait<1>();
    else cp_async_wait<0>();
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

// Pass 1's step over one tile: folds the tile's scores into each row's max (m) and sum of
// exp(s - m) (l), per lane (the 4 lanes of a row are summed at the end; the max is shared).
// x0 and x1 raised to the max of a tile's scores in each of this lane's two rows, over the 4
// lanes that share a row.
__device__ __forceinline__ void tile_row_max(const float (&s)[BK / 8][4], float& x0, float& x1) {
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
}

__device__ __forceinline__ void row_stats(const float (&s)[BK / 8][4], float& m0, float& m1,
                                          float& l0, float& l1) {
    float x0 = NEG_INF, x1 = NEG_INF;
    tile_row_max(s, x0, x1);
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

// acc += P times the value rows vt of a tile, P (already rounded to bf16) in the scores' place.
__device__ __forceinline__ void pv_mma(float (&acc)[D / 8][4], const float (&s)[BK / 8][4],
                                       const bf16* vt, int lane) {
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
        const u32 pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                           pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                           pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int n = 0; n < D / 8; n += 2) {
            u32 b[4];
            ldmatrix_x4_trans(b, vt + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS +
                                     n * 8 + (lane >> 4) * 8);
            mma_bf16(acc[n], pa, b[0], b[1]);
            mma_bf16(acc[n + 1], pa, b[2], b[3]);
        }
    }
}

// Pass 2's step over one tile: P = bf16(exp(s - m) / l) times the value rows vt, into acc.
// With P_RECIPROCAL the quotient is a product with 1 / l (within an ulp of it in f32, before the
// rounding to bf16; the division per score cost more than the exp); without, IEEE division, as
// HF's eager softmax.
__device__ __forceinline__ void p_times_v(float (&acc)[D / 8][4], float (&s)[BK / 8][4],
                                          const bf16* vt, float m0, float m1, float l0, float l1,
                                          int lane) {
#if P_RECIPROCAL
    const float i0 = __frcp_rn(l0), i1 = __frcp_rn(l1);
#define P_OF(x, m, l, i) rbf(__expf((x) - (m)) * (i))
#else
#define P_OF(x, m, l, i) rbf(__fdiv_rn(__expf((x) - (m)), (l)))
#endif
#pragma unroll
    for (int j = 0; j < BK / 8; ++j) {
        s[j][0] = s[j][0] == NEG_INF ? 0.0f : P_OF(s[j][0], m0, l0, i0);
        s[j][1] = s[j][1] == NEG_INF ? 0.0f : P_OF(s[j][1], m0, l0, i0);
        s[j][2] = s[j][2] == NEG_INF ? 0.0f : P_OF(s[j][2], m1, l1, i1);
        s[j][3] = s[j][3] == NEG_INF ? 0.0f : P_OF(s[j][3], m1, l1, i1);
    }
#undef P_OF
    pv_mma(acc, s, vt, lane);
}

// A block's window: query head blockIdx.x, tokens t0 .. t0 + BQ (the last tokens' window first).
__device__ __forceinline__ int window_start() {
    return (gridDim.y - 1 - blockIdx.y) * BQ;
}

// The end of the segment that starts at row s0 of a window ending at `end`: the rows of s0's
// sequence. A paged step's rows run sequence after sequence (seq_index never decreases), so a
// window holds one sequence's rows or the end of one and the start of the next (a chunk step
// of several sequences); seq_index is null where every row is one sequence's.
__device__ __forceinline__ int segment_end(const int* __restrict__ seq_index, int s0, int end) {
    if (seq_index == nullptr) return end;
    const int s = seq_index[s0];
    if (seq_index[end - 1] == s) return end;
    // Binary search for the first row of a later sequence in (s0, end - 1].
    int lo = s0 + 1, hi = end - 1;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (seq_index[mid] == s) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// A block's share: query head h, the rows s0 .. s1 of one sequence within the window of BQ
// tokens at t0, and this thread's two rows r0 and r1 = r0 + 8 with their positions p0 / p1
// (-1: no such token, or another sequence's).
struct BlockRows {
    int h, kvh, t0, warp, lane, r0, r1, p0, p1;
    // Keys the segment's last token sees (positions grow with the token index within a
    // sequence), its tiles, and the keys of the warp's last row in the segment (0: none).
    int kv_len, tiles, warp_keys;
};

__device__ __forceinline__ BlockRows block_rows(const int* __restrict__ positions, int s0,
                                                int s1) {
    BlockRows b;
    b.h = blockIdx.x;
    b.t0 = window_start();
    b.kvh = b.h / (HEADS / KV_HEADS);
    b.warp = threadIdx.x >> 5;
    b.lane = threadIdx.x & 31;
    b.r0 = b.t0 + b.warp * 16 + (b.lane >> 2);
    b.r1 = b.r0 + 8;
    b.p0 = b.r0 >= s0 && b.r0 < s1 ? positions[b.r0] : -1;
    b.p1 = b.r1 >= s0 && b.r1 < s1 ? positions[b.r1] : -1;
    b.kv_len = positions[s1 - 1] + 1;
    b.tiles = (b.kv_len + BK - 1) / BK;
    const int first = max(b.t0 + b.warp * 16, s0);
    const int last = min(b.t0 + b.warp * 16 + 15, s1 - 1);
    b.warp_keys = first <= last ? positions[last] + 1 : 0;
    return b;
}

// Q as mma A fragments: rows r0 / r1, dims 16 kk + 2 (lane % 4) + {0, 1} (+ 8).
__device__ __forceinline__ void load_q(u32 (&qa)[D / 16][4], const bf16* __restrict__ q,
                                       const BlockRows& b, int tokens) {
    const bf16* q0 = q + (size_t)min(b.r0, tokens - 1) * Q_STRIDE + (size_t)b.h * D + 2 * (b.lane & 3);
    const bf16* q1 = q + (size_t)min(b.r1, tokens - 1) * Q_STRIDE + (size_t)b.h * D + 2 * (b.lane & 3);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        qa[kk][0] = b.p0 >= 0 ? ld_u32(q0 + kk * 16) : 0u;
        qa[kk][1] = b.p1 >= 0 ? ld_u32(q1 + kk * 16) : 0u;
        qa[kk][2] = b.p0 >= 0 ? ld_u32(q0 + kk * 16 + 8) : 0u;
        qa[kk][3] = b.p1 >= 0 ? ld_u32(q1 + kk * 16 + 8) : 0u;
    }
}

// The key tiles [from, to) (with VALUES, the value tiles too), double-buffered in smem (2 key tiles,
// then 2 value tiles): the next tile's copy is in flight while `step(ks, vs, tile)` works on
// this one, for each tile some of the warp's rows see. Every thread of the block calls it.
template <bool VALUES, class Step>
__device__ __forceinline__ void walk_tiles(const BlockRows& b, bf16* smem,
                                           const bf16* __restrict__ kc,
                                           const bf16* __restrict__ vc, int from, int to,
                                           const int* __restrict__ table, Step&& step) {
    if (from >= to) return;
    bf16* const ks = smem;
    bf16* const vs = VALUES ? smem + 2 * TILE_ELEMS : nullptr;
    issue_tile(ks, vs, kc, vc, from, b.kv_len, b.kvh, table);
    for (int tile = from; tile < to; ++tile) {
        const int buf = (tile - from) & 1;
        if (tile + 1 < to)
            issue_tile(ks + (buf ^ 1) * TILE_ELEMS, VALUES ? vs + (buf ^ 1) * TILE_ELEMS : nullptr,
                       kc, vc, tile + 1, b.kv_len, b.kvh, table);
        wait_tile(tile, to);
        if (tile * BK < b.warp_keys)
            step(ks + buf * TILE_ELEMS, VALUES ? vs + buf * TILE_ELEMS : nullptr, tile);
        // Every warp is done with this buffer before tile + 2 is copied into it.
        __syncthreads();
    }
}

// Pass 1 over key tiles [from, to): each row's max (m) and sum of exp(s - m) (l), this lane's
// share of the sum (the 4 lanes of a row add theirs at the end). smem: 2 key tiles.
__device__ __forceinline__ void stats_pass(const u32 (&qa)[D / 16][4], const BlockRows& b,
                                           bf16* smem, const bf16* __restrict__ kc, int from,
                                           int to, const int* __restrict__ table, float& m0,
                                           float& m1, float& l0, float& l1) {
    walk_tiles<false>(b, smem, kc, nullptr, from, to, table, [&](const bf16* kt, const bf16*, int tile) {
        float s[BK / 8][4];
        scores(s, qa, kt, tile * BK, b.p0, b.p1, b.lane);
        row_stats(s, m0, m1, l0, l1);
    });
}

__device__ __forceinline__ void zero(float (&acc)[D / 8][4]) {
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[n][e] = 0.0f;
}

// Pass 2 over key tiles [from, to): P = bf16(exp(s - m) / l) times V into acc. smem: 2 key
// tiles, then 2 value tiles.
__device__ __forceinline__ void pv_pass(float (&acc)[D / 8][4], const u32 (&qa)[D / 16][4],
                                        const BlockRows& b, bf16* smem,
                                        const bf16* __restrict__ kc, const bf16* __restrict__ vc,
                                        int from, int to, const int* __restrict__ table, float m0,
                                        float m1, float l0, float l1) {
    zero(acc);
    walk_tiles<true>(b, smem, kc, vc, from, to, table, [&](const bf16* kt, const bf16* vt, int tile) {
        float s[BK / 8][4];
        scores(s, qa, kt, tile * BK, b.p0, b.p1, b.lane);
        p_times_v(acc, s, vt, m0, m1, l0, l1, b.lane);
    });
}

// One pass over key tiles [from, to) (FlashAttention-2's online softmax): each tile's scores
// raise the rows' running max m, the P.V so far and the sum l are rescaled by exp(m_old - m),
// and P = bf16(exp(s - m)) (not yet divided by the sum) times V is added to acc. On return m
// is the rows' max over the tiles, l this lane's share of their sum (the caller adds the four
// lanes of a row) and acc the P.V relative to m. smem: 2 key tiles, then 2 value tiles.
__device__ __forceinline__ void online_pass(float (&acc)[D / 8][4], const u32 (&qa)[D / 16][4],
                                            const BlockRows& b, bf16* smem,
                                            const bf16* __restrict__ kc,
                                            const bf16* __restrict__ vc, int from, int to,
                                            const int* __restrict__ table, float& m0, float& m1,
                                            float& l0, float& l1) {
    zero(acc);
    m0 = m1 = NEG_INF;
    l0 = l1 = 0.0f;
    walk_tiles<true>(b, smem, kc, vc, from, to, table, [&](const bf16* kt, const bf16* vt, int tile) {
        float s[BK / 8][4];
        scores(s, qa, kt, tile * BK, b.p0, b.p1, b.lane);
        float x0 = m0, x1 = m1;
        tile_row_max(s, x0, x1);
        // A row with no key yet keeps its zeros (no exp of -inf minus -inf).
        const float c0 = m0 == NEG_INF ? 0.0f : __expf(m0 - x0);
        const float c1 = m1 == NEG_INF ? 0.0f : __expf(m1 - x1);
        m0 = x0;
        m1 = x1;
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            acc[n][0] *= c0;
            acc[n][1] *= c0;
            acc[n][2] *= c1;
            acc[n][3] *= c1;
        }
#pragma unroll
        for (int j = 0; j < BK / 8; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float p = s[j][e] == NEG_INF ? 0.0f : rbf(__expf(s[j][e] - (e < 2 ? m0 : m1)));
                s[j][e] = p;
                if (e < 2) l0 += p;
                else l1 += p;
            }
        }
        pv_mma(acc, s, vt, b.lane);
    });
}

// This lane's rows of acc, rounded to bf16, into out ([tokens, HEADS, D]).
__device__ __forceinline__ void store_rows(bf16* __restrict__ out, const float (&acc)[D / 8][4],
                                           const BlockRows& b) {
    const int col = 2 * (b.lane & 3);
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        if (b.p0 >= 0) {
            bf16* o = out + ((size_t)b.r0 * HEADS + b.h) * D + n * 8 + col;
            *reinterpret_cast<u32*>(o) = pack_bf16(acc[n][0], acc[n][1]);
        }
        if (b.p1 >= 0) {
            bf16* o = out + ((size_t)b.r1 * HEADS + b.h) * D + n * 8 + col;
            *reinterpret_cast<u32*>(o) = pack_bf16(acc[n][2], acc[n][3]);
        }
    }
}
