//! The artifact's small typed vocabulary: element types, weight initialisers, KV-cache halves,
//! memory regions, kernel families and the two phases of a step.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    BF16,
    F16,
    I32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::BF16 | DType::F16 => 2,
        }
    }

    pub fn is_float(self) -> bool {
        !matches!(self, DType::I32)
    }

    /// The spelling used in specs and in `artifact.json`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::I32 => "i32",
        }
    }

    /// Parses the spelling used in specs.
    pub fn parse(s: &str) -> Option<DType> {
        Some(match s {
            "f32" => DType::F32,
            "bf16" => DType::BF16,
            "f16" => DType::F16,
            "i32" => DType::I32,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a weight is initialised when random weights are asked for.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Init {
    /// Normal(0, std).
    Normal { std: f64 },
    /// All ones (norm weights).
    Ones,
}

/// Which half of a layer's KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    K,
    V,
}

impl fmt::Display for CacheKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheKind::K => "k",
            CacheKind::V => "v",
        })
    }
}

/// One of the four device allocations every buffer argument points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Weights,
    Kv,
    Io,
    Arena,
    /// The paged KV block pool (the batching engine's cache), sized at load: block-major, every
    /// layer's keys and values of a block together ([`crate::Paged`]). Offsets are within a
    /// block.
    Pool,
}

impl Region {
    /// Its index in a table of the four regions (weights, kv, io, arena).
    pub fn index(self) -> usize {
        match self {
            Region::Weights => 0,
            Region::Kv => 1,
            Region::Io => 2,
            Region::Arena => 3,
            Region::Pool => 4,
        }
    }
}

/// What a kernel is, and the template it was generated from (`templates/kernels/FAMILY.cu`;
/// `AttentionPaged` is `attention_paged_decode.cu`, or `attention.cu` rendered over the paged
/// pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelFamily {
    Embed,
    RmsNorm,
    Elementwise,
    /// Per-head norm / rope / KV-cache write.
    HeadOp,
    /// Several independent head ops in one launch.
    HeadOps,
    /// The decode projections (fused norm, residual, SwiGLU).
    Gemv,
    /// A decode batch's projections on tensor cores, fused the same way (the batching engine's
    /// decode list, `CodegenOptions::fused_row_gemm`).
    RowGemm,
    /// Causal attention, scalar (prefill, any head size).
    Attention,
    /// Causal attention on tensor cores (prefill).
    AttentionMma,
    /// Decode attention, a thread-block cluster per kv head.
    AttentionCluster,
    /// Attention over the paged KV pool (the batching engine's batch steps): a block per kv
    /// head, context split and token (`attention_paged_decode.cu`), or the scalar `attention.cu`
    /// with paged row addresses for head sizes that kernel does not take; its own family so
    /// that profiles tell it apart.
    AttentionPaged,
}

impl KernelFamily {
    /// The template's name (and the prefix of its kernels' names).
    pub fn name(self) -> &'static str {
        match self {
            KernelFamily::Embed => "embed",
            KernelFamily::RmsNorm => "rmsnorm",
            KernelFamily::Elementwise => "elementwise",
            KernelFamily::HeadOp => "head_op",
            KernelFamily::HeadOps => "head_ops",
            KernelFamily::Gemv => "gemv",
            KernelFamily::RowGemm => "row_gemm",
            KernelFamily::Attention => "attention",
            KernelFamily::AttentionMma => "attention_mma",
            KernelFamily::AttentionCluster => "attention_cluster",
            KernelFamily::AttentionPaged => "attention_paged",
        }
    }
}

impl fmt::Display for KernelFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which launch list a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// One token: `Artifact::decode` (captured as a CUDA graph).
    Decode,
    /// Up to `max_prefill` tokens: `Artifact::prefill`.
    Prefill,
    /// A batching-engine step over the paged KV pool: `Artifact::paged`.
    Paged,
    /// A batching-engine step of prefill chunks (one or more sequences'):
    /// `Artifact::paged.chunk_steps`.
    PagedChunk,
    /// A batching-engine step of one sequence's decode token: `Artifact::paged.single_steps`.
    PagedSingle,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Decode => "decode",
            Phase::Prefill => "prefill",
            Phase::Paged => "paged",
            Phase::PagedChunk => "paged_chunk",
            Phase::PagedSingle => "paged_single",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
