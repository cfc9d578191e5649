// The tensor-core core of pio's few-row GEMMs (the runtime's runtime/src/cuda/gemm_rows.cu and
// the generated kernels/row_gemm.cu; after pio.cuh): a block of RM_WARPS warps accumulates
// RM_COLS weight rows (16 per warp) against up to 8 * TILES activation rows over chunks
// [c_begin, c_end) of k (32 k each), on mma.sync m16n8k16 with f32 accumulation.
// The weights are the mma's 16-row operand, loaded straight from global memory 16 bytes per
// lane (8 consecutive k): a fragment's k are a permutation of the mma's logical k, and the
// activations' fragments are read with the same permutation (a dot product does not depend on
// the pairing order of its terms). The weights of a stage load one stage ahead, so that they
// stream while the activations are staged and the mmas run. The activations are staged
// RM_STAGE_CHUNKS chunks at a time in shared memory (rows rounded up to 8, RM_ROW_BYTES each),
// odd rows' 64-byte halves swapped so that the 8 lanes of a quarter warp (two rows, 64 bytes
// each) hit different banks. tests/reference/gemm_rows_sim.py checks this indexing on the CPU.
#define RM_WARPS 4
#define RM_COLS (16 * RM_WARPS)
#define RM_CHUNK 32
#define RM_STAGE_CHUNKS 4
#define RM_ROW_BYTES (RM_CHUNK * RM_STAGE_CHUNKS * 2)

// Byte offset of 16-byte piece p (0..15) of staged row r.
__device__ __forceinline__ int rm_staged(int r, int p) {
    return r * RM_ROW_BYTES + ((p * 16) ^ ((r & 1) * 64));
}

// One lane's two weight rows (g and g + 8 of its warp's 16, at k offset 8t of their row) and
// whether each exists (a missing row reads as zeros).
struct RmRows {
    const bf16* w0;
    const bf16* w1;
    bool in0, in1;
};

// Two mma k-steps of one 32-k chunk: the lane's weight pieces wa (row g) and wb (row g + 8) and
// its activation piece x (token row g of the tile), each 8 consecutive k.
__device__ __forceinline__ void rm_mma(float (&c)[4], const uint4& wa, const uint4& wb, const uint4& x) {
    const u32 a0[4] = {wa.x, wb.x, wa.y, wb.y}, a1[4] = {wa.z, wb.z, wa.w, wb.w};
    mma_bf16(c, a0, x.x, x.y);
    mma_bf16(c, a1, x.z, x.w);
}

__device__ __forceinline__ void rm_load_stage(uint4 (&wa)[RM_STAGE_CHUNKS], uint4 (&wb)[RM_STAGE_CHUNKS],
                                              const RmRows& w, int c0, int c_end) {
    const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int c = 0; c < RM_STAGE_CHUNKS; ++c) {
        const bool in = c0 + c < c_end;
        wa[c] = in && w.in0 ? *reinterpret_cast<const uint4*>(w.w0 + (size_t)(c0 + c) * RM_CHUNK) : zero;
        wb[c] = in && w.in1 ? *reinterpret_cast<const uint4*>(w.w1 + (size_t)(c0 + c) * RM_CHUNK) : zero;
    }
}

// acc = the block's rows of w times the activation rows 0..m over chunks [c_begin, c_end).
// piece(r, chunk, sub) gives activation row r's 8 k from chunk * 32 + sub * 8 (r < m; rows up to
// the next multiple of 8 are zeros). Leaves smem to the caller after a barrier.
template <int TILES, class Piece>
__device__ __forceinline__ void rm_accumulate(float (&acc)[TILES][4], const RmRows& w, int c_begin,
                                              int c_end, int m, unsigned char* smem, Piece piece) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int rows8 = (m + 7) & ~7;
#pragma unroll
    for (int j = 0; j < TILES; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    uint4 wa[RM_STAGE_CHUNKS], wb[RM_STAGE_CHUNKS];
    rm_load_stage(wa, wb, w, c_begin, c_end);
    for (int c0 = c_begin; c0 < c_end; c0 += RM_STAGE_CHUNKS) {
        __syncthreads();  // every warp is done reading the previous stage
        for (int i = threadIdx.x; i < rows8 * 16; i += RM_WARPS * 32) {
            const int r = i >> 4, p = i & 15, chunk = c0 + (p >> 2);
            const uint4 v = r < m && chunk < c_end ? piece(r, chunk, p & 3) : make_uint4(0, 0, 0, 0);
            *reinterpret_cast<uint4*>(smem + rm_staged(r, p)) = v;
        }
        __syncthreads();
        uint4 na[RM_STAGE_CHUNKS], nb[RM_STAGE_CHUNKS];
        rm_load_stage(na, nb, w, c0 + RM_STAGE_CHUNKS, c_end);
#pragma unroll
        for (int c = 0; c < RM_STAGE_CHUNKS; ++c) {
            if (c0 + c < c_end) {
#pragma unroll
                for (int j = 0; j < TILES; ++j) {
                    if (j * 8 < m)
                        rm_mma(acc[j], wa[c], wb[c], *reinterpret_cast<const uint4*>(smem + rm_staged(j * 8 + g, c * 4 + t)));
                }
            }
        }
#pragma unroll
        for (int c = 0; c < RM_STAGE_CHUNKS; ++c) {
            wa[c] = na[c];
            wb[c] = nb[c];
        }
    }
}

// The block's partial sums into smem as [rows][RM_COLS] f32 (the stage's bytes again:
// RM_COLS * 4 == RM_ROW_BYTES), after a barrier; returns them. The caller syncs before reading.
template <int TILES>
__device__ __forceinline__ float* rm_store_partials(const float (&acc)[TILES][4], unsigned char* smem, int m) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    __syncthreads();
    float* part = reinterpret_cast<float*>(smem);
#pragma unroll
    for (int j = 0; j < TILES; ++j) {
        if (j * 8 < m) {
            const int r = j * 8 + 2 * t, c = warp * 16 + g;
            part[r * RM_COLS + c] = acc[j][0];
            part[(r + 1) * RM_COLS + c] = acc[j][1];
            part[r * RM_COLS + c + 8] = acc[j][2];
            part[(r + 1) * RM_COLS + c + 8] = acc[j][3];
        }
    }
    return part;
}
