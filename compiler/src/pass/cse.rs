//! Common-subexpression elimination: two nodes with the same op, attributes, operands and type
//! compute the same value; uses of the later one go to the earlier one. Inputs, outputs and
//! cache writes are never merged.

use super::Pass;
use crate::error::CompileError;
use crate::ir::{Graph, NodeId, Op};

pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn fixed_point(&self) -> bool {
        true
    }

    fn run(&self, g: &mut Graph) -> Result<bool, CompileError> {
        let order = g.topo_order().map_err(|c| {
            CompileError::Options(format!(
                "cse: the graph has a cycle through {}",
                c.join(", ")
            ))
        })?;
        let mut seen: Vec<(NodeId, Vec<NodeId>)> = Vec::new();
        let mut changed = false;
        for id in order {
            let op = &g.node(id).op;
            if matches!(op, Op::Input(_) | Op::Output(_) | Op::KvAppend { .. })
                || op.writes_cache().is_some()
            {
                continue;
            }
            let args = g.operands(id);
            let twin = seen.iter().find(|(other, other_args)| {
                *other_args == args
                    && g.node(*other).op == g.node(id).op
                    && g.node(*other).ty == g.node(id).ty
            });
            match twin {
                Some(&(keep, _)) => {
                    g.replace_uses(id, keep);
                    g.remove(id);
                    changed = true;
                }
                None => seen.push((id, args)),
            }
        }
        Ok(changed)
    }
}
