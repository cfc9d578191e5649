//! A variant written from a checkpoint's own files, so that `pio run --weights DIR` needs no
//! spec: config.json's `architectures` picks the family (the one whose `architecture` it names),
//! the family's `hf_config` mapping is read backwards (`num_hidden_layers: $num_layers` takes
//! `num_layers` from config.json), fields a config leaves out take the family's `hf_defaults`
//! (what transformers assumes), and the manifest points at the checkpoint's tokenizer.json and
//! tokenizer_config.json, with its eos/bos ids and sampling defaults from generation_config.json.
//! `pio spec from-config DIR` prints the same text so that it can be kept and edited.

use super::model::{Family, HyperType, HyperValue};
use super::reader::{yaml_json, Reader};
use super::yaml::{YVal, Y};
use super::{expr, parse, read_yaml, SpecErrors};
use pio_artifact::RopeScaling;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest config.json / generation_config.json / tokenizer_config.json read here.
const MAX_JSON_BYTES: u64 = 16 << 20;

/// What went wrong making a variant from a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum FromConfigError {
    /// A checkpoint file is missing, unreadable or says something no family can run.
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A spec file did not load.
    #[error(transparent)]
    Spec(#[from] SpecErrors),
    /// The variant written from a checkpoint did not load (a bound it breaks, say).
    #[error(
        "{}: the variant pio wrote from its config.json does not load (`pio spec from-config {}` \
         prints it):\n{errors}",
        dir.display(),
        dir.display()
    )]
    Written { dir: PathBuf, errors: SpecErrors },
}

/// A variant written from a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct FromConfig {
    /// The family file it names.
    pub family: PathBuf,
    /// The variant file's text.
    pub text: String,
    /// Where the text reads as if it were a file: in the specs folder, next to its family.
    pub path: PathBuf,
}

