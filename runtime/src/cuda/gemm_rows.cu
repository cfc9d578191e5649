// pio's GEMM for few rows (the GEMMs of a decode batch): C[m, n] = A[m, k] · B[n, k]ᵀ + beta · C,
// bf16 in and out, f32 accumulation, one rounding (cuBLAS's semantics), for m <= 8 * TILES.
// With few rows a GEMM is a stream of B (the weights) at the card's bandwidth; cuBLAS's kernels
// give it few blocks (ncu: 0.65-1.5 TB/s on an H100). Here the weights are the mma's 16-row
// operand (A of m16n8k16) and the activations the 8-column one, so a block of 4 warps covers 64
// output columns for every row, and the k range is split over a thread-block cluster of
// gridDim.y blocks (sm_90; 1 before it) whose partial sums meet in shared memory, summed in a
// fixed order (the result does not depend on timing).
//
// Each lane loads 16 bytes of a weight row at a time (8 consecutive k), so a fragment's k are a
// permutation of the mma's logical k; the activations' fragments are read with the same
// permutation, and a dot product does not depend on the order of its terms' pairing.
// Requirements (checked by the caller): k % 32 == 0, n % 8 == 0, lda % 8 == 0, ldc % 8 == 0,
// A, B and C 16-byte aligned, m <= 8 * TILES, dynamic shared memory 256 * ceil(m / 8) * 8 bytes.
typedef unsigned short bf16;
typedef unsigned int u32;

#define WARPS 4
#define COLS (16 * WARPS)             // output columns (weight rows) per block
#define CHUNK 32                      // k per fragment load (two mma k-steps)
#define STAGE_CHUNKS 4                // chunks per shared-memory stage of activations
#define ROW_BYTES (CHUNK * STAGE_CHUNKS * 2)  // one staged activation row: 256 bytes

