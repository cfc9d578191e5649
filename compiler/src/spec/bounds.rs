//! Bounds on what a spec may size, checked before anything is built: a hostile or mistyped
//! hyperparameter (`num_layers: 10^12`, `vocab_size: 2^32`) is a located error, never a graph
//! that grows without limit or an allocation that aborts. Also the spec's size figures
//! (parameters, weight bytes, layers, context) computed from the spec alone, so that listing
//! specs never expands a graph.

use super::expr::Expr;
use super::model::{Family, HyperValue, Variant, WeightDecl};
use super::reader::{join, Reader};
use crate::error::Loc;
use std::collections::BTreeMap;

/// Largest value of any integer hyperparameter (vocabulary, dims, context): 2^24, far above
/// every real model (vocabularies ~2^18, contexts ~2^20) and small enough that a token id and
/// a position fit any index type.
pub const MAX_HYPER_INT: i64 = 1 << 24;
/// Most decoder layers (real models have at most ~130).
pub const MAX_LAYERS: i64 = 1024;
/// Most elements of one weight tensor (2^36: 137 GB in bf16).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 36;
/// Most parameters of a model (2^41, about 2.2 trillion).
pub const MAX_PARAMS: u64 = 1 << 41;
/// The hyperparameter that sets the standard deviation of random weights.
pub const INIT_STD: &str = "init_std";

/// Size figures of a spec, computed without lowering it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecSize {
    /// Decoder layers (the value of `layers.count`).
    pub layers: u64,
    /// Parameters, each stored tensor once (tied weights are not counted).
    pub params: u64,
    /// Bytes of the stored weights in the family's dtype.
    pub weight_bytes: u64,
}

/// Where a hyperparameter's value was written: the variant, or the family's default.
fn value_loc(v: &Variant, f: &Family, name: &str) -> (bool, Loc) {
    if let Some((_, _, loc)) = v.hyper.iter().find(|(n, _, _)| n == name) {
        return (true, *loc);
    }
    let loc = f.hyper.iter().find(|d| d.name == name).map(|d| d.loc);
    (false, loc.unwrap_or(v.hyper_loc))
}

/// Checks every bound; each problem is reported on the variant reader `vr` (values the variant
/// sets) or the family reader `fr` (defaults, shapes and counts the family writes).
pub fn check(
    vr: &mut Reader,
    fr: &mut Reader,
    v: &Variant,
    f: &Family,
    hyper: &BTreeMap<String, HyperValue>,
) {
    let report = |name: &str, message: String, vr: &mut Reader, fr: &mut Reader| {
        let path = join("hyperparameters", name);
        match value_loc(v, f, name) {
            (true, loc) => vr.err(loc, &path, message),
            (false, loc) => fr.err(loc, &path, message),
        }
    };
    let mut too_big = false;
    // The layer count has a tighter bound of its own, reported below.
    let count_name = f.layers.as_ref().map(|l| l.count.0.as_str());
    for (name, value) in hyper {
        match *value {
            HyperValue::Int(i) if i > MAX_HYPER_INT && Some(name.as_str()) != count_name => {
                too_big = true;
                report(
                    name,
                    format!(
                        "{i} is above {MAX_HYPER_INT}, the largest integer hyperparameter pio \
                         accepts (real models are far smaller: a typo?)"
                    ),
                    vr,
                    fr,
                );
            }
            // Kernels compute in f32: a value that is infinite there is as bad as inf.
            HyperValue::Float(x) if !x.is_finite() || !(x as f32).is_finite() => report(
                name,
                format!("must be a finite number within f32's range, got {x}"),
                vr,
                fr,
            ),
            HyperValue::Float(x) if name == INIT_STD && x < 0.0 => report(
                name,
                format!("the standard deviation of random weights must be >= 0, got {x}"),
                vr,
                fr,
            ),
            _ => {}
        }
    }
    if let Some(layers) = &f.layers {
        if let Some(count) = hyper.get(&layers.count.0).and_then(|h| h.as_int()) {
            if count > MAX_LAYERS {
                too_big = true;
                report(
                    &layers.count.0,
                    format!(
                        "{count} layers is above the bound of {MAX_LAYERS} (layers.count of \
                         family {})",
                        f.name
                    ),
                    vr,
                    fr,
                );
            }
        }
    }
    if too_big {
        return;
    }
    let lookup = |n: &str| hyper.get(n).and_then(|h| h.as_int());
    for w in weight_decls(f) {
        if let Some(n) = elements(w, &lookup).filter(|&n| n > MAX_TENSOR_ELEMENTS) {
            fr.err(
                w.loc,
                &w.path,
                format!(
                    "weight '{}' would have {n} elements, above the bound of \
                     {MAX_TENSOR_ELEMENTS} for one tensor",
                    w.name
                ),
            );
            return;
        }
    }
    let size = size(f, hyper);
    if size.params > MAX_PARAMS {
        vr.err(
            v.hyper_loc,
            "hyperparameters",
            format!(
                "these hyperparameters give {} parameters, above pio's bound of {MAX_PARAMS}",
                size.params
            ),
        );
    }
}

fn weight_decls(f: &Family) -> impl Iterator<Item = &WeightDecl> {
    f.weights
        .iter()
        .chain(f.layers.iter().flat_map(|l| l.weights.iter()))
}

/// Elements of a weight whose shape evaluates (None for shapes lowering will reject).
fn elements(w: &WeightDecl, lookup: &dyn Fn(&str) -> Option<i64>) -> Option<u64> {
    let mut n = 1u64;
    for item in w.shape.as_seq()? {
        let v = Expr::parse(item.as_str()?).ok()?.eval(lookup).ok()?;
        n = n.saturating_mul(u64::try_from(v).ok()?);
    }
    Some(n)
}

/// The spec's size figures from its declarations (shapes that do not evaluate count as 0;
/// lowering reports them).
pub fn size(f: &Family, hyper: &BTreeMap<String, HyperValue>) -> SpecSize {
    let lookup = |n: &str| hyper.get(n).and_then(|h| h.as_int());
    let stored = |ws: &[WeightDecl]| -> u64 {
        ws.iter()
            .filter(|w| w.tie_to.is_none())
            .map(|w| elements(w, &lookup).unwrap_or(0))
            .fold(0u64, u64::saturating_add)
    };
    let layers = f
        .layers
        .as_ref()
        .and_then(|l| lookup(&l.count.0))
        .and_then(|c| u64::try_from(c).ok())
        .unwrap_or(0);
    let per_layer = f.layers.as_ref().map_or(0, |l| stored(&l.weights));
    let params = stored(&f.weights).saturating_add(per_layer.saturating_mul(layers));
    SpecSize {
        layers,
        params,
        weight_bytes: params.saturating_mul(f.dtype.size() as u64),
    }
}
