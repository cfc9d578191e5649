//! Deterministic text form of the IR: one line per node in topological order, values numbered
//! in that order (`%12`), so that two runs (and golden tests) give identical text.

use super::graph::{Graph, NodeId};
use super::op::{Init, Op};
use std::collections::HashMap;
use std::fmt::Write;

/// Renders the graph as text.
pub fn print(g: &Graph) -> String {
    let order = g
        .topo_order()
        .unwrap_or_else(|_| g.ids().collect::<Vec<_>>());
    let number: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut out = String::new();
    let dims: Vec<String> = g
        .dims
        .iter()
        .map(|d| format!("{}<={}", d.name, d.bound))
        .collect();
    let _ = write!(out, "graph \"{}\" dims {}", g.name, dims.join(" "));
    if g.is_sharded() {
        let _ = write!(out, " ranks {}", g.ranks);
    }
    out.push('\n');
    for &id in &order {
        let n = g.node(id);
        let args: Vec<String> = g
            .operands(id)
            .iter()
            .map(|a| format!("%{}", number.get(a).copied().unwrap_or(usize::MAX)))
            .collect();
        let _ = write!(out, "  %{} {} = {}", number[&id], n.name, n.op.name());
        if !args.is_empty() {
            let _ = write!(out, "({})", args.join(", "));
        }
        let _ = write!(out, "{}", attrs(&n.op));
        let _ = writeln!(out, " : {}", n.ty);
    }
    out
}

/// The op's attributes as ` key=value` pairs (floats in Rust's shortest round-trip form).
pub fn attrs(op: &Op) -> String {
    match op {
        Op::Weight(b) => {
            let mut s = format!(" \"{}\"", b.hf_name);
            for p in &b.concat {
                let _ = write!(s, " part=\"{}\"[{}]", p.hf_name, p.rows);
                if let Some(shard) = p.shard {
                    let _ = write!(s, "/{shard}");
                }
            }
            for t in &b.tied {
                let _ = write!(s, " tied=\"{t}\"");
            }
            if let Some(shard) = b.shard {
                let _ = write!(s, " shard={shard}");
            }
            match b.init {
                Init::Ones => s.push_str(" init=ones"),
                Init::Normal { std } => {
                    let _ = write!(s, " init=normal({std:?})");
                }
            }
            s
        }
        Op::RmsNorm { eps } => format!(" eps={eps:?}"),
        Op::Rope { rope } => format!(" {rope}"),
        Op::KvAppend { layer, cache } => format!(" layer={layer} cache={cache}"),
        Op::Attention { scale } => format!(" scale={scale:?}"),
        Op::Reshape { shape } => format!(" to={shape}"),
        Op::KvWrite { layer, cache } => format!(" layer={layer} cache={cache}"),
        Op::Slice { start, len } => format!(" start={start} len={len}"),
        Op::AllReduce { ranks } | Op::AllGather { ranks } | Op::EmbedShard { ranks } => {
            format!(" ranks={ranks}")
        }
        Op::NormLinear { eps } | Op::NormLinearSwiGlu { eps } | Op::NormLinearBias { eps } => {
            format!(" eps={eps:?}")
        }
        Op::NormRope { eps, rope } => format!(" eps={eps:?} {rope}"),
        Op::NormRopeKvWrite {
            eps,
            rope,
            layer,
            cache,
        } => format!(" eps={eps:?} {rope} layer={layer} cache={cache}"),
        Op::RopeKvWrite { rope, layer, cache } => {
            format!(" {rope} layer={layer} cache={cache}")
        }
        _ => String::new(),
    }
}
