{% include "common/pio.cuh" %}
// {{ doc }}
// Row RMSNorm (f32 math, HF's bf16 rounding): out[t, :] = bf16(bf16(x * rsqrt(mean(x^2) + EPS)) * w)
// for [tokens, DIM] rows read with stride IN_STRIDE. One block per token. With VEC 8 (DIM and
// IN_STRIDE multiples of 8) a thread takes PIECES pieces of 8 columns in 16-byte loads, held in
// registers between the sum of squares and the output, where the row, the weight and the output
// are 16-byte aligned; otherwise, and as a fallback, one element at a time. The two sum the
// squares in different orders (f32 rounding apart), nothing else.
#define DIM {{ dim }}
#define EPS {{ eps }}
#define IN_STRIDE {{ in_stride }}
#define THREADS {{ threads }}
#define VEC {{ vec }}
#define PIECES ((DIM / 8 + THREADS - 1) / THREADS)

// The block's sum of one value per thread.
__device__ __forceinline__ float block_sum(float v, float* partial) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < THREADS / 32; ++i) total += partial[i];
    return total;
}

extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
    const bf16* __restrict__ x, const bf16* __restrict__ w, bf16* __restrict__ out)
{
    pdl_wait();
    pdl_launch_dependents();
    const bf16* row = x + (size_t)blockIdx.x * IN_STRIDE;
    bf16* orow = out + (size_t)blockIdx.x * DIM;
    __shared__ float partial[THREADS / 32];
#if VEC == 8
    // The same for every thread of the block: all take one path.
    const size_t addresses = reinterpret_cast<size_t>(row) | reinterpret_cast<size_t>(w)
        | reinterpret_cast<size_t>(orow);
    if ((addresses & 15) == 0) {
        float v[PIECES][8];
        float ss = 0.0f;
#pragma unroll
        for (int p = 0; p < PIECES; ++p) {
            const int c = (threadIdx.x + p * THREADS) * 8;
            if (c < DIM) {
                load_bf16s<8>(row + c, v[p]);
#pragma unroll
                for (int i = 0; i < 8; ++i) ss += v[p][i] * v[p][i];
            }
        }
        const float inv = rsqrtf(block_sum(ss, partial) / (float)DIM + EPS);
#pragma unroll
        for (int p = 0; p < PIECES; ++p) {
            const int c = (threadIdx.x + p * THREADS) * 8;
            if (c < DIM) {
                float wf[8], o[8];
                load_bf16s<8>(w + c, wf);
#pragma unroll
                for (int i = 0; i < 8; ++i) o[i] = rbf(v[p][i] * inv) * wf[i];
                store_bf16s<8>(orow + c, o);
            }
        }
        return;
    }
#endif
    float ss = 0.0f;
    for (int i = threadIdx.x; i < DIM; i += THREADS) { float v = bf2f(row[i]); ss += v * v; }
    const float inv = rsqrtf(block_sum(ss, partial) / (float)DIM + EPS);
    for (int i = threadIdx.x; i < DIM; i += THREADS)
        orow[i] = f2bf(rbf(bf2f(row[i]) * inv) * bf2f(w[i]));
}
