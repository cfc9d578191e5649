//! The fusion rules, as data: a pattern, an extra legality check, and the fused op to build.
//! Order matters: sibling projections are merged first (see `siblings.rs`), then these rules run
//! top to bottom, repeatedly, until none applies.

use super::pattern::{any, op, weight, Match, Pat};
use crate::ir::{Dim, Graph, NodeId, Op, Rope};

/// One rewrite rule.
pub struct Rule {
    pub name: &'static str,
    pub pattern: Pat,
    /// Legality beyond "the matched intermediates are used only inside the match".
    pub check: fn(&Graph, &Match) -> bool,
    /// The fused op and its operands.
    pub build: fn(&Graph, &Match) -> (Op, Vec<NodeId>),
}

fn always(_: &Graph, _: &Match) -> bool {
    true
}

fn eps(g: &Graph, id: NodeId) -> f64 {
    match g.node(id).op {
        Op::RmsNorm { eps } | Op::NormLinear { eps } => eps,
        _ => unreachable!("pattern binds an rmsnorm"),
    }
}

fn rope(g: &Graph, id: NodeId) -> Rope {
    match g.node(id).op {
        Op::Rope { rope } => rope,
        _ => unreachable!("pattern binds a rope"),
    }
}

/// The rules in the order they are tried.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            // The gate/up product (merged into one GEMM) followed by silu(gate) * up.
            name: "norm_linear_swiglu",
            pattern: op(
                "mul",
                "root",
                vec![
                    op(
                        "silu",
                        "act",
                        vec![op(
                            "slice",
                            "gate",
                            vec![op(
                                "norm_linear",
                                "y",
                                vec![any("x"), weight("nw"), any("w")],
                            )],
                        )],
                    ),
                    op("slice", "up", vec![any("y")]),
                ],
            ),
            check: |g, m| {
                let width = match g.node(m.get("y")).ty.shape.last() {
                    Some(Dim::Fixed(n)) => *n,
                    _ => return false,
                };
                matches!(
                    (&g.node(m.get("gate")).op, &g.node(m.get("up")).op),
                    (Op::Slice { start: 0, len: a }, Op::Slice { start: b, len: c })
                        if *a == *b && *b == *c && 2 * *a == width
                )
            },
            build: |g, m| {
                (
                    Op::NormLinearSwiGlu {
                        eps: eps(g, m.get("y")),
                    },
                    vec![m.get("x"), m.get("nw"), m.get("w")],
                )
            },
        },
        Rule {
            // A normed projection with a bias: the bias is the GEMV's epilogue (Qwen2's QKV).
            name: "norm_linear_bias",
            pattern: op(
                "bias_add",
                "root",
                vec![
                    op("norm_linear", "y", vec![any("x"), weight("nw"), any("w")]),
                    any("b"),
                ],
            ),
            check: always,
            build: |g, m| {
                (
                    Op::NormLinearBias {
                        eps: eps(g, m.get("y")),
                    },
                    vec![m.get("x"), m.get("nw"), m.get("w"), m.get("b")],
                )
            },
        },
        Rule {
            // RMSNorm feeding a projection: the norm becomes the GEMV's prologue.
            name: "norm_linear",
            pattern: op(
                "linear",
                "root",
                vec![
                    op("rmsnorm", "norm", vec![any("x"), weight("nw")]),
                    any("w"),
                ],
            ),
            check: |g, m| matches!(g.node(m.get("w")).op, Op::Weight(_)),
            build: |g, m| {
                (
                    Op::NormLinear {
                        eps: eps(g, m.get("norm")),
                    },
                    vec![m.get("x"), m.get("nw"), m.get("w")],
                )
            },
        },
        Rule {
            // A projection with a bias.
            name: "linear_bias",
            pattern: op(
                "bias_add",
                "root",
                vec![op("linear", "lin", vec![any("x"), any("w")]), any("b")],
            ),
            check: |g, m| matches!(g.node(m.get("w")).op, Op::Weight(_)),
            build: |_, m| (Op::LinearBias, vec![m.get("x"), m.get("w"), m.get("b")]),
        },
        Rule {
            name: "silu_mul",
            pattern: op(
                "mul",
                "root",
                vec![op("silu", "act", vec![any("g")]), any("u")],
            ),
            check: always,
            build: |_, m| (Op::SiluMul, vec![m.get("g"), m.get("u")]),
        },
        Rule {
            // A projection followed by the residual add: the add is the GEMV's epilogue.
            name: "linear_add",
            pattern: op(
                "add",
                "root",
                vec![any("r"), op("linear", "lin", vec![any("x"), any("w")])],
            ),
            check: |g, m| matches!(g.node(m.get("w")).op, Op::Weight(_)),
            build: |_, m| (Op::LinearAdd, vec![m.get("x"), m.get("w"), m.get("r")]),
        },
        Rule {
            // Per-head K norm, rotary embedding and the cache write in one kernel.
            name: "norm_rope_kv_write",
            pattern: op(
                "kv_write",
                "root",
                vec![
                    op(
                        "rope",
                        "rope",
                        vec![op("rmsnorm", "norm", vec![any("x"), weight("w")]), any("p")],
                    ),
                    any("p"),
                ],
            ),
            check: always,
            build: |g, m| {
                let Op::KvWrite { layer, cache } = g.node(m.get("root")).op else {
                    unreachable!("pattern root is kv_write")
                };
                (
                    Op::NormRopeKvWrite {
                        eps: eps(g, m.get("norm")),
                        rope: rope(g, m.get("rope")),
                        layer,
                        cache,
                    },
                    vec![m.get("x"), m.get("w"), m.get("p")],
                )
            },
        },
        Rule {
            // Rotary embedding and the cache write in one kernel (models without a K norm).
            name: "rope_kv_write",
            pattern: op(
                "kv_write",
                "root",
                vec![op("rope", "rope", vec![any("x"), any("p")]), any("p")],
            ),
            check: always,
            build: |g, m| {
                let Op::KvWrite { layer, cache } = g.node(m.get("root")).op else {
                    unreachable!("pattern root is kv_write")
                };
                (
                    Op::RopeKvWrite {
                        rope: rope(g, m.get("rope")),
                        layer,
                        cache,
                    },
                    vec![m.get("x"), m.get("p")],
                )
            },
        },
        Rule {
            // Per-head Q norm and rotary embedding.
            name: "norm_rope",
            pattern: op(
                "rope",
                "root",
                vec![op("rmsnorm", "norm", vec![any("x"), weight("w")]), any("p")],
            ),
            check: always,
            build: |g, m| {
                (
                    Op::NormRope {
                        eps: eps(g, m.get("norm")),
                        rope: rope(g, m.get("root")),
                    },
                    vec![m.get("x"), m.get("w"), m.get("p")],
                )
            },
        },
    ]
}
