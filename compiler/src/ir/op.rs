//! The closed set of IR operations.

use super::types::Shape;
use serde::{Deserialize, Serialize};

pub use pio_artifact::{CacheKind, Init, Rope, RopeScaling, Shard, ShardAxis};

/// What a graph input carries (codegen and the executors find the step's inputs by role).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputRole {
    /// The step's token ids, i32 `[batch, seq]`.
    TokenIds,
    /// Each new token's absolute position, i32 `[batch, seq]`.
    Positions,
}

impl InputRole {
    pub const ALL: [InputRole; 2] = [InputRole::TokenIds, InputRole::Positions];

    /// The spelling in specs (`role: token_ids`).
    pub fn name(self) -> &'static str {
        match self {
            InputRole::TokenIds => "token_ids",
            InputRole::Positions => "positions",
        }
    }

    pub fn parse(s: &str) -> Option<InputRole> {
        InputRole::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// What a graph output is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputRole {
    /// Next-token logits `[batch, seq, vocab]`.
    Logits,
}

impl OutputRole {
    pub const ALL: [OutputRole; 1] = [OutputRole::Logits];

    /// The spelling in specs (the key under `outputs:`).
    pub fn name(self) -> &'static str {
        match self {
            OutputRole::Logits => "logits",
        }
    }

    pub fn parse(s: &str) -> Option<OutputRole> {
        OutputRole::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// Where a weight comes from in an HF checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightBinding {
    /// The safetensors tensor name, e.g. `model.layers.3.self_attn.q_proj.weight`; for a
    /// concatenated weight, a readable label of its parts.
    pub hf_name: String,
    /// Set when the weight is several checkpoint tensors concatenated along their first axis
    /// at load time (fused Q/K/V or gate/up projections).
    pub concat: Vec<ConcatPart>,
    /// Other names that are tied to this tensor (`lm_head.weight` with tied embeddings): they
    /// are not stored separately.
    pub tied: Vec<String>,
    pub init: Init,
    /// How the weight splits over tensor-parallel ranks (the spec's `shard:`), in global
    /// terms; `None` replicates it. In a graph the shard pass made, the node's type is one
    /// rank's part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// One checkpoint tensor of a concatenated weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConcatPart {
    pub hf_name: String,
    /// Its rows in the weight (one rank's slice where `shard` splits them).
    pub rows: usize,
    /// Its split over tensor-parallel ranks (in a sharded graph), as the part's own weight had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// One IR operation. The operands are the node's incoming edges, in slot order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A runtime input (token ids, positions).
    Input(InputRole),
    /// A model weight bound to a checkpoint tensor.
    Weight(WeightBinding),
    /// `out[b, s, :] = table[ids[b, s], :]`; operands (table, ids).
    Embed,
    /// `x · Wᵀ` with W stored [out, in] as in HF; operands (x, weight).
    Linear,
    /// `a · b` over the last two axes; operands (a, b).
    MatMul,
    /// RMSNorm over the last axis: `x * rsqrt(mean(x²) + eps) * w`, computed in f32;
    /// operands (x, weight). On a `[.., heads, head_dim]` view it is the per-head norm.
    RmsNorm { eps: f64 },
    /// Rotary embedding, rotate-half (NeoX) pairs `(i, i + d/2)`, `inv_freq = theta^(-2i/d)`
    /// then scaled as `rope.scaling` says (and cos/sin times its attention factor);
    /// operands (x `[b, s, heads, d]`, positions `[b, s]`).
    Rope { rope: Rope },
    /// Appends this step's keys or values (`[b, s, kv_heads, d]`) to the layer's cache and
    /// returns the whole cached sequence `[b, ctx, kv_heads, d]`.
    KvAppend { layer: usize, cache: CacheKind },
    /// Causal grouped-query attention; operands (q `[b, s, h, d]`, k `[b, ctx, kvh, d]`,
    /// v `[b, ctx, kvh, d]`, positions `[b, s]`). A query at position p sees cache entries
    /// 0..=p.
    Attention { scale: f64 },
    /// `x * sigmoid(x)`.
    Silu,
    /// Elementwise product.
    Mul,
    /// Elementwise sum.
    Add,
    /// `x + b` with the bias `b` `[n]` added to every row of `x` `[.., n]`; operands (x, b).
    BiasAdd,
    /// Same data, new shape.
    Reshape { shape: Shape },
    /// A graph output.
    Output(OutputRole),

    // ---- Ops made by passes (never written in specs) ----
    /// Tensor parallel: the sum over `ranks` ranks of each rank's partial value; operand (x).
    AllReduce { ranks: usize },
    /// Tensor parallel: the ranks' parts concatenated along the last axis in rank order;
    /// operand (x `[.., n]`), result `[.., n * ranks]`.
    AllGather { ranks: usize },
    /// Tensor parallel: `embed` over rank r's rows of the table (vocabulary rows
    /// `r * rows..(r + 1) * rows` of `ranks * rows`); ids outside them give zero rows, so the
    /// ranks' results sum to the embedding; operands (table, ids).
    EmbedShard { ranks: usize },
    /// The KV-cache pass's form of `KvAppend`: writes this step's rows in place into the
    /// layer's static cache at `positions` and returns the cache as a view `[b, ctx, kvh, d]`;
    /// operands (x, positions).
    KvWrite { layer: usize, cache: CacheKind },
    /// A view of features `start..start + len` of the last axis; operand (x).
    Slice { start: usize, len: usize },
    /// `rmsnorm(x) * norm_w · Wᵀ`; operands (x, norm_w, W).
    NormLinear { eps: f64 },
    /// `x · Wᵀ + b`; operands (x, W, b).
    LinearBias,
    /// `rmsnorm(x) * norm_w · Wᵀ + b`; operands (x, norm_w, W, b).
    NormLinearBias { eps: f64 },
    /// `x · Wᵀ + residual`; operands (x, W, residual).
    LinearAdd,
    /// `silu(gate) * up`; operands (gate, up).
    SiluMul,
    /// `silu(h · Wgᵀ) * (h · Wuᵀ)` with `h = rmsnorm(x) * norm_w` and `W = [Wg; Wu]` (gate rows
    /// first); operands (x, norm_w, W).
    NormLinearSwiGlu { eps: f64 },
    /// `rope(rmsnorm(x) * w)` per head; operands (x `[b, s, h, d]`, w `[d]`, positions).
    NormRope { eps: f64, rope: Rope },
    /// `KvWrite(rope(rmsnorm(x) * w))`: per-head norm, rotary embedding and cache write in one;
    /// operands (x, w, positions); returns the cache view.
    NormRopeKvWrite {
        eps: f64,
        rope: Rope,
        layer: usize,
        cache: CacheKind,
    },
    /// `KvWrite(rope(x))`: rotary embedding and cache write in one (models without a per-head
    /// norm); operands (x, positions); returns the cache view.
    RopeKvWrite {
        rope: Rope,
        layer: usize,
        cache: CacheKind,
    },
}

