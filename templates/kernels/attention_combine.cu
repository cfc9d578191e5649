{% include "common/pio.cuh" %}
// {{ doc }}
// The spans of the paged decode attention (attention_cluster.cu rendered paged), added: a block
// per kv head (grid.x) and token (grid.z). A token whose context is one span was written by the
// attention kernel itself; for a longer one each span's output is weighed by its share of the
// softmax sum (its state: max, sum of exp(s - max)), as the batch-1 decode attention's last
// cluster does. The span count is the attention kernel's, from the same position and constants.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define GROUP (HEADS / KV_HEADS)
#define D {{ d }}
#define CL {{ cluster }}
#define PER_MIN {{ per_min }}
#define SPANS {{ spans }}
#define THREADS {{ threads }}
#define WARPS (THREADS / 32)

#if __CUDA_ARCH__ >= 900
#define NB CL
#else
#define NB 1
#endif
#define SLOTS (CL * SPANS / NB)
#define SPAN_SLOTS (CL * SPANS)

extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
    const int* __restrict__ positions, const float* __restrict__ span_out,
    const float* __restrict__ span_state, bf16* __restrict__ out)
{
    const int kvh = blockIdx.x, tok = blockIdx.z;
    const int len = positions[tok] + 1;
    const int spans = min(SLOTS, (len + NB * PER_MIN - 1) / (NB * PER_MIN));
    pdl_wait();
    pdl_launch_dependents();
    if (spans == 1) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float* so = span_out + ((size_t)tok * KV_HEADS + kvh) * SPAN_SLOTS * GROUP * D;
    const float* ss = span_state + ((size_t)tok * KV_HEADS + kvh) * SPAN_SLOTS * GROUP * 2;
    __shared__ float weight[GROUP][SPAN_SLOTS];
    for (int g = warp; g < GROUP; g += WARPS) {
        float mx = NEG_INF;
        for (int c = lane; c < spans; c += 32) mx = fmaxf(mx, ss[((size_t)c * GROUP + g) * 2]);
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int c = lane; c < spans; c += 32) {
            const float* st = ss + ((size_t)c * GROUP + g) * 2;
            const float w = st[1] * __expf(st[0] - mx);
            weight[g][c] = w;
            sum += w;
        }
        sum = warp_sum(sum);
        for (int c = lane; c < spans; c += 32) weight[g][c] /= sum;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS) {
        const int g = i / D, d = i % D;
        float o = 0.0f;
#pragma unroll 8
        for (int c = 0; c < spans; ++c) o = fmaf(weight[g][c], so[((size_t)c * GROUP + g) * D + d], o);
        out[((size_t)tok * HEADS + kvh * GROUP + g) * D + d] = f2bf(o);
    }
}
