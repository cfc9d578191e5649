//! Family files: the top-level keys, hyperparameter and dim declarations, inputs and outputs.

use super::graph::{parse_layers, parse_ops, parse_weights};
use super::hyper_value;
use crate::error::Loc;
use crate::ir::DType;
use crate::spec::model::*;
use crate::spec::reader::{join, Reader};
use crate::spec::yaml::Y;

const FAMILY_KEYS: &[&str] = &[
    "family",
    "architecture",
    "dtype",
    "hyperparameters",
    "dims",
    "hf_config",
    "hf_defaults",
    "inputs",
    "weights",
    "prologue",
    "layers",
    "epilogue",
    "outputs",
];

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
    let hf_defaults = match root.get("hf_defaults") {
        Some(y) => r
            .map(y, "hf_defaults")
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
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
        hf_defaults,
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
                val: crate::spec::yaml::YVal::Scalar(k.name.clone()),
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
        let ty = match HyperType::ALL
            .into_iter()
            .find(|t| ty_node.as_str() == Some(t.name()))
        {
            Some(t) => t,
            None => {
                let names: Vec<&str> = HyperType::ALL.iter().map(|t| t.name()).collect();
                r.err(
                    ty_node.loc,
                    &path,
                    format!(
                        "unknown type {} (expected {})",
                        ty_node.describe(),
                        names.join(", ")
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
