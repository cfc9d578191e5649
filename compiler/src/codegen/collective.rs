//! A tensor-parallel rank's own steps: the collectives the shard pass put after partial sums
//! and split outputs (`all_reduce`, `all_gather`: steps the runtime hands to NCCL, not kernels)
//! and the embedding over the rank's vocabulary rows (`embed_shard`: the embedding kernel with
//! the rank's index as an argument).

use super::kernels::{Embed, PLACEHOLDER};
use super::options::LOGITS_ROWS;
use super::schedule::{launch, PArg, Pending, Phase, Val};
use super::{err, last, row_width, Codegen};
use crate::error::CompileError;
use crate::ir::{NodeId, Op};
use pio_artifact::{CollectiveOp, Dim, KernelFamily};

impl Codegen<'_> {
    /// `all_reduce` or `all_gather` of operand `v[0]`, whose token rows must be contiguous.
    pub(super) fn collective(
        &mut self,
        ph: &mut Phase,
        id: NodeId,
        v: &[Val],
    ) -> Result<Val, CompileError> {
        let g = self.g;
        let node = g.node(id);
        let src = g.operands(id)[0];
        let row = row_width(g, src);
        if v[0].stride != row {
            return Err(err(format!(
                "'{}': {} of rows {} elements apart holding {row}: a collective needs them contiguous",
                node.name,
                node.op.name(),
                v[0].stride
            )));
        }
        let out = self.out_val(ph, id);
        // The logits' gather after their marked GEMM: the rows that GEMM computes.
        let logits = matches!(node.op, Op::AllGather { .. })
            && ph.steps.iter().any(
                |s| matches!(s, Pending::Gemm { logits: true, c, .. } if c.place == v[0].place && c.offset == v[0].offset),
            );
        let (op, scratch) = match node.op {
            Op::AllReduce { .. } => (CollectiveOp::AllReduce, None),
            Op::AllGather { ranks } => {
                // NCCL lays the ranks' parts one after another; rows of one token need no
                // interleaving.
                let rows = match logits {
                    true => ph.tokens.min(LOGITS_ROWS),
                    false => ph.tokens,
                };
                let scratch = (ph.tokens > 1).then(|| {
                    ph.buffer(
                        (ranks * rows * row * 2) as u64,
                        format!("{}.gathered", node.name),
                    )
                });
                (CollectiveOp::AllGather, scratch)
            }
            _ => {
                return Err(err(format!(
                    "'{}': {} is not a collective",
                    node.name,
                    node.op.name()
                )))
            }
        };
        ph.push(Pending::Collective {
            node: node.name.clone(),
            op,
            input: v[0],
            output: out,
            row: row as u32,
            rows: Dim::PerToken(1),
            scratch,
            logits,
        });
        Ok(out)
    }

    /// Embedding rows of this rank's part of the table (operands: table, ids); ids of other
    /// ranks' rows give zeros, so that the ranks' results sum to the embedding.
    pub(super) fn embed_shard(&mut self, ph: &mut Phase, id: NodeId, v: &[Val]) -> Val {
        let g = self.g;
        let out = self.out_val(ph, id);
        let dim = last(g, id);
        let table = g.operands(id)[0];
        let k = self.kernel(
            KernelFamily::Embed,
            &Embed {
                name: PLACEHOLDER,
                doc: "embedding lookup over this rank's vocabulary rows".into(),
                dim,
                vec8: dim % 8 == 0,
                shard_rows: g.node(table).ty.shape.fixed_product() / dim.max(1),
            },
        );
        ph.push(launch(
            k,
            &g.node(id).name,
            [Dim::PerToken(1), Dim::Fixed(1), Dim::Fixed(1)],
            128,
            vec![PArg::Ptr(v[1]), PArg::Ptr(v[0]), PArg::Ptr(out), PArg::Rank],
        ));
        out
    }
}
