//! The fusion pass: the rules of [`crate::fusion`] applied to a fixed point.

use super::Pass;
use crate::error::CompileError;
use crate::fusion::{matches, merge_sibling_projections, rules, self_contained, Match, Rule};
use crate::ir::infer::infer;
use crate::ir::{Graph, Node};

/// The fusion pass: merges sibling projections, then applies the rules until none matches
/// (the pass manager reruns it to a fixed point).
pub struct Fuse {
    rules: Vec<Rule>,
}

impl Default for Fuse {
    fn default() -> Self {
        Fuse { rules: rules() }
    }
}

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn fixed_point(&self) -> bool {
        true
    }

    /// One round: merge sibling projections, else apply the first rule (in priority order)
    /// that matches anywhere, at every place it matches. The manager repeats rounds until
    /// nothing changes, so a higher-priority rule always sees the results of lower ones.
    fn run(&self, g: &mut Graph) -> Result<bool, CompileError> {
        let mut merged = false;
        while merge_sibling_projections(g) {
            merged = true;
        }
        if merged {
            return Ok(true);
        }
        for rule in &self.rules {
            if self.apply(rule, g)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Fuse {
    /// Applies `rule` wherever it matches; returns whether it did anything.
    fn apply(&self, rule: &Rule, g: &mut Graph) -> Result<bool, CompileError> {
        let order = g
            .topo_order()
            .map_err(|c| CompileError::Options(format!("fuse: cycle through {}", c.join(", "))))?;
        let mut changed = false;
        for id in order {
            if !g.contains(id) {
                continue;
            }
            let mut m = Match::default();
            if !matches(g, &rule.pattern, id, &mut m)
                || !self_contained(g, &m)
                || !(rule.check)(g, &m)
            {
                continue;
            }
            let (op, args) = (rule.build)(g, &m);
            let root = g.node(id).clone();
            let arg_types: Vec<_> = args.iter().map(|&a| &g.node(a).ty).collect();
            // A rule must keep the value's type; if it would not, it does not apply.
            match infer(&op, &arg_types) {
                Ok(Some(ty)) if ty == root.ty => {}
                _ => continue,
            }
            let fused = g.add(
                Node {
                    name: root.name.clone(),
                    op,
                    ty: root.ty,
                },
                &args,
            );
            g.replace_uses(id, fused);
            for &dead in &m.ops {
                g.remove(dead);
            }
            changed = true;
        }
        Ok(changed)
    }
}
