{% include "common/pio.cuh" %}
// {{ doc }}
// P through the reciprocal of its row's sum (measured faster; the batching engine's rows are
// held to the CPU executor, not to HF's eager quotient).
#define P_RECIPROCAL 1
{% include "common/attention_mma.cuh" %}
// The keys split over blocks, for steps of few tokens over many cached keys (a chunk after a
// prefix-cache hit: one block per head and 64 tokens would leave most SMs idle). blockIdx.z of
// gridDim.z splits takes a contiguous share of its block's key tiles. Three launches:
//   stats:  each split's row max and sum (pass 1 over its keys) into `state`;
//   pv:     every split's state combined into the row's M and L (the sums rescaled to the
//           largest max), then pass 2 over its keys into `partial` (f32), or straight into
//           `out`, rounded once, where the step has one split;
//   reduce: the splits' partials summed in split order, rounded once, into `out`.
// state: [splits, tokens, HEADS] (max, sum); partial: [splits, tokens, HEADS, D] f32.
// With the one-pass option (CodegenOptions::online_chunk_attention) two launches instead:
//   online:        one pass over the split's keys (online softmax, attention_mma.cuh's
//                  online_pass): `out` where the step has one split, else the split's max and
//                  sum into `state` and its P.V relative to that max into `partial`;
//   online_reduce: the splits' P.V rescaled to the largest max and divided by the sum.
#define SPLIT_TARGET {{ split_target }}
#define SPLIT_MAX {{ split_max }}

// The step's splits (the launch's Dim::Split: ceil(target / tokens), within 1..=max).
__device__ __forceinline__ int splits_for(int tokens) {
    return min(max((SPLIT_TARGET + tokens - 1) / tokens, 1), SPLIT_MAX);
}

{% if phase != "reduce" && phase != "online_reduce" %}
// The stats and P.V kernels' start for the segment s0 .. s1 of the block's window (see
// segment_end): its rows, its sequence's block table (null for the batch-1 cache), its queries
// as mma fragments and its split's key tiles [from, to).
__device__ __forceinline__ BlockRows split_start(const bf16* __restrict__ q,
                                                 const int* __restrict__ positions, int tokens,
                                                 int s0, int s1, const int* seq_index,
                                                 const int* block_tables, const int*& table,
                                                 u32 (&qa)[D / 16][4], int& from, int& to) {
{% if block_size > 0 %}
    table = block_tables + (size_t)seq_index[s0] * MAX_BLOCKS;
{% else %}
    table = nullptr;
{% endif %}
    const BlockRows b = block_rows(positions, s0, s1);
    load_q(qa, q, b, tokens);
    const int per = (b.tiles + (int)gridDim.z - 1) / (int)gridDim.z;
    from = min((int)blockIdx.z * per, b.tiles);
    to = min(from + per, b.tiles);
    return b;
}

// This split's max and sum of this lane's two rows (each row's in the 4 lanes that share it),
// into `state` ([splits, tokens, HEADS]).
__device__ __forceinline__ void store_state(float2* __restrict__ state, const BlockRows& b,
                                            int tokens, float m0, float l0, float m1, float l1) {
    if ((b.lane & 3) == 0) {
        if (b.p0 >= 0) state[((size_t)blockIdx.z * tokens + b.r0) * HEADS + b.h] = make_float2(m0, l0);
        if (b.p1 >= 0) state[((size_t)blockIdx.z * tokens + b.r1) * HEADS + b.h] = make_float2(m1, l1);
    }
}

// This split's f32 P.V of this lane's rows into `partial` ([splits, tokens, HEADS, D]).
__device__ __forceinline__ void store_partial(float* __restrict__ partial,
                                              const float (&acc)[D / 8][4], const BlockRows& b,
                                              int tokens) {
    const int col = 2 * (b.lane & 3);
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        if (b.p0 >= 0) {
            float* o = partial + (((size_t)blockIdx.z * tokens + b.r0) * HEADS + b.h) * D + n * 8 + col;
            *reinterpret_cast<float2*>(o) = make_float2(acc[n][0], acc[n][1]);
        }
        if (b.p1 >= 0) {
            float* o = partial + (((size_t)blockIdx.z * tokens + b.r1) * HEADS + b.h) * D + n * 8 + col;
            *reinterpret_cast<float2*>(o) = make_float2(acc[n][2], acc[n][3]);
        }
    }
}

