//! Parsing family and variant files into [`Family`] and [`Variant`], collecting every problem.

use super::model::*;
use super::reader::{join, parse_float, parse_int, Reader};
use super::yaml::{Key, Y};
use crate::error::Loc;
use crate::ir::DType;
use std::path::Path;

const FAMILY_KEYS: &[&str] = &[
    "family",
    "architecture",
    "dtype",
    "hyperparameters",
    "dims",
    "hf_config",
    "inputs",
    "weights",
    "prologue",
    "layers",
    "epilogue",
    "outputs",
];
const VARIANT_KEYS: &[&str] = &[
    "family",
    "name",
    "description",
    "hyperparameters",
    "manifest",
];

/// Whether a parsed file is a variant (it names a family and has a `name`) rather than a
/// family.
pub fn is_variant(root: &Y) -> bool {
    root.get("name").is_some() && root.get("layers").is_none()
}

/// Parses a family file.
pub fn parse_family(r: &mut Reader, root: &Y) -> Option<Family> {
    let map = r.map(root, "")?;
    r.only_keys(map, "", FAMILY_KEYS);
    let at = root.loc;
    let name = r
        .required(map, "family", "", at)
        .and_then(|y| r.ident(y, "family"));
    let architecture = r
        .required(map, "architecture", "", at)
        .and_then(|y| r.string(y, "architecture"));
    let dtype = match root.get("dtype") {
        None => Some(DType::BF16),
        Some(y) => match y.as_str().and_then(DType::parse) {
            Some(d) if d.is_float() => Some(d),
            _ => {
                r.err(
                    y.loc,
                    "dtype",
                    format!("unknown dtype {} (expected bf16, f16 or f32)", y.describe()),
                );
                None
            }
        },
    };
    let hyper = r
        .required(map, "hyperparameters", "", at)
        .map(|y| parse_hyper_decls(r, y))
        .unwrap_or_default();
    let dims = r
        .required(map, "dims", "", at)
        .map(|y| parse_dims(r, y))
        .unwrap_or_default();
    let hf_config = match root.get("hf_config") {
        Some(y) => r.map(y, "hf_config").map(<[_]>::to_vec).unwrap_or_default(),
        None => Vec::new(),
    };
    let inputs = r
        .required(map, "inputs", "", at)
        .map(|y| parse_inputs(r, y))
        .unwrap_or_default();
    let weights = root
        .get("weights")
        .map(|y| parse_weights(r, y, "weights"))
        .unwrap_or_default();
    let prologue = root
        .get("prologue")
        .map(|y| parse_ops(r, y, "prologue"))
        .unwrap_or_default();
    let layers = root.get("layers").and_then(|y| parse_layers(r, y));
    let epilogue = root
        .get("epilogue")
        .map(|y| parse_ops(r, y, "epilogue"))
        .unwrap_or_default();
    let outputs = r
        .required(map, "outputs", "", at)
        .map(|y| parse_outputs(r, y))
        .unwrap_or_default();
    Some(Family {
        file: r.file.clone(),
        name: name?,
        architecture: architecture?,
        dtype: dtype?,
        hyper,
        dims,
        hf_config,
        inputs,
        weights,
        prologue,
        layers,
        epilogue,
        outputs,
    })
}

fn parse_hyper_decls(r: &mut Reader, y: &Y) -> Vec<HyperDecl> {
    let mut out = Vec::new();
    let Some(map) = r.map(y, "hyperparameters") else {
        return out;
    };
    for (k, v) in map {
        let path = join("hyperparameters", &k.name);
        if r.ident(
            &Y {
                loc: k.loc,
                val: super::yaml::YVal::Scalar(k.name.clone()),
            },
            &path,
        )
        .is_none()
        {
            continue;
        }
        let (ty_node, default) = match v.as_map() {
            Some(m) => {
                r.only_keys(m, &path, &["type", "default"]);
                (r.required(m, "type", &path, v.loc), v.get("default"))
            }
            None => (Some(v), None),
        };
        let Some(ty_node) = ty_node else { continue };
        let ty = match ty_node.as_str() {
            Some("int") => HyperType::Int,
            Some("float") => HyperType::Float,
            _ => {
                r.err(
                    ty_node.loc,
                    &path,
                    format!(
                        "unknown type {} (expected int or float)",
                        ty_node.describe()
                    ),
                );
                continue;
            }
        };
        let default = default.and_then(|d| hyper_value(r, d, ty, &path));
        out.push(HyperDecl {
            name: k.name.clone(),
            ty,
            default,
            loc: k.loc,
        });
    }
    out
}

