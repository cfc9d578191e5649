//! Dead-code elimination: removes nodes whose value nothing uses, except outputs and cache
//! writes (the cache outlives the step).

use super::Pass;
use crate::error::CompileError;
use crate::ir::{Graph, Op};

pub struct Dce {
    name: &'static str,
}

impl Dce {
    /// The pipeline runs DCE twice; each run has its own name.
    pub fn named(name: &'static str) -> Self {
        Dce { name }
    }
}

impl Pass for Dce {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&self, g: &mut Graph) -> Result<bool, CompileError> {
        let mut changed = false;
        loop {
            let dead: Vec<_> = g
                .ids()
                .filter(|&id| {
                    let op = &g.node(id).op;
                    !matches!(op, Op::Output(_) | Op::KvAppend { .. })
                        && op.writes_cache().is_none()
                        && g.users(id).is_empty()
                })
                .collect();
            if dead.is_empty() {
                return Ok(changed);
            }
            for id in dead {
                g.remove(id);
            }
            changed = true;
        }
    }
}
