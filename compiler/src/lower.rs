//! Lowering: a resolved [`ModelSpec`] becomes an IR [`Graph`]. The layer block is unrolled
//! `count` times, weights are bound to their checkpoint names, and every op is type-checked as
//! it is added, so that a problem is reported at the spec line that caused it.

use crate::error::{Loc, SpecErrors};
use crate::ir::infer::{infer, CTX};
use crate::ir::{
    CacheKind, Dim, Graph, Init, Node, NodeId, Op, Shape, SymDim, TensorType, WeightBinding,
};
use crate::spec::expr::Expr;
use crate::spec::model::{InitKind, OpDecl, WeightDecl};
use crate::spec::reader::Reader;
use crate::spec::yaml::Y;
use crate::spec::ModelSpec;
use std::collections::{HashMap, HashSet};

/// The op names a spec may use, with their operands (for messages).
pub const SPEC_OPS: &[(&str, &str)] = &[
    ("embed", "table, ids"),
    ("linear", "x, weight"),
    ("matmul", "a, b"),
    ("rmsnorm", "x, weight"),
    ("rope", "x, positions"),
    ("kv_append", "x"),
    ("attention", "q, k, v, positions"),
    ("silu", "x"),
    ("mul", "a, b"),
    ("add", "a, b"),
    ("reshape", "x"),
];

/// Lowers a spec to a graph, or returns every problem found.
pub fn lower(spec: &ModelSpec) -> Result<Graph, SpecErrors> {
    let f = &spec.family;
    let mut l = Lowerer {
        spec,
        r: Reader::new(&f.file),
        g: Graph::new(spec.name(), Vec::new()),
        defs: HashMap::new(),
        origin: HashMap::new(),
        sym: f.dims.iter().map(|d| d.name.clone()).collect(),
        failed: HashSet::new(),
    };
    l.g.dims = f
        .dims
        .iter()
        .filter_map(|d| {
            let bound = spec.int(&d.bound)?;
            Some(SymDim {
                name: d.name.clone(),
                bound: bound as usize,
            })
        })
        .collect();
    let mut scope: HashMap<String, NodeId> = HashMap::new();
    for i in &f.inputs {
        let path = format!("inputs.{}", i.name);
        let Some(shape) = l.shape(&i.shape, &path) else {
            l.failed.insert(i.name.clone());
            continue;
        };
        if !l.define(&i.name, i.loc, &path) {
            continue;
        }
        let id = l.g.add(
            Node {
                name: i.name.clone(),
                op: Op::Input(i.role),
                ty: TensorType::new(i.dtype, shape),
            },
            &[],
        );
        l.origin.insert(id, (i.loc, path));
        scope.insert(i.name.clone(), id);
    }
    l.weights(&f.weights, None, "", &mut scope);
    l.ops(&f.prologue, None, "", &mut scope);
    if let Some(layers) = &f.layers {
        let count = match spec.int(&layers.count.0) {
            Some(c) => c as usize,
            None => {
                l.r.err(
                    layers.count.1,
                    "layers.count",
                    format!("'{}' is not an int hyperparameter", layers.count.0),
                );
                0
            }
        };
        let mut carry = scope.get(&layers.input.0).copied();
        if carry.is_none() {
            l.r.err(
                layers.input.1,
                "layers.input",
                format!("unknown tensor '{}'", layers.input.0),
            );
        }
        for layer in 0..count {
            let Some(input) = carry else { break };
            let before = l.r.errors.len();
            let mut local = scope.clone();
            local.insert(layers.input.0.clone(), input);
            let prefix = format!("layers.{layer}.");
            l.weights(&layers.weights, Some(layer), &prefix, &mut local);
            l.ops(&layers.ops, Some(layer), &prefix, &mut local);
            carry = match layers.ops.iter().any(|o| o.name == layers.output.0) {
                true => local.get(&layers.output.0).copied(),
                false => {
                    l.r.err(
                        layers.output.1,
                        "layers.output",
                        format!("'{}' is not computed by the layer's ops", layers.output.0),
                    );
                    None
                }
            };
            if l.r.errors.len() > before {
                break; // every layer would report the same problems
            }
        }
        match carry {
            Some(c) => {
                scope.insert(layers.output.0.clone(), c);
            }
            None => {
                l.failed.insert(layers.output.0.clone());
            }
        }
    }
    l.ops(&f.epilogue, None, "", &mut scope);
    for (role, tensor, loc) in &f.outputs {
        let name = &role.name().to_string();
        let path = format!("outputs.{name}");
        let Some(&src) = scope.get(tensor) else {
            if !l.failed.contains(tensor) {
                l.r.err(*loc, &path, format!("unknown tensor '{tensor}'"));
            }
            continue;
        };
        if !l.define(name, *loc, &path) {
            continue;
        }
        let ty = l.g.node(src).ty.clone();
        l.g.add(
            Node {
                name: name.clone(),
                op: Op::Output(*role),
                ty,
            },
            &[src],
        );
    }
    if f.outputs.is_empty() {
        l.r.err(
            Loc { line: 1, col: 1 },
            "outputs",
            "the graph has no outputs",
        );
    }
    if l.r.errors.is_empty() {
        l.unused();
    }
    if l.r.errors.is_empty() {
        Ok(l.g)
    } else {
        let mut e = l.r.errors;
        e.sort_by_key(|e| e.loc);
        Err(SpecErrors(e))
    }
}