/// Writes the variant for the checkpoint in `dir` from the families in `specs_dir`.
pub fn from_config(dir: &Path, specs_dir: &Path) -> Result<FromConfig, FromConfigError> {
    let dir = std::fs::canonicalize(dir).map_err(|e| FromConfigError::Checkpoint {
        path: dir.to_path_buf(),
        message: format!("cannot read the checkpoint folder: {e}"),
    })?;
    let config_path = dir.join("config.json");
    let mut config = read_object(&config_path)?;
    pio_artifact::lift_rope_parameters(&mut config);
    let bad = |message: String| FromConfigError::Checkpoint {
        path: config_path.clone(),
        message,
    };
    let architecture = match config.get("architectures") {
        Some(Value::Array(a)) if !a.is_empty() => match &a[0] {
            Value::String(s) => s.clone(),
            other => return Err(bad(format!("architectures[0] is {other}, not a name"))),
        },
        Some(other) => {
            return Err(bad(format!(
                "architectures is {other}, not a list of names"
            )))
        }
        None => {
            return Err(bad(
                "has no 'architectures' (which model class it is)".into()
            ))
        }
    };
    let families = families(specs_dir);
    let Some((family_path, family)) = families
        .iter()
        .find(|(_, f)| f.architecture == architecture)
    else {
        let known: Vec<String> = families
            .iter()
            .map(|(_, f)| format!("{} ({})", f.name, f.architecture))
            .collect();
        return Err(bad(format!(
            "architecture {architecture} is not one pio has a family for; the families in {} \
             are: {}",
            specs_dir.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let hyper = hyperparameters(family, &config)
        .map_err(|m| bad(format!("{m} (family {})", family.name)))?;
    let manifest = manifest(&dir, &config)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let mut text = format!(
        "# Written by `pio spec from-config` from {}: the variant pio uses for this checkpoint.\n\
         # Keep it next to its family ({}) to run or edit it as a spec.\n",
        config_path.display(),
        family_path.display()
    );
    text.push_str(&format!("family: {}\n", family.name));
    text.push_str(&format!("name: {}\n", quoted(&name)));
    text.push_str(&format!(
        "description: {}\n\nhyperparameters:\n",
        quoted(&format!("{architecture} from {}", config_path.display()))
    ));
    for (k, v) in &hyper {
        text.push_str(&format!("  {k}: {}\n", yaml_value(v)));
    }
    text.push_str("\nmanifest:\n");
    text.push_str(&manifest);
    let path = specs_dir.join(format!("{}.from-config.yaml", sanitized(&name)));
    Ok(FromConfig {
        family: family_path.clone(),
        text,
        path,
    })
}

/// The spec of the checkpoint in `dir`: [`from_config`], loaded.
pub fn load(dir: &Path, specs_dir: &Path) -> Result<super::ModelSpec, FromConfigError> {
    let v = from_config(dir, specs_dir)?;
    super::load_text(&v.text, &v.path).map_err(|errors| FromConfigError::Written {
        dir: dir.to_path_buf(),
        errors,
    })
}

/// The family files of a specs folder (files that define a graph and parse).
fn families(specs_dir: &Path) -> Vec<(PathBuf, Family)> {
    let Ok(entries) = std::fs::read_dir(specs_dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let root = read_yaml(&p).ok()?;
            if parse::is_variant(&root) || root.get("layers").is_none() {
                return None;
            }
            let mut r = Reader::new(&p);
            let f = parse::parse_family(&mut r, &root)?;
            r.errors.is_empty().then_some((p, f))
        })
        .collect()
}

/// The family's hyperparameters from config.json, by its hf_config mapping read backwards.
fn hyperparameters(
    f: &Family,
    config: &Map<String, Value>,
) -> Result<BTreeMap<String, HyperValue>, String> {
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for (key, y) in &f.hf_config {
        let field = key.name.as_str();
        match hyper_ref(y) {
            Some(h) => match config.get(field) {
                Some(v) => {
                    out.insert(h.to_string(), typed(f, h, field, v)?);
                }
                None => missing.push((field, h)),
            },
            None => {
                let want = yaml_json(y);
                let got = match config.get(field) {
                    Some(g) => Some(g.clone()),
                    None => literal_default(f, field),
                };
                match got {
                    Some(g) if pio_artifact::hf_config::field_equal(field, &g, &want) => {}
                    Some(g) => {
                        return Err(format!(
                            "{field} is {g}; pio runs this family with {field} {want} only"
                        ))
                    }
                    None => return Err(format!("has no '{field}' (the family needs {want})")),
                }
            }
        }
    }
    // Fields left out: what transformers assumes, from the values read so far.
    for (field, h) in missing {
        let Some(default) = f.hf_defaults.iter().find(|(k, _)| k.name == field) else {
            return Err(format!(
                "has no '{field}' (the family reads its hyperparameter {h} from it)"
            ));
        };
        let value = default_value(&default.1, &out)
            .map_err(|e| format!("has no '{field}', and its default cannot be computed: {e}"))?;
        out.insert(h.to_string(), typed(f, h, field, &value)?);
    }
    Ok(out)
}

/// `$name` in hf_config: the hyperparameter it maps to.
fn hyper_ref(y: &Y) -> Option<&str> {
    match &y.val {
        YVal::Scalar(s) => s.strip_prefix('$').filter(|n| !n.starts_with('(')),
        _ => None,
    }
}

/// The family's default for a constant field, if it has one (then a config may leave it out).
fn literal_default(f: &Family, field: &str) -> Option<Value> {
    f.hf_defaults
        .iter()
        .find(|(k, _)| k.name == field)
        .map(|(_, y)| yaml_json(y))
}

/// An hf_defaults value: `$(expression)`, `$name` or a literal.
fn default_value(y: &Y, known: &BTreeMap<String, HyperValue>) -> Result<Value, String> {
    if let Some(s) = y.as_str() {
        if let Some(inner) = s.strip_prefix("$(").and_then(|t| t.strip_suffix(')')) {
            let lookup = |n: &str| known.get(n).and_then(|v| v.as_int());
            return expr::Expr::parse(inner)
                .and_then(|e| e.eval(&lookup))
                .map(Value::from);
        }
        if let Some(name) = s.strip_prefix('$') {
            return known
                .get(name)
                .map(|v| v.to_json())
                .ok_or_else(|| format!("'{name}' is not known yet"));
        }
    }
    Ok(yaml_json(y))
}

/// A config.json value as the hyperparameter's declared type.
fn typed(f: &Family, h: &str, field: &str, v: &Value) -> Result<HyperValue, String> {
    let Some(decl) = f.hyper.iter().find(|d| d.name == h) else {
        return Err(format!(
            "hf_config maps {field} to '{h}', which is not a hyperparameter"
        ));
    };
    let wrong = |what: &str| format!("{field} is {v}: expected {what}");
    Ok(match decl.ty {
        HyperType::Int => HyperValue::Int(v.as_i64().ok_or_else(|| wrong("an integer"))?),
        HyperType::Float => HyperValue::Float(v.as_f64().ok_or_else(|| wrong("a number"))?),
        HyperType::Bool => HyperValue::Bool(v.as_bool().ok_or_else(|| wrong("true or false"))?),
        HyperType::RopeScaling => {
            HyperValue::Rope(RopeScaling::from_json(v).map_err(|e| format!("{field}: {e}"))?)
        }
    })
}

/// The manifest section: the checkpoint's tokenizer files, token ids and sampling defaults.
fn manifest(dir: &Path, config: &Map<String, Value>) -> Result<String, FromConfigError> {
    let need = |name: &str, why: &str| -> Result<PathBuf, FromConfigError> {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(FromConfigError::Checkpoint {
                path: p,
                message: format!(
                    "not found: pio takes {why} from it to run a checkpoint without a spec"
                ),
            })
        }
    };
    let tokenizer = need("tokenizer.json", "the tokenizer")?;
    let tokenizer_config = need(
        "tokenizer_config.json",
        "the chat template and special tokens",
    )?;
    let generation_path = dir.join("generation_config.json");
    let generation = if generation_path.is_file() {
        read_object(&generation_path)?
    } else {
        Map::new()
    };
    let field = |k: &str| {
        generation
            .get(k)
            .or_else(|| config.get(k))
            .filter(|v| !v.is_null())
    };
    let ids = |k: &str| -> Result<Option<Vec<u64>>, FromConfigError> {
        let bad = || FromConfigError::Checkpoint {
            path: if generation.contains_key(k) {
                generation_path.clone()
            } else {
                dir.join("config.json")
            },
            message: format!("{k} must be a token id or a list of token ids"),
        };
        match field(k) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(Value::as_u64)
                .collect::<Option<_>>()
                .map(Some)
                .ok_or_else(bad),
            Some(v) => v.as_u64().map(|i| Some(vec![i])).ok_or_else(bad),
        }
    };
    // Token ids inside the vocabulary (config.json's vocab_size, as every HF config has it).
    let vocab = config.get("vocab_size").and_then(Value::as_u64);
    for key in ["eos_token_id", "bos_token_id", "pad_token_id"] {
        let outside =
            ids(key)?.and_then(|v| v.into_iter().find(|&i| vocab.is_some_and(|n| i >= n)));
        if let Some(id) = outside {
            return Err(FromConfigError::Checkpoint {
                path: if generation.contains_key(key) {
                    generation_path.clone()
                } else {
                    dir.join("config.json")
                },
                message: format!(
                    "{key} {id} is outside the vocabulary of {}",
                    vocab.unwrap_or(0)
                ),
            });
        }
    }
    let eos = ids("eos_token_id")?
        .filter(|e| !e.is_empty())
        .ok_or_else(|| FromConfigError::Checkpoint {
            path: dir.join("config.json"),
            message:
                "no eos_token_id here nor in generation_config.json: pio needs to know where a \
                  reply ends"
                    .into(),
        })?;
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let mut m = String::new();
    for (key, out) in [
        ("bos_token_id", "bos_token_id"),
        ("pad_token_id", "pad_token_id"),
    ] {
        if let Some(first) = ids(key)?.and_then(|v| v.first().copied()) {
            m.push_str(&format!("  {out}: {first}\n"));
        }
    }
    m.push_str(&format!("  eos_token_ids: [{}]\n", list(&eos)));
    let mut sampling = Vec::new();
    if generation.get("do_sample") == Some(&Value::Bool(false)) {
        sampling.push("temperature: 0".to_string());
    } else {
        for k in [
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "repetition_penalty",
        ] {
            if let Some(v) = generation.get(k).filter(|v| v.is_number()) {
                sampling.push(format!("{k}: {v}"));
            }
        }
    }
    if !sampling.is_empty() {
        m.push_str(&format!("  sampling: {{{}}}\n", sampling.join(", ")));
    }
    m.push_str(&format!(
        "  tokenizer: {}\n",
        quoted(&tokenizer.display().to_string())
    ));
    m.push_str(&format!(
        "  chat_template: {}\n",
        quoted(&tokenizer_config.display().to_string())
    ));
    // The template takes enable_thinking where it mentions it (in the config or in a
    // chat_template.jinja beside it, which transformers prefers).
    let mut template = read_object(&tokenizer_config)?
        .get("chat_template")
        .map(|v| v.to_string())
        .unwrap_or_default();
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        template = pio_artifact::read::read_bounded_text(&jinja, MAX_JSON_BYTES).map_err(|e| {
            FromConfigError::Checkpoint {
                path: jinja.clone(),
                message: format!("cannot read: {e}"),
            }
        })?;
    }
    m.push_str(&format!(
        "  thinking: {}\n",
        template.contains("enable_thinking")
    ));
    Ok(m)
}

