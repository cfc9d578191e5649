#!/usr/bin/env python3
"""The indexing of pio's few-row GEMMs transliterated, one thread at a time with the phases in
barrier order: templates/common/row_mma.cuh (the shared core: permuted-k fragment loads, the
swizzled staging, the partial sums; each mma.sync m16n8k16 assembled from the lanes' fragment
registers as PTX defines them), then the epilogues of runtime/src/cuda/gemm_rows.cu (k splits
over a cluster, beta) and templates/kernels/row_gemm.cu (the RMSNorm prologue from the
cluster's partial sums of squares, SwiGLU's gate/up pairing, the residual, passes of rows, the
no-cluster path). bf16 roundings are left out: the check is on the indexing, against numpy in
f64, and that every output is written once. On the CPU:
python3 tests/reference/gemm_rows_sim.py"""
import numpy as np

WARPS, COLS, CHUNK, STAGE_CHUNKS, ROW_BYTES = 4, 64, 32, 4, 256


def staged(r, p):
    return r * ROW_BYTES + ((p * 16) ^ ((r & 1) * 64))


def accumulate(weight_row, piece, c_begin, c_end, m, tiles):
    """row_mma.cuh's rm_accumulate and rm_store_partials for one block. weight_row(warp, g) is
    the weight row of lane row g (0..15) of a warp, or None; piece(r, chunk, sub) 8 activations."""
    rows8 = (m + 7) & ~7
    acc = np.zeros((WARPS, 32, tiles, 4))
    for c0 in range(c_begin, c_end, STAGE_CHUNKS):
        smem = {}
        for i in range(rows8 * 16):
            r, p = i >> 4, i & 15
            chunk = c0 + (p >> 2)
            smem[staged(r, p)] = piece(r, chunk, p & 3) if r < m and chunk < c_end else np.zeros(8)
        for warp in range(WARPS):
            for c in range(STAGE_CHUNKS):
                if c0 + c >= c_end:
                    continue
                for j in range(tiles):
                    if j * 8 >= m:
                        continue
                    for mma in range(2):  # the chunk's two k-steps: pieces .x .y, then .z .w
                        A = np.zeros((16, 16)); B = np.zeros((16, 8))
                        for lane in range(32):
                            g, t = lane >> 2, lane & 3
                            kk = (c0 + c) * CHUNK + 8 * t
                            w0, w1 = weight_row(warp, g), weight_row(warp, g + 8)
                            wa = w0[kk:kk + 8] if w0 is not None else np.zeros(8)
                            wb = w1[kk:kk + 8] if w1 is not None else np.zeros(8)
                            x = smem[staged(j * 8 + g, c * 4 + t)]
                            b = 4 * mma
                            # a0 = (row g, k 2t..2t+1), a1 = row g+8, a2 = (row g, k+8), a3; b0, b1
                            A[g, 2*t:2*t+2] = wa[b:b+2]; A[g+8, 2*t:2*t+2] = wb[b:b+2]
                            A[g, 2*t+8:2*t+10] = wa[b+2:b+4]; A[g+8, 2*t+8:2*t+10] = wb[b+2:b+4]
                            B[2*t:2*t+2, g] = x[b:b+2]; B[2*t+8:2*t+10, g] = x[b+2:b+4]
                        C = A @ B
                        for lane in range(32):
                            g, t = lane >> 2, lane & 3
                            acc[warp, lane, j] += [C[g, 2*t], C[g, 2*t+1], C[g+8, 2*t], C[g+8, 2*t+1]]
    part = np.full((rows8, COLS), np.nan)
    for warp in range(WARPS):
        for lane in range(32):
            g, t = lane >> 2, lane & 3
            for j in range(tiles):
                if j * 8 < m:
                    r, c = j * 8 + 2 * t, warp * 16 + g
                    part[r, c], part[r+1, c], part[r, c+8], part[r+1, c+8] = acc[warp, lane, j]
    return part


def k_range(chunks, split, nb):
    return chunks * split // nb, chunks * (split + 1) // nb


