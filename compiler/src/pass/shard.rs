//! The shard pass: the whole model's graph becomes one rank's part of a tensor-parallel model
//! over `ranks` ranks (Megatron-style). Every rank runs the same graph on its own slices of the
//! weights; the spec's `shard:` data says which weights split and how:
//! - column-parallel projections (Q, K, V, gate, up: `shard: rows`) leave each rank whole heads
//!   or features; KV heads are replicated when there are fewer than ranks;
//! - row-parallel projections (O, down: `shard: cols`) then give partial sums, followed by an
//!   `all_reduce`;
//! - the embedding split over the vocabulary becomes `embed_shard` (rows outside the rank's are
//!   zero) and an `all_reduce`; the LM head split over the vocabulary gives each rank a slice of
//!   the logits, joined by an `all_gather` before the output.
//!
//! The pass runs on the lowered graph, before the KV-cache pass and fusion: no fused op can then
//! reach across a collective. Each value's layout over the ranks (whole on every rank, split
//! along an axis, or a partial sum) follows from its operands'; an op whose operands' layouts do
//! not fit (a norm over a split axis, heads that would land on another rank's KV head) is an
//! error that names the node. The graph's types become the per-rank ones.

use super::Pass;
use crate::error::CompileError;
use crate::ir::infer::infer;
use crate::ir::{Dim, Graph, Node, NodeId, Op, Shape, TensorType};
use pio_artifact::shard::{axis_range, partitions};
use std::collections::HashMap;
use std::ops::Range;

/// The pass, for the pipeline (`--tp N`).
pub struct TensorParallel {
    pub ranks: usize,
}

impl Pass for TensorParallel {
    fn name(&self) -> &'static str {
        "shard"
    }

    fn run(&self, g: &mut Graph) -> Result<bool, CompileError> {
        shard(g, self.ranks)
    }
}

/// Where a value lives over the ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Every rank holds all of it.
    Whole,
    /// Axis `axis` is cut into `groups` groups spread over the ranks (see
    /// [`pio_artifact::shard::group_range`]).
    Split { axis: usize, groups: usize },
    /// Every rank holds a partial sum; the value is their sum.
    Partial,
}

/// Makes `g` one rank's part of a model over `ranks` ranks; returns whether it changed (a
/// single rank changes nothing).
pub fn shard(g: &mut Graph, ranks: usize) -> Result<bool, CompileError> {
    if ranks <= 1 {
        return Ok(false);
    }
    if g.is_sharded() {
        return Err(CompileError::Options(format!(
            "the graph is already sharded over {} ranks",
            g.ranks
        )));
    }
    let declared = g
        .ids()
        .any(|id| matches!(&g.node(id).op, Op::Weight(b) if b.shard.is_some()));
    if !declared {
        return Err(CompileError::Options(format!(
            "tensor parallel over {ranks} ranks: no weight of '{}' says how it splits (`shard:` in the spec; an artifact compiled before pio knew `shard:` must be compiled again)",
            g.name
        )));
    }
    let order = g
        .topo_order()
        .map_err(|c| CompileError::Options(format!("cycle through {}", c.join(", "))))?;
    let mut s = Sharder {
        ranks,
        global: order
            .iter()
            .map(|&id| (id, g.node(id).ty.clone()))
            .collect(),
        layout: HashMap::new(),
    };
    for id in order {
        s.visit(g, id)?;
    }
    g.ranks = ranks;
    Ok(true)
}

struct Sharder {
    ranks: usize,
    /// Each original node's type in the whole model.
    global: HashMap<NodeId, TensorType>,
    layout: HashMap<NodeId, Layout>,
}

impl Sharder {
    fn err(&self, g: &Graph, id: NodeId, message: String) -> CompileError {
        CompileError::Shard {
            ranks: self.ranks,
            node: g.node(id).name.clone(),
            message,
        }
    }

    /// The extent of `axis` of a node's global type, if fixed.
    fn extent(&self, id: NodeId, axis: usize) -> Option<usize> {
        match self.global[&id].shape.0.get(axis) {
            Some(Dim::Fixed(n)) => Some(*n),
            _ => None,
        }
    }

