{% include "common/pio.cuh" %}
// {{ doc }}
// Combines the decode attention's per-split partial softmax states: for head h, the splits
// 0..ceil(len / CHUNK) each hold (acc[D], max, sum); out[h, :] = sum_s acc_s e^(m_s - M) / L.
#define HEADS {{ heads }}
#define D {{ d }}
#define CHUNK {{ chunk }}
#define SPLITS {{ splits }}

extern "C" __global__ void {{ name }}(const float* __restrict__ part,
                                      const int* __restrict__ positions, bf16* __restrict__ out)
{
    const int h = blockIdx.x;
    const int nsplit = (positions[0] + 1 + CHUNK - 1) / CHUNK;
    const float* p = part + (size_t)h * SPLITS * (D + 2);
    float M = NEG_INF;
    for (int s = 0; s < nsplit; ++s) M = fmaxf(M, p[s * (D + 2) + D]);
    float L = 0.0f;
    for (int s = 0; s < nsplit; ++s) L += p[s * (D + 2) + D + 1] * __expf(p[s * (D + 2) + D] - M);
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < nsplit; ++s) o += p[s * (D + 2) + i] * __expf(p[s * (D + 2) + D] - M);
        out[(size_t)h * D + i] = f2bf(o / L);
    }
}
