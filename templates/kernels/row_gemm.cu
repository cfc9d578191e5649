{% include "common/pio.cuh" %}
{% include "common/row_mma.cuh" %}
// {{ doc }}
// A decode batch's projection on tensor cores, fused (the batching engine's decode list; one
// launch where the list otherwise has an RMSNorm launch, a cuBLAS GEMM and an epilogue launch):
// out[t, n] = x'[t, :] · w[n, :] for the step's `tokens` rows, with x' = bf16(bf16(x * inv_rms)
// * norm_w) when NORM (as HF's RMSNorm rounds), the product rounded and a residual added and
// rounded when RESIDUAL (HF's two roundings, as the decode GEMV), a bias row (at `residual`)
// added before the one rounding when BIAS (HF's fused bias epilogue), and out[t, n] =
// bf16(bf16(silu(bf16(g))) * bf16(u)) over the gate rows (0..N) and up rows (N..2N) when
// SWIGLU. The product is row_mma.cuh's: a block covers 64 weight rows (SwiGLU: 32 gate rows and
// their 32 up rows) for up to PASS_ROWS tokens per pass; the k range is split over a
// thread-block cluster of SPLITS blocks (sm_90) whose partial sums (and, with NORM, partial
// sums of squares) meet through distributed shared memory in rank order, so a row's result
// does not depend on timing or on the other rows of the step. Before sm_90 a cluster is one
// block: each block takes the whole k range and every SPLITS-th pass.
#define K {{ k }}
#define N {{ n }}
#define XS {{ x_stride }}
#define RS {{ residual_stride }}
#define OS {{ out_stride }}
#define EPS {{ eps }}
#define SPLITS {{ splits }}
#define TILES 16
#define PASS_ROWS (8 * TILES)
{% if swiglu %}
#define OUT_COLS (RM_COLS / 2)
{% else %}
#define OUT_COLS RM_COLS
{% endif %}

#if __CUDA_ARCH__ >= 900 && SPLITS > 1
#define NB SPLITS
#define CLUSTER_DIMS __cluster_dims__(1, SPLITS, 1)
#else
#define NB 1
#define CLUSTER_DIMS
#endif

// A barrier over the blocks that share partial sums, and a read of another one's partial.
__device__ __forceinline__ void group_sync() {
    if (NB > 1) cluster_sync(); else __syncthreads();
}

__device__ __forceinline__ float ld_part(const float* p, int rank) {
    if (NB > 1) return ld_cluster(p, (unsigned)rank);
    return *p;
}

