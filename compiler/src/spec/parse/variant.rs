//! Variant files: the family they instantiate, hyperparameter values and the manifest
//! (special tokens, sampling defaults, tokenizer and chat-template files).

use crate::spec::model::*;
use crate::spec::reader::{join, parse_float, parse_int, Reader};
use crate::spec::yaml::Y;
use std::path::Path;

const VARIANT_KEYS: &[&str] = &[
    "family",
    "name",
    "description",
    "hyperparameters",
    "manifest",
];

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
            // A map (or null) is a rope scaling, written as config.json has it.
            if v.as_map().is_some() || v.as_str() == Some("null") {
                if let Some(val) = super::rope_scaling_value(r, v, &path) {
                    hyper.push((k.name.clone(), val, k.loc));
                }
                continue;
            }
            let s = v.as_str().unwrap_or("");
            let val = match (parse_int(s), parse_float(s), s) {
                (Some(i), _, _) => HyperValue::Int(i),
                (None, Some(f), _) => HyperValue::Float(f),
                (None, None, "true" | "false") => HyperValue::Bool(s == "true"),
                _ => {
                    r.err(
                        v.loc,
                        &path,
                        format!(
                            "expected a number, true, false, or a rope_scaling map, found {}",
                            v.describe()
                        ),
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
