{% include "common/pio.cuh" %}
// {{ doc }}
// Decode attention over the paged KV pool (the batching engine's decode batches): a block per
// (kv head and part of its group, split, token) computes HG query heads of its kv head at once,
// so each key and value row is read once for them. Token t belongs to sequence seq_index[t], whose
// block table (MAX_BLOCKS entries) names the pool block of each BS positions; a block holds
// every layer's rows (BLOCK_ELEMS bf16), this layer's at kc / vc as [KV_HEADS, BS, D].
// The context 0..=positions[t] is cut into gridDim.y splits (the launch picks fewer, longer
// splits for bigger batches) of at least MIN_SPAN keys; splits past the context exit at once.
// Inside a split, keys go in chunks of CHUNK whose scores stay in shared memory.
// Loads: LPK lanes share a key row, each lane E 16-byte pieces of it (lane sub reads dims
// 8 * (sub + LPK * e) ..); a warp takes KPI keys per load, U loads per lane in flight.
// Arithmetic (HF's bf16 eager attention within a chunk): s = bf16(bf16(q.k) * SCALE),
// p = bf16(exp(s - max) / sum) in f32, P.V accumulated in f32. Chunks and splits are combined
// by their share of the softmax sum (as the batch-1 decode attention combines its spans); the
// last split of a (token, kv head) to finish (the count in the KV region, back to 0 after)
// combines the splits' f32 partials.
#define HEADS {{ heads }}
#define KV_HEADS {{ kv_heads }}
#define GROUP (HEADS / KV_HEADS)
// A block takes HG of its kv head's GROUP query heads (the PARTS blocks of a kv head read
// the same rows at about the same time, so L2 serves all but the first): fewer registers per
// thread where a group is large. Block x = kv head * PARTS + part.
#define HG {{ heads_per_block }}
#define PARTS (GROUP / HG)
#define UNITS (KV_HEADS * PARTS)
#define D {{ d }}
#define SCALE {{ scale }}
#define Q_STRIDE {{ q_stride }}
#define BS {{ block_size }}
#define BLOCK_ELEMS {{ block_elems }}
#define MAX_BLOCKS {{ max_blocks }}
#define CHUNK {{ chunk }}
#define MIN_SPAN {{ min_span }}
#define WARPS {{ warps }}
#define THREADS (WARPS * 32)
#define E {{ pieces }}
#define LPK (D / (8 * E))
#define KPI (32 / LPK)
#define U {{ unroll }}
#define KEYS_PER_WARP (KPI * U)
#define SHARED_FLOATS (HG * CHUNK > WARPS * HG * D ? HG * CHUNK : WARPS * HG * D)

// The row of position `key` of kv head `kvh` in a sequence's blocks.
__device__ __forceinline__ const bf16* row(const bf16* __restrict__ base,
                                           const int* __restrict__ table, int kvh, int key) {
    return base + (size_t)table[key / BS] * BLOCK_ELEMS + ((size_t)kvh * BS + key % BS) * D;
}

// The block's max or sum of one value per head, each already reduced over its warp.
__device__ __forceinline__ void block_reduce(float (&v)[HG], bool is_max,
                                             float (*red)[HG]) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) {
#pragma unroll
        for (int g = 0; g < HG; ++g) red[warp][g] = v[g];
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < HG; ++g) {
        float r = red[0][g];
#pragma unroll
        for (int w = 1; w < WARPS; ++w) r = is_max ? fmaxf(r, red[w][g]) : r + red[w][g];
        v[g] = r;
    }
}