// The window's sequence index rows (null: one sequence).
{% if block_size > 0 %}
#define SEQ_INDEX seq_index
#define BLOCK_TABLES block_tables
{% else %}
#define SEQ_INDEX nullptr
#define BLOCK_TABLES nullptr
{% endif %}
{% endif %}

{% if phase == "stats" %}
// No launch bound beyond the threads: 126 registers (head_dim 128) already allow 4 blocks per SM.
extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const int* __restrict__ positions,
    float2* __restrict__ state, int tokens{% if block_size > 0 %},
    const int* __restrict__ seq_index, const int* __restrict__ block_tables{% endif %})
{
    pdl_wait();
    pdl_launch_dependents();
    // Two key tiles (2 * TILE_ELEMS of the launch's dynamic shared memory).
    extern __shared__ __align__(16) bf16 smem[];
    const int w0 = window_start(), w1 = min(w0 + BQ, tokens);
    // Each sequence's rows of the window in turn (one segment but at a sequence boundary).
    for (int s0 = w0, s1; s0 < w1; s0 = s1) {
        s1 = segment_end(SEQ_INDEX, s0, w1);
        const int* table;
        u32 qa[D / 16][4];
        int from, to;
        const BlockRows b = split_start(q, positions, tokens, s0, s1, SEQ_INDEX, BLOCK_TABLES,
                                        table, qa, from, to);
        float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.0f, l1 = 0.0f;
        stats_pass(qa, b, smem, kc, from, to, table, m0, m1, l0, l1);
#pragma unroll
        for (int o = 1; o < 4; o <<= 1) {
            l0 += __shfl_xor_sync(0xffffffffu, l0, o);
            l1 += __shfl_xor_sync(0xffffffffu, l1, o);
        }
        store_state(state, b, tokens, m0, l0, m1, l1);
        // The next segment reuses the key tiles' shared memory.
        __syncthreads();
    }
}
{% endif %}

{% if phase == "pv" %}
// Row `row`'s max M and sum L of exp(s - M) over every split: each split's sum rescaled to M
// (exactly its own sum where its max is M, so one split gives the whole kernel's bits).
__device__ __forceinline__ void combine(const float2* __restrict__ state, int tokens, int row,
                                        int h, int splits, float& m, float& l) {
    m = NEG_INF;
    l = 0.0f;
    if (row >= tokens) return;
    for (int z = 0; z < splits; ++z) m = fmaxf(m, state[((size_t)z * tokens + row) * HEADS + h].x);
    for (int z = 0; z < splits; ++z) {
        const float2 st = state[((size_t)z * tokens + row) * HEADS + h];
        if (st.x != NEG_INF) l += st.x == m ? st.y : st.y * __expf(st.x - m);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS{% if min_blocks > 0 %}, {{ min_blocks }}{% endif %}) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, const float2* __restrict__ state,
    float* __restrict__ partial, bf16* __restrict__ out, int tokens{% if block_size > 0 %},
    const int* __restrict__ seq_index, const int* __restrict__ block_tables{% endif %})
{
    pdl_wait();
    pdl_launch_dependents();
    // Two key tiles, then two value tiles (4 * TILE_ELEMS, the launch's dynamic shared memory).
    extern __shared__ __align__(16) bf16 smem[];
    const int w0 = window_start(), w1 = min(w0 + BQ, tokens);
    for (int s0 = w0, s1; s0 < w1; s0 = s1) {
        s1 = segment_end(SEQ_INDEX, s0, w1);
        const int* table;
        u32 qa[D / 16][4];
        int from, to;
        const BlockRows b = split_start(q, positions, tokens, s0, s1, SEQ_INDEX, BLOCK_TABLES,
                                        table, qa, from, to);
        float m0, m1, l0, l1;
        combine(state, tokens, b.r0, b.h, gridDim.z, m0, l0);
        combine(state, tokens, b.r1, b.h, gridDim.z, m1, l1);
        float acc[D / 8][4];
        pv_pass(acc, qa, b, smem, kc, vc, from, to, table, m0, m1, l0, l1);
        if (gridDim.z == 1) {
            store_rows(out, acc, b);
        } else {
            store_partial(partial, acc, b, tokens);
        }
        __syncthreads();
    }
}
{% endif %}

