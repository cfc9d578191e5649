//! Decomposition: every fused op rewritten back into the primitive ops it stands for. Used as
//! the oracle of fusion (fused and decomposed graphs must compute the same logits).

use crate::ir::infer::infer;
use crate::ir::{Graph, Node, NodeId, Op};

/// Replaces every fused op in `g` by its primitive form; returns how many were replaced.
pub fn decompose(g: &mut Graph) -> usize {
    let fused: Vec<NodeId> = g.ids().filter(|&id| g.node(id).op.is_fused()).collect();
    for &id in &fused {
        let node = g.node(id).clone();
        let a = g.operands(id);
        let mut b = Builder {
            g,
            base: &node.name,
        };
        let out = match node.op {
            Op::NormLinear { eps } => {
                let n = b.add("norm", Op::RmsNorm { eps }, &[a[0], a[1]]);
                b.add("linear", Op::Linear, &[n, a[2]])
            }
            Op::LinearAdd => {
                let l = b.add("linear", Op::Linear, &[a[0], a[1]]);
                b.add("add", Op::Add, &[a[2], l])
            }
            Op::SiluMul => {
                let s = b.add("silu", Op::Silu, &[a[0]]);
                b.add("mul", Op::Mul, &[s, a[1]])
            }
            Op::NormLinearSwiGlu { eps } => {
                let n = b.add("norm", Op::RmsNorm { eps }, &[a[0], a[1]]);
                let y = b.add("gate_up", Op::Linear, &[n, a[2]]);
                let half = node.ty.shape.fixed_product_last();
                let gate = b.add(
                    "gate",
                    Op::Slice {
                        start: 0,
                        len: half,
                    },
                    &[y],
                );
                let up = b.add(
                    "up",
                    Op::Slice {
                        start: half,
                        len: half,
                    },
                    &[y],
                );
                let s = b.add("silu", Op::Silu, &[gate]);
                b.add("mul", Op::Mul, &[s, up])
            }
            Op::NormRope { eps, rope } => {
                let n = b.add("norm", Op::RmsNorm { eps }, &[a[0], a[1]]);
                b.add("rope", Op::Rope { rope }, &[n, a[2]])
            }
            Op::NormRopeKvWrite {
                eps,
                rope,
                layer,
                cache,
            } => {
                let n = b.add("norm", Op::RmsNorm { eps }, &[a[0], a[1]]);
                let r = b.add("rope", Op::Rope { rope }, &[n, a[2]]);
                b.add("kv_write", Op::KvWrite { layer, cache }, &[r, a[2]])
            }
            Op::RopeKvWrite { rope, layer, cache } => {
                let r = b.add("rope", Op::Rope { rope }, &[a[0], a[1]]);
                b.add("kv_write", Op::KvWrite { layer, cache }, &[r, a[1]])
            }
            Op::LinearBias => {
                let l = b.add("linear", Op::Linear, &[a[0], a[1]]);
                b.add("bias", Op::BiasAdd, &[l, a[2]])
            }
            Op::NormLinearBias { eps } => {
                let n = b.add("norm", Op::RmsNorm { eps }, &[a[0], a[1]]);
                let l = b.add("linear", Op::Linear, &[n, a[2]]);
                b.add("bias", Op::BiasAdd, &[l, a[3]])
            }
            _ => unreachable!("filtered to fused ops"),
        };
        g.replace_uses(id, out);
        g.remove(id);
        g.node_mut(out).name = node.name.clone();
    }
    fused.len()
}

struct Builder<'a> {
    g: &'a mut Graph,
    base: &'a str,
}

impl Builder<'_> {
    fn add(&mut self, part: &str, op: Op, args: &[NodeId]) -> NodeId {
        let types: Vec<_> = args.iter().map(|&x| &self.g.node(x).ty).collect();
        let ty = infer(&op, &types)
            .expect("a fused op's parts type-check")
            .expect("parts are not leaves");
        self.g.add(
            Node {
                name: format!("{}.{part}", self.base),
                op,
                ty,
            },
            args,
        )
    }
}
