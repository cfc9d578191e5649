//! Merging sibling projections: several `linear`s that read the same input with their own
//! weights (Q, K and V; gate and up) become one `linear` over the weights concatenated at load
//! time, followed by `slice` views. One GEMM reads the input once and launches once. Where
//! every sibling's product is followed by its own bias (Qwen2's Q, K and V), the biases are
//! concatenated too and added once, before the slices.

use crate::ir::{ConcatPart, Dim, Graph, Node, NodeId, Op, Shape, TensorType, WeightBinding};

/// Merges one group of siblings, if any; returns whether the graph changed.
pub fn merge_one(g: &mut Graph) -> bool {
    let ids: Vec<NodeId> = g.ids().collect();
    for x in ids {
        let group: Vec<NodeId> = g
            .users(x)
            .into_iter()
            .filter(|&u| mergeable(g, x, u))
            .collect();
        if group.len() < 2 {
            continue;
        }
        let first_w = g.operands(group[0])[1];
        let (in_features, dtype) = {
            let w = &g.node(first_w).ty;
            (w.shape.0[1].clone(), w.dtype)
        };
        let group: Vec<NodeId> = group
            .into_iter()
            .filter(|&u| {
                let w = &g.node(g.operands(u)[1]).ty;
                w.shape.0[1] == in_features && w.dtype == dtype
            })
            .collect();
        if group.len() < 2 {
            continue;
        }
        merge(g, x, &group);
        return true;
    }
    false
}

/// `u` is `linear(x, w)` with `w` a plain weight used only by `u`.
fn mergeable(g: &Graph, x: NodeId, u: NodeId) -> bool {
    if !matches!(g.node(u).op, Op::Linear) {
        return false;
    }
    let args = g.operands(u);
    if args[0] != x {
        return false;
    }
    // In a sharded graph each part is the rank's rows of its tensor (recorded per part); a
    // weight split by columns (a row-parallel projection) is never a sibling's.
    matches!(&g.node(args[1]).op, Op::Weight(b) if b.concat.is_empty() && b.tied.is_empty()
            && rows_or_whole(g, b))
        && g.users(args[1]).len() == 1
        && matches!(g.node(args[1]).ty.shape.0[0], Dim::Fixed(_))
}

fn merge(g: &mut Graph, x: NodeId, group: &[NodeId]) {
    let weights: Vec<NodeId> = group.iter().map(|&u| g.operands(u)[1]).collect();
    let rows: Vec<usize> = weights
        .iter()
        .map(|&w| match g.node(w).ty.shape.0[0] {
            Dim::Fixed(r) => r,
            Dim::Sym(_) => unreachable!("checked in mergeable"),
        })
        .collect();
    let total: usize = rows.iter().sum();
    let merged_w = concatenated(g, &weights, &rows);
    let out_names: Vec<String> = group.iter().map(|&u| g.node(u).name.clone()).collect();
    let mut out_ty = g.node(group[0]).ty.clone();
    *out_ty
        .shape
        .0
        .last_mut()
        .expect("linear output has rank >= 1") = Dim::Fixed(total);
    let merged = g.add(
        Node {
            name: joined(&out_names),
            op: Op::Linear,
            ty: out_ty,
        },
        &[x, merged_w],
    );
    let biases: Option<Vec<(NodeId, NodeId)>> = group.iter().map(|&u| own_bias(g, u)).collect();
    let mut start = 0;
    for (&u, &r) in group.iter().zip(&rows) {
        g.node_mut(u).op = Op::Slice { start, len: r };
        g.set_operands(u, &[merged]);
        start += r;
    }
    for w in weights {
        g.remove(w);
    }
    if let Some(biases) = biases {
        merge_biases(g, merged, group, &rows, &biases);
    }
}

