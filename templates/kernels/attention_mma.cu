{% include "common/pio.cuh" %}
// {{ doc }}
// P as HF's eager softmax divides (the HF parity figures stand on it).
#define P_RECIPROCAL 0
{% include "common/attention_mma.cuh" %}

// A block walks every key its tokens see (see common/attention_mma.cuh), in the batch-1
// prefill's contiguous cache.
extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, bf16* __restrict__ out, int tokens)
{
    pdl_wait();
    pdl_launch_dependents();
    // Two key tiles, then two value tiles (4 * TILE_ELEMS, the launch's dynamic shared memory).
    extern __shared__ __align__(16) bf16 smem[];
    const int* table = nullptr;
    const BlockRows b = block_rows(positions, window_start(), min(window_start() + BQ, tokens));
    u32 qa[D / 16][4];
    load_q(qa, q, b, tokens);

    // Pass 1: each row's max and sum of exp(s - max), over the 4 lanes that share the row.
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.0f, l1 = 0.0f;
    stats_pass(qa, b, smem, kc, 0, b.tiles, table, m0, m1, l0, l1);
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, o);
        l1 += __shfl_xor_sync(0xffffffffu, l1, o);
    }

    // Pass 2: P rounded to bf16, times V.
    float acc[D / 8][4];
    pv_pass(acc, qa, b, smem, kc, vc, 0, b.tiles, table, m0, m1, l0, l1);
    store_rows(out, acc, b);
}
