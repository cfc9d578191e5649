{% include "common/pio.cuh" %}
// {{ doc }}
// Decode-step matrix-vector product for one token: out[n] = sum_k x'[k] * w[n, k], with
// x' = rmsnorm(x) * norm_w when NORM, an added residual when RESIDUAL, and
// out[n] = silu(g[n]) * u[n] over the gate rows (0..N) and up rows (N..2N) when SWIGLU.
// One warp per ROWS output rows at a time (or KSPLIT warps per row group, each over a slice of
// K, their sums added in a fixed order); 16-byte weight loads. x is staged in shared memory
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
// Warps that share a row group (KSPLIT > 1: long rows, each warp's slice of KS features fits
// one batch of loads and is loaded before the wait), and row groups per block.
#define KSPLIT {{ ksplit }}
#define KS {{ kslice }}
#define GROUPS (WARPS / KSPLIT)

// Weight row of accumulator rr for output rows starting at `row`.
__device__ __forceinline__ int row_of(int row, int rr) { return rr < ROWS ? row + rr : N + row + rr - ROWS; }
__device__ __forceinline__ bool row_ok(int row, int rr) { return row + (rr % ROWS) < N; }

{% if vec8 %}
__device__ __forceinline__ void load_batch(uint4 (&v)[NR][UNROLL], const bf16* __restrict__ w,
                                           int row, int k0, int kend) {
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            int k = k0 + u * 256;
            v[r][u] = (k < kend && row_ok(row, r)) ? *reinterpret_cast<const uint4*>(w + (size_t)row_of(row, r) * K + k)
                                                : make_uint4(0, 0, 0, 0);
        }
}

__device__ __forceinline__ void fma_batch(const uint4 (&v)[NR][UNROLL], const bf16* xs, int k0,
                                          int kend, float* acc) {
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
        int k = k0 + u * 256;
        if (k < kend) {
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

// Accumulates the dot products of NR weight rows with xs over features k_start (this lane's
// first) up to kend.
__device__ __forceinline__ void dot_rows(const bf16* __restrict__ w, int row, const bf16* xs,
                                         int lane, float* acc, int k_start, int kend) {
{% if vec8 %}
    for (int k0 = k_start; k0 < kend; k0 += 256 * UNROLL) {
        uint4 v[NR][UNROLL];
        load_batch(v, w, row, k0, kend);
        fma_batch(v, xs, k0, kend, acc);
    }
{% else %}
    // K is not a multiple of 8 (rows are not 16-byte aligned): scalar loads.
#pragma unroll
    for (int r = 0; r < NR; ++r)
        if (row_ok(row, r))
            for (int k = k_start; k < kend; k += 32) acc[r] = fmaf(bf2f(w[(size_t)row_of(row, r) * K + k]), bf2f(xs[k]), acc[r]);
{% endif %}
}

// The output of one row group: the SwiGLU of gate and up, or the sum plus the residual, or the
// sum, rounded to bf16 as HF rounds it.
__device__ __forceinline__ void store_rows(bf16* out, const bf16* residual, int row, const float* sum) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        if (row + r >= N) continue;
{% if swiglu %}
        out[row + r] = f2bf(rbf(silu(rbf(sum[r]))) * rbf(sum[ROWS + r]));
{% else if residual %}
        out[row + r] = f2bf(rbf(sum[r]) + bf2f(residual[row + r]));
{% else %}
        out[row + r] = f2bf(sum[r]);
{% endif %}
    }
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) {{ name }}(
    const bf16* __restrict__ x, const bf16* __restrict__ norm_w, const bf16* __restrict__ w,
    const bf16* residual, bf16* out)  // out may alias residual (in place)
{
    __shared__ __align__(16) bf16 xs[K];
    __shared__ float partial[WARPS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int slice = warp % KSPLIT;
    const int kbeg = slice * KS, kend = min(K, kbeg + KS);
    const int row0 = (blockIdx.x * GROUPS + warp / KSPLIT) * ROWS;
{% if prefetch %}
    // The first batch of weights does not depend on x: start loading it before waiting for
    // the previous kernel and before the prologue (short rows, or rows read in one batch by
    // one pass of the warps: where the prologue's latency is a large part of the kernel).
    uint4 first[NR][UNROLL];
    load_batch(first, w, row0, kbeg + lane * 8, kend);
{% endif %}
{% if l2_prefetch > 0 %}
    // Weights do not depend on earlier kernels: the start of this warp's first rows streams
    // into L2 while the previous kernel finishes (programmatic dependent launch) and the
    // prologue runs. The amount is bounded so that every warp's share fits in L2 together.
    if (lane < NR && row_ok(row0, lane))
        prefetch_l2(w + (size_t)row_of(row0, lane) * K + kbeg, min({{ l2_prefetch }}, (kend - kbeg) * 2));
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
{% if ksplit > 1 %}
    // One pass (codegen guarantees it): each warp sums its slice, the slices meet in shared
    // memory and the group's first warp adds them in slice order.
    __shared__ float sums[WARPS][NR];
    float acc[NR];
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[r] = 0.0f;
    if (row0 < N) {
{% if prefetch %}
        fma_batch(first, xs, kbeg + lane * 8, kend, acc);
        dot_rows(w, row0, xs, lane, acc, kbeg + lane * 8 + 256 * UNROLL, kend);
{% else %}
        dot_rows(w, row0, xs, lane, acc, kbeg + lane * 8, kend);
{% endif %}
    }
#pragma unroll
    for (int r = 0; r < NR; ++r) {
        float a = warp_sum(acc[r]);
        if (lane == 0) sums[warp][r] = a;
    }
    __syncthreads();
    if (slice == 0 && lane == 0 && row0 < N) {
        float sum[NR];
#pragma unroll
        for (int r = 0; r < NR; ++r) {
            sum[r] = sums[warp][r];
#pragma unroll
            for (int s = 1; s < KSPLIT; ++s) sum[r] += sums[warp + s][r];
        }
        store_rows(out, residual, row0, sum);
    }
{% else %}
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
            fma_batch(first, xs, lane * 8, K, acc);
            dot_rows(w, row, xs, lane, acc, lane * 8 + 256 * UNROLL, K);
        } else {
            dot_rows(w, row, xs, lane, acc, lane * 8, K);
        }
{% else if vec8 %}
        dot_rows(w, row, xs, lane, acc, lane * 8, K);
{% else %}
        dot_rows(w, row, xs, lane, acc, lane, K);
{% endif %}
        float sum[NR];
#pragma unroll
        for (int r = 0; r < NR; ++r) sum[r] = warp_sum(acc[r]);
        if (lane == 0) store_rows(out, residual, row, sum);
    }
{% endif %}
}
