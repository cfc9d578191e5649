// pio common device helpers: bf16 <-> f32 by bit operations (no cuda_bf16.h needed, so NVRTC
// needs no include path), warp reductions, 16-byte unpacking.
typedef unsigned short bf16;
typedef unsigned int u32;

__device__ __forceinline__ float bf2f(bf16 x) { return __uint_as_float(((u32)x) << 16); }

// Round to nearest even; NaN stays NaN.
__device__ __forceinline__ bf16 f2bf(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

// The value after a round trip through bf16 (where HF's bf16 model rounds).
__device__ __forceinline__ float rbf(float f) { return bf2f(f2bf(f)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// 8 bf16 values packed in 16 bytes.
__device__ __forceinline__ void unpack8(uint4 v, float* f) {
    f[0] = __uint_as_float(v.x << 16); f[1] = __uint_as_float(v.x & 0xffff0000u);
    f[2] = __uint_as_float(v.y << 16); f[3] = __uint_as_float(v.y & 0xffff0000u);
    f[4] = __uint_as_float(v.z << 16); f[5] = __uint_as_float(v.z & 0xffff0000u);
    f[6] = __uint_as_float(v.w << 16); f[7] = __uint_as_float(v.w & 0xffff0000u);
}

#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
    return (u32)f2bf(lo) | ((u32)f2bf(hi) << 16);
}

// N (2, 4 or 8) consecutive bf16 values at an address aligned to 2N bytes, in one load or store.
template <int N> __device__ __forceinline__ void load_bf16s(const bf16* p, float* f) {
    if (N == 8) {
        unpack8(*reinterpret_cast<const uint4*>(p), f);
    } else if (N == 4) {
        const uint2 v = *reinterpret_cast<const uint2*>(p);
        f[0] = __uint_as_float(v.x << 16); f[1] = __uint_as_float(v.x & 0xffff0000u);
        f[2] = __uint_as_float(v.y << 16); f[3] = __uint_as_float(v.y & 0xffff0000u);
    } else {
        const u32 v = *reinterpret_cast<const u32*>(p);
        f[0] = __uint_as_float(v << 16); f[1] = __uint_as_float(v & 0xffff0000u);
    }
}

template <int N> __device__ __forceinline__ void store_bf16s(bf16* p, const float* f) {
    if (N == 8) {
        *reinterpret_cast<uint4*>(p) = make_uint4(pack_bf16(f[0], f[1]), pack_bf16(f[2], f[3]),
                                                  pack_bf16(f[4], f[5]), pack_bf16(f[6], f[7]));
    } else if (N == 4) {
        *reinterpret_cast<uint2*>(p) = make_uint2(pack_bf16(f[0], f[1]), pack_bf16(f[2], f[3]));
    } else {
        *reinterpret_cast<u32*>(p) = pack_bf16(f[0], f[1]);
    }
}

__device__ __forceinline__ u32 ld_u32(const bf16* p) { return *reinterpret_cast<const u32*>(p); }

// c += a (16x16, row-major) * b (16x8, column-major), bf16 in, f32 accumulation (sm_80+; only
// kernels that call it need it). Fragments (g = lane / 4, t = lane % 4): a[0] holds row g,
// k = 2t + {0, 1}; a[1] row g + 8; a[2] row g, k + 8; a[3] row g + 8, k + 8; b0 holds k = 2t +
// {0, 1} of column g, b1 k + 8; c[0..1] row g, columns 2t + {0, 1}; c[2..3] row g + 8.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 { %0,%1,%2,%3}, { %4,%5,%6,%7}, "
        "{ %8,%9}, { %0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }

// Programmatic dependent launch (sm_90+): a kernel launched with the programmatic-serialization
// attribute may start while the previous kernel finishes. pdl_wait() blocks until the previous
// kernel has completed and its writes are visible: every kernel calls it before touching
// anything an earlier kernel writes or reads (only weights may be read before it).
// pdl_launch_dependents() lets the next kernel start launching once every block of this one
// has called it. Both are no-ops without the attribute.
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Starts pulling `bytes` (a multiple of 16) at the 16-byte aligned p into L2: one instruction,
// no registers held (sm_90 bulk prefetch).
__device__ __forceinline__ void prefetch_l2(const void* p, unsigned bytes) {
#if __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Thread-block clusters (sm_90+; before that, a cluster is one block): a barrier over every
// thread of the cluster (memory before it is visible to the cluster after it), and a read of
// the float at p, an address in this block's shared memory, from the same place in the shared
// memory of the cluster's block `rank`.
__device__ __forceinline__ void cluster_sync() {
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
    __syncthreads();  // no clusters: a cluster of one block
#endif
}

__device__ __forceinline__ float ld_cluster(const float* p, unsigned rank) {
#if __CUDA_ARCH__ >= 900
    unsigned local = (unsigned)__cvta_generic_to_shared(p), remote;
    float v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote));
    return v;
#else
    return *p;
#endif
}

// sin and cos of an f32 angle, accurate to about 1 ulp for |x| < 1e5 whatever the fast-math
// setting (which turns sincosf into a hardware approximation that loses accuracy for large
// angles): Cody-Waite reduction by pi/2 in three FMA steps, then minimax polynomials on
// [-pi/4, pi/4]. (compiler/src/codegen/rope.rs holds the same arithmetic, tested on the host.)
__device__ __forceinline__ void sincos_accurate(float x, float* s, float* c) {
    const float k = rintf(x * 0.636619772f);
    float r = fmaf(-k, 1.57079637e+00f, x);
    r = fmaf(-k, -4.37113883e-08f, r);
    r = fmaf(-k, -1.71512451e-15f, r);
    const float z = r * r;
    const float sr = fmaf(r * z, fmaf(z, fmaf(z, -1.95152959e-04f, 8.33216087e-03f), -1.66666546e-01f), r);
    const float cr = fmaf(z * z, fmaf(z, fmaf(z, 2.44331571e-05f, -1.38873163e-03f), 4.16666456e-02f), fmaf(-0.5f, z, 1.0f));
    const int q = ((int)k) & 3;
    *s = q == 0 ? sr : q == 1 ? cr : q == 2 ? -sr : -cr;
    *c = q == 0 ? cr : q == 1 ? -sr : q == 2 ? -cr : sr;
}
