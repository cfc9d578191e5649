//! One phase's lowering: the graph in schedule order, each op handed to the function for its
//! kind; then the per-head launches merge and the arena is planned.

use super::options::LOGITS_ROWS;
use super::schedule::{Phase, Place, Val};
use super::trace::PhaseTrace;
use super::{err, feeds_logits_gather, feeds_output, last, row_width, Codegen};
use crate::error::CompileError;
use crate::ir::{InputRole, NodeId, Op};
use crate::memory;
use pio_artifact::{Region, Step};

/// Which paged launch list a phase is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PagedStep {
    /// Any sequences, any tokens each (the decode batches).
    Batch,
    /// One sequence's chunk (its attention on tensor cores where the head dim allows).
    Chunk,
    /// One sequence's decode token: the batch-1 decode list's GEMV kernels, its attention and
    /// cache writes through the block table.
    Single,
}

impl Codegen<'_> {
    /// Lowers the graph for steps of `tokens` tokens and plans its arena.
    pub(super) fn phase(
        &mut self,
        order: &[NodeId],
        tokens: usize,
        paged: Option<PagedStep>,
    ) -> Result<(Vec<Step>, memory::Plan, PhaseTrace), CompileError> {
        let mut ph = Phase::new(self.g, order, tokens);
        ph.paged = paged;
        for &id in order {
            ph.lowering(id);
            let val = self.lower(&mut ph, id)?;
            ph.set(id, val);
        }
        self.merge_head_ops(&mut ph);
        ph.finish()
    }

    /// Where a node's value lives, after pushing the steps that compute it.
    fn lower(&mut self, ph: &mut Phase, id: NodeId) -> Result<Val, CompileError> {
        let g = self.g;
        let node = g.node(id);
        let v = ph.operands(g, id);
        Ok(match &node.op {
            Op::Input(role) => Val {
                place: Place::Region(Region::Io),
                offset: match role {
                    InputRole::TokenIds => self.io.tokens,
                    InputRole::Positions => self.io.positions,
                },
                stride: 1,
            },
            Op::Weight(_) => Val {
                place: Place::Region(Region::Weights),
                offset: self.weights[&id],
                stride: last(g, id),
            },
            // Views: the same bytes (a slice starts `start` bf16 elements into each row).
            Op::Reshape { .. } => v[0],
            Op::Slice { start, .. } => Val {
                offset: v[0].offset + *start as u64 * 2,
                ..v[0]
            },
            Op::Output(_) => {
                if v[0].place != Place::Region(Region::Io) {
                    return Err(err(format!(
                        "output '{}' is not in the io region",
                        node.name
                    )));
                }
                v[0]
            }
            Op::Embed => self.embed(ph, id, &v),
            Op::Linear
            | Op::NormLinear { .. }
            | Op::LinearBias
            | Op::NormLinearBias { .. }
            | Op::LinearAdd
            | Op::NormLinearSwiGlu { .. } => self.projection(ph, id)?,
            // Rank 4 ([batch, seq, head, dim]) is a per-head norm (Q/K norm).
            Op::RmsNorm { eps } if node.ty.shape.rank() != 4 => self.rmsnorm(ph, id, *eps, &v),
            Op::RmsNorm { .. }
            | Op::Rope { .. }
            | Op::NormRope { .. }
            | Op::KvWrite { .. }
            | Op::NormRopeKvWrite { .. }
            | Op::RopeKvWrite { .. } => self.per_head(ph, id, &v)?,
            Op::Attention { scale } => self.attention(ph, id, *scale, &v)?,
            Op::Silu | Op::Mul | Op::Add | Op::BiasAdd | Op::SiluMul => {
                self.elementwise_op(ph, id, &v)
            }
            Op::AllReduce { .. } | Op::AllGather { .. } => self.collective(ph, id, &v)?,
            Op::EmbedShard { .. } => self.embed_shard(ph, id, &v),
            Op::MatMul | Op::KvAppend { .. } => {
                return Err(err(format!(
                    "'{}': {} has no kernel yet",
                    node.name,
                    node.op.name()
                )))
            }
        })
    }

    /// A new value's own storage: the io region's logits when an output reads it, else a new
    /// arena buffer of one bf16 row per token.
    pub(super) fn out_val(&self, ph: &mut Phase, id: NodeId) -> Val {
        let g = self.g;
        let width = row_width(g, id);
        if feeds_output(g, id) {
            Val {
                place: Place::Region(Region::Io),
                offset: self.io.logits,
                stride: width,
            }
        } else {
            // A rank's logits part holds the rows the logits do (the last row, or at most
            // LOGITS_ROWS when every row is asked for).
            let rows = match feeds_logits_gather(g, id) {
                true => ph.tokens.min(LOGITS_ROWS),
                false => ph.tokens,
            };
            let b = ph.buffer(rows as u64 * width as u64 * 2, g.node(id).name.clone());
            Val { stride: width, ..b }
        }
    }
}
