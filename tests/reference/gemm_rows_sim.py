#!/usr/bin/env python3
"""The indexing of runtime/src/cuda/gemm_rows.cu (pio's few-rows GEMM) transliterated, one thread at
a time with the phases in barrier order, each mma.sync m16n8k16 assembled from the lanes' fragment
registers as PTX defines them: it checks the permuted-k fragment loads, the swizzled staging, the
k splits and the cluster epilogue (every output written once) against A @ B.T + C in f64, on the
CPU (numpy). Run after changing the kernel's indexing: python3 tests/reference/gemm_rows_sim.py"""
import numpy as np
WARPS, COLS, CHUNK, STAGE_CHUNKS, ROW_BYTES = 4, 64, 32, 4, 256
def run(A, B, C, m, n, k, beta, splits, TILES):
    C = C.copy()
    grid_x = (n + COLS - 1) // COLS
    rows8 = (m + 7) & ~7
    # per block: smem as a dict of byte offset -> 8 values (16 bytes), partials as float array
    parts = {}
    for bx in range(grid_x):
        for split in range(splits):
            smem = {}
            chunks = k // CHUNK
            c_begin = chunks * split // splits; c_end = chunks * (split + 1) // splits
            acc = np.zeros((WARPS, 32, TILES, 4))
            def staged(r, p): return r * ROW_BYTES + ((p * 16) ^ ((r & 1) * 64))
            for c0 in range(c_begin, c_end, STAGE_CHUNKS):
                smem = {}
                for i in range(rows8 * 16):
                    r, p = i >> 4, i & 15; chunk = c0 + (p >> 2)
                    v = np.zeros(8)
                    if r < m and chunk < c_end: v = A[r, chunk * CHUNK + (p & 3) * 8: chunk * CHUNK + (p & 3) * 8 + 8]
                    off = staged(r, p); assert off not in smem; smem[off] = v
                for warp in range(WARPS):
                    col0 = bx * COLS + warp * 16
                    for c in range(STAGE_CHUNKS):
                        if c0 + c >= c_end: continue
                        for j in range(TILES):
                            if j * 8 >= m: continue
                            # assemble the mma operands from lanes
                            Am = np.zeros((16, 16)); Bm = np.zeros((16, 8))
                            Am2 = np.zeros((16, 16)); Bm2 = np.zeros((16, 8))
                            for lane in range(32):
                                g, t = lane >> 2, lane & 3
                                in0, in1 = col0 + g < n, col0 + g + 8 < n
                                kk = (c0 + c) * CHUNK + 8 * t
                                wa = B[col0 + g, kk:kk+8] if in0 else np.zeros(8)
                                wb = B[col0 + g + 8, kk:kk+8] if in1 else np.zeros(8)
                                x = smem[staged(j * 8 + g, c * 4 + t)]
                                for mm, (AA, BB) in enumerate(((Am, Bm), (Am2, Bm2))):
                                    b = 4 * mm
                                    AA[g, 2*t:2*t+2] = wa[b:b+2]; AA[g+8, 2*t:2*t+2] = wb[b:b+2]
                                    AA[g, 2*t+8:2*t+10] = wa[b+2:b+4]; AA[g+8, 2*t+8:2*t+10] = wb[b+2:b+4]
                                    BB[2*t:2*t+2, g] = x[b:b+2]; BB[2*t+8:2*t+10, g] = x[b+2:b+4]
                            Cm = Am @ Bm + Am2 @ Bm2
                            for lane in range(32):
                                g, t = lane >> 2, lane & 3
                                acc[warp, lane, j] += [Cm[g, 2*t], Cm[g, 2*t+1], Cm[g+8, 2*t], Cm[g+8, 2*t+1]]
            part = np.full((rows8, COLS), np.nan)
            for warp in range(WARPS):
                for lane in range(32):
                    g, t = lane >> 2, lane & 3
                    for j in range(TILES):
                        if j * 8 >= m: continue
                        r, c = j * 8 + 2 * t, warp * 16 + g
                        part[r, c], part[r+1, c], part[r, c+8], part[r+1, c+8] = acc[warp, lane, j]
            parts[(bx, split)] = part
    written = np.zeros((m, n), int)
    for bx in range(grid_x):
        for split in range(splits):
            for tid in range(WARPS * 32):
                e = tid + split * WARPS * 32
                while e < m * (COLS // 2):
                    r, c = e // (COLS // 2), (e % (COLS // 2)) * 2; col = bx * COLS + c
                    if col < n:
                        s0 = sum(parts[(bx, q)][r, c] for q in range(splits)); s1 = sum(parts[(bx, q)][r, c+1] for q in range(splits))
                        C[r, col] = s0 + beta * C[r, col]; C[r, col+1] = s1 + beta * C[r, col+1]
                        written[r, col] += 1; written[r, col+1] += 1
                    e += splits * WARPS * 32
    assert (written == 1).all(), "every output written once"
    return C
rng = np.random.default_rng(1)
for (m, n, k, splits, TILES) in [(13, 72, 160, 2, 4), (32, 136, 256, 4, 4), (5, 64, 96, 1, 4), (40, 200, 320, 3, 8)]:
    A = rng.standard_normal((m, k)); B = rng.standard_normal((n, k)); C0 = rng.standard_normal((m, n))
    got = run(A, B, C0, m, n, k, 1.0, splits, TILES)
    err = np.abs(got - (A @ B.T + C0)).max()
    print((m, n, k, splits), "max err", err)
    assert err < 1e-9, "the kernel's indexing does not compute the product"
