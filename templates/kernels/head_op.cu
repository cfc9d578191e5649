{% if !device_fn %}{% include "common/pio.cuh" %}{% endif %}
// {{ doc }}
// Per-head work on [tokens, HEADS, D] rows: optional RMSNorm over D (then * w), optional
// rotate-half RoPE at the token's position, written either to out [tokens, HEADS, D] or into
// the layer's KV cache at the token's position ([HEADS, CTX, D]), or (paged) into the pool slot
// slots[t] (block slot / BS, rows [HEADS, BS, D] of this layer within a block of BLOCK_ELEMS).
// One warp per (token, head). With PER_LANE (2, 4 or 8: D = 32 * PER_LANE) each lane takes
// PER_LANE consecutive elements in one load and store where the addresses allow (RoPE's partner
// of element i < D/2, i + D/2, is then in lane ^ 16); otherwise, and as a fallback, elements
// lane, lane + 32, ... Both give the same bits.
#define HEADS {{ heads }}
#define D {{ d }}
#define WARPS {{ warps }}
#define EPS {{ eps }}
#define IN_STRIDE {{ in_stride }}
#define PER_LANE {{ per_lane }}
{% if rope %}
// 1 / theta^(2i/D) for i < D/2, scaled as the spec's rope_scaling says, in f32 as HF computes
// it (compiler/src/rope.rs).
__constant__ float {{ name }}_inv_freq[{{ inv_freq.len() }}] = { {{ inv_freq|join(", ") }} };

// As HF computes them: the angle pos * inv_freq[i] in f32, its cos and sin rounded to bf16 (after
// a multiplication by the attention factor in f32 where there is one).
__device__ __forceinline__ void {{ name }}_cos_sin(int pos, int i, float* s, float* c) {
    sincos_accurate(__fmul_rn((float)pos, {{ name }}_inv_freq[i]), s, c);
{% match attention_factor %}{% when Some with (af) %}
    *c = rbf(*c * {{ af }});
    *s = rbf(*s * {{ af }});
{% when None %}
    *c = rbf(*c);
    *s = rbf(*s);
{% endmatch %}
}
{% endif %}

{% if device_fn %}__device__ __forceinline__ void{% else %}extern "C" __global__ void __launch_bounds__(WARPS * 32){% endif %} {{ name }}(
    const bf16* __restrict__ x, const bf16* __restrict__ norm_w, const int* __restrict__ positions,
    bf16* __restrict__ out, const int* __restrict__ slots)
{
{% if !device_fn %}
    pdl_wait();
    pdl_launch_dependents();
{% endif %}
    const int t = blockIdx.x;
    const int head = blockIdx.y * WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (head >= HEADS) return;
    const bf16* src = x + (size_t)t * IN_STRIDE + (size_t)head * D;
    const int pos = positions[t];
{% if to_cache && block_size > 0 %}
    const int slot = slots[t];
    bf16* dst = out + (size_t)(slot / {{ block_size }}) * {{ block_elems }}
        + ((size_t)head * {{ block_size }} + slot % {{ block_size }}) * D;
{% else if to_cache %}
    bf16* dst = out + ((size_t)head * {{ ctx }} + pos) * D;
{% else %}
    bf16* dst = out + ((size_t)t * HEADS + head) * D;
{% endif %}
{% if per_lane > 0 %}
    const size_t addresses = reinterpret_cast<size_t>(src) | reinterpret_cast<size_t>(dst){% if norm %}
        | reinterpret_cast<size_t>(norm_w){% endif %};
    if ((addresses & (2 * PER_LANE - 1)) == 0) {
        float u[PER_LANE];
        load_bf16s<PER_LANE>(src + lane * PER_LANE, u);
{% if norm %}
        float ssq = 0.0f;
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) ssq += u[j] * u[j];
        const float inv_rms = rsqrtf(warp_sum(ssq) / (float)D + EPS);
        float w[PER_LANE];
        load_bf16s<PER_LANE>(norm_w + lane * PER_LANE, w);
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) u[j] = rbf(rbf(u[j] * inv_rms) * w[j]);
{% endif %}
{% if rope %}
        // Lanes 0-15 hold the first halves of the pairs, lanes 16-31 the second.
        const bool first = lane < 16;
        float r[PER_LANE];
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            const float partner = __shfl_xor_sync(0xffffffffu, u[j], 16);
            const int i = (lane & 15) * PER_LANE + j;
            float s, c;
            {{ name }}_cos_sin(pos, i, &s, &c);
            const float a = first ? u[j] : partner, b = first ? partner : u[j];
            r[j] = first ? rbf(a * c) - rbf(b * s) : rbf(b * c) + rbf(a * s);
        }
        store_bf16s<PER_LANE>(dst + lane * PER_LANE, r);
{% else %}
        store_bf16s<PER_LANE>(dst + lane * PER_LANE, u);
{% endif %}
        return;
    }
{% endif %}
    float v[(D + 31) / 32];
#pragma unroll
    for (int j = 0; j < (D + 31) / 32; ++j) {
        int i = lane + 32 * j;
        v[j] = i < D ? bf2f(src[i]) : 0.0f;
    }
{% if norm %}
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < (D + 31) / 32; ++j) ss += v[j] * v[j];
    const float inv = rsqrtf(warp_sum(ss) / (float)D + EPS);
#pragma unroll
    for (int j = 0; j < (D + 31) / 32; ++j) {
        int i = lane + 32 * j;
        v[j] = i < D ? rbf(rbf(v[j] * inv) * bf2f(norm_w[i])) : 0.0f;
    }
{% endif %}
{% if rope %}
    // Pairs (i, i + D/2). Stage the normalized head in shared memory to reach the partner.
    __shared__ float buf[WARPS][D];
    float* hb = buf[threadIdx.x >> 5];
#pragma unroll
    for (int j = 0; j < (D + 31) / 32; ++j) {
        int i = lane + 32 * j;
        if (i < D) hb[i] = v[j];
    }
    __syncwarp();
    // As HF computes it: (x * cos) + (rotate_half(x) * sin) with every product and the sum
    // rounded to bf16.
    for (int i = lane; i < D / 2; i += 32) {
        float s, c;
        {{ name }}_cos_sin(pos, i, &s, &c);
        const float a = hb[i], b = hb[i + D / 2];
        dst[i] = f2bf(rbf(a * c) - rbf(b * s));
        dst[i + D / 2] = f2bf(rbf(b * c) + rbf(a * s));
    }
{% else %}
#pragma unroll
    for (int j = 0; j < (D + 31) / 32; ++j) {
        int i = lane + 32 * j;
        if (i < D) dst[i] = f2bf(v[j]);
    }
{% endif %}
}
{% if device_fn %}
#undef HEADS
#undef D
#undef WARPS
#undef EPS
#undef IN_STRIDE
#undef PER_LANE
{% endif %}
