//! The IR verifier: run after lowering and after every pass. It checks arity, operand slots,
//! dtypes and shapes (by re-inferring every node), acyclicity, weight bindings, declared
//! symbolic dims and that every value is used.

use super::graph::Graph;
use super::infer::infer;
use super::op::Op;
use super::types::Dim;
use crate::error::IrError;
use std::collections::HashMap;

/// Checks every invariant; `pass` names the pass that just ran (for the message).
pub fn verify(g: &Graph, pass: Option<&str>) -> Result<(), IrError> {
    let mut problems = Vec::new();
    let order = match g.topo_order() {
        Ok(o) => o,
        Err(cycle) => {
            problems.push(format!("cycle through {}", cycle.join(", ")));
            return Err(IrError {
                pass: pass.map(str::to_string),
                problems,
            });
        }
    };
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut hf_names: HashMap<&str, &str> = HashMap::new();
    for &id in &order {
        let n = g.node(id);
        let at = format!("node '{}' ({})", n.name, n.op.name());
        *names.entry(n.name.as_str()).or_default() += 1;
        let slots = g.operand_slots(id);
        if slots != (0..n.op.arity()).collect::<Vec<_>>() {
            problems.push(format!(
                "{at}: expects {} operand(s) in slots 0..{}, has slots {:?}",
                n.op.arity(),
                n.op.arity(),
                slots
            ));
            continue;
        }
        for d in &n.ty.shape.0 {
            if let Dim::Sym(s) = d {
                if g.dim_bound(s).is_none() {
                    problems.push(format!("{at}: symbolic dim '{s}' is not declared"));
                }
            }
        }
        if let Op::Weight(b) = &n.op {
            if b.hf_name.is_empty() {
                problems.push(format!("{at}: weight has no checkpoint binding"));
            }
            for name in std::iter::once(&b.hf_name).chain(&b.tied) {
                if let Some(prev) = hf_names.insert(name, &n.name) {
                    problems.push(format!(
                        "{at}: checkpoint tensor '{name}' is also bound by '{prev}'"
                    ));
                }
            }
            if n.ty.shape.as_fixed().is_none() {
                problems.push(format!("{at}: weight shape {} is not static", n.ty.shape));
            }
        }
        let args = g.operands(id);
        let arg_types: Vec<_> = args.iter().map(|&a| &g.node(a).ty).collect();
        match infer(&n.op, &arg_types) {
            Ok(Some(ty)) if ty != n.ty => problems.push(format!(
                "{at}: recorded type {} but operands give {}",
                n.ty, ty
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("{at}: {e}")),
        }
        if !matches!(n.op, Op::Output(_)) && g.users(id).is_empty() {
            problems.push(format!("{at}: value is never used"));
        }
        if matches!(n.op, Op::Output(_)) && !g.users(id).is_empty() {
            problems.push(format!("{at}: an output must not feed other nodes"));
        }
    }
    let mut dups: Vec<_> = names.into_iter().filter(|(_, c)| *c > 1).collect();
    dups.sort();
    for (name, c) in dups {
        problems.push(format!("node name '{name}' is used {c} times"));
    }
    if g.outputs().is_empty() {
        problems.push("the graph has no outputs".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(IrError {
            pass: pass.map(str::to_string),
            problems,
        })
    }
}