{% if phase == "reduce" %}
// A block per token and head, a thread per dim; not launched where the step has one split (the
// P.V kernel wrote `out`: the grid's Dim::SplitTokens is 0), and a no-op if it were.
extern "C" __global__ void {{ name }}(const float* __restrict__ partial, bf16* __restrict__ out,
                                      int tokens)
{
    pdl_wait();
    pdl_launch_dependents();
    const int splits = splits_for(tokens);
    if (splits == 1) return;
    const int t = blockIdx.x, h = blockIdx.y;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float a = 0.0f;
        for (int z = 0; z < splits; ++z) a += partial[(((size_t)z * tokens + t) * HEADS + h) * D + i];
        out[((size_t)t * HEADS + h) * D + i] = f2bf(a);
    }
}
{% endif %}

{% if phase == "online" %}
extern "C" __global__ void __launch_bounds__(THREADS{% if min_blocks > 0 %}, {{ min_blocks }}{% endif %}) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, float2* __restrict__ state, float* __restrict__ partial,
    bf16* __restrict__ out, int tokens{% if block_size > 0 %},
    const int* __restrict__ seq_index, const int* __restrict__ block_tables{% endif %})
{
    pdl_wait();
    pdl_launch_dependents();
    // Two key tiles, then two value tiles (4 * TILE_ELEMS, the launch's dynamic shared memory).
    extern __shared__ __align__(16) bf16 smem[];
    const int w0 = window_start(), w1 = min(w0 + BQ, tokens);
    for (int s0 = w0, s1; s0 < w1; s0 = s1) {
        s1 = segment_end(SEQ_INDEX, s0, w1);
        const int* table;
        u32 qa[D / 16][4];
        int from, to;
        const BlockRows b = split_start(q, positions, tokens, s0, s1, SEQ_INDEX, BLOCK_TABLES,
                                        table, qa, from, to);
        float m0, m1, l0, l1;
        float acc[D / 8][4];
        online_pass(acc, qa, b, smem, kc, vc, from, to, table, m0, m1, l0, l1);
#pragma unroll
        for (int o = 1; o < 4; o <<= 1) {
            l0 += __shfl_xor_sync(0xffffffffu, l0, o);
            l1 += __shfl_xor_sync(0xffffffffu, l1, o);
        }
        if (gridDim.z == 1) {
            // Every row sees its own key: l > 0 for the rows stored.
            const float i0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, i1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                acc[n][0] *= i0;
                acc[n][1] *= i0;
                acc[n][2] *= i1;
                acc[n][3] *= i1;
            }
            store_rows(out, acc, b);
        } else {
            store_state(state, b, tokens, m0, l0, m1, l1);
            store_partial(partial, acc, b, tokens);
        }
        __syncthreads();
    }
}
{% endif %}

{% if phase == "online_reduce" %}
// A block per token and head, a thread per dim; not launched where the step has one split.
// A split past the row's keys wrote (-inf, 0) and weighs nothing.
extern "C" __global__ void {{ name }}(const float2* __restrict__ state,
                                      const float* __restrict__ partial, bf16* __restrict__ out,
                                      int tokens)
{
    pdl_wait();
    pdl_launch_dependents();
    const int splits = splits_for(tokens);
    if (splits == 1) return;
    const int t = blockIdx.x, h = blockIdx.y;
    float m = NEG_INF;
    for (int z = 0; z < splits; ++z) m = fmaxf(m, state[((size_t)z * tokens + t) * HEADS + h].x);
    float l = 0.0f;
    for (int z = 0; z < splits; ++z) {
        const float2 st = state[((size_t)z * tokens + t) * HEADS + h];
        if (st.x != NEG_INF) l += st.y * __expf(st.x - m);
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float a = 0.0f;
        for (int z = 0; z < splits; ++z) {
            const float2 st = state[((size_t)z * tokens + t) * HEADS + h];
            if (st.x != NEG_INF)
                a += partial[(((size_t)z * tokens + t) * HEADS + h) * D + i] * __expf(st.x - m);
        }
        out[((size_t)t * HEADS + h) * D + i] = f2bf(a * inv);
    }
}
{% endif %}
