//! Graphviz DOT export of the IR.

use super::graph::Graph;
use super::op::Op;
use std::fmt::Write;

/// Renders the graph in DOT. Weights are boxes, inputs and outputs ellipses; edges are labelled
/// with their operand slot when an op takes more than one operand.
pub fn to_dot(g: &Graph) -> String {
    let order = g
        .topo_order()
        .unwrap_or_else(|_| g.ids().collect::<Vec<_>>());
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(&g.name));
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(out, "  node [fontname=\"monospace\", fontsize=10];");
    for &id in &order {
        let n = g.node(id);
        let (shape, color) = match n.op {
            Op::Weight(_) => ("box", "lightgoldenrod1"),
            Op::Input(_) | Op::Output(_) => ("ellipse", "lightblue"),
            _ => ("box", "white"),
        };
        let _ = writeln!(
            out,
            "  n{} [label=\"{}\\n{}\\n{}\", shape={shape}, style=filled, fillcolor={color}];",
            id.index(),
            escape(&n.name),
            n.op.name(),
            escape(&n.ty.to_string())
        );
    }
    for &id in &order {
        let args = g.operands(id);
        let multi = args.len() > 1;
        for (slot, a) in args.iter().enumerate() {
            if multi {
                let _ = writeln!(
                    out,
                    "  n{} -> n{} [label=\"{slot}\"];",
                    a.index(),
                    id.index()
                );
            } else {
                let _ = writeln!(out, "  n{} -> n{};", a.index(), id.index());
            }
        }
    }
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
