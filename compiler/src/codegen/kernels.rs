//! Kernel sources from askama templates (`templates/kernels/*.cu`): one template per kernel
//! family, each with a typed context. Static shapes are baked in as constants; floats are
//! rendered exactly (9 significant digits, an f32 round trip). A kernel is named by its family
//! and a hash of its source, so identical kernels (the same layer shape in every layer) are
//! emitted and compiled once.

use askama::Template;
use pio_artifact::KernelFamily;
use std::fmt;

/// An f32 written as a CUDA literal that reads back to the same value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CudaF32(pub f32);

impl fmt::Display for CudaF32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.8e}f", self.0)
    }
}

/// The placeholder every template uses as its kernel name before hashing.
const NAME: &str = "__PIO_KERNEL__";

#[derive(Template)]
#[template(path = "kernels/gemv.cu", escape = "none")]
pub struct Gemv {
    pub name: &'static str,
    pub doc: String,
    pub k: usize,
    pub n: usize,
    pub warps: usize,
    pub eps: CudaF32,
    pub norm: bool,
    pub residual: bool,
    /// A bias added before the rounding (read through the residual pointer).
    pub bias: bool,
    pub swiglu: bool,
    /// K is a multiple of 8: 16-byte weight loads.
    pub vec8: bool,
    /// 16-byte loads per lane issued before their FMAs.
    pub unroll: usize,
    /// Output rows per warp iteration.
    pub rows: usize,
    /// Load the first weight batch before the RMSNorm prologue (short rows only: it costs
    /// registers).
    pub prefetch: bool,
    /// Every warp has at most one row group (no loop over rows).
    pub single_pass: bool,
    /// Bytes at the start of each of a warp's first rows to prefetch into L2 before waiting for
    /// the previous kernel (a multiple of 16; 0: none).
    pub l2_prefetch: usize,
}

/// `row_gemm.cu`: a decode batch's projection on tensor cores, with the GEMV's fusions.
#[derive(Template)]
#[template(path = "kernels/row_gemm.cu", escape = "none")]
pub struct RowGemm {
    pub name: &'static str,
    pub doc: String,
    pub k: usize,
    /// Output columns (SwiGLU: the gate rows; the weight has twice as many).
    pub n: usize,
    /// Elements between rows of x, of the residual and of the output.
    pub x_stride: usize,
    pub residual_stride: usize,
    pub out_stride: usize,
    pub eps: CudaF32,
    /// Blocks of a cluster that split k (1, 2, 4 or 8).
    pub splits: usize,
    pub norm: bool,
    pub residual: bool,
    /// A bias row (read through the residual pointer) added before the one rounding.
    pub bias: bool,
    pub swiglu: bool,
}

#[derive(Template, Clone)]
#[template(path = "kernels/head_op.cu", escape = "none")]
pub struct HeadOp {
    pub name: &'static str,
    /// Render as a `__device__` function (inside a merged `head_ops` kernel).
    pub device_fn: bool,
    pub doc: String,
    pub heads: usize,
    pub d: usize,
    pub warps: usize,
    pub eps: CudaF32,
    /// RoPE inverse frequencies (empty without rope).
    pub inv_freq: Vec<CudaF32>,
    /// What cos and sin are multiplied by before their rounding (YaRN), where it is not 1.
    pub attention_factor: Option<CudaF32>,
    pub in_stride: usize,
    pub norm: bool,
    pub rope: bool,
    pub to_cache: bool,
    /// Positions the KV cache holds ([HEADS, ctx, D]; with `to_cache`).
    pub ctx: usize,
    /// Paged cache writes (`to_cache` into the pool at `slots[t]`): positions per block, 0
    /// for the static cache.
    pub block_size: usize,
    /// bf16 elements of one pool block (every layer's rows).
    pub block_elems: usize,
    /// Consecutive elements per lane in one load (2, 4 or 8, where D = 32 of them), 0 for the
    /// strided path alone.
    pub per_lane: usize,
}

#[derive(Template)]
#[template(path = "kernels/head_ops.cu", escape = "none")]
pub struct HeadOps {
    pub name: &'static str,
    pub doc: String,
    /// The ops rendered as device functions `op0`, `op1`, ...
    pub bodies: String,
    pub n: usize,
}

