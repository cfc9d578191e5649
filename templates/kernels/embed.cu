{% include "common/pio.cuh" %}
// {{ doc }}
// out[t, :] = table[ids[t], :] for [tokens, DIM] rows (16-byte copies).{% if shard_rows > 0 %} The table holds
// vocabulary rows rank * SHARD_ROWS.. of a tensor-parallel rank: other ids give zero rows.{% endif %}
#define DIM {{ dim }}
{% if shard_rows > 0 %}#define SHARD_ROWS {{ shard_rows }}{% endif %}

extern "C" __global__ void {{ name }}(const int* __restrict__ ids, const bf16* __restrict__ table,
                                      bf16* __restrict__ out{% if shard_rows > 0 %}, const int rank{% endif %})
{
    pdl_wait();
    pdl_launch_dependents();
    const int t = blockIdx.x;
{% if shard_rows > 0 %}
    const long long row = (long long)ids[t] - (long long)rank * SHARD_ROWS;
    if (row < 0 || row >= SHARD_ROWS) {
        for (int i = threadIdx.x; i < DIM; i += blockDim.x) out[(size_t)t * DIM + i] = f2bf(0.0f);
        return;
    }
{% else %}
    const int row = ids[t];
{% endif %}
{% if vec8 %}
    const uint4* src = reinterpret_cast<const uint4*>(table + (size_t)row * DIM);
    uint4* dst = reinterpret_cast<uint4*>(out + (size_t)t * DIM);
    for (int i = threadIdx.x; i < DIM / 8; i += blockDim.x) dst[i] = src[i];
{% else %}
    const bf16* src = table + (size_t)row * DIM;
    bf16* dst = out + (size_t)t * DIM;
    for (int i = threadIdx.x; i < DIM; i += blockDim.x) dst[i] = src[i];
{% endif %}
}
