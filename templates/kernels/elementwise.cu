{% include "common/pio.cuh" %}
// {{ doc }}
// Elementwise over [tokens, COLS] rows: out = {{ expr }}. Operands are read with their own row
// strides (they may be slices of wider rows); out is contiguous. With VEC 8 (COLS and both
// strides multiples of 8) a thread takes 8 columns in 16-byte loads and stores, where every
// operand's address allows; otherwise, and as a fallback, one element at a time. Both give
// the same bits.
#define COLS {{ cols }}
#define A_STRIDE {{ a_stride }}
#define B_STRIDE {{ b_stride }}
#define VEC {{ vec }}

__device__ __forceinline__ float {{ name }}_op(float x, float y) {
    (void)y;
    return {{ expr }};
}

extern "C" __global__ void {{ name }}(const bf16* __restrict__ a, const bf16* __restrict__ b,
                                      bf16* __restrict__ out, int tokens)
{
    pdl_wait();
    pdl_launch_dependents();
    const size_t n = (size_t)tokens * COLS;
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t step = (size_t)gridDim.x * blockDim.x;
#if VEC == 8
    const size_t addresses = reinterpret_cast<size_t>(a) | reinterpret_cast<size_t>(b)
        | reinterpret_cast<size_t>(out);
    if ((addresses & 15) == 0) {
        for (size_t e = first; e < n / 8; e += step) {
            const size_t t = e / (COLS / 8), c = (e % (COLS / 8)) * 8;
            float x[8], y[8];
            unpack8(*reinterpret_cast<const uint4*>(a + t * A_STRIDE + c), x);
            unpack8(*reinterpret_cast<const uint4*>(b + t * B_STRIDE + c), y);
            uint4 r;
            r.x = pack_bf16({{ name }}_op(x[0], y[0]), {{ name }}_op(x[1], y[1]));
            r.y = pack_bf16({{ name }}_op(x[2], y[2]), {{ name }}_op(x[3], y[3]));
            r.z = pack_bf16({{ name }}_op(x[4], y[4]), {{ name }}_op(x[5], y[5]));
            r.w = pack_bf16({{ name }}_op(x[6], y[6]), {{ name }}_op(x[7], y[7]));
            *reinterpret_cast<uint4*>(out + e * 8) = r;
        }
        return;
    }
#endif
    for (size_t e = first; e < n; e += step) {
        const size_t t = e / COLS, c = e % COLS;
        out[e] = f2bf({{ name }}_op(bf2f(a[t * A_STRIDE + c]), bf2f(b[t * B_STRIDE + c])));
    }
}
