{% include "common/pio.cuh" %}
// {{ doc }}
// Decode-step matrix-vector product for one token: out[n] = sum_k x'[k] * w[n, k], with
// x' = rmsnorm(x) * norm_w when NORM, an added residual when RESIDUAL, and
// out[n] = silu(g[n]) * u[n] over the gate rows (0..N) and up rows (N..2N) when SWIGLU.
// One warp per output row at a time; 16-byte weight loads; x staged in shared memory as f32.
#define K {{ k }}
#define N {{ n }}
#define WARPS {{ warps }}
#define EPS {{ eps }}

__device__ __forceinline__ float dot_row(const bf16* __restrict__ wrow, const float* xs, int lane) {
    float acc = 0.0f;
{% if vec8 %}
#pragma unroll 4
    for (int k = lane * 8; k < K; k += 256) {
        uint4 v = *reinterpret_cast<const uint4*>(wrow + k);
        float f[8];
        unpack8(v, f);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc = fmaf(f[j], xs[k + j], acc);
    }
{% else %}
    // K is not a multiple of 8 (rows are not 16-byte aligned): scalar loads.
    for (int k = lane; k < K; k += 32) acc = fmaf(bf2f(wrow[k]), xs[k], acc);
{% endif %}
    return acc;
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) {{ name }}(
    const bf16* __restrict__ x, const bf16* __restrict__ norm_w, const bf16* __restrict__ w,
    const bf16* residual, bf16* out)  // out may alias residual (in place)
{
    __shared__ float xs[K];
    __shared__ float partial[WARPS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < K; i += WARPS * 32) {
        float v = bf2f(x[i]);
        xs[i] = v;
        ss += v * v;
    }
{% if norm %}
    ss = warp_sum(ss);
    if (lane == 0) partial[warp] = ss;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < WARPS; ++i) total += partial[i];
    const float inv = rsqrtf(total / (float)K + EPS);
    for (int i = threadIdx.x; i < K; i += WARPS * 32) xs[i] = rbf(rbf(xs[i] * inv) * bf2f(norm_w[i]));
{% endif %}
    __syncthreads();
    for (int row = blockIdx.x * WARPS + warp; row < N; row += gridDim.x * WARPS) {
        float acc = warp_sum(dot_row(w + (size_t)row * K, xs, lane));
{% if swiglu %}
        float up = warp_sum(dot_row(w + (size_t)(row + N) * K, xs, lane));
        if (lane == 0) out[row] = f2bf(rbf(silu(rbf(acc))) * rbf(up));
{% else if residual %}
        if (lane == 0) out[row] = f2bf(rbf(acc) + bf2f(residual[row]));
{% else %}
        if (lane == 0) out[row] = f2bf(acc);
{% endif %}
    }
}