extern "C" __global__ void __launch_bounds__(THREADS{% if min_blocks > 0 %}, {{ min_blocks }}{% endif %}) {{ name }}(
    const bf16* __restrict__ q, const bf16* __restrict__ kc, const bf16* __restrict__ vc,
    const int* __restrict__ positions, const int* __restrict__ seq_index,
    const int* __restrict__ block_tables, float* __restrict__ part_out,
    float* __restrict__ part_state, unsigned* __restrict__ counts, bf16* __restrict__ out)
{
    pdl_wait();
    pdl_launch_dependents();
    const int unit = blockIdx.x, kvh = unit / PARTS, part = unit % PARTS;
    const int split = blockIdx.y, t = blockIdx.z;
    const int splits = gridDim.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int sub = lane % LPK, kl = lane / LPK;
    const int len = positions[t] + 1;
    const int span = max((len + splits - 1) / splits, MIN_SPAN);
    const int active = (len + span - 1) / span;
    const int k_begin = split * span;
    if (k_begin >= len) return;
    const int k_end = min(len, k_begin + span);
    // One chunk: exactly HF's arithmetic; more: each chunk weighed by its share of the sum.
    const bool one_chunk = k_end - k_begin <= CHUNK;

    __shared__ __align__(16) float sh[SHARED_FLOATS];
    __shared__ float red[WARPS][HG];
    // This split's P.V so far (rescaled to the running max), each chunk's added at its end.
    __shared__ float total[HG][D];
    __shared__ bool last;
    float (*sc)[CHUNK] = reinterpret_cast<float (*)[CHUNK]>(sh);
    const int* table = block_tables + (size_t)seq_index[t] * MAX_BLOCKS;

    // The running max and sum of the chunks so far (several chunks only).
    float run_m[HG], run_l[HG];
#pragma unroll
    for (int g = 0; g < HG; ++g) {
        run_m[g] = NEG_INF;
        run_l[g] = 0.0f;
    }
    float chunk_m[HG], chunk_l[HG];

    for (int c0 = k_begin; c0 < k_end; c0 += CHUNK) {
        const int c1 = min(k_end, c0 + CHUNK);
        // The queries live in registers during the scores only and the P.V accumulators during
        // the values only (read again per chunk), so that the two never hold registers at once:
        // half the registers, twice the blocks per SM.
        float qv[HG][E * 8];
#pragma unroll
        for (int g = 0; g < HG; ++g) {
            const bf16* qrow = q + (size_t)t * Q_STRIDE + (size_t)(kvh * GROUP + part * HG + g) * D;
#pragma unroll
            for (int e = 0; e < E; ++e) {
                unpack8(*reinterpret_cast<const uint4*>(qrow + 8 * (sub + LPK * e)), &qv[g][8 * e]);
            }
        }
        // Scores of the chunk and their max.
#pragma unroll
        for (int g = 0; g < HG; ++g) chunk_m[g] = NEG_INF;
        for (int base = c0 + warp * KEYS_PER_WARP; base < c1; base += WARPS * KEYS_PER_WARP) {
            uint4 kr[U][E];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const bf16* kp = row(kc, table, kvh, min(base + u * KPI + kl, c1 - 1));
#pragma unroll
                for (int e = 0; e < E; ++e)
                    kr[u][e] = __ldg(reinterpret_cast<const uint4*>(kp + 8 * (sub + LPK * e)));
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                float kf[E * 8];
#pragma unroll
                for (int e = 0; e < E; ++e) unpack8(kr[u][e], &kf[8 * e]);
                const int key = base + u * KPI + kl;
#pragma unroll
                for (int g = 0; g < HG; ++g) {
                    float s = 0.0f;
#pragma unroll
                    for (int i = 0; i < E * 8; ++i) s = fmaf(qv[g][i], kf[i], s);
#pragma unroll
                    for (int o = LPK / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                    s = rbf(rbf(s) * SCALE);
                    if (key < c1) {
                        if (sub == 0) sc[g][key - c0] = s;
                        chunk_m[g] = fmaxf(chunk_m[g], s);
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < HG; ++g) chunk_m[g] = warp_max(chunk_m[g]);
        block_reduce(chunk_m, true, red);
        // exp(s - max) in place, and its sum.
#pragma unroll
        for (int g = 0; g < HG; ++g) {
            float l = 0.0f;
            for (int k = threadIdx.x; k < c1 - c0; k += THREADS) {
                const float x = __expf(sc[g][k] - chunk_m[g]);
                sc[g][k] = x;
                l += x;
            }
            chunk_l[g] = warp_sum(l);
        }
        block_reduce(chunk_l, false, red);
        // p = bf16(exp / sum), weighed by the chunk's share relative to the running max.
        float w[HG], rescale[HG];
#pragma unroll
        for (int g = 0; g < HG; ++g) {
            if (one_chunk) {
                w[g] = 1.0f;
                rescale[g] = 0.0f;
            } else {
                const float m = fmaxf(run_m[g], chunk_m[g]);
                rescale[g] = __expf(run_m[g] - m);
                w[g] = chunk_l[g] * __expf(chunk_m[g] - m);
                run_l[g] = run_l[g] * rescale[g] + w[g];
                run_m[g] = m;
            }
            for (int k = threadIdx.x; k < c1 - c0; k += THREADS)
                sc[g][k] = rbf(__fdiv_rn(sc[g][k], chunk_l[g])) * w[g];
        }
        __syncthreads();
        // P.V over the chunk's value rows.
        float acc[HG][E * 8];
#pragma unroll
        for (int g = 0; g < HG; ++g) {
#pragma unroll
            for (int i = 0; i < E * 8; ++i) acc[g][i] = 0.0f;
        }
        for (int base = c0 + warp * KEYS_PER_WARP; base < c1; base += WARPS * KEYS_PER_WARP) {
            uint4 vr[U][E];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const bf16* vp = row(vc, table, kvh, min(base + u * KPI + kl, c1 - 1));
#pragma unroll
                for (int e = 0; e < E; ++e)
                    vr[u][e] = __ldg(reinterpret_cast<const uint4*>(vp + 8 * (sub + LPK * e)));
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int key = base + u * KPI + kl;
                if (key < c1) {
                    float vf[E * 8];
#pragma unroll
                    for (int e = 0; e < E; ++e) unpack8(vr[u][e], &vf[8 * e]);
#pragma unroll
                    for (int g = 0; g < HG; ++g) {
                        const float p = sc[g][key - c0];
#pragma unroll
                        for (int i = 0; i < E * 8; ++i) acc[g][i] = fmaf(p, vf[i], acc[g][i]);
                    }
                }
            }
        }
        // The lanes of one dim piece (KPI keys apart), then the warps, through shared memory
        // (the scores' room: every warp is done with them), into the split's total.
#pragma unroll
        for (int g = 0; g < HG; ++g) {
#pragma unroll
            for (int i = 0; i < E * 8; ++i) {
#pragma unroll
                for (int o = LPK; o < 32; o <<= 1) acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], o);
            }
        }
        __syncthreads();
        float (*sacc)[HG][D] = reinterpret_cast<float (*)[HG][D]>(sh);
        if (kl == 0) {
#pragma unroll
            for (int g = 0; g < HG; ++g) {
#pragma unroll
                for (int e = 0; e < E; ++e) {
#pragma unroll
                    for (int i = 0; i < 8; ++i) sacc[warp][g][8 * (sub + LPK * e) + i] = acc[g][8 * e + i];
                }
            }
        }
        __syncthreads();
#pragma unroll
        for (int g = 0; g < HG; ++g) {
            for (int d = threadIdx.x; d < D; d += THREADS) {
                float o = 0.0f;
#pragma unroll
                for (int wi = 0; wi < WARPS; ++wi) o += sacc[wi][g][d];
                total[g][d] = c0 == k_begin ? o : total[g][d] * rescale[g] + o;
            }
        }
        __syncthreads();
    }
    if (one_chunk) {
#pragma unroll
        for (int g = 0; g < HG; ++g) {
            run_m[g] = chunk_m[g];
            run_l[g] = chunk_l[g];
        }
    }
    // This split's output (normalized when it had several chunks).
    const size_t slot = ((size_t)t * UNITS + unit) * splits;
    for (int i = threadIdx.x; i < HG * D; i += THREADS) {
        const int g = i / D, d = i % D;
        float o = total[g][d];
        if (!one_chunk) o /= run_l[g];
        if (active == 1) {
            out[((size_t)t * HEADS + kvh * GROUP + part * HG + g) * D + d] = f2bf(o);
        } else {
            part_out[((slot + split) * HG + g) * D + d] = o;
        }
    }
    if (active == 1) return;
    if (threadIdx.x < HG) {
        part_state[((slot + split) * HG + threadIdx.x) * 2] = run_m[threadIdx.x];
        part_state[((slot + split) * HG + threadIdx.x) * 2 + 1] = run_l[threadIdx.x];
    }
    // The last split to finish combines them all.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned* count = counts + (size_t)t * UNITS + unit;
        last = atomicAdd(count, 1u) == (unsigned)(active - 1);
        if (last) *count = 0u;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int i = threadIdx.x; i < HG * D; i += THREADS) {
        const int g = i / D, d = i % D;
        float m = NEG_INF;
        for (int s = 0; s < active; ++s) m = fmaxf(m, __ldcg(part_state + ((slot + s) * HG + g) * 2));
        float num = 0.0f, den = 0.0f;
        for (int s = 0; s < active; ++s) {
            const float* st = part_state + ((slot + s) * HG + g) * 2;
            const float wgt = __ldcg(st + 1) * __expf(__ldcg(st) - m);
            num = fmaf(wgt, __ldcg(part_out + ((slot + s) * HG + g) * D + d), num);
            den += wgt;
        }
        out[((size_t)t * HEADS + kvh * GROUP + part * HG + g) * D + d] = f2bf(num / den);
    }
}
