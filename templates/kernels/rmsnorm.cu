{% include "common/pio.cuh" %}
// {{ doc }}
// Row RMSNorm (f32 math, HF's bf16 rounding): out[t, :] = bf16(bf16(x * rsqrt(mean(x^2) + EPS)) * w)
// for [tokens, DIM] rows read with stride IN_STRIDE. One block per token.
#define DIM {{ dim }}
#define EPS {{ eps }}
#define IN_STRIDE {{ in_stride }}
#define THREADS {{ threads }}

extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ x, const bf16* __restrict__ w, bf16* __restrict__ out)
{
    pdl_wait();
    pdl_launch_dependents();
    const bf16* row = x + (size_t)blockIdx.x * IN_STRIDE;
    __shared__ float partial[THREADS / 32];
    float ss = 0.0f;
    for (int i = threadIdx.x; i < DIM; i += THREADS) { float v = bf2f(row[i]); ss += v * v; }
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < THREADS / 32; ++i) total += partial[i];
    const float inv = rsqrtf(total / (float)DIM + EPS);
    for (int i = threadIdx.x; i < DIM; i += THREADS)
        out[(size_t)blockIdx.x * DIM + i] = f2bf(rbf(bf2f(row[i]) * inv) * bf2f(w[i]));
}
