//! Op declarations: attributes, operands, per-op checks and type inference, one op at a time.

use super::{Lowerer, SPEC_OPS};
use crate::ir::infer::{infer, CTX};
use crate::ir::{CacheKind, Dim, Node, NodeId, Op, TensorType};
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
            "rope" => &["theta"],
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
        let n_expected = operands.split(", ").count();
        if d.inputs.len() != n_expected {
            self.r.err(
                d.in_loc,
                path,
                format!(
                    "{} takes {n_expected} input(s) ({operands}), got {}",
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
                theta: self.float_attr(attr("theta"), "theta", d)?,
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
        let types: Vec<&TensorType> = args.iter().map(|&a| &self.g.node(a).ty).collect();
        let ty = match infer(&op, &types) {
            Ok(Some(ty)) => ty,
            Ok(None) => return None,
            Err(e) => {
                let got: Vec<String> = d
                    .inputs
                    .iter()
                    .zip(&types)
                    .map(|((n, _), t)| format!("{n}: {t}"))
                    .collect();
                self.r
                    .err(d.loc, path, format!("{e} (inputs: {})", got.join(", ")));
                return None;
            }
        };
        let id = self.g.add(
            Node {
                name: format!("{prefix}{}", d.name),
                op,
                ty,
            },
            &args,
        );
        self.origin.insert(id, (d.loc, d.path.clone()));
        Some(id)
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
