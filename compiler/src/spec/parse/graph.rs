//! The graph sections of a family: weight declarations, op declarations and the layer block.

use crate::spec::model::*;
use crate::spec::reader::{join, Reader};
use crate::spec::yaml::{Key, Y};

pub(super) fn parse_weights(r: &mut Reader, y: &Y, section: &str) -> Vec<WeightDecl> {
    let Some(map) = r.map(y, section) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let path = join(section, &k.name);
        let Some(m) = r.map(v, &path) else { continue };
        r.only_keys(m, &path, &["shape", "hf", "init", "tie_to", "shard"]);
        let shape = r.required(m, "shape", &path, v.loc).cloned();
        let hf = r
            .required(m, "hf", &path, v.loc)
            .and_then(|h| r.string(h, &path).map(|s| (s, h.loc)));
        let init = match v.get("init") {
            None => Some(InitKind::Normal),
            Some(i) => match i.as_str() {
                Some("normal") => Some(InitKind::Normal),
                Some("ones") => Some(InitKind::Ones),
                _ => {
                    r.err(
                        i.loc,
                        &path,
                        format!("unknown init {} (expected normal or ones)", i.describe()),
                    );
                    None
                }
            },
        };
        // `tie_to: W`, or `tie_to: {weight: W, if: H}` (tied where bool hyperparameter H is true).
        let (tie_to, tie_if) = match v.get("tie_to") {
            None => (None, None),
            Some(t) => match t.as_map() {
                Some(tm) => {
                    let tpath = join(&path, "tie_to");
                    r.only_keys(tm, &tpath, &["weight", "if"]);
                    let weight = r
                        .required(tm, "weight", &tpath, t.loc)
                        .and_then(|w| r.ident(w, &tpath).map(|s| (s, w.loc)));
                    let cond = r
                        .required(tm, "if", &tpath, t.loc)
                        .and_then(|c| r.ident(c, &tpath).map(|s| (s, c.loc)));
                    (weight, cond)
                }
                None => (r.ident(t, &path).map(|s| (s, t.loc)), None),
            },
        };
        let shard = v
            .get("shard")
            .and_then(|y| parse_shard(r, y, &join(&path, "shard")));
        if let (Some(shape), Some((hf, hf_loc)), Some(init)) = (shape, hf, init) {
            out.push(WeightDecl {
                name: k.name.clone(),
                shape,
                hf,
                hf_loc,
                init,
                tie_to,
                tie_if,
                shard,
                loc: k.loc,
                path,
            });
        }
    }
    out
}

/// `shard: rows` or `shard: {split: rows, groups: EXPR}`.
fn parse_shard(r: &mut Reader, y: &Y, path: &str) -> Option<ShardDecl> {
    let (split, groups) = match y.as_map() {
        Some(m) => {
            r.only_keys(m, path, &["split", "groups"]);
            (
                r.required(m, "split", path, y.loc)?,
                y.get("groups").cloned(),
            )
        }
        None => (y, None),
    };
    let word = r.string(split, path)?;
    let Some(axis) = pio_artifact::ShardAxis::parse(&word) else {
        let names: Vec<&str> = pio_artifact::ShardAxis::ALL
            .iter()
            .map(|a| a.name())
            .collect();
        r.err(
            split.loc,
            path,
            format!("unknown split '{word}' (expected {})", names.join(" or ")),
        );
        return None;
    };
    Some(ShardDecl {
        axis,
        groups,
        loc: y.loc,
    })
}

pub(super) fn parse_ops(r: &mut Reader, y: &Y, section: &str) -> Vec<OpDecl> {
    let Some(map) = r.map(y, section) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        if let Some(op) = parse_op(r, k, v, section) {
            out.push(op);
        }
    }
    out
}

fn parse_op(r: &mut Reader, k: &Key, v: &Y, section: &str) -> Option<OpDecl> {
    let path = join(section, &k.name);
    if !crate::spec::reader::is_ident(&k.name) {
        r.err(
            k.loc,
            &path,
            format!(
                "'{}' is not a valid tensor name (letters, digits and '_' only)",
                k.name
            ),
        );
        return None;
    }
    let m = r.map(v, &path)?;
    let op = r.required(m, "op", &path, v.loc);
    let ins = r.required(m, "in", &path, v.loc);
    let (op, ins) = (op?, ins?);
    let op_name = r.string(op, &path)?;
    let list = r.seq(ins, &path)?;
    let mut inputs = Vec::new();
    for i in list {
        inputs.push((r.ident(i, &path)?, i.loc));
    }
    let attrs = m
        .iter()
        .filter(|(k, _)| k.name != "op" && k.name != "in")
        .cloned()
        .collect();
    Some(OpDecl {
        name: k.name.clone(),
        loc: k.loc,
        path,
        op: op_name,
        op_loc: op.loc,
        inputs,
        in_loc: ins.loc,
        attrs,
    })
}

pub(super) fn parse_layers(r: &mut Reader, y: &Y) -> Option<LayersDecl> {
    let m = r.map(y, "layers")?;
    r.only_keys(m, "layers", &["count", "input", "output", "weights", "ops"]);
    let name_at = |key: &str, r: &mut Reader| {
        r.required(m, key, "layers", y.loc)
            .and_then(|v| r.ident(v, &join("layers", key)).map(|s| (s, v.loc)))
    };
    let count = name_at("count", r);
    let input = name_at("input", r);
    let output = name_at("output", r);
    let weights = y
        .get("weights")
        .map(|w| parse_weights(r, w, "layers.weights"))
        .unwrap_or_default();
    let ops = r
        .required(m, "ops", "layers", y.loc)
        .map(|o| parse_ops(r, o, "layers"))
        .unwrap_or_default();
    Some(LayersDecl {
        count: count?,
        input: input?,
        output: output?,
        weights,
        ops,
        loc: y.loc,
    })
}