#[derive(Template)]
#[template(path = "kernels/attention.cu", escape = "none")]
pub struct Attention {
    pub name: &'static str,
    pub doc: String,
    pub heads: usize,
    pub kv_heads: usize,
    pub d: usize,
    pub warps: usize,
    pub scale: CudaF32,
    pub q_stride: usize,
    /// Keys whose scores stay in shared memory (later ones are recomputed).
    pub sc_max: usize,
    /// Positions the KV cache holds ([KV_HEADS, ctx, D]).
    pub ctx: usize,
    /// Paged (a batch of sequences over the pool): positions per block, 0 for the static
    /// cache; bf16 elements of a block; block-table entries per sequence.
    pub block_size: usize,
    pub block_elems: usize,
    pub max_blocks: usize,
}

#[derive(Template)]
#[template(path = "kernels/attention_mma.cu", escape = "none")]
pub struct AttentionMma {
    pub name: &'static str,
    pub doc: String,
    pub heads: usize,
    pub kv_heads: usize,
    /// A multiple of 16, at most 128.
    pub d: usize,
    pub scale: CudaF32,
    pub q_stride: usize,
    /// Positions the KV cache holds ([KV_HEADS, ctx, D]).
    pub ctx: usize,
    /// Tokens per block and keys per shared-memory tile (BQ = BK).
    pub tile: u32,
    /// Paged (a chunk step of one or more sequences over the pool): positions per block, 0 for
    /// the static cache; bf16 elements of a block; block-table entries per sequence.
    pub block_size: usize,
    pub block_elems: usize,
    pub max_blocks: usize,
    /// The tile loads' loop unrolled this many times (0: the compiler's choice, all 8).
    pub load_unroll: usize,
}

/// The prefill attention with its keys split over blocks: one of its three launches. The
/// template reads the whole-keys kernel's shapes through `Deref`.
#[derive(Template)]
#[template(path = "kernels/attention_mma_split.cu", escape = "none")]
pub struct AttentionMmaSplit<'a> {
    pub base: &'a AttentionMma,
    /// "stats", "pv" or "reduce" (two passes), or "online" and "online_reduce" (one pass).
    pub phase: &'static str,
    /// The launch's splits: ceil(split_target / tokens), within 1..=split_max.
    pub split_target: u32,
    pub split_max: u32,
    /// Blocks per SM the P.V and one-pass kernels' registers must allow (`__launch_bounds__`;
    /// 0: the compiler's choice; the stats kernel already allows 4).
    pub min_blocks: usize,
    /// The tile loads' unrolling (shadows the base's): 1 for the one-pass kernel.
    pub load_unroll: usize,
}

impl std::ops::Deref for AttentionMmaSplit<'_> {
    type Target = AttentionMma;
    fn deref(&self) -> &AttentionMma {
        self.base
    }
}

/// Decode attention over the paged KV pool: a block per kv head, context split and token.
#[derive(Template)]
#[template(path = "kernels/attention_paged_decode.cu", escape = "none")]
pub struct AttentionPagedDecode {
    pub name: &'static str,
    pub doc: String,
    pub heads: usize,
    pub kv_heads: usize,
    pub d: usize,
    pub scale: CudaF32,
    /// Elements between tokens' queries.
    pub q_stride: usize,
    /// Positions per pool block, bf16 elements per block, block-table entries per sequence.
    pub block_size: usize,
    pub block_elems: usize,
    pub max_blocks: usize,
    /// Keys whose scores a block keeps in shared memory at a time.
    pub chunk: usize,
    /// Keys per context split at least.
    pub min_span: usize,
    pub warps: usize,
    /// 16-byte pieces of a key row per lane, and loads of them per lane in flight.
    pub pieces: usize,
    pub unroll: usize,
    /// Query heads of a kv head per block (a divisor of the group).
    pub heads_per_block: usize,
    /// Blocks per SM the registers must allow (`__launch_bounds__`); 0: the compiler's choice.
    pub min_blocks: usize,
}