/// A JSON object file of the checkpoint.
fn read_object(path: &Path) -> Result<Map<String, Value>, FromConfigError> {
    let bad = |message: String| FromConfigError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let bytes = pio_artifact::read::read_bounded(path, MAX_JSON_BYTES).map_err(|e| {
        bad(if e.kind() == std::io::ErrorKind::NotFound {
            "file not found".into()
        } else {
            format!("cannot read: {e}")
        })
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(bad("not a JSON object".into())),
        Err(e) => Err(bad(format!("invalid JSON: {e}"))),
    }
}

/// A hyperparameter as the variant file writes it.
fn yaml_value(v: &HyperValue) -> String {
    match v {
        HyperValue::Int(i) => i.to_string(),
        HyperValue::Float(x) => format!("{x:?}"),
        HyperValue::Bool(b) => b.to_string(),
        // JSON is YAML's flow style.
        HyperValue::Rope(s) => s.to_json().to_string(),
    }
}

/// A YAML double-quoted string.
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A name usable as a file name.
fn sanitized(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where a model's spec comes from: a variant file, or a checkpoint's config.json read against
/// the families of a specs folder.
#[derive(Clone, Debug, PartialEq)]
pub enum SpecSource {
    File(PathBuf),
    Checkpoint { dir: PathBuf, specs_dir: PathBuf },
}

impl SpecSource {
    /// Loads (and checks) the spec.
    pub fn load(&self) -> Result<super::ModelSpec, FromConfigError> {
        match self {
            SpecSource::File(p) => Ok(super::load(p)?),
            SpecSource::Checkpoint { dir, specs_dir } => load(dir, specs_dir),
        }
    }
}
