//! Weight declarations: checkpoint-name bindings (with `{layer}` substitution), ties and
//! initialisers.

use super::Lowerer;
use crate::ir::{Dim, Init, Node, NodeId, Op, TensorType, WeightBinding};
use crate::spec::model::{InitKind, WeightDecl};
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
