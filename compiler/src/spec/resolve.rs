//! A variant resolved against its family: hyperparameters (defaults, types, expressions),
//! conditional weight ties, the roles and dimensions the family's weights need, and the
//! config.json mapping both ways.

use super::expr;
use super::model::{self, Family, HyperType, HyperValue, Variant};
use super::reader::{self, join, Reader};
use super::yaml::{YVal, Y};
use crate::error::Loc;
use std::collections::BTreeMap;

/// Conditional ties (`tie_to: {weight, if}`): kept where the named bool hyperparameter is true,
/// dropped (the weight is stored on its own) where it is false.
pub(super) fn resolve_ties(r: &mut Reader, f: &mut Family, hyper: &BTreeMap<String, HyperValue>) {
    let layer_weights = f.layers.iter_mut().flat_map(|l| l.weights.iter_mut());
    for w in f.weights.iter_mut().chain(layer_weights) {
        let Some((cond, loc)) = w.tie_if.take() else {
            continue;
        };
        match hyper.get(&cond).map(|v| v.as_bool()) {
            Some(Some(true)) => {}
            Some(Some(false)) => w.tie_to = None,
            Some(None) => r.err(
                loc,
                &join(&w.path, "tie_to.if"),
                format!("'{cond}' is not a bool hyperparameter"),
            ),
            None => r.err(
                loc,
                &join(&w.path, "tie_to.if"),
                format!("unknown hyperparameter '{cond}'"),
            ),
        }
    }
}

pub(super) fn resolve_hyper(
    r: &mut Reader,
    v: &Variant,
    f: &Family,
) -> BTreeMap<String, HyperValue> {
    let mut out = BTreeMap::new();
    for (name, val, loc) in &v.hyper {
        let path = join("hyperparameters", name);
        let Some(decl) = f.hyper.iter().find(|d| &d.name == name) else {
            let known: Vec<&str> = f.hyper.iter().map(|d| d.name.as_str()).collect();
            r.err(
                *loc,
                &path,
                format!(
                    "unknown hyperparameter '{name}' (family {} declares: {})",
                    f.name,
                    known.join(", ")
                ),
            );
            continue;
        };
        let val = match (decl.ty, *val) {
            (HyperType::Int, HyperValue::Float(x)) => {
                r.err(*loc, &path, format!("must be an integer, got {x}"));
                continue;
            }
            (HyperType::Int, HyperValue::Int(i)) if i < 1 => {
                r.err(*loc, &path, format!("must be at least 1, got {i}"));
                continue;
            }
            (HyperType::Float, HyperValue::Int(i)) => HyperValue::Float(i as f64),
            (HyperType::Bool, v @ HyperValue::Bool(_)) => v,
            (HyperType::Bool, v) => {
                r.err(
                    *loc,
                    &path,
                    format!("must be true or false, got {}", v.to_json()),
                );
                continue;
            }
            (HyperType::Int | HyperType::Float, HyperValue::Bool(b)) => {
                r.err(*loc, &path, format!("must be a number, got {b}"));
                continue;
            }
            (HyperType::RopeScaling, v @ HyperValue::Rope(_)) => v,
            (HyperType::RopeScaling, v) => {
                r.err(
                    *loc,
                    &path,
                    format!(
                        "must be a rope_scaling map (as config.json has it) or null, got {}",
                        v.to_json()
                    ),
                );
                continue;
            }
            (_, HyperValue::Rope(s)) => {
                let what = match decl.ty {
                    HyperType::Int => "an integer",
                    HyperType::Float => "a number",
                    _ => "true or false",
                };
                r.err(
                    *loc,
                    &path,
                    format!("must be {what}, got the map {}", s.to_json()),
                );
                continue;
            }
            (_, v) => v,
        };
        out.insert(name.clone(), val);
    }
    for d in &f.hyper {
        if out.contains_key(&d.name) || v.hyper.iter().any(|(n, _, _)| n == &d.name) {
            continue;
        }
        match d.default {
            Some(def) => {
                out.insert(d.name.clone(), def);
            }
            None => r.err(
                v.hyper_loc,
                "hyperparameters",
                format!(
                    "missing hyperparameter '{}' (declared by family {} at {}:{}:{})",
                    d.name,
                    f.name,
                    f.file.display(),
                    d.loc.line,
                    d.loc.col
                ),
            ),
        }
    }
    out
}