struct Lowerer<'a> {
    spec: &'a ModelSpec,
    r: Reader,
    g: Graph,
    /// Where each spec name was first defined (names are unique across the spec).
    defs: HashMap<String, (Loc, String)>,
    /// Which spec entry made each node (for "never used" messages).
    origin: HashMap<NodeId, (Loc, String)>,
    sym: HashSet<String>,
    /// Spec names whose definition failed: uses of them are not reported again.
    failed: HashSet<String>,
}

impl Lowerer<'_> {
    /// Records a definition; false (with an error) if the name is taken.
    fn define(&mut self, name: &str, loc: Loc, path: &str) -> bool {
        if let Some((first, _)) = self.defs.get(name) {
            if *first != loc {
                self.r.err(
                    loc,
                    path,
                    format!(
                        "duplicate tensor name '{name}' (already defined at line {}, column {})",
                        first.line, first.col
                    ),
                );
                return false;
            }
            return true; // the same entry seen again in the next layer
        }
        self.defs.insert(name.to_string(), (loc, path.to_string()));
        true
    }

    fn int_hyper(&self, name: &str) -> Option<i64> {
        self.spec.int(name)
    }

    /// Evaluates a shape list.
    fn shape(&mut self, y: &Y, path: &str) -> Option<Shape> {
        let Some(items) = y.as_seq() else {
            self.r.err(
                y.loc,
                path,
                format!("a shape must be a list of dims, found {}", y.describe()),
            );
            return None;
        };
        let mut dims = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = item.as_str() else {
                self.r.err(
                    item.loc,
                    path,
                    format!(
                        "a dim must be a name or an expression, found {}",
                        item.describe()
                    ),
                );
                ok = false;
                continue;
            };
            if self.sym.contains(text.trim()) {
                dims.push(Dim::Sym(text.trim().to_string()));
                continue;
            }
            let value = Expr::parse(text).and_then(|e| {
                for n in e.names() {
                    if self.sym.contains(n) {
                        return Err(format!(
                            "symbolic dim '{n}' cannot appear inside an expression"
                        ));
                    }
                    if self.spec.hyper.contains_key(n) && self.int_hyper(n).is_none() {
                        return Err(format!("'{n}' is not an integer hyperparameter"));
                    }
                }
                e.eval(&|n| self.int_hyper(n))
            });
            match value {
                Ok(v) if v >= 1 => dims.push(Dim::Fixed(v as usize)),
                Ok(v) => {
                    self.r.err(
                        item.loc,
                        path,
                        format!("dim '{text}' evaluates to {v}; dims must be at least 1"),
                    );
                    ok = false;
                }
                Err(e) => {
                    self.r.err(item.loc, path, format!("bad dim '{text}': {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some(Shape(dims))
    }

    fn weights(
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

    fn ops(
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

    /// Reports values that nothing uses (once per spec entry, not once per layer).
    fn unused(&mut self) {
        let mut seen = HashSet::new();
        let ids: Vec<NodeId> = self.g.ids().collect();
        for id in ids {
            let n = self.g.node(id);
            if matches!(n.op, Op::Output(_)) || !self.g.users(id).is_empty() {
                continue;
            }
            let Some((loc, path)) = self.origin.get(&id).cloned() else {
                continue;
            };
            if !seen.insert(loc) {
                continue;
            }
            let what = match n.op {
                Op::Weight(_) => "weight is never used",
                Op::Input(_) => "input is never used",
                _ => "tensor is computed but never used (dangling output)",
            };
            self.r.err(loc, &path, what);
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
