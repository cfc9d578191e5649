{% include "common/pio.cuh" %}
// {{ doc }}
// Decode-step matrix-vector product for one token: out[n] = sum_k x'[k] * w[n, k], with
// x' = rmsnorm(x) * norm_w when NORM, an added residual when RESIDUAL (the product rounded
// first, as HF adds a residual), a bias when BIAS (`residual` points at it; added before the
// one rounding, as HF's fused bias epilogue does), and
// out[n] = silu(g[n]) * u[n] over the gate rows (0..N) and up rows (N..2N) when SWIGLU.
// One warp per ROWS output rows at a time; 16-byte weight loads. x is staged in shared memory
// as bf16 (exact: HF rounds the normalized input to bf16 too), read 16 bytes per lane, so the
// shared-memory traffic equals the weight traffic and has no bank conflicts.
#define K {{ k }}
#define N {{ n }}
#define WARPS {{ warps }}
#define EPS {{ eps }}

// Loads are issued in batches of UNROLL 16-byte vectors per row before their FMAs; a warp works
// on NR rows at once (ROWS output rows, times two with SWIGLU: the gate row and its up row), so
// each lane keeps UNROLL x NR loads in flight.
#define UNROLL {{ unroll }}
#define ROWS {{ rows }}
#define NR (ROWS * {% if swiglu %}2{% else %}1{% endif %})

// Weight row of accumulator rr for output rows starting at `row`.
__device__ __forceinline__ int row_of(int row, int rr) { return rr < ROWS ? row + rr : N + row + rr - ROWS; }
__device__ __forceinline__ bool row_ok(int row, int rr) { return row + (rr % ROWS) < N; }

{% if vec8 %}
__device__ __forceinline__ void load_batch(uint4 (&v)[NR][UNROLL], const bf16* __restrict__ w,
                                           int row, int k0) {
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            int k = k0 + u * 256;
            v[r][u] = (k < K && row_ok(row, r)) ? *reinterpret_cast<const uint4*>(w + (size_t)row_of(row, r) * K + k)
                                                : make_uint4(0, 0, 0, 0);
        }
}

__device__ __forceinline__ void fma_batch(const uint4 (&v)[NR][UNROLL], const bf16* xs, int k0,
                                          float* acc) {
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
        int k = k0 + u * 256;
        if (k < K) {
            float xf[8];
            unpack8(*reinterpret_cast<const uint4*>(xs + k), xf);
#pragma unroll
            for (int r = 0; r < NR; ++r) {
                float f[8];
                unpack8(v[r][u], f);
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[r] = fmaf(f[j], xf[j], acc[r]);
            }
        }
    }
}
{% endif %}

// Accumulates the dot products of NR weight rows with xs, from feature k_start of each lane.
__device__ __forceinline__ void dot_rows(const bf16* __restrict__ w, int row, const bf16* xs,
                                         int lane, float* acc, int k_start) {
{% if vec8 %}
    for (int k0 = k_start; k0 < K; k0 += 256 * UNROLL) {
        uint4 v[NR][UNROLL];
        load_batch(v, w, row, k0);
        fma_batch(v, xs, k0, acc);
    }
{% else %}
    // K is not a multiple of 8 (rows are not 16-byte aligned): scalar loads.
#pragma unroll
    for (int r = 0; r < NR; ++r)
        if (row_ok(row, r))
            for (int k = lane; k < K; k += 32) acc[r] = fmaf(bf2f(w[(size_t)row_of(row, r) * K + k]), bf2f(xs[k]), acc[r]);
{% endif %}
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) {{ name }}(
    const bf16* __restrict__ x, const bf16* __restrict__ norm_w, const bf16* __restrict__ w,
    const bf16* residual, bf16* out)  // out may alias residual (in place)
{
    __shared__ __align__(16) bf16 xs[K];
    __shared__ float partial[WARPS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * WARPS + warp) * ROWS;
{% if prefetch %}
    // The first batch of weights does not depend on x: start loading it before waiting for
    // the previous kernel and before the prologue (short rows, or rows read in one batch by
    // one pass of the warps: where the prologue's latency is a large part of the kernel).
    uint4 first[NR][UNROLL];
    load_batch(first, w, row0, lane * 8);
{% endif %}
{% if l2_prefetch > 0 %}
    // Weights do not depend on earlier kernels: the start of this warp's first rows streams
    // into L2 while the previous kernel finishes (programmatic dependent launch) and the
    // prologue runs. The amount is bounded so that every warp's share fits in L2 together.
    if (lane < NR && row_ok(row0, lane)) prefetch_l2(w + (size_t)row_of(row0, lane) * K, {{ l2_prefetch }});
{% endif %}
    pdl_wait();
    pdl_launch_dependents();
    float ss = 0.0f;
    for (int i = threadIdx.x; i < K; i += WARPS * 32) {
        float v = bf2f(x[i]);
        xs[i] = x[i];
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
    for (int i = threadIdx.x; i < K; i += WARPS * 32) xs[i] = f2bf(rbf(bf2f(xs[i]) * inv) * bf2f(norm_w[i]));
{% endif %}
    __syncthreads();
{% if single_pass %}
    // Enough warps that each has at most one row group.
    if (row0 < N) {
        const int row = row0;
{% else %}
    for (int row = row0; row < N; row += gridDim.x * WARPS * ROWS) {
{% endif %}
        float acc[NR];
#pragma unroll
        for (int r = 0; r < NR; ++r) acc[r] = 0.0f;
{% if prefetch %}
        if (row == row0) {
            fma_batch(first, xs, lane * 8, acc);
            dot_rows(w, row, xs, lane, acc, lane * 8 + 256 * UNROLL);
        } else {
            dot_rows(w, row, xs, lane, acc, lane * 8);
        }
{% else if vec8 %}
        dot_rows(w, row, xs, lane, acc, lane * 8);
{% else %}
        dot_rows(w, row, xs, lane, acc, lane);
{% endif %}
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            float a = warp_sum(acc[r]);
{% if swiglu %}
            float u = warp_sum(acc[ROWS + r]);
            if (lane == 0 && row + r < N) out[row + r] = f2bf(rbf(silu(rbf(a))) * rbf(u));
{% else if residual %}
            if (lane == 0 && row + r < N) out[row + r] = f2bf(rbf(a) + bf2f(residual[row + r]));
{% else if bias %}
            if (lane == 0 && row + r < N) out[row + r] = f2bf(a + bf2f(residual[row + r]));
{% else %}
            if (lane == 0 && row + r < N) out[row + r] = f2bf(a);
{% endif %}
        }
    }
}