    /// Rank `rank`'s range of a split value's axis.
    fn range(
        &self,
        g: &Graph,
        id: NodeId,
        axis: usize,
        groups: usize,
        rank: usize,
    ) -> Result<Range<usize>, CompileError> {
        let extent = self.extent(id, axis).ok_or_else(|| {
            self.err(
                g,
                id,
                format!(
                    "axis {axis} of {} must be fixed to split",
                    self.global[&id].shape
                ),
            )
        })?;
        axis_range(extent, groups, self.ranks, rank).map_err(|e| {
            self.err(
                g,
                id,
                format!("axis {axis} of {}: {e}", self.global[&id].shape),
            )
        })
    }

    /// Whether two split values hold the same ranges on every rank.
    fn same_ranges(
        &self,
        g: &Graph,
        (a, a_axis, a_groups): (NodeId, usize, usize),
        (b, b_axis, b_groups): (NodeId, usize, usize),
    ) -> Result<bool, CompileError> {
        for r in 0..self.ranks {
            if self.range(g, a, a_axis, a_groups, r)? != self.range(g, b, b_axis, b_groups, r)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn visit(&mut self, g: &mut Graph, id: NodeId) -> Result<(), CompileError> {
        let args = g.operands(id);
        let lay: Vec<Layout> = args.iter().map(|a| self.layout[a]).collect();
        let last = |a: NodeId| self.global[&a].shape.rank().saturating_sub(1);
        let op = g.node(id).op.clone();
        let describe = |l: &[Layout]| format!("operand layouts {l:?}");
        let layout = match &op {
            Op::Input(_) => Layout::Whole,
            Op::Weight(b) => match b.shard {
                None => Layout::Whole,
                Some(shard) => {
                    let axis = shard.axis.index();
                    let local = self.range(g, id, axis, shard.groups, 0)?.len();
                    g.node_mut(id).ty.shape.0[axis] = Dim::Fixed(local);
                    Layout::Split {
                        axis,
                        groups: shard.groups,
                    }
                }
            },
            Op::Embed => match lay[..] {
                [Layout::Whole, Layout::Whole] => Layout::Whole,
                [Layout::Split { axis: 0, groups }, Layout::Whole]
                    if partitions(groups, self.ranks) =>
                {
                    g.node_mut(id).op = Op::EmbedShard { ranks: self.ranks };
                    Layout::Partial
                }
                _ => {
                    return Err(self.err(
                        g,
                        id,
                        format!(
                            "embed needs its table whole or split by vocabulary rows over every rank, {}",
                            describe(&lay)
                        ),
                    ))
                }
            },
            Op::Linear => match lay[..] {
                [Layout::Whole, Layout::Whole] => Layout::Whole,
                // Column-parallel: each rank makes its own output features.
                [Layout::Whole, Layout::Split { axis: 0, groups }] => Layout::Split {
                    axis: last(args[0]),
                    groups,
                },
                // Row-parallel: each rank's input features times its columns, a partial sum.
                [Layout::Split { axis, groups }, Layout::Split { axis: 1, groups: wg }]
                    if axis == last(args[0])
                        && partitions(groups, self.ranks)
                        && self.same_ranges(g, (args[0], axis, groups), (args[1], 1, wg))? =>
                {
                    Layout::Partial
                }
                _ => {
                    return Err(self.err(
                        g,
                        id,
                        format!(
                            "linear needs a whole input with a weight split by rows, or an input split over its features like the weight's columns (each feature on one rank), {}",
                            describe(&lay)
                        ),
                    ))
                }
            },
            Op::BiasAdd => match lay[..] {
                [Layout::Whole, Layout::Whole] => Layout::Whole,
                [Layout::Split { axis, groups }, Layout::Split { axis: 0, groups: bg }]
                    if axis == last(args[0])
                        && self.same_ranges(g, (args[0], axis, groups), (args[1], 0, bg))? =>
                {
                    lay[0]
                }
                _ => {
                    return Err(self.err(
                        g,
                        id,
                        format!(
                            "bias_add needs input and bias both whole or split alike, {}",
                            describe(&lay)
                        ),
                    ))
                }
            },
            Op::Silu | Op::Mul | Op::Add => {
                if lay.iter().all(|l| *l == lay[0]) {
                    lay[0]
                } else {
                    return Err(self.err(
                        g,
                        id,
                        format!(
                            "{} needs its operands laid out alike, {}",
                            op.name(),
                            describe(&lay)
                        ),
                    ));
                }
            }
            Op::RmsNorm { .. } => match lay[..] {
                [x, Layout::Whole]
                    if !matches!(x, Layout::Split { axis, .. } if axis == last(args[0])) =>
                {
                    x
                }
                _ => {
                    return Err(self.err(
                        g,
                        id,
                        format!(
                            "rmsnorm normalizes over the last axis, which must be whole on every rank (and so must its weight), {}",
                            describe(&lay)
                        ),
                    ))
                }
            },
            Op::Rope { .. } | Op::KvAppend { .. } => match lay[..] {
                [x, ..]
                    if lay[1..].iter().all(|l| *l == Layout::Whole)
                        && !matches!(x, Layout::Split { axis, .. } if axis == last(args[0])) =>
                {
                    x
                }
                _ => {
                    return Err(self.err(
                        g,
                        id,
                        format!(
                            "{} works per head: heads may split, head_dim may not, {}",
                            op.name(),
                            describe(&lay)
                        ),
                    ))
                }
            },
            Op::Attention { .. } => self.attention(g, id, &args, &lay)?,
            Op::Reshape { shape } => self.reshape(g, id, args[0], lay[0], shape)?,
            Op::MatMul => {
                if lay.iter().all(|l| *l == Layout::Whole) {
                    Layout::Whole
                } else {
                    return Err(self.err(
                        g,
                        id,
                        format!("matmul runs on whole operands only, {}", describe(&lay)),
                    ));
                }
            }
            Op::Output(_) => match lay[..] {
                [Layout::Whole] => Layout::Whole,
                // Each rank's slice of the logits, joined in rank order.
                [Layout::Split { axis, groups }]
                    if axis == last(args[0]) && partitions(groups, self.ranks) =>
                {
                    let x = args[0];
                    let gather = g.add(
                        Node {
                            name: format!("{}.all_gather", g.node(x).name),
                            op: Op::AllGather { ranks: self.ranks },
                            ty: self.global[&x].clone(),
                        },
                        &[x],
                    );
                    g.set_operands(id, &[gather]);
                    self.layout.insert(gather, Layout::Whole);
                    Layout::Whole
                }
                _ => {
                    return Err(self.err(
                        g,
                        id,
                        format!(
                            "an output must be whole or split over its last axis with each feature on one rank, {}",
                            describe(&lay)
                        ),
                    ))
                }
            },
            _ => {
                return Err(self.err(
                    g,
                    id,
                    format!(
                        "the shard pass runs on the lowered graph, before the KV-cache pass and fusion; found '{}'",
                        op.name()
                    ),
                ))
            }
        };
        self.retype(g, id)?;
        self.layout.insert(id, layout);
        if layout == Layout::Partial {
            // Every user needs the sum: one all-reduce, right after the partial sums.
            let ty = g.node(id).ty.clone();
            let reduce = g.add(
                Node {
                    name: format!("{}.all_reduce", g.node(id).name),
                    op: Op::AllReduce { ranks: self.ranks },
                    ty,
                },
                &[id],
            );
            g.replace_uses(id, reduce);
            self.layout.insert(reduce, Layout::Whole);
        }
        Ok(())
    }

    /// Re-infers a node's type from its operands' per-rank types.
    fn retype(&self, g: &mut Graph, id: NodeId) -> Result<(), CompileError> {
        let node = g.node(id);
        if node.op.is_leaf() {
            return Ok(());
        }
        let args = g.operands(id);
        let types: Vec<&TensorType> = args.iter().map(|&a| &g.node(a).ty).collect();
        let ty = infer(&node.op, &types)
            .map_err(|e| self.err(g, id, format!("the per-rank types do not fit: {e}")))?
            .expect("non-leaf ops infer a type");
        g.node_mut(id).ty = ty;
        Ok(())
    }

    /// Attention over split heads: every rank's query heads must read KV heads that the rank
    /// holds, and the local grouping (query head i reads KV head i / (heads / kv_heads)) must
    /// pick the same KV head as the global one.
    fn attention(
        &self,
        g: &Graph,
        id: NodeId,
        args: &[NodeId],
        lay: &[Layout],
    ) -> Result<Layout, CompileError> {
        const HEADS: usize = 2;
        match lay[..] {
            [Layout::Whole, Layout::Whole, Layout::Whole, Layout::Whole] => Ok(Layout::Whole),
            [Layout::Split {
                axis: HEADS,
                groups: qg,
            }, Layout::Split {
                axis: HEADS,
                groups: kg,
            }, v, Layout::Whole]
                if v == lay[1] =>
            {
                let (q_heads, kv_heads) = (self.extent(args[0], HEADS), self.extent(args[1], HEADS));
                let (Some(q_heads), Some(kv_heads)) = (q_heads, kv_heads) else {
                    return Err(self.err(g, id, "head counts must be fixed".into()));
                };
                let per_kv = q_heads / kv_heads.max(1);
                for r in 0..self.ranks {
                    let q = self.range(g, args[0], HEADS, qg, r)?;
                    let kv = self.range(g, args[1], HEADS, kg, r)?;
                    let local_per_kv = q.len() / kv.len().max(1);
                    for (i, h) in q.clone().enumerate() {
                        let global = h / per_kv.max(1);
                        if kv.len() * local_per_kv != q.len()
                            || global != kv.start + i / local_per_kv.max(1)
                        {
                            return Err(self.err(
                                g,
                                id,
                                format!(
                                    "rank {r} holds query heads {q:?} and KV heads {kv:?}: query head {h} reads KV head {global}, which the rank's grouping does not give it ({q_heads} query and {kv_heads} KV heads over {} ranks)",
                                    self.ranks
                                ),
                            ));
                        }
                    }
                }
                Ok(lay[0])
            }
            _ => Err(self.err(
                g,
                id,
                format!(
                    "attention needs q, k and v all whole, or split by heads with k and v alike, operand layouts {lay:?}"
                ),
            )),
        }
    }

    /// A reshape keeps a split when the leading dims up to the split axis are the same on both
    /// sides and the groups cut the new axis evenly (`[b, s, heads*d]` <-> `[b, s, heads, d]`
    /// split over heads); the shape attribute becomes the per-rank one.
    fn reshape(
        &self,
        g: &mut Graph,
        id: NodeId,
        x: NodeId,
        lay: Layout,
        shape: &Shape,
    ) -> Result<Layout, CompileError> {
        let Layout::Split { axis, groups } = lay else {
            return match lay {
                Layout::Whole => Ok(Layout::Whole),
                _ => Err(self.err(g, id, format!("reshape of a value laid out {lay:?}"))),
            };
        };
        let from = &self.global[&x].shape;
        let fits = shape.0.len() > axis
            && shape.0[..axis] == from.0[..axis]
            && shape.0[axis..].iter().all(|d| matches!(d, Dim::Fixed(_)))
            && from.0[axis..].iter().all(|d| matches!(d, Dim::Fixed(_)))
            && Shape(shape.0[axis..].to_vec()).fixed_product()
                == Shape(from.0[axis..].to_vec()).fixed_product()
            && matches!(shape.0[axis], Dim::Fixed(n) if n % groups == 0);
        if !fits {
            return Err(self.err(
                g,
                id,
                format!(
                    "reshape from {from} to {shape} must keep the dims before axis {axis} (split in {groups} groups) and cut that axis evenly"
                ),
            ));
        }
        let Dim::Fixed(extent) = shape.0[axis] else {
            unreachable!("checked fixed")
        };
        let local = axis_range(extent, groups, self.ranks, 0)
            .map_err(|e| self.err(g, id, e.to_string()))?
            .len();
        let mut local_shape = shape.clone();
        local_shape.0[axis] = Dim::Fixed(local);
        g.node_mut(id).op = Op::Reshape { shape: local_shape };
        Ok(Layout::Split { axis, groups })
    }
}
