//! The KV-cache pass: the spec's functional `kv_append` (which returns the grown sequence)
//! becomes `kv_write`, an in-place write of this step's rows into the layer's one static cache
//! buffer (sized by the `ctx` bound) at the step's positions. Positions are a graph input held
//! in device memory, so one decode graph serves every step without re-capture.

use super::Pass;
use crate::error::CompileError;
use crate::ir::{Graph, InputRole, Op};

pub struct KvCache;

impl Pass for KvCache {
    fn name(&self) -> &'static str {
        "kv-cache"
    }

    fn run(&self, g: &mut Graph) -> Result<bool, CompileError> {
        let appends: Vec<_> = g
            .ids()
            .filter(|&id| matches!(g.node(id).op, Op::KvAppend { .. }))
            .collect();
        if appends.is_empty() {
            return Ok(false);
        }
        let positions = g.input(InputRole::Positions).ok_or_else(|| {
            CompileError::Options("kv-cache: the graph has no input of role positions".into())
        })?;
        for id in appends {
            let Op::KvAppend { layer, cache } = g.node(id).op else {
                unreachable!("filtered above")
            };
            let x = g.operands(id)[0];
            g.node_mut(id).op = Op::KvWrite { layer, cache };
            g.set_operands(id, &[x, positions]);
        }
        Ok(true)
    }
}