/// A hyperparameter value of type `ty` (an integer is accepted where a float is expected).
pub fn hyper_value(r: &mut Reader, y: &Y, ty: HyperType, path: &str) -> Option<HyperValue> {
    let s = y.as_str().unwrap_or("");
    match ty {
        HyperType::Int => match parse_int(s) {
            Some(v) => Some(HyperValue::Int(v)),
            None => {
                r.err(
                    y.loc,
                    path,
                    format!("expected an integer, found {}", y.describe()),
                );
                None
            }
        },
        HyperType::Float => match parse_float(s) {
            Some(v) => Some(HyperValue::Float(v)),
            None => {
                r.err(
                    y.loc,
                    path,
                    format!("expected a number, found {}", y.describe()),
                );
                None
            }
        },
    }
}

fn parse_dims(r: &mut Reader, y: &Y) -> Vec<DimDecl> {
    let Some(map) = r.map(y, "dims") else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(k, v)| {
            let path = join("dims", &k.name);
            let bound = r.ident(v, &path)?;
            Some(DimDecl {
                name: k.name.clone(),
                bound,
                loc: k.loc,
            })
        })
        .collect()
}

fn parse_inputs(r: &mut Reader, y: &Y) -> Vec<InputDecl> {
    let Some(map) = r.map(y, "inputs") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let path = join("inputs", &k.name);
        let Some(m) = r.map(v, &path) else { continue };
        r.only_keys(m, &path, &["dtype", "shape", "role"]);
        let role = r.required(m, "role", &path, v.loc).and_then(|y| {
            let parsed = y.as_str().and_then(crate::ir::InputRole::parse);
            if parsed.is_none() {
                let roles: Vec<&str> = crate::ir::InputRole::ALL.iter().map(|r| r.name()).collect();
                r.err(
                    y.loc,
                    &path,
                    format!(
                        "unknown input role {} (expected {})",
                        y.describe(),
                        roles.join(" or ")
                    ),
                );
            }
            parsed
        });
        let dtype = r.required(m, "dtype", &path, v.loc).and_then(|d| {
            let parsed = d.as_str().and_then(DType::parse);
            if parsed.is_none() {
                r.err(
                    d.loc,
                    &path,
                    format!(
                        "unknown dtype {} (expected i32, bf16, f16 or f32)",
                        d.describe()
                    ),
                );
            }
            parsed
        });
        let shape = r.required(m, "shape", &path, v.loc).cloned();
        if let (Some(dtype), Some(shape), Some(role)) = (dtype, shape, role) {
            out.push(InputDecl {
                name: k.name.clone(),
                role,
                dtype,
                shape,
                loc: k.loc,
            });
        }
    }
    out
}

fn parse_weights(r: &mut Reader, y: &Y, section: &str) -> Vec<WeightDecl> {
    let Some(map) = r.map(y, section) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let path = join(section, &k.name);
        let Some(m) = r.map(v, &path) else { continue };
        r.only_keys(m, &path, &["shape", "hf", "init", "tie_to"]);
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
        let tie_to = v
            .get("tie_to")
            .and_then(|t| r.ident(t, &path).map(|s| (s, t.loc)));
        if let (Some(shape), Some((hf, hf_loc)), Some(init)) = (shape, hf, init) {
            out.push(WeightDecl {
                name: k.name.clone(),
                shape,
                hf,
                hf_loc,
                init,
                tie_to,
                loc: k.loc,
                path,
            });
        }
    }
    out
}

