// pio's GEMM for few rows (the GEMMs of a decode batch): C[m, n] = A[m, k] · B[n, k]ᵀ + beta · C,
// bf16 in and out, f32 accumulation, one rounding (cuBLAS's semantics), for m <= 8 * TILES.
// With few rows a GEMM is a stream of B (the weights) at the card's bandwidth; cuBLAS's kernels
// give it few blocks (ncu: 0.65-1.5 TB/s on an H100). The product is row_mma.cuh's (compiled
// after pio.cuh and it, gemm/rows.rs): a block covers 64 output columns for every row, and the
// k range is split over a thread-block cluster of gridDim.y blocks (sm_90; 1 before it) whose
// partial sums meet in shared memory, summed in rank order (the result does not depend on
// timing or on the other rows).
// Requirements (checked by the caller): k % 32 == 0, n % 8 == 0, lda % 8 == 0, ldc % 8 == 0,
// A, B and C 16-byte aligned, m <= 8 * TILES, dynamic shared memory 256 * ceil(m / 8) * 8 bytes.

template <int TILES>
__device__ __forceinline__ void gemm_rows(const bf16* __restrict__ A, int lda, const bf16* __restrict__ B,
                                          bf16* C, int ldc, int m, int n, int k, float beta) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int col0 = blockIdx.x * RM_COLS + warp * 16;
    const int splits = gridDim.y, split = blockIdx.y;
    const int chunks = k / RM_CHUNK;
    const int c_begin = (int)((long long)chunks * split / splits);
    const int c_end = (int)((long long)chunks * (split + 1) / splits);
    RmRows w;
    w.in0 = col0 + g < n;
    w.in1 = col0 + g + 8 < n;
    w.w0 = B + (size_t)(w.in0 ? col0 + g : 0) * k + 8 * t;
    w.w1 = B + (size_t)(w.in1 ? col0 + g + 8 : 0) * k + 8 * t;
    float acc[TILES][4];
    rm_accumulate<TILES>(acc, w, c_begin, c_end, m, smem, [&](int r, int chunk, int sub) {
        return *reinterpret_cast<const uint4*>(A + (size_t)r * lda + (size_t)chunk * RM_CHUNK + sub * 8);
    });
    const float* part = rm_store_partials<TILES>(acc, smem, m);
    if (splits > 1) cluster_sync(); else __syncthreads();
    // The cluster's blocks share the output tile: block `split` takes every splits-th pair of
    // columns; each pair is the sum of the blocks' partials in rank order.
    for (int e = threadIdx.x + split * RM_WARPS * 32; e < m * (RM_COLS / 2); e += splits * RM_WARPS * 32) {
        const int r = e / (RM_COLS / 2), c = (e % (RM_COLS / 2)) * 2, col = blockIdx.x * RM_COLS + c;
        if (col >= n) continue;
        float s0 = 0.0f, s1 = 0.0f;
        for (int q = 0; q < splits; ++q) {
            s0 += splits > 1 ? ld_cluster(part + r * RM_COLS + c, (unsigned)q) : part[r * RM_COLS + c];
            s1 += splits > 1 ? ld_cluster(part + r * RM_COLS + c + 1, (unsigned)q) : part[r * RM_COLS + c + 1];
        }
        u32* out = reinterpret_cast<u32*>(C + (size_t)r * ldc + col);
        if (beta != 0.0f) {
            const u32 old = *out;
            s0 += beta * __uint_as_float(old << 16);
            s1 += beta * __uint_as_float(old & 0xffff0000u);
        }
        *out = pack_bf16(s0, s1);
    }
    if (splits > 1) cluster_sync();  // no block leaves while another reads its shared memory
}

extern "C" __global__ void __launch_bounds__(RM_WARPS * 32) pio_gemm_rows_32(
    const bf16* __restrict__ A, int lda, const bf16* __restrict__ B, bf16* C, int ldc, int m, int n, int k, float beta) {
    gemm_rows<4>(A, lda, B, C, ldc, m, n, k, beta);
}

extern "C" __global__ void __launch_bounds__(RM_WARPS * 32) pio_gemm_rows_64(
    const bf16* __restrict__ A, int lda, const bf16* __restrict__ B, bf16* C, int ldc, int m, int n, int k, float beta) {
    gemm_rows<8>(A, lda, B, C, ldc, m, n, k, beta);
}

extern "C" __global__ void __launch_bounds__(RM_WARPS * 32) pio_gemm_rows_128(
    const bf16* __restrict__ A, int lda, const bf16* __restrict__ B, bf16* C, int ldc, int m, int n, int k, float beta) {
    gemm_rows<16>(A, lda, B, C, ldc, m, n, k, beta);
}