__device__ __forceinline__ void mma16816(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 { %0,%1,%2,%3}, { %4,%5,%6,%7}, "
        "{ %8,%9}, { %0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ u32 f2bf(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

// Byte offset of 16-byte piece p (0..15) of staged row r: odd rows swap the two 64-byte halves
// of each 128 bytes, so that the 8 lanes of a quarter warp (two rows, 64 bytes each) hit
// different banks.
__device__ __forceinline__ int staged(int r, int p) { return r * ROW_BYTES + ((p * 16) ^ ((r & 1) * 64)); }

// Barrier over the cluster's blocks (their shared memory visible to each other after it).
__device__ __forceinline__ void cluster_sync() {
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
    __syncthreads();
#endif
}

// Two floats at p (this block's shared memory) in the cluster's block `rank`.
__device__ __forceinline__ float2 ld_cluster2(const float* p, unsigned rank) {
#if __CUDA_ARCH__ >= 900
    unsigned local = (unsigned)__cvta_generic_to_shared(p), remote;
    float2 v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
    asm volatile("ld.shared::cluster.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(remote));
    return v;
#else
    return *reinterpret_cast<const float2*>(p);
#endif
}

template <int TILES>
__device__ __forceinline__ void gemm_rows(const bf16* __restrict__ A, int lda, const bf16* __restrict__ B,
                                          bf16* C, int ldc, int m, int n, int k, float beta) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int col0 = blockIdx.x * COLS + warp * 16;
    const int splits = gridDim.y, split = blockIdx.y;
    const int chunks = k / CHUNK;
    const int c_begin = (int)((long long)chunks * split / splits);
    const int c_end = (int)((long long)chunks * (split + 1) / splits);
    // This lane's two weight rows (g and g + 8 of the warp's 16); rows past n read as zeros.
    const bool in0 = col0 + g < n, in1 = col0 + g + 8 < n;
    const bf16* w0 = B + (size_t)(in0 ? col0 + g : 0) * k + 8 * t;
    const bf16* w1 = B + (size_t)(in1 ? col0 + g + 8 : 0) * k + 8 * t;
    const int rows8 = (m + 7) & ~7;
    const uint4 zero = make_uint4(0, 0, 0, 0);

    float acc[TILES][4];
#pragma unroll
    for (int j = 0; j < TILES; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

    // The weights of a stage are loaded one stage ahead, so that they stream while the
    // activations are staged and the mmas run.
    uint4 wa[STAGE_CHUNKS], wb[STAGE_CHUNKS];
#pragma unroll
    for (int c = 0; c < STAGE_CHUNKS; ++c) {
        const bool in = c_begin + c < c_end;
        wa[c] = in && in0 ? *reinterpret_cast<const uint4*>(w0 + (size_t)(c_begin + c) * CHUNK) : zero;
        wb[c] = in && in1 ? *reinterpret_cast<const uint4*>(w1 + (size_t)(c_begin + c) * CHUNK) : zero;
    }
    for (int c0 = c_begin; c0 < c_end; c0 += STAGE_CHUNKS) {
        __syncthreads();  // every warp is done reading the previous stage
        for (int i = threadIdx.x; i < rows8 * 16; i += WARPS * 32) {
            const int r = i >> 4, p = i & 15, chunk = c0 + (p >> 2);
            uint4 v = zero;
            if (r < m && chunk < c_end) v = *reinterpret_cast<const uint4*>(A + (size_t)r * lda + (size_t)chunk * CHUNK + (p & 3) * 8);
            *reinterpret_cast<uint4*>(smem + staged(r, p)) = v;
        }
        __syncthreads();
        uint4 na[STAGE_CHUNKS], nb[STAGE_CHUNKS];
#pragma unroll
        for (int c = 0; c < STAGE_CHUNKS; ++c) {
            const int chunk = c0 + STAGE_CHUNKS + c;
            const bool in = chunk < c_end;
            na[c] = in && in0 ? *reinterpret_cast<const uint4*>(w0 + (size_t)chunk * CHUNK) : zero;
            nb[c] = in && in1 ? *reinterpret_cast<const uint4*>(w1 + (size_t)chunk * CHUNK) : zero;
        }
#pragma unroll
        for (int c = 0; c < STAGE_CHUNKS; ++c) {
            if (c0 + c < c_end) {
#pragma unroll
                for (int j = 0; j < TILES; ++j) {
                    if (j * 8 < m) {
                        const uint4 x = *reinterpret_cast<const uint4*>(smem + staged(j * 8 + g, c * 4 + t));
                        mma16816(acc[j], wa[c].x, wb[c].x, wa[c].y, wb[c].y, x.x, x.y);
                        mma16816(acc[j], wa[c].z, wb[c].z, wa[c].w, wb[c].w, x.z, x.w);
                    }
                }
            }
        }
#pragma unroll
        for (int c = 0; c < STAGE_CHUNKS; ++c) {
            wa[c] = na[c];
            wb[c] = nb[c];
        }
    }

    // Partial sums, [rows8][COLS] f32 (the stage's bytes again: COLS * 4 == ROW_BYTES).
    __syncthreads();
    float* part = reinterpret_cast<float*>(smem);
#pragma unroll
    for (int j = 0; j < TILES; ++j) {
        if (j * 8 < m) {
            const int r = j * 8 + 2 * t, c = warp * 16 + g;
            part[r * COLS + c] = acc[j][0];
            part[(r + 1) * COLS + c] = acc[j][1];
            part[r * COLS + c + 8] = acc[j][2];
            part[(r + 1) * COLS + c + 8] = acc[j][3];
        }
    }
    if (splits > 1) cluster_sync(); else __syncthreads();
    // The cluster's blocks share the output tile: block `split` takes every splits-th pair of
    // columns; each pair is the sum of the blocks' partials in rank order.
    for (int e = threadIdx.x + split * WARPS * 32; e < m * (COLS / 2); e += splits * WARPS * 32) {
        const int r = e / (COLS / 2), c = (e % (COLS / 2)) * 2, col = blockIdx.x * COLS + c;
        if (col >= n) continue;
        float s0 = 0.0f, s1 = 0.0f;
        for (int q = 0; q < splits; ++q) {
            const float2 v = ld_cluster2(part + r * COLS + c, (unsigned)q);
            s0 += v.x;
            s1 += v.y;
        }
        u32* out = reinterpret_cast<u32*>(C + (size_t)r * ldc + col);
        if (beta != 0.0f) {
            const u32 old = *out;
            s0 += beta * __uint_as_float(old << 16);
            s1 += beta * __uint_as_float(old & 0xffff0000u);
        }
        *out = f2bf(s0) | (f2bf(s1) << 16);
    }
    if (splits > 1) cluster_sync();  // no block leaves while another reads its shared memory
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) pio_gemm_rows_32(
    const bf16* __restrict__ A, int lda, const bf16* __restrict__ B, bf16* C, int ldc, int m, int n, int k, float beta) {
    gemm_rows<4>(A, lda, B, C, ldc, m, n, k, beta);
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) pio_gemm_rows_64(
    const bf16* __restrict__ A, int lda, const bf16* __restrict__ B, bf16* C, int ldc, int m, int n, int k, float beta) {
    gemm_rows<8>(A, lda, B, C, ldc, m, n, k, beta);
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) pio_gemm_rows_128(
    const bf16* __restrict__ A, int lda, const bf16* __restrict__ B, bf16* C, int ldc, int m, int n, int k, float beta) {
    gemm_rows<16>(A, lda, B, C, ldc, m, n, k, beta);
}
