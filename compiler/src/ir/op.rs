//! The closed set of IR operations.

use super::types::Shape;
use std::fmt;

/// How a weight is initialised when random weights are asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Normal(0, std).
    Normal { std: f64 },
    /// All ones (norm weights).
    Ones,
}

/// Which half of a layer's KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// Where a weight comes from in an HF checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightBinding {
    /// The safetensors tensor name, e.g. `model.layers.3.self_attn.q_proj.weight`.
    pub hf_name: String,
    /// Other names that are tied to this tensor (`lm_head.weight` with tied embeddings): they
    /// are not stored separately.
    pub tied: Vec<String>,
    pub init: Init,
}

/// One IR operation. The operands are the node's incoming edges, in slot order.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A runtime input (token ids, positions).
    Input,
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
    /// Rotary embedding, rotate-half (NeoX) pairs `(i, i + d/2)`, `inv_freq = theta^(-2i/d)`;
    /// operands (x `[b, s, heads, d]`, positions `[b, s]`).
    Rope { theta: f64 },
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
    /// Same data, new shape.
    Reshape { shape: Shape },
    /// A graph output.
    Output,
}

impl Op {
    /// The op's name as written in specs and in the IR text.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "input",
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
            Op::Reshape { .. } => "reshape",
            Op::Output => "output",
        }
    }

    /// Number of operands.
    pub fn arity(&self) -> usize {
        match self {
            Op::Input | Op::Weight(_) => 0,
            Op::Silu | Op::Reshape { .. } | Op::Output | Op::KvAppend { .. } => 1,
            Op::Embed | Op::Linear | Op::MatMul | Op::RmsNorm { .. } | Op::Rope { .. } => 2,
            Op::Mul | Op::Add => 2,
            Op::Attention { .. } => 4,
        }
    }

    /// Ops with no operands: their type is declared, not inferred.
    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Input | Op::Weight(_))
    }

    /// Ops that map each element independently.
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Silu | Op::Mul | Op::Add)
    }
}
