//! Weight declarations: checkpoint-name bindings (with `{layer}` substitution), ties and
//! initialisers.

use super::Lowerer;
use crate::ir::{Dim, Init, Node, NodeId, Op, TensorType, WeightBinding};
use crate::ir::{Shape, Shard};
use crate::spec::expr::Expr;
use crate::spec::model::{InitKind, ShardDecl, WeightDecl};
use std::collections::HashMap;

impl Lowerer<'_> {
    pub(super) fn weights(
        &mut self,
        decls: &[WeightDecl],
        layer: Option<usize>,
        prefix: &str,
        scope: &mut HashMap<String, NodeId>,
    ) {
        let std = self.spec.float("init_std").unwrap_or(0.02);
        // Untied weights first, so that `tie_to` may name a weight declared later.
        let (tied, untied): (Vec<_>, Vec<_>) = decls.iter().partition(|w| w.tie_to.is_some());
        for w in untied.into_iter().chain(tied) {
            let before = self.r.errors.len();
            self.weight(w, layer, prefix, std, scope);
            if self.r.errors.len() > before {
                self.failed.insert(w.name.clone());
            }
        }
    }

    fn weight(
        &mut self,
        w: &WeightDecl,
        layer: Option<usize>,
        prefix: &str,
        std: f64,
        scope: &mut HashMap<String, NodeId>,
    ) {
        {
            if !self.define(&w.name, w.loc, &w.path) {
                return;
            }
            let Some(shape) = self.shape(&w.shape, &w.path) else {
                return;
            };
            if let Some(d) = shape.0.iter().find(|d| matches!(d, Dim::Sym(_))) {
                self.r.err(
                    w.loc,
                    &w.path,
                    format!("weight shapes must be static, found symbolic dim '{d}'"),
                );
                return;
            }
            let has_layer = w.hf.contains("{layer}");
            let hf = match (layer, has_layer) {
                (Some(i), true) => w.hf.replace("{layer}", &i.to_string()),
                (Some(_), false) => {
                    self.r.err(
                        w.hf_loc,
                        &w.path,
                        format!("layer weight binding '{}' must contain {{layer}}", w.hf),
                    );
                    return;
                }
                (None, true) => {
                    self.r.err(
                        w.hf_loc,
                        &w.path,
                        format!("'{{layer}}' in '{}' outside the layers section", w.hf),
                    );
                    return;
                }
                (None, false) => w.hf.clone(),
            };
            let name = format!("{prefix}{}", w.name);
            if let Some((target, tloc)) = &w.tie_to {
                let Some(&t) = scope
                    .get(target)
                    .filter(|&&t| matches!(self.g.node(t).op, Op::Weight(_)))
                else {
                    self.r.err(
                        *tloc,
                        &w.path,
                        format!("tie_to names '{target}', which is not a weight"),
                    );
                    return;
                };
                if self.g.node(t).ty.shape != shape {
                    let other = self.g.node(t).ty.shape.clone();
                    self.r.err(
                        *tloc,
                        &w.path,
                        format!("tied weight has shape {shape} but '{target}' has shape {other}"),
                    );
                    return;
                }
                if let Op::Weight(b) = &mut self.g.node_mut(t).op {
                    b.tied.push(hf);
                }
                scope.insert(w.name.clone(), t);
                return;
            }
            let shard = match &w.shard {
                Some(decl) => {
                    let Some(shard) = self.shard(decl, &shape, &w.path) else {
                        return;
                    };
                    Some(shard)
                }
                None => None,
            };
            let init = match w.init {
                InitKind::Normal => Init::Normal { std },
                InitKind::Ones => Init::Ones,
            };
            let id = self.g.add(
                Node {
                    name,
                    op: Op::Weight(WeightBinding {
                        hf_name: hf,
                        tied: Vec::new(),
                        concat: Vec::new(),
                        init,
                        shard,
                    }),
                    ty: TensorType::new(self.spec.family.dtype, shape),
                },
                &[],
            );
            self.origin.insert(id, (w.loc, w.path.clone()));
            scope.insert(w.name.clone(), id);
        }
    }
}

impl Lowerer<'_> {
    /// A weight's `shard:`: the axis must exist and be cut into equal groups (the groups'
    /// expression evaluated over the hyperparameters; absent, the axis's extent).
    fn shard(&mut self, decl: &ShardDecl, shape: &Shape, path: &str) -> Option<Shard> {
        let axis = decl.axis.index();
        let extent = match shape.0.get(axis) {
            Some(Dim::Fixed(n)) => *n,
            _ => {
                self.r.err(
                    decl.loc,
                    path,
                    format!(
                        "shard: a split by {} needs a weight of rank {} or more, found shape {shape}",
                        decl.axis.name(),
                        axis + 1
                    ),
                );
                return None;
            }
        };
        let groups = match &decl.groups {
            None => extent,
            Some(y) => {
                let text = y.as_str().unwrap_or_default();
                match Expr::parse(text).and_then(|e| e.eval(&|n| self.spec.int(n))) {
                    Ok(v) if v >= 1 => v as usize,
                    Ok(v) => {
                        self.r.err(
                            y.loc,
                            path,
                            format!("shard groups '{text}' evaluate to {v}; at least 1 is needed"),
                        );
                        return None;
                    }
                    Err(e) => {
                        self.r
                            .err(y.loc, path, format!("bad shard groups '{text}': {e}"));
                        return None;
                    }
                }
            }
        };
        if extent % groups != 0 {
            self.r.err(
                decl.loc,
                path,
                format!(
                    "shard: the {} of shape {shape} ({extent}) do not cut into {groups} equal groups",
                    decl.axis.name()
                ),
            );
            return None;
        }
        Some(Shard {
            axis: decl.axis,
            groups,
        })
    }
}
