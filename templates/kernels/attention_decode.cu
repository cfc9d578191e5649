{% include "common/pio.cuh" %}
// {{ doc }}
// Decode attention, first half: the scores of one query token against the layer's KV cache
// ([ctx, KV_HEADS, D]), split-K: one block per (kv head, split of CHUNK keys) serves all GROUP
// query heads of that kv head, so each key row is read once. Scores are HF's bf16 eager ones,
// bf16(bf16(q.k) * SCALE); they go to scores[head, key], and each split's softmax state
// (max, sum of exp(s - max)) to stats[head, split]. attention_values.cu does the rest.
{% if fused %}// The layer's per-head prologue runs here too (no launch of its own): every block normalizes
// and rotates its GROUP query heads from the QKV projection, and the block whose split holds
// the current position normalizes and rotates the token's key and writes it and the value
// into the cache (HF's bf16 rounding, as head_op.cu).
{% endif %}#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define GROUP (HEADS / KV_HEADS)
#define D {{ d }}
#define SCALE {{ scale }}
#define CHUNK {{ chunk }}
#define SPLITS {{ splits }}
#define CTX {{ ctx }}
#define THREADS 128
#define WARPS (THREADS / 32)
{% if fused %}#define EPS_Q {{ eps_q }}
#define EPS_K {{ eps_k }}
#define PER_LANE ((D + 31) / 32)
__constant__ float {{ name }}_inv_freq[{{ inv_freq.len() }}] = { {{ inv_freq|join(", ") }} };

// One warp: row (D values of src) -> rmsnorm * w -> RoPE at pos, bf16-rounded like HF, into
// dst (f32, D values; shared memory, also the partner exchange for the rotation).
__device__ __forceinline__ void norm_rope(const bf16* __restrict__ src, const bf16* __restrict__ w,
                                          float eps, int pos, float* dst, int lane) {
    float v[PER_LANE];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        const int i = lane + 32 * j;
        v[j] = i < D ? bf2f(src[i]) : 0.0f;
        ss += v[j] * v[j];
    }
    const float inv = rsqrtf(warp_sum(ss) / (float)D + eps);
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        const int i = lane + 32 * j;
        if (i < D) dst[i] = rbf(rbf(v[j] * inv) * bf2f(w[i]));
    }
    __syncwarp();
    for (int i = lane; i < D / 2; i += 32) {
        float s, c;
        sincos_accurate(__fmul_rn((float)pos, {{ name }}_inv_freq[i]), &s, &c);
        c = rbf(c);
        s = rbf(s);
        const float a = dst[i], b = dst[i + D / 2];
        dst[i] = rbf(rbf(a * c) - rbf(b * s));
        dst[i + D / 2] = rbf(rbf(b * c) + rbf(a * s));
    }
    __syncwarp();
}
{% endif %}

extern "C" __global__ void __launch_bounds__(THREADS) {{ name }}(
{% if fused %}    const bf16* __restrict__ q_raw, const bf16* __restrict__ q_norm_w,
    const bf16* __restrict__ k_raw, const bf16* __restrict__ k_norm_w, const bf16* __restrict__ v_raw,
    bf16* kc, bf16* vc,
{% else %}    const bf16* __restrict__ q, const bf16* __restrict__ kc,
{% endif %}    const int* __restrict__ positions, float* __restrict__ scores, float* __restrict__ stats,
    int* __restrict__ done)
{
    const int kvh = blockIdx.x, split = blockIdx.y;
    // Positions are written before the step's first kernel, and cache rows before the current
    // position by earlier steps: both may be read before waiting for the previous kernel.
    const int pos = positions[0];
    const int len = pos + 1;
    const int start = split * CHUNK;
    const int n = min(CHUNK, len - start);
{% if vec8 %}
    for (int j = threadIdx.x; j < n; j += THREADS)
        if (start + j < pos) prefetch_l2(kc + ((size_t)(start + j) * KV_HEADS + kvh) * D, D * 2);
{% endif %}
    pdl_wait();
    pdl_launch_dependents();
    // attention_values counts its finished blocks per kv head here.
    if (split == 0 && threadIdx.x == 0) done[kvh] = 0;
    if (start >= len) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __shared__ float qs[GROUP][D];
    __shared__ float sc[GROUP][CHUNK];
{% if fused %}
    for (int g = warp; g < GROUP; g += WARPS)
        norm_rope(q_raw + (size_t)(kvh * GROUP + g) * D, q_norm_w, EPS_Q, pos, qs[g], lane);
    if (pos - start < n && warp == WARPS - 1) {
        __shared__ float kr[D];
        norm_rope(k_raw + (size_t)kvh * D, k_norm_w, EPS_K, pos, kr, lane);
        bf16* kdst = kc + ((size_t)pos * KV_HEADS + kvh) * D;
        bf16* vdst = vc + ((size_t)pos * KV_HEADS + kvh) * D;
        for (int i = lane; i < D; i += 32) {
            kdst[i] = f2bf(kr[i]);
            vdst[i] = v_raw[(size_t)kvh * D + i];
        }
    }
{% else %}
    for (int i = threadIdx.x; i < GROUP * D; i += THREADS)
        qs[i / D][i % D] = bf2f(q[(size_t)(kvh * GROUP) * D + i]);
{% endif %}
    __syncthreads();
    for (int p = threadIdx.x; p < n * GROUP; p += THREADS) {
        const int j = p / GROUP, g = p % GROUP;
        const bf16* krow = kc + ((size_t)(start + j) * KV_HEADS + kvh) * D;
        float s = 0.0f;
{% if vec8 %}
#pragma unroll
        for (int k = 0; k < D; k += 8) {
            float f[8];
            unpack8(*reinterpret_cast<const uint4*>(krow + k), f);
#pragma unroll
            for (int e = 0; e < 8; ++e) s = fmaf(qs[g][k + e], f[e], s);
        }
{% else %}
        for (int k = 0; k < D; ++k) s = fmaf(qs[g][k], bf2f(krow[k]), s);
{% endif %}
        s = rbf(rbf(s) * SCALE);
        sc[g][j] = s;
        scores[(size_t)(kvh * GROUP + g) * CTX + start + j] = s;
    }
    __syncthreads();
    for (int g = warp; g < GROUP; g += WARPS) {
        float m = NEG_INF;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, sc[g][j]);
        m = warp_max(m);
        float l = 0.0f;
        for (int j = lane; j < n; j += 32) l += __expf(sc[g][j] - m);
        l = warp_sum(l);
        if (lane == 0) {
            float* st = stats + ((size_t)(kvh * GROUP + g) * SPLITS + split) * 2;
            st[0] = m;
            st[1] = l;
        }
    }
}