extern "C" __global__ void CLUSTER_DIMS __launch_bounds__(RM_WARPS * 32) {{ name }}(
    const bf16* __restrict__ x, const bf16* __restrict__ norm_w, const bf16* __restrict__ w,
    const bf16* residual, bf16* out, int tokens)  // out may alias residual (in place); BIAS: the bias row
{
    extern __shared__ __align__(16) unsigned char smem[];
{% if norm %}
    __shared__ float ss_part[PASS_ROWS];
    __shared__ float inv[PASS_ROWS];
{% endif %}
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int split = NB > 1 ? (int)blockIdx.y : 0;
    const int chunks = K / RM_CHUNK;
    const int c_begin = chunks * split / NB, c_end = chunks * (split + 1) / NB;
    // This lane's two weight rows (g and g + 8 of the warp's 16) and their output columns.
{% if swiglu %}
    const int oc0 = blockIdx.x * OUT_COLS + (warp & 1) * 16 + g;
    const int base = warp < 2 ? 0 : N;
{% else %}
    const int oc0 = blockIdx.x * OUT_COLS + warp * 16 + g;
    const int base = 0;
{% endif %}
    RmRows rows;
    rows.in0 = oc0 < N;
    rows.in1 = oc0 + 8 < N;
    rows.w0 = w + (size_t)(rows.in0 ? base + oc0 : 0) * K + 8 * t;
    rows.w1 = w + (size_t)(rows.in1 ? base + oc0 + 8 : 0) * K + 8 * t;
    pdl_wait();
    pdl_launch_dependents();
    for (int pass = 0, r0 = 0; r0 < tokens; ++pass, r0 += PASS_ROWS) {
        if (NB == 1 && SPLITS > 1 && pass % SPLITS != (int)blockIdx.y) continue;
        const int m = min(PASS_ROWS, tokens - r0);
        const bf16* xp = x + (size_t)r0 * XS;
{% if norm %}
        // Each row's sum of squares: this block's k range, then the cluster's ranges in rank
        // order; inv = 1 / sqrt(mean + eps) as HF's RMSNorm (in f32).
        for (int r = warp; r < m; r += RM_WARPS) {
            float s = 0.0f;
            for (int k = c_begin * RM_CHUNK + lane * 8; k < c_end * RM_CHUNK; k += 256) {
                float f[8];
                unpack8(*reinterpret_cast<const uint4*>(xp + (size_t)r * XS + k), f);
#pragma unroll
                for (int j = 0; j < 8; ++j) s += f[j] * f[j];
            }
            s = warp_sum(s);
            if (lane == 0) ss_part[r] = s;
        }
        group_sync();
        for (int r = threadIdx.x; r < m; r += RM_WARPS * 32) {
            float total = 0.0f;
            for (int q = 0; q < NB; ++q) total += ld_part(&ss_part[r], q);
            inv[r] = rsqrtf(total / (float)K + EPS);
        }
        group_sync();
{% endif %}
        float acc[TILES][4];
        rm_accumulate<TILES>(acc, rows, c_begin, c_end, m, smem, [&](int r, int chunk, int sub) {
            const int k = chunk * RM_CHUNK + sub * 8;
            uint4 v = *reinterpret_cast<const uint4*>(xp + (size_t)r * XS + k);
{% if norm %}
            float f[8], nw[8];
            unpack8(v, f);
            unpack8(*reinterpret_cast<const uint4*>(norm_w + k), nw);
#pragma unroll
            for (int j = 0; j < 8; ++j) f[j] = rbf(rbf(f[j] * inv[r]) * nw[j]);
            v = make_uint4(pack_bf16(f[0], f[1]), pack_bf16(f[2], f[3]), pack_bf16(f[4], f[5]),
                           pack_bf16(f[6], f[7]));
{% endif %}
            return v;
        });
        const float* part = rm_store_partials<TILES>(acc, smem, m);
        group_sync();
        // The cluster's blocks share the output tile: block `split` takes every NB-th pair of
        // output columns; each value is the sum of the blocks' partials in rank order.
        for (int e = threadIdx.x + split * RM_WARPS * 32; e < m * (OUT_COLS / 2); e += NB * RM_WARPS * 32) {
            const int r = e / (OUT_COLS / 2), c = (e % (OUT_COLS / 2)) * 2;
            const int col = blockIdx.x * OUT_COLS + c;
            if (col >= N) continue;
            float s[2] = {0.0f, 0.0f};
{% if swiglu %}
            float u[2] = {0.0f, 0.0f};
{% endif %}
            for (int q = 0; q < NB; ++q) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    s[h] += ld_part(part + r * RM_COLS + c + h, q);
{% if swiglu %}
                    u[h] += ld_part(part + r * RM_COLS + OUT_COLS + c + h, q);
{% endif %}
                }
            }
            float o[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
{% if swiglu %}
                o[h] = rbf(silu(rbf(s[h]))) * rbf(u[h]);
{% else if residual %}
                o[h] = rbf(s[h]) + bf2f(residual[(size_t)(r0 + r) * RS + col + h]);
{% else if bias %}
                o[h] = s[h] + bf2f(residual[col + h]);
{% else %}
                o[h] = s[h];
{% endif %}
            }
            *reinterpret_cast<u32*>(out + (size_t)(r0 + r) * OS + col) = pack_bf16(o[0], o[1]);
        }
        if (NB > 1) cluster_sync();  // no block reuses its shared memory while another reads it
    }
}
