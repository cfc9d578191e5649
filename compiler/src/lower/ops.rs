//! Op declarations: attributes, operands, per-op checks and type inference, one op at a time.

use super::{Lowerer, SPEC_OPS};
use crate::ir::infer::{infer, CTX};
use crate::ir::{CacheKind, Dim, Node, NodeId, Op, Rope, RopeScaling, TensorType};
use crate::spec::model::OpDecl;
use crate::spec::yaml::Y;
use std::collections::{HashMap, HashSet};

impl Lowerer<'_> {
    pub(super) fn ops(
        &mut self,
        decls: &[OpDecl],
        layer: Option<usize>,
        prefix: &str,
        scope: &mut HashMap<String, NodeId>,
    ) {
        let mut caches: HashSet<CacheKind> = HashSet::new();
        for (i, d) in decls.iter().enumerate() {
            let later: Vec<&str> = decls[i + 1..].iter().map(|o| o.name.as_str()).collect();
            match self.op(d, &later, layer, prefix, scope, &mut caches) {
                Some(id) => {
                    scope.insert(d.name.clone(), id);
                }
                None => {
                    // Later uses of the name must not see an outer tensor of the same name.
                    scope.remove(&d.name);
                    self.failed.insert(d.name.clone());
                }
            }
        }
    }

    fn op(
        &mut self,
        d: &OpDecl,
        later: &[&str],
        layer: Option<usize>,
        prefix: &str,
        scope: &HashMap<String, NodeId>,
        caches: &mut HashSet<CacheKind>,
    ) -> Option<NodeId> {
        let path = d.path.as_str();
        let defined = self.define(&d.name, d.loc, path);
        let Some(&(_, operands)) = SPEC_OPS.iter().find(|(n, _)| *n == d.op) else {
            let hint = closest(&d.op, SPEC_OPS.iter().map(|(n, _)| *n))
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            self.r
                .err(d.op_loc, path, format!("unknown op '{}'{hint}", d.op));
            return None;
        };
        let attr_names: &[&str] = match d.op.as_str() {
            "rmsnorm" => &["eps"],
            "rope" => &["theta", "scaling"],
            "kv_append" => &["cache"],
            "attention" => &["scale"],
            "reshape" => &["shape"],
            _ => &[],
        };
        let mut ok = defined;
        for (k, _) in &d.attrs {
            if !attr_names.contains(&k.name.as_str()) {
                let allowed = if attr_names.is_empty() {
                    "it takes none".to_string()
                } else {
                    format!("expected: {}", attr_names.join(", "))
                };
                self.r.err(
                    k.loc,
                    path,
                    format!("{} has no attribute '{}' ({allowed})", d.op, k.name),
                );
                ok = false;
            }
        }
        let attr = |name: &str| d.attrs.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
        let mut args = Vec::new();
        for (name, loc) in &d.inputs {
            match scope.get(name) {
                Some(&id) => args.push(id),
                None if self.failed.contains(name) && name != &d.name => ok = false,
                None => {
                    let msg = if name == &d.name {
                        format!("'{name}' uses its own result: the graph would have a cycle")
                    } else if later.contains(&name.as_str()) {
                        format!("'{name}' is defined later in this section: the graph would have a cycle (an op must come after the tensors it uses)")
                    } else if self.defs.contains_key(name) {
                        format!("tensor '{name}' is not visible here (defined in another section or later)")
                    } else {
                        format!("unknown tensor '{name}'")
                    };
                    self.r.err(*loc, path, msg);
                    ok = false;
                }
            }
        }
        // `a, b[, c]`: the bracketed operands are optional.
        let required = operands.split('[').next().unwrap_or("").split(", ").count();
        let most = operands.split(", ").count();
        if d.inputs.len() < required || d.inputs.len() > most {
            let n = if required == most {
                required.to_string()
            } else {
                format!("{required} or {most}")
            };
            self.r.err(
                d.in_loc,
                path,
                format!(
                    "{} takes {n} input(s) ({operands}), got {}",
                    d.op,
                    d.inputs.len()
                ),
            );
            return None;
        }
        let op = match d.op.as_str() {
            "embed" => Op::Embed,
            "linear" => Op::Linear,
            "matmul" => Op::MatMul,
            "silu" => Op::Silu,
            "mul" => Op::Mul,
            "add" => Op::Add,
            "rmsnorm" => Op::RmsNorm {
                eps: self.float_attr(attr("eps"), "eps", d)?,
            },
            "rope" => Op::Rope {
                rope: Rope {
                    theta: self.float_attr(attr("theta"), "theta", d)?,
                    scaling: self.rope_scaling_attr(attr("scaling"), d)?,
                },
            },
            "reshape" => {
                let Some(y) = attr("shape") else {
                    self.r.err(d.loc, path, "reshape needs a 'shape' attribute");
                    return None;
                };
                Op::Reshape {
                    shape: self.shape(y, path)?,
                }
            }
            "kv_append" => {
                let cache = match attr("cache").and_then(|y| y.as_str()) {
                    Some("k") => CacheKind::K,
                    Some("v") => CacheKind::V,
                    _ => {
                        let at = attr("cache").map_or(d.loc, |y| y.loc);
                        self.r
                            .err(at, path, "kv_append needs 'cache: k' or 'cache: v'");
                        return None;
                    }
                };
                let Some(layer) = layer else {
                    self.r
                        .err(d.op_loc, path, "kv_append is only allowed inside layers");
                    return None;
                };
                if !self.sym.contains(CTX) {
                    self.r.err(
                        d.op_loc,
                        path,
                        format!("kv_append needs the symbolic dim '{CTX}' declared under dims"),
                    );
                    return None;
                }
                if !caches.insert(cache) {
                    self.r.err(
                        d.loc,
                        path,
                        format!("a layer may append to its '{cache}' cache only once"),
                    );
                    return None;
                }
                Op::KvAppend { layer, cache }
            }
            "attention" => {
                let scale = match attr("scale") {
                    Some(y) => self.float_attr(Some(y), "scale", d)?,
                    None => match args
                        .first()
                        .map(|&q| self.g.node(q).ty.shape.last().cloned())
                    {
                        Some(Some(Dim::Fixed(hd))) => 1.0 / (hd as f64).sqrt(),
                        _ if !ok => return None,
                        _ => {
                            self.r
                                .err(d.loc, path, "attention: q's head_dim must be static");
                            return None;
                        }
                    },
                };
                Op::Attention { scale }
            }
            _ => unreachable!("SPEC_OPS lists every op"),
        };
        if !ok {
            return None;
        }
        if d.op == "linear" && args.len() == 3 {
            return self.linear_with_bias(d, prefix, &args);
        }
        let labels: Vec<&str> = d.inputs.iter().map(|(n, _)| n.as_str()).collect();
        self.node(d, format!("{prefix}{}", d.name), op, &args, &labels)
    }

    /// Adds one typed node made by op declaration `d` from operands `args` named `labels` (its
    /// type inferred; an error located at `d`).
    fn node(
        &mut self,
        d: &OpDecl,
        name: String,
        op: Op,
        args: &[NodeId],
        labels: &[&str],
    ) -> Option<NodeId> {
        let types: Vec<&TensorType> = args.iter().map(|&a| &self.g.node(a).ty).collect();
        let ty = match infer(&op, &types) {
            Ok(ty) => ty?,
            Err(e) => {
                let got: Vec<String> = labels
                    .iter()
                    .zip(&types)
                    .map(|(n, t)| format!("{n}: {t}"))
                    .collect();
                self.r
                    .err(d.loc, &d.path, format!("{e} (inputs: {})", got.join(", ")));
                return None;
            }
        };
        let id = self.g.add(Node { name, op, ty }, args);
        self.origin.insert(id, (d.loc, d.path.clone()));
        Some(id)
    }

    /// `linear` with a bias: the product (named `NAME.linear`, a name no spec tensor can
    /// have) and the bias added to its rows (named NAME).
    fn linear_with_bias(&mut self, d: &OpDecl, prefix: &str, args: &[NodeId]) -> Option<NodeId> {
        let name = format!("{prefix}{}", d.name);
        let label = |i: usize| d.inputs[i].0.as_str();
        let product = self.node(
            d,
            format!("{name}.linear"),
            Op::Linear,
            &args[..2],
            &[label(0), label(1)],
        )?;
        let product_label = format!("{}.linear", d.name);
        self.node(
            d,
            name,
            Op::BiasAdd,
            &[product, args[2]],
            &[&product_label, label(2)],
        )
    }

    /// The `scaling` attribute of `rope`: the name of a rope_scaling hyperparameter (none: no
    /// scaling). YaRN without `original_max_position_embeddings` takes the model's
    /// `max_position_embeddings`, as transformers does.
    fn rope_scaling_attr(&mut self, y: Option<&Y>, d: &OpDecl) -> Option<RopeScaling> {
        let Some(y) = y else {
            return Some(RopeScaling::Default);
        };
        let name = y.as_str().unwrap_or("");
        let Some(scaling) = self.spec.hyper.get(name).and_then(|v| v.as_rope_scaling()) else {
            self.r.err(
                y.loc,
                &d.path,
                format!(
                    "scaling must name a rope_scaling hyperparameter, found {}",
                    y.describe()
                ),
            );
            return None;
        };
        let context = self
            .spec
            .hf_config
            .get("max_position_embeddings")
            .and_then(|v| v.as_u64());
        match (crate::rope::needs_context(&scaling), context) {
            (false, _) => Some(scaling),
            (true, Some(c)) => Some(crate::rope::with_context(scaling, c as usize)),
            (true, None) => {
                self.r.err(
                    y.loc,
                    &d.path,
                    "yarn scaling without original_max_position_embeddings needs the family's \
                     hf_config to map max_position_embeddings",
                );
                None
            }
        }
    }

    /// A float attribute: a number or the name of a hyperparameter.
    fn float_attr(&mut self, y: Option<&Y>, name: &str, d: &OpDecl) -> Option<f64> {
        let Some(y) = y else {
            self.r.err(
                d.loc,
                &d.path,
                format!("{} needs the attribute '{name}'", d.op),
            );
            return None;
        };
        let text = y.as_str().unwrap_or("");
        if let Some(v) = crate::spec::reader::parse_float(text) {
            return Some(v);
        }
        match self.spec.float(text) {
            Some(v) => Some(v),
            None => {
                self.r.err(
                    y.loc,
                    &d.path,
                    format!(
                        "{name} must be a number or a hyperparameter, found {}",
                        y.describe()
                    ),
                );
                None
            }
        }
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_hints() {
        let ops = SPEC_OPS.iter().map(|(n, _)| *n);
        assert_eq!(closest("rmsnrom", ops.clone()), Some("rmsnorm"));
        assert_eq!(closest("lienar", ops.clone()), Some("linear"));
        assert_eq!(closest("convolution", ops), None);
    }
}