#[derive(Template)]
#[template(path = "kernels/attention_cluster.cu", escape = "none")]
pub struct AttentionCluster {
    pub name: &'static str,
    pub doc: String,
    pub heads: usize,
    pub kv_heads: usize,
    pub d: usize,
    pub scale: CudaF32,
    /// Positions the KV cache holds ([KV_HEADS, ctx, D]).
    pub ctx: usize,
    /// Blocks per cluster (one cluster per kv head).
    pub cluster: usize,
    /// Positions per block at most (their scores stay in shared memory).
    pub per_block: usize,
    /// Positions per block of the shortest spans.
    pub per_min: usize,
    /// Spans (clusters) per kv head at most.
    pub spans: usize,
    /// The tensor-core paths (D = 128, at most 8 query heads per kv head).
    pub vec: bool,
    /// Threads per block.
    pub threads: usize,
    /// Key (and value) rows a warp loads per round on the tensor-core paths (a multiple of 16).
    pub rows_per_warp: usize,
    /// Rounds of rows a warp streams into L2 ahead of its loads.
    pub prefetch_rounds: usize,
}

#[derive(Template)]
#[template(path = "kernels/embed.cu", escape = "none")]
pub struct Embed {
    pub name: &'static str,
    pub doc: String,
    pub dim: usize,
    /// dim is a multiple of 8: 16-byte copies.
    pub vec8: bool,
    /// Tensor parallel: the table holds this many vocabulary rows of the rank given as the
    /// last argument (others' ids give zero rows); 0: the whole table.
    pub shard_rows: usize,
}

#[derive(Template)]
#[template(path = "kernels/rmsnorm.cu", escape = "none")]
pub struct RmsNorm {
    pub name: &'static str,
    pub doc: String,
    pub dim: usize,
    pub eps: CudaF32,
    pub in_stride: usize,
    pub threads: usize,
    /// Columns per thread: 8 (16-byte loads) where `dim` and `in_stride` allow, else 1.
    pub vec: usize,
}

#[derive(Template)]
#[template(path = "kernels/elementwise.cu", escape = "none")]
pub struct Elementwise {
    pub name: &'static str,
    pub doc: String,
    pub cols: usize,
    pub a_stride: usize,
    pub b_stride: usize,
    /// A C expression of `x` (operand a) and `y` (operand b).
    pub expr: &'static str,
    /// Columns per thread: 8 (16-byte loads) where `cols` and both strides allow, else 1.
    pub vec: usize,
}

/// A rendered kernel: its final name and source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSource {
    pub family: KernelFamily,
    pub name: String,
    pub source: String,
}

/// Renders a template context into a named kernel.
pub fn render(family: KernelFamily, t: &impl Template) -> KernelSource {
    let text = t
        .render()
        .expect("kernel templates render from plain values");
    let hash = pio_artifact::hash_hex(text.as_bytes());
    let name = format!("{family}_{}", &hash[..12]);
    KernelSource {
        family,
        source: text.replace(NAME, &name),
        name,
    }
}

impl KernelSource {
    /// The artifact's entry for this kernel (its source in `kernels/NAME.cu`).
    pub fn into_artifact(self) -> pio_artifact::Kernel {
        pio_artifact::Kernel {
            file: format!("kernels/{}.cu", self.name),
            source_hash: pio_artifact::hash_hex(self.source.as_bytes()),
            name: self.name,
            family: self.family,
            source: self.source,
        }
    }
}

pub const PLACEHOLDER: &str = NAME;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip() {
        for x in [1e-6f32, 1_000_000.0, 0.088388346, 5e6, 1.0] {
            let s = CudaF32(x).to_string();
            let back: f32 = s.trim_end_matches('f').parse().unwrap();
            assert_eq!(back, x, "{s}");
        }
    }

    #[test]
    fn identical_contexts_give_one_kernel_and_names_follow_the_source() {
        let make = |k| Embed {
            name: PLACEHOLDER,
            doc: "embedding".into(),
            dim: k,
            vec8: true,
            shard_rows: 0,
        };
        let (a, b, c) = (
            render(KernelFamily::Embed, &make(64)),
            render(KernelFamily::Embed, &make(64)),
            render(KernelFamily::Embed, &make(128)),
        );
        assert_eq!(a, b);
        assert_ne!(a.name, c.name);
        assert!(a.source.contains(&format!("void {}(", a.name)));
        assert!(a.source.contains("#define DIM 64"));
        assert!(!a.source.contains(PLACEHOLDER));
        assert!(
            !a.source.contains("&lt;") && !a.source.contains("&amp;"),
            "no HTML escaping"
        );
    }
}