/// The graph's inputs and outputs by role: the runtime feeds token ids and positions and reads
/// logits, so each input role is declared exactly once and the logits output exists.
pub(super) fn check_roles(r: &mut Reader, f: &Family) {
    let at = Loc { line: 1, col: 1 };
    for role in crate::ir::InputRole::ALL {
        let with: Vec<&model::InputDecl> = f.inputs.iter().filter(|i| i.role == role).collect();
        match with.as_slice() {
            [] => r.err(
                at,
                "inputs",
                format!("no input has role {} (the runtime feeds it)", role.name()),
            ),
            [_] => {}
            [first, rest @ ..] => {
                for dup in rest {
                    r.err(
                        dup.loc,
                        &join("inputs", &dup.name),
                        format!(
                            "role {} is already the role of input '{}'",
                            role.name(),
                            first.name
                        ),
                    );
                }
            }
        }
    }
    let logits = crate::ir::OutputRole::Logits;
    if !f.outputs.is_empty() && !f.outputs.iter().any(|o| o.0 == logits) {
        r.err(
            at,
            "outputs",
            format!("no output '{}' (the runtime reads it)", logits.name()),
        );
    }
}

pub(super) fn check_dims(r: &mut Reader, f: &Family, hyper: &BTreeMap<String, HyperValue>) {
    for d in &f.dims {
        let path = join("dims", &d.name);
        match f.hyper.iter().find(|h| h.name == d.bound) {
            None => r.err(
                d.loc,
                &path,
                format!("bound '{}' is not a declared hyperparameter", d.bound),
            ),
            Some(h) if h.ty != HyperType::Int => r.err(
                d.loc,
                &path,
                format!("bound '{}' must be an int hyperparameter", d.bound),
            ),
            Some(_) => {}
        }
        if f.hyper.iter().any(|h| h.name == d.name) {
            r.err(
                d.loc,
                &path,
                format!("dim '{}' has the name of a hyperparameter", d.name),
            );
        }
    }
    let _ = hyper;
}

pub(super) fn resolve_hf_config(
    r: &mut Reader,
    f: &Family,
    hyper: &BTreeMap<String, HyperValue>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (k, v) in &f.hf_config {
        let path = join("hf_config", &k.name);
        if let Some(j) = to_json(r, v, hyper, &path) {
            out.insert(k.name.clone(), j);
        }
    }
    out
}

/// The family's `hf_defaults`, evaluated: each names a field of `hf_config`.
pub(super) fn resolve_hf_defaults(
    r: &mut Reader,
    f: &Family,
    hyper: &BTreeMap<String, HyperValue>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (k, v) in &f.hf_defaults {
        let path = join("hf_defaults", &k.name);
        if !f.hf_config.iter().any(|(c, _)| c.name == k.name) {
            r.err(
                k.loc,
                &path,
                format!("'{}' is not a field of hf_config", k.name),
            );
            continue;
        }
        let value = match v.as_str().and_then(|s| s.strip_prefix("$(")) {
            Some(inner) => {
                let Some(text) = inner.strip_suffix(')') else {
                    r.err(v.loc, &path, "an expression is written $(...)");
                    continue;
                };
                let lookup = |n: &str| hyper.get(n).and_then(|h| h.as_int());
                match expr::Expr::parse(text).and_then(|e| e.eval(&lookup)) {
                    Ok(i) => serde_json::Value::from(i),
                    Err(e) => {
                        r.err(v.loc, &path, e);
                        continue;
                    }
                }
            }
            None => match to_json(r, v, hyper, &path) {
                Some(j) => j,
                None => continue,
            },
        };
        out.insert(k.name.clone(), value);
    }
    out
}

pub(super) fn to_json(
    r: &mut Reader,
    y: &Y,
    hyper: &BTreeMap<String, HyperValue>,
    path: &str,
) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match &y.val {
        YVal::Scalar(s) => {
            if let Some(name) = s.strip_prefix('$') {
                match hyper.get(name) {
                    Some(v) => v.to_json(),
                    None => {
                        r.err(y.loc, path, format!("'${name}' names no hyperparameter"));
                        return None;
                    }
                }
            } else {
                reader::scalar_json(s)
            }
        }
        YVal::Seq(items) => Value::Array(
            items
                .iter()
                .map(|i| to_json(r, i, hyper, path))
                .collect::<Option<_>>()?,
        ),
        YVal::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Some((k.name.clone(), to_json(r, v, hyper, &join(path, &k.name))?)))
                .collect::<Option<_>>()?,
        ),
    })
}
