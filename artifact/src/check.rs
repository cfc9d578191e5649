//! The consistency of a description read from disk: what the runtime would otherwise trust
//! blindly (a launch's kernel, a pointer's region bounds, the weights' layout).

use crate::{Arg, Artifact, Region, Step};
use std::collections::HashSet;

/// Every launch names one of the artifact's kernels, every pointer argument lies inside its
/// region, and the weights, KV caches and io buffers fit their regions.
pub fn check(a: &Artifact) -> Result<(), String> {
    let kernels: HashSet<&str> = a.kernels.iter().map(|k| k.name.as_str()).collect();
    if kernels.len() != a.kernels.len() {
        return Err("two kernels have the same name".into());
    }
    if a.max_prefill == 0 || a.max_context == 0 || a.model.vocab_size == 0 {
        return Err(format!(
            "max_prefill ({}), max_context ({}) and vocab_size ({}) must be at least 1",
            a.max_prefill, a.max_context, a.model.vocab_size
        ));
    }
    let within = |what: &str, region: Region, offset: u64, bytes: u64| {
        let size = a.regions.size(region);
        match offset.checked_add(bytes) {
            Some(end) if end <= size => Ok(()),
            _ => Err(format!(
                "{what}: bytes {offset}..+{bytes} lie outside the {region:?} region of {size} bytes"
            )),
        }
    };
    for w in &a.weights {
        let elems = w
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let expected = elems.and_then(|n| n.checked_mul(w.dtype.size() as u64));
        if expected != Some(w.bytes) {
            return Err(format!(
                "weight {}: {} bytes for shape {:?} of {}",
                w.name, w.bytes, w.shape, w.dtype
            ));
        }
        let rows: usize = w.parts.iter().map(|p| p.rows).sum();
        if w.shape.first() != Some(&rows) {
            return Err(format!(
                "weight {}: its parts have {rows} rows, its shape is {:?}",
                w.name, w.shape
            ));
        }
        within(
            &format!("weight {}", w.name),
            Region::Weights,
            w.offset,
            w.bytes,
        )?;
    }
    for kv in &a.kv_caches {
        let what = format!("layer {} {} cache", kv.layer, kv.cache);
        within(&what, Region::Kv, kv.offset, kv.bytes)?;
    }
    let io = &a.io;
    let prefill = a.max_prefill as u64 * 4;
    within("token ids", Region::Io, io.tokens, prefill)?;
    within("positions", Region::Io, io.positions, prefill)?;
    let logits = io.logits_rows as u64 * a.model.vocab_size as u64 * io.logits_dtype.size() as u64;
    within("logits", Region::Io, io.logits, logits)?;
    for (list, steps) in [("decode", &a.decode), ("prefill", &a.prefill)] {
        for (i, s) in steps.iter().enumerate() {
            let at = format!("{list} step {i} ({})", s.node());
            let args: Vec<&Arg> = match s {
                Step::Kernel(l) => {
                    if !kernels.contains(l.kernel.as_str()) {
                        return Err(format!("{at}: kernel {} is not in the artifact", l.kernel));
                    }
                    l.args.iter().collect()
                }
                Step::Gemm(g) => vec![&g.a, &g.b, &g.c],
            };
            for arg in args {
                if let Arg::Ptr { region, offset } = arg {
                    within(&at, *region, *offset, 0)?;
                }
            }
        }
    }
    Ok(())
}