def gemm_rows(A, B, C, m, n, k, beta, splits, tiles):
    """gemm_rows.cu: C = A @ B.T + beta C for m <= 8 * tiles rows."""
    out, written = C.copy(), np.zeros((m, n), int)
    for bx in range((n + COLS - 1) // COLS):
        def weight_row(warp, g):
            col = bx * COLS + warp * 16 + g
            return B[col] if col < n else None
        parts = [accumulate(weight_row, lambda r, ch, sub: A[r, ch*CHUNK + sub*8: ch*CHUNK + sub*8 + 8],
                            *k_range(k // CHUNK, s, splits), m, tiles) for s in range(splits)]
        for split in range(splits):
            for tid in range(WARPS * 32):
                for e in range(tid + split * WARPS * 32, m * (COLS // 2), splits * WARPS * 32):
                    r, c = e // (COLS // 2), (e % (COLS // 2)) * 2
                    col = bx * COLS + c
                    if col < n:
                        for h in range(2):
                            out[r, col + h] = sum(p[r, c + h] for p in parts) + beta * out[r, col + h]
                            written[r, col + h] += 1
    assert (written == 1).all(), "every output written once"
    return out


def silu(v):
    return v / (1 + np.exp(-v))


def row_gemm(X, G, W, R, tokens, n, k, splits, nb, tiles, norm, residual, swiglu, eps=1e-6):
    """row_gemm.cu (nb: the cluster size the architecture gives, SPLITS or 1)."""
    pass_rows, out_cols, chunks = 8 * tiles, (COLS // 2 if swiglu else COLS), k // CHUNK
    out = R.copy() if residual else np.full((tokens, n), np.nan)
    written = np.zeros((tokens, n), int)
    for bx in range((n + out_cols - 1) // out_cols):
        def weight_row(warp, g):
            oc = bx * out_cols + ((warp & 1) if swiglu else warp) * 16 + g
            base = n if swiglu and warp >= 2 else 0
            return W[base + oc] if oc < n else None
        for pass_, r0 in enumerate(range(0, tokens, pass_rows)):
            m = min(pass_rows, tokens - r0)
            # the blocks of one cluster (nb > 1), or the one block that takes this pass (nb = 1)
            members = list(range(splits)) if nb > 1 else [pass_ % splits]
            split_of = {y: (y if nb > 1 else 0) for y in members}
            ss = {}
            for y in members:
                c_begin, c_end = k_range(chunks, split_of[y], nb)
                ss[y] = np.zeros(m)
                for r in range(m):
                    for lane in range(32):
                        for kk in range(c_begin * CHUNK + lane * 8, c_end * CHUNK, 256):
                            ss[y][r] += X[r0 + r, kk:kk+8] @ X[r0 + r, kk:kk+8]
            inv = 1 / np.sqrt(sum(ss.values()) / k + eps)
            def piece(r, ch, sub):
                kk = ch * CHUNK + sub * 8
                v = X[r0 + r, kk:kk+8]
                return v * inv[r] * G[kk:kk+8] if norm else v
            parts = {y: accumulate(weight_row, piece, *k_range(chunks, split_of[y], nb), m, tiles)
                     for y in members}
            for y in members:
                for tid in range(WARPS * 32):
                    for e in range(tid + split_of[y] * WARPS * 32, m * (out_cols // 2), nb * WARPS * 32):
                        r, c = e // (out_cols // 2), (e % (out_cols // 2)) * 2
                        col = bx * out_cols + c
                        if col >= n:
                            continue
                        for h in range(2):
                            s = sum(p[r, c + h] for p in parts.values())
                            if swiglu:
                                o = silu(s) * sum(p[r, out_cols + c + h] for p in parts.values())
                            elif residual:
                                o = s + out[r0 + r, col + h]
                            else:
                                o = s
                            out[r0 + r, col + h] = o
                            written[r0 + r, col + h] += 1
    assert (written == 1).all(), "every output written once"
    return out


rng = np.random.default_rng(1)
for (m, n, k, splits, tiles) in [(13, 72, 160, 2, 4), (32, 136, 256, 4, 4), (5, 64, 96, 1, 4), (40, 200, 320, 3, 8)]:
    A = rng.standard_normal((m, k)); B = rng.standard_normal((n, k)); C0 = rng.standard_normal((m, n))
    err = np.abs(gemm_rows(A, B, C0, m, n, k, 1.0, splits, tiles) - (A @ B.T + C0)).max()
    print("gemm_rows", (m, n, k, splits), "max err", err)
    assert err < 1e-9, "the few-rows GEMM's indexing does not compute the product"

for (tokens, n, k, splits, nb, tiles, norm, residual, swiglu) in [
        (13, 72, 160, 2, 2, 1, True, False, False),   # norm, 2 passes of 8 rows, a cluster of 2
        (20, 40, 256, 4, 4, 2, False, True, False),   # residual, 2 passes of 16
        (9, 48, 128, 2, 2, 4, True, False, True),     # norm + SwiGLU (48 gate rows, 96 in all)
        (30, 64, 192, 4, 1, 1, True, True, False),    # no clusters: every 4th pass per block
        (17, 40, 96, 1, 1, 2, False, False, True)]:
    X = rng.standard_normal((tokens, k)); Gm = rng.standard_normal(k)
    W = rng.standard_normal((2 * n if swiglu else n, k)); R = rng.standard_normal((tokens, n))
    got = row_gemm(X, Gm, W, R, tokens, n, k, splits, nb, tiles, norm, residual, swiglu)
    xn = X / np.sqrt((X * X).mean(1, keepdims=True) + 1e-6) * Gm if norm else X
    y = xn @ W.T
    want = silu(y[:, :n]) * y[:, n:] if swiglu else (y + R if residual else y)
    err = np.abs(got - want).max()
    print("row_gemm", (tokens, n, k, splits, nb, norm, residual, swiglu), "max err", err)
    assert err < 1e-9, "the fused kernel's indexing does not compute the projection"
