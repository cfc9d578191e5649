//! Canonicalization: removes no-op views and folds view chains.
//! - `reshape(x)` to x's own shape, and a `slice` of all features, become `x`;
//! - `reshape(reshape(x))` becomes one `reshape(x)`.

use super::Pass;
use crate::error::CompileError;
use crate::ir::{Dim, Graph, Op};

pub struct Canonicalize;

impl Pass for Canonicalize {
    fn name(&self) -> &'static str {
        "canonicalize"
    }

    fn fixed_point(&self) -> bool {
        true
    }

    fn run(&self, g: &mut Graph) -> Result<bool, CompileError> {
        let mut changed = false;
        let ids: Vec<_> = g.ids().collect();
        for id in ids {
            if !g.contains(id) {
                continue;
            }
            let node = g.node(id).clone();
            let args = g.operands(id);
            match &node.op {
                Op::Reshape { .. } => {
                    let src = args[0];
                    if g.node(src).ty == node.ty {
                        g.replace_uses(id, src);
                        g.remove(id);
                        changed = true;
                    } else if matches!(g.node(src).op, Op::Reshape { .. }) {
                        let inner = g.operands(src)[0];
                        g.set_operands(id, &[inner]);
                        if g.users(src).is_empty() {
                            g.remove(src);
                        }
                        changed = true;
                    }
                }
                Op::Slice { start: 0, len } => {
                    let src = args[0];
                    if g.node(src).ty.shape.last() == Some(&Dim::Fixed(*len)) {
                        g.replace_uses(id, src);
                        g.remove(id);
                        changed = true;
                    }
                }
                _ => {}
            }
        }
        Ok(changed)
    }
}
