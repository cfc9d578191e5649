//! Lowering: a resolved [`ModelSpec`] becomes an IR [`Graph`]. The layer block is unrolled
//! `count` times, weights are bound to their checkpoint names, and every op is type-checked as
//! it is added, so that a problem is reported at the spec line that caused it.

mod ops;
mod shapes;
mod weights;

use crate::error::{Loc, SpecErrors};
use crate::ir::{Graph, Node, NodeId, Op, SymDim, TensorType};
use crate::spec::reader::Reader;
use crate::spec::ModelSpec;
use std::collections::{HashMap, HashSet};

/// The op names a spec may use, with their operands (for messages).
pub const SPEC_OPS: &[(&str, &str)] = &[
    ("embed", "table, ids"),
    ("linear", "x, weight[, bias]"),
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