/// `u`'s only user when it is `bias_add(u, b)` with `b` a plain weight used by it alone: the
/// (bias_add, b) pair.
fn own_bias(g: &Graph, u: NodeId) -> Option<(NodeId, NodeId)> {
    let users = g.users(u);
    let [add] = users.as_slice() else {
        return None;
    };
    if !matches!(g.node(*add).op, Op::BiasAdd) {
        return None;
    }
    let b = g.operands(*add)[1];
    let plain = matches!(&g.node(b).op, Op::Weight(w) if w.concat.is_empty() && w.tied.is_empty()
        && rows_or_whole(g, w));
    (plain && g.users(b).len() == 1 && g.node(b).ty.dtype == g.node(u).ty.dtype)
        .then_some((*add, b))
}

/// The siblings' biases concatenated into one, added to the merged product; each sibling's
/// `bias_add` becomes its slice of that sum and its plain slice goes.
fn merge_biases(
    g: &mut Graph,
    merged: NodeId,
    group: &[NodeId],
    rows: &[usize],
    biases: &[(NodeId, NodeId)],
) {
    let parts: Vec<NodeId> = biases.iter().map(|&(_, b)| b).collect();
    let bias = concatenated(g, &parts, rows);
    let sum_names: Vec<String> = biases
        .iter()
        .map(|&(a, _)| g.node(a).name.clone())
        .collect();
    let sum = g.add(
        Node {
            name: joined(&sum_names),
            op: Op::BiasAdd,
            ty: g.node(merged).ty.clone(),
        },
        &[merged, bias],
    );
    let mut start = 0;
    for ((&u, &r), &(add, b)) in group.iter().zip(rows).zip(biases) {
        g.node_mut(add).op = Op::Slice { start, len: r };
        g.set_operands(add, &[sum]);
        g.remove(u);
        g.remove(b);
        start += r;
    }
}

/// Whether weight `b` of `g` is whole on every rank, or split by its rows (its first axis, the
/// one a merge concatenates).
fn rows_or_whole(g: &Graph, b: &WeightBinding) -> bool {
    match b.shard.filter(|_| g.is_sharded()) {
        None => true,
        Some(s) => s.axis.index() == 0,
    }
}

/// A weight that is the plain weights `parts` (of `rows` rows each) concatenated along their first
/// axis at load time; the parts stay in the graph (the caller removes them).
fn concatenated(g: &mut Graph, parts: &[NodeId], rows: &[usize]) -> NodeId {
    let first = g.node(parts[0]).clone();
    let Op::Weight(first_w) = &first.op else {
        unreachable!("siblings are plain weights")
    };
    let sharded = g.is_sharded();
    let bound: Vec<ConcatPart> = parts
        .iter()
        .zip(rows)
        .map(|(&w, &r)| match &g.node(w).op {
            Op::Weight(b) => ConcatPart {
                hf_name: b.hf_name.clone(),
                rows: r,
                shard: b.shard.filter(|_| sharded),
            },
            _ => unreachable!("siblings are plain weights"),
        })
        .collect();
    let names: Vec<String> = parts.iter().map(|&w| g.node(w).name.clone()).collect();
    let mut shape = first.ty.shape.0.clone();
    shape[0] = Dim::Fixed(rows.iter().sum());
    g.add(
        Node {
            name: joined(&names),
            op: Op::Weight(WeightBinding {
                hf_name: format!(
                    "concat({})",
                    bound
                        .iter()
                        .map(|p| p.hf_name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                concat: bound,
                tied: Vec::new(),
                init: first_w.init,
                shard: None,
            }),
            ty: TensorType::new(first.ty.dtype, Shape(shape)),
        },
        &[],
    )
}

/// `layers.0.q`, `layers.0.k`, `layers.0.v` -> `layers.0.q_k_v` (the longest prefix all share,
/// up to a `.`, written once).
fn joined(names: &[String]) -> String {
    let mut prefix = names[0].rfind('.').map(|i| &names[0][..=i]).unwrap_or("");
    while !names.iter().all(|n| n.starts_with(prefix)) {
        prefix = prefix[..prefix.len() - 1]
            .rfind('.')
            .map(|i| &prefix[..=i])
            .unwrap_or("");
    }
    let tails: Vec<&str> = names
        .iter()
        .map(|n| n.strip_prefix(prefix).unwrap_or(n))
        .collect();
    format!("{prefix}{}", tails.join("_"))
}
