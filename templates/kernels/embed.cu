{% include "common/pio.cuh" %}
// {{ doc }}
// out[t, :] = table[ids[t], :] for [tokens, DIM] rows (16-byte copies).
#define DIM {{ dim }}

extern "C" __global__ void {{ name }}(const int* __restrict__ ids, const bf16* __restrict__ table,
                                      bf16* __restrict__ out)
{
    pdl_wait();
    pdl_launch_dependents();
    const int t = blockIdx.x;
{% if vec8 %}
    const uint4* src = reinterpret_cast<const uint4*>(table + (size_t)ids[t] * DIM);
    uint4* dst = reinterpret_cast<uint4*>(out + (size_t)t * DIM);
    for (int i = threadIdx.x; i < DIM / 8; i += blockDim.x) dst[i] = src[i];
{% else %}
    const bf16* src = table + (size_t)ids[t] * DIM;
    bf16* dst = out + (size_t)t * DIM;
    for (int i = threadIdx.x; i < DIM; i += blockDim.x) dst[i] = src[i];
{% endif %}
}
