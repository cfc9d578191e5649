#!/usr/bin/env python3
"""The indexing of runtime/src/cuda/gemm_rows.cu (pio's few-rows GEMM) and of
templates/kernels/row_gemm.cu (the fused row GEMM) transliterated, one thread at
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


# templates/kernels/row_gemm.cu (the fused row GEMM), the same way: the RMSNorm prologue (the
# cluster's partial sums of squares), SwiGLU's gate/up column pairing, the residual epilogue,
# passes of PASS_ROWS rows and, without clusters (nb = 1), every SPLITS-th pass per block.
# bf16 roundings are left out (identity): the check is on the indexing.
def silu(v): return v / (1 + np.exp(-v))
def run_fused(X, G, W, R, tokens, n, k, splits, nb, tiles, norm, residual, swiglu, eps=1e-6):
    pass_rows = 8 * tiles
    out_cols = COLS // 2 if swiglu else COLS
    grid_x = (n + out_cols - 1) // out_cols
    out = R.copy() if residual else np.full((tokens, n), np.nan)
    written = np.zeros((tokens, n), int)
    chunks = k // CHUNK
    for bx in range(grid_x):
        for pass_, r0 in enumerate(range(0, tokens, pass_rows)):
            m = min(pass_rows, tokens - r0); rows8 = (m + 7) & ~7
            # the blocks of one cluster (nb > 1: the splits), or the block of this pass (nb = 1)
            members = list(range(splits)) if nb > 1 else [pass_ % splits]
            parts, ss = {}, {}
            for y in members:
                split = y if nb > 1 else 0
                c_begin, c_end = chunks * split // nb, chunks * (split + 1) // nb
                s = np.zeros(m)
                for r in range(m):
                    for lane in range(32):
                        for kk in range(c_begin * CHUNK + lane * 8, c_end * CHUNK, 256):
                            s[r] += X[r0 + r, kk:kk+8] @ X[r0 + r, kk:kk+8]
                ss[y] = s
            for y in members:
                split = y if nb > 1 else 0
                c_begin, c_end = chunks * split // nb, chunks * (split + 1) // nb
                inv = 1 / np.sqrt(sum(ss[q] for q in members) / k + eps) if norm else None
                acc = np.zeros((WARPS, 32, tiles, 4))
                for c0 in range(c_begin, c_end, STAGE_CHUNKS):
                    smem = {}
                    for i in range(rows8 * 16):
                        r, p = i >> 4, i & 15; chunk = c0 + (p >> 2)
                        v = np.zeros(8)
                        if r < m and chunk < c_end:
                            kk = chunk * CHUNK + (p & 3) * 8
                            v = X[r0 + r, kk:kk+8].copy()
                            if norm: v = v * inv[r] * G[kk:kk+8]
                        smem[r * ROW_BYTES + ((p * 16) ^ ((r & 1) * 64))] = v
                    for warp in range(WARPS):
                        for c in range(STAGE_CHUNKS):
                            if c0 + c >= c_end: continue
                            for j in range(tiles):
                                if j * 8 >= m: continue
                                A16 = np.zeros((16, 32)); B8 = np.zeros((8, 32))
                                for lane in range(32):
                                    g, t = lane >> 2, lane & 3
                                    if swiglu: oc0, base = bx * out_cols + (warp & 1) * 16 + g, (0 if warp < 2 else n)
                                    else: oc0, base = bx * out_cols + warp * 16 + g, 0
                                    kk = (c0 + c) * CHUNK + 8 * t
                                    A16[g, 8*t:8*t+8] = W[base + oc0, kk:kk+8] if oc0 < n else 0
                                    A16[g + 8, 8*t:8*t+8] = W[base + oc0 + 8, kk:kk+8] if oc0 + 8 < n else 0
                                    B8[g, 8*t:8*t+8] = smem[(j*8+g) * ROW_BYTES + (((c*4+t) * 16) ^ (((j*8+g) & 1) * 64))]
                                Cm = A16 @ B8.T  # the fragments' k permutation: checked by run() above
                                for lane in range(32):
                                    g, t = lane >> 2, lane & 3
                                    acc[warp, lane, j] += [Cm[g, 2*t], Cm[g, 2*t+1], Cm[g+8, 2*t], Cm[g+8, 2*t+1]]
                part = np.full((rows8, COLS), np.nan)
                for warp in range(WARPS):
                    for lane in range(32):
                        g, t = lane >> 2, lane & 3
                        for j in range(tiles):
                            if j * 8 >= m: continue
                            r, c = j * 8 + 2 * t, warp * 16 + g
                            part[r, c], part[r+1, c], part[r, c+8], part[r+1, c+8] = acc[warp, lane, j]
                parts[y] = part
            for y in members:
                split = y if nb > 1 else 0
                for tid in range(WARPS * 32):
                    e = tid + split * WARPS * 32
                    while e < m * (out_cols // 2):
                        r, c = e // (out_cols // 2), (e % (out_cols // 2)) * 2
                        col = bx * out_cols + c
                        if col < n:
                            for h in range(2):
                                s = sum(parts[q][r, c + h] for q in members)
                                if swiglu:
                                    u = sum(parts[q][r, out_cols + c + h] for q in members)
                                    o = silu(s) * u
                                elif residual: o = s + out[r0 + r, col + h]
                                else: o = s
                                out[r0 + r, col + h] = o; written[r0 + r, col + h] += 1
                        e += nb * WARPS * 32
    assert (written == 1).all(), "every output written once"
    return out

for (tokens, n, k, splits, nb, tiles, norm, residual, swiglu) in [
        (13, 72, 160, 2, 2, 1, True, False, False),   # norm, 2 passes of 8 rows, a cluster of 2
        (20, 40, 256, 4, 4, 2, False, True, False),   # residual, 2 passes of 16
        (9, 48, 128, 2, 2, 4, True, False, True),     # norm + SwiGLU (48 gate rows, 96 in all)
        (30, 64, 192, 4, 1, 1, True, True, False),    # no clusters: every 4th pass per block
        (17, 40, 96, 1, 1, 2, False, False, True)]:
    X = rng.standard_normal((tokens, k)); Gm = rng.standard_normal(k)
    W = rng.standard_normal((2 * n if swiglu else n, k)); R = rng.standard_normal((tokens, n))
    got = run_fused(X, Gm, W, R, tokens, n, k, splits, nb, tiles, norm, residual, swiglu)
    xn = X / np.sqrt((X * X).mean(1, keepdims=True) + 1e-6) * Gm if norm else X
    y = xn @ W.T
    want = silu(y[:, :n]) * y[:, n:] if swiglu else (y + R if residual else y)
    err = np.abs(got - want).max()
    print("fused", (tokens, n, k, splits, nb, norm, residual, swiglu), "max err", err)
    assert err < 1e-9, "the fused kernel's indexing does not compute the projection"