fn parse_ops(r: &mut Reader, y: &Y, section: &str) -> Vec<OpDecl> {
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
    if !super::reader::is_ident(&k.name) {
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

fn parse_layers(r: &mut Reader, y: &Y) -> Option<LayersDecl> {
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

fn parse_outputs(r: &mut Reader, y: &Y) -> Vec<(crate::ir::OutputRole, String, Loc)> {
    let Some(map) = r.map(y, "outputs") else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(k, v)| {
            let path = join("outputs", &k.name);
            let Some(role) = crate::ir::OutputRole::parse(&k.name) else {
                let roles: Vec<&str> = crate::ir::OutputRole::ALL
                    .iter()
                    .map(|r| r.name())
                    .collect();
                r.err(
                    k.loc,
                    &path,
                    format!(
                        "unknown output '{}' (an output is named by its role: {})",
                        k.name,
                        roles.join(", ")
                    ),
                );
                return None;
            };
            let t = r.ident(v, &path)?;
            Some((role, t, v.loc))
        })
        .collect()
}

/// Parses a variant file; relative manifest paths are resolved against `dir`.
pub fn parse_variant(r: &mut Reader, root: &Y, dir: &Path) -> Option<Variant> {
    let map = r.map(root, "")?;
    r.only_keys(map, "", VARIANT_KEYS);
    let at = root.loc;
    let family = r
        .required(map, "family", "", at)
        .and_then(|y| r.string(y, "family").map(|s| (s, y.loc)));
    let name = r
        .required(map, "name", "", at)
        .and_then(|y| r.string(y, "name"));
    let description = root
        .get("description")
        .and_then(|y| r.string(y, "description"))
        .unwrap_or_default();
    let hyper_node = r.required(map, "hyperparameters", "", at);
    let hyper_loc = hyper_node.map(|y| y.loc).unwrap_or(at);
    let mut hyper = Vec::new();
    if let Some(hm) = hyper_node.and_then(|y| r.map(y, "hyperparameters")) {
        for (k, v) in hm {
            let path = join("hyperparameters", &k.name);
            let s = v.as_str().unwrap_or("");
            let val = match (parse_int(s), parse_float(s)) {
                (Some(i), _) => HyperValue::Int(i),
                (None, Some(f)) => HyperValue::Float(f),
                _ => {
                    r.err(
                        v.loc,
                        &path,
                        format!("expected a number, found {}", v.describe()),
                    );
                    continue;
                }
            };
            hyper.push((k.name.clone(), val, k.loc));
        }
    }
    let manifest = r
        .required(map, "manifest", "", at)
        .and_then(|y| parse_manifest(r, y, dir));
    Some(Variant {
        file: r.file.clone(),
        family: family?,
        name: name?,
        description,
        hyper,
        hyper_loc,
        manifest: manifest?,
    })
}

fn parse_manifest(r: &mut Reader, y: &Y, dir: &Path) -> Option<Manifest> {
    let m = r.map(y, "manifest")?;
    let p = "manifest";
    r.only_keys(
        m,
        p,
        &[
            "bos_token_id",
            "eos_token_ids",
            "pad_token_id",
            "sampling",
            "tokenizer",
            "chat_template",
            "thinking",
        ],
    );
    let token_id = |r: &mut Reader, v: &Y, path: &str| -> Option<u32> {
        let i = r.int(v, path)?;
        match u32::try_from(i) {
            Ok(t) => Some(t),
            Err(_) => {
                r.err(v.loc, path, format!("token id {i} is out of range"));
                None
            }
        }
    };
    let bos = y
        .get("bos_token_id")
        .and_then(|v| token_id(r, v, "manifest.bos_token_id"));
    let pad = y
        .get("pad_token_id")
        .and_then(|v| token_id(r, v, "manifest.pad_token_id"));
    let mut eos = Vec::new();
    if let Some(list) = r
        .required(m, "eos_token_ids", p, y.loc)
        .and_then(|v| r.seq(v, "manifest.eos_token_ids"))
    {
        for v in list {
            eos.extend(token_id(r, v, "manifest.eos_token_ids"));
        }
        if list.is_empty() {
            r.err(
                y.loc,
                "manifest.eos_token_ids",
                "at least one eos token id is needed",
            );
        }
    }
    let sampling = match y.get("sampling") {
        None => SamplingDefaults::default(),
        Some(s) => parse_sampling(r, s)?,
    };
    let file = |key: &str, r: &mut Reader| -> Option<std::path::PathBuf> {
        let v = r.required(m, key, p, y.loc)?;
        let rel = r.string(v, &join(p, key))?;
        let path = dir.join(&rel);
        if !path.is_file() {
            r.err(
                v.loc,
                &join(p, key),
                format!("file '{rel}' not found (looked for {})", path.display()),
            );
            return None;
        }
        Some(path)
    };
    let tokenizer = file("tokenizer", r);
    let chat_template = file("chat_template", r);
    let thinking = y
        .get("thinking")
        .and_then(|v| r.bool(v, "manifest.thinking"))
        .unwrap_or(false);
    Some(Manifest {
        bos_token_id: bos,
        eos_token_ids: eos,
        pad_token_id: pad,
        sampling,
        tokenizer: tokenizer?,
        chat_template: chat_template?,
        thinking,
    })
}

fn parse_sampling(r: &mut Reader, y: &Y) -> Option<SamplingDefaults> {
    let path = "manifest.sampling";
    let m = r.map(y, path)?;
    let keys = [
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "repetition_penalty",
    ];
    r.only_keys(m, path, &keys);
    let mut s = SamplingDefaults::default();
    let mut ok = true;
    for (k, v) in m {
        let p = join(path, &k.name);
        match k.name.as_str() {
            "top_k" => match r.int(v, &p) {
                Some(x) if x >= 0 => s.top_k = x,
                Some(x) => {
                    r.err(v.loc, &p, format!("top_k must be >= 0, got {x}"));
                    ok = false;
                }
                None => ok = false,
            },
            name if keys.contains(&name) => {
                let Some(x) = r.float(v, &p) else {
                    ok = false;
                    continue;
                };
                let valid = match name {
                    "temperature" | "presence_penalty" => x >= 0.0,
                    "top_p" => x > 0.0 && x <= 1.0,
                    "min_p" => (0.0..1.0).contains(&x),
                    _ => x > 0.0,
                };
                if !valid {
                    r.err(v.loc, &p, format!("{name} {x} is out of range"));
                    ok = false;
                }
                match name {
                    "temperature" => s.temperature = x,
                    "top_p" => s.top_p = x,
                    "min_p" => s.min_p = x,
                    "presence_penalty" => s.presence_penalty = x,
                    _ => s.repetition_penalty = x,
                }
            }
            _ => {}
        }
    }
    ok.then_some(s)
}