impl Op {
    /// The op's name as written in specs and in the IR text.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input(_) => "input",
            Op::Weight(_) => "weight",
            Op::Embed => "embed",
            Op::Linear => "linear",
            Op::MatMul => "matmul",
            Op::RmsNorm { .. } => "rmsnorm",
            Op::Rope { .. } => "rope",
            Op::KvAppend { .. } => "kv_append",
            Op::Attention { .. } => "attention",
            Op::Silu => "silu",
            Op::Mul => "mul",
            Op::Add => "add",
            Op::BiasAdd => "bias_add",
            Op::Reshape { .. } => "reshape",
            Op::Output(_) => "output",
            Op::AllReduce { .. } => "all_reduce",
            Op::AllGather { .. } => "all_gather",
            Op::EmbedShard { .. } => "embed_shard",
            Op::KvWrite { .. } => "kv_write",
            Op::Slice { .. } => "slice",
            Op::NormLinear { .. } => "norm_linear",
            Op::LinearBias => "linear_bias",
            Op::NormLinearBias { .. } => "norm_linear_bias",
            Op::LinearAdd => "linear_add",
            Op::SiluMul => "silu_mul",
            Op::NormLinearSwiGlu { .. } => "norm_linear_swiglu",
            Op::NormRope { .. } => "norm_rope",
            Op::NormRopeKvWrite { .. } => "norm_rope_kv_write",
            Op::RopeKvWrite { .. } => "rope_kv_write",
        }
    }

    /// Number of operands.
    pub fn arity(&self) -> usize {
        match self {
            Op::Input(_) | Op::Weight(_) => 0,
            Op::Silu | Op::Reshape { .. } | Op::Output(_) | Op::KvAppend { .. } => 1,
            Op::Embed | Op::Linear | Op::MatMul | Op::RmsNorm { .. } | Op::Rope { .. } => 2,
            Op::Mul | Op::Add | Op::BiasAdd => 2,
            Op::Attention { .. } => 4,
            Op::Slice { .. } | Op::AllReduce { .. } | Op::AllGather { .. } => 1,
            Op::EmbedShard { .. } => 2,
            Op::KvWrite { .. } | Op::SiluMul | Op::RopeKvWrite { .. } => 2,
            Op::NormLinear { .. } | Op::LinearAdd | Op::NormLinearSwiGlu { .. } => 3,
            Op::LinearBias => 3,
            Op::NormLinearBias { .. } => 4,
            Op::NormRope { .. } | Op::NormRopeKvWrite { .. } => 3,
        }
    }

    /// Ops with no operands: their type is declared, not inferred.
    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Input(_) | Op::Weight(_))
    }

    /// Ops whose result is a view of an operand (or of the KV cache): no storage of their own.
    pub fn is_view(&self) -> bool {
        matches!(self, Op::Reshape { .. } | Op::Slice { .. })
    }

    /// Ops made by fusion (each has a decomposition into primitive ops).
    pub fn is_fused(&self) -> bool {
        matches!(
            self,
            Op::NormLinear { .. }
                | Op::LinearBias
                | Op::NormLinearBias { .. }
                | Op::LinearAdd
                | Op::SiluMul
                | Op::NormLinearSwiGlu { .. }
                | Op::NormRope { .. }
                | Op::NormRopeKvWrite { .. }
                | Op::RopeKvWrite { .. }
        )
    }

    /// Collectives: every rank takes part; no fusion reaches across one.
    pub fn is_collective(&self) -> bool {
        matches!(self, Op::AllReduce { .. } | Op::AllGather { .. })
    }

    /// Ops that write the KV cache.
    pub fn writes_cache(&self) -> Option<(usize, CacheKind)> {
        match self {
            Op::KvWrite { layer, cache }
            | Op::NormRopeKvWrite { layer, cache, .. }
            | Op::RopeKvWrite { layer, cache, .. } => Some((*layer, *cache)),
            _ => None,
        }
    }
}
