//! Launch lists: kernel launches and cuBLAS GEMMs with every argument resolved to a region and
//! byte offset, and grids that scale with the step's token count.

use crate::types::Region;
use serde::{Deserialize, Serialize};

/// A grid or GEMM dimension: fixed, proportional to the step's token count, its number of
/// tiles of so many tokens, or the splits of each token's work (fewer for more tokens). A
/// launch with a dimension of 0 is skipped (see [`Dim::SplitTokens`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Fixed(u32),
    PerToken(u32),
    TokenTiles(u32),
    /// ceil(target / tokens), at least 1 and at most `max`: a token's work split over enough
    /// blocks that the step has about `target` of them (per other grid index).
    Split {
        target: u32,
        max: u32,
    },
    /// The step's token count where `Split { target, max }` gives it more than one split, else
    /// 0: the grid of a kernel that combines the splits, skipped where there is nothing to
    /// combine.
    SplitTokens {
        target: u32,
        max: u32,
    },
}

impl Dim {
    /// The value for a step of `tokens` tokens.
    pub fn eval(self, tokens: u32) -> u32 {
        match self {
            Dim::Fixed(n) => n,
            Dim::PerToken(n) => n * tokens,
            Dim::TokenTiles(n) => tokens.div_ceil(n.max(1)),
            Dim::Split { target, max } => target.div_ceil(tokens.max(1)).clamp(1, max.max(1)),
            Dim::SplitTokens { target, max } => {
                if (Dim::Split { target, max }).eval(tokens) > 1 {
                    tokens
                } else {
                    0
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dim;

    #[test]
    fn split_tokens_are_zero_where_a_step_does_not_split() {
        let (target, max) = (512, 16);
        for tokens in [1u32, 7, 64, 255, 256, 511, 512, 513, 2048] {
            let splits = Dim::Split { target, max }.eval(tokens);
            let rows = Dim::SplitTokens { target, max }.eval(tokens);
            assert_eq!(rows, if splits > 1 { tokens } else { 0 }, "{tokens} tokens");
        }
        assert_eq!(Dim::SplitTokens { target, max }.eval(100), 100);
        assert_eq!(Dim::SplitTokens { target, max }.eval(512), 0);
    }
}

/// A kernel argument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arg {
    /// A device pointer: region base + byte offset.
    Ptr {
        region: Region,
        offset: u64,
    },
    /// The step's token count as an i32 (prefill; 1 in decode).
    Tokens,
    I32(i32),
    /// This rank's index as an i32 (a tensor-parallel artifact's rank-dependent kernels).
    Rank,
}

/// One step of a launch list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Kernel(Launch),
    /// Row-major `C[m, n] = A[m, k] · B[n, k]ᵀ + beta · C` (B is an HF `[out, in]` weight) in
    /// bf16 with f32 accumulation, through cuBLAS.
    Gemm(Gemm),
    /// A collective over the tensor-parallel ranks (every rank runs the same list).
    Collective(Collective),
}

impl Step {
    /// The IR node the step computes (for messages and profiles).
    pub fn node(&self) -> &str {
        match self {
            Step::Kernel(l) => &l.node,
            Step::Gemm(g) => &g.node,
            Step::Collective(c) => &c.node,
        }
    }
}

/// What a [`Collective`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectiveOp {
    /// The ranks' inputs summed (bf16, as NCCL sums them), every rank getting the sum.
    AllReduce,
    /// The ranks' inputs side by side along the row, in rank order.
    AllGather,
}

/// A collective over the ranks' copies of a bf16 buffer of `rows` rows of `row` elements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Collective {
    pub node: String,
    pub op: CollectiveOp,
    /// This rank's part: `[rows, row]`.
    pub input: Arg,
    /// The result: `[rows, row]` for all_reduce (it may be `input`: in place); `[rows, row *
    /// ranks]` for all_gather, rank r's part at columns `r * row..(r + 1) * row`.
    pub output: Arg,
    /// Elements per row of the input.
    pub row: u32,
    /// The step's rows (its tokens, or 1 where only the last row is computed).
    pub rows: Dim,
    /// all_gather with more than one row: room for `ranks` blocks of `[rows, row]` (the
    /// ranks' parts one after another, as NCCL gathers them) before they are interleaved
    /// into `output`.
    pub scratch: Option<Arg>,
    /// It gathers the logits a marked GEMM ([`Gemm::logits`]) wrote: as that GEMM, it takes
    /// the step's last row only (at row 0) unless the caller asks for every row.
    #[serde(default)]
    pub logits: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The `extern "C"` name of one of the artifact's kernels.
    pub kernel: String,
    /// The IR node this launch computes (for messages and profiles).
    pub node: String,
    pub grid: [Dim; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    pub node: String,
    pub m: Dim,
    pub n: u32,
    pub k: u32,
    pub a: Arg,
    pub lda: u32,
    pub b: Arg,
    pub c: Arg,
    pub ldc: u32,
    pub beta: f32,
    /// This GEMM writes the step's logits (at row 0 of the io region's logits): the executor
    /// computes the last of the step's rows only (from A's last row), unless the caller asks
    /// for every row's logits.
    pub logits: bool,
}
