//! Model specs: a family file (the graph, written once) and small variant files that name the
//! family and set its hyperparameters. [`load`] reads a variant, finds its family, checks
//! everything and returns a [`ModelSpec`] ready to lower.

pub mod bounds;
pub mod expr;
pub mod from_config;
pub mod model;
pub mod parse;
pub mod reader;
mod resolve;
pub mod yaml;

use crate::error::{Loc, SpecError, SpecErrors};
use model::{Family, HyperValue, Variant};
use reader::Reader;
use resolve::{
    check_dims, check_roles, resolve_hf_config, resolve_hf_defaults, resolve_hyper, resolve_ties,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml::Y;

/// Largest spec file accepted (specs are a few KiB).
pub const MAX_SPEC_BYTES: u64 = 4 << 20;

/// A variant resolved against its family: the input of lowering.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub variant: Variant,
    pub family: Family,
    /// Every hyperparameter's value (variant values and family defaults).
    pub hyper: BTreeMap<String, HyperValue>,
    /// The config.json fields this model has (family `hf_config` with hyperparameters filled in).
    pub hf_config: serde_json::Map<String, serde_json::Value>,
    /// What transformers assumes for the fields of `hf_config` a config.json may leave out.
    pub hf_defaults: serde_json::Map<String, serde_json::Value>,
}

impl ModelSpec {
    pub fn name(&self) -> &str {
        &self.variant.name
    }

    /// An integer hyperparameter.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.hyper.get(name).and_then(|v| v.as_int())
    }

    /// The bound of the context dim (`ctx` under dims), as the lowered graph will have it.
    pub fn context_bound(&self) -> Option<usize> {
        let d = self
            .family
            .dims
            .iter()
            .find(|d| d.name == crate::ir::infer::CTX)?;
        self.int(&d.bound).and_then(|b| usize::try_from(b).ok())
    }

    /// Parameters, weight bytes and layers, from the declarations (no graph is built).
    pub fn size(&self) -> bounds::SpecSize {
        bounds::size(&self.family, &self.hyper)
    }

    /// A hyperparameter as a float.
    pub fn float(&self, name: &str) -> Option<f64> {
        self.hyper.get(name).and_then(|v| v.as_f64())
    }
}

fn single(file: &Path, loc: Loc, message: impl Into<String>) -> SpecErrors {
    SpecErrors(vec![SpecError {
        file: file.to_path_buf(),
        loc,
        path: String::new(),
        message: message.into(),
    }])
}

/// The line and column just after `before`, counting line breaks as YAML does: `\n`, `\r\n`
/// and a lone `\r`.
fn loc_of(before: &[u8]) -> Loc {
    let mut line = 1;
    let mut line_start = 0;
    for (i, &c) in before.iter().enumerate() {
        let lone_cr = c == b'\r' && before.get(i + 1) != Some(&b'\n');
        if c == b'\n' || lone_cr {
            line += 1;
            line_start = i + 1;
        }
    }
    Loc {
        line,
        col: before.len() - line_start + 1,
    }
}

/// Reads a file and parses it into a YAML tree; every failure is a located error.
pub fn read_yaml(path: &Path) -> Result<Y, SpecErrors> {
    let at0 = Loc { line: 1, col: 1 };
    let meta = std::fs::metadata(path)
        .map_err(|e| single(path, at0, format!("cannot read the spec: {e}")))?;
    if !meta.is_file() {
        return Err(single(path, at0, "not a file"));
    }
    if meta.len() > MAX_SPEC_BYTES {
        return Err(single(
            path,
            at0,
            format!(
                "the spec is {} bytes, larger than the {} bytes a spec may have",
                meta.len(),
                MAX_SPEC_BYTES
            ),
        ));
    }
    let bytes = pio_artifact::read::read_bounded(path, MAX_SPEC_BYTES)
        .map_err(|e| single(path, at0, format!("cannot read the spec: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let off = e.utf8_error().valid_up_to();
        let Loc { line, col } = loc_of(&e.as_bytes()[..off]);
        single(
            path,
            Loc { line, col },
            format!(
                "not UTF-8 text (invalid byte 0x{:02x} at offset {off})",
                e.as_bytes()[off]
            ),
        )
    })?;
    if text.contains('\0') {
        let off = text.find('\0').unwrap_or(0);
        return Err(single(
            path,
            loc_of(&text.as_bytes()[..off]),
            "binary data (a NUL byte) in the spec",
        ));
    }
    let only_comments = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if only_comments {
        return Err(single(path, at0, "the spec is empty"));
    }
    yaml::parse(&text).map_err(|e| single(path, e.loc, e.message))
}

/// Where `family: NAME` points, seen from the variant's folder.
pub fn family_path(variant_dir: &Path, name: &str) -> PathBuf {
    if name.ends_with(".yaml") || name.contains('/') {
        clean(&variant_dir.join(name))
    } else {
        variant_dir.join(format!("{name}.yaml"))
    }
}

/// Removes `.` and `dir/..` components without touching the file system.
fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.iter().collect()
}

/// Loads a variant spec and its family, checking everything that can be checked without
/// building the graph (lowering checks ops and shapes).
pub fn load(path: &Path) -> Result<ModelSpec, SpecErrors> {
    let root = read_yaml(path)?;
    load_root(&root, path)
}

/// [`load`] of a variant held in memory (`pio run --weights DIR` without a spec: the variant
/// [`from_config`] wrote); `path` names it in messages and its folder is where the family and
/// relative manifest paths are looked up.
pub fn load_text(text: &str, path: &Path) -> Result<ModelSpec, SpecErrors> {
    let root = yaml::parse(text).map_err(|e| single(path, e.loc, e.message))?;
    load_root(&root, path)
}

fn load_root(root: &Y, path: &Path) -> Result<ModelSpec, SpecErrors> {
    let root = root.clone();
    let dir = path.parent().unwrap_or(Path::new("."));
    if !parse::is_variant(&root) {
        let what = if root.get("layers").is_some() {
            "this is a family file (it defines the graph); pass a variant that names it"
        } else {
            "not a model spec: a variant names its family ('family:') and has a 'name:'"
        };
        return Err(single(path, root.loc, what));
    }
    let mut vr = Reader::new(path);
    let variant = parse::parse_variant(&mut vr, &root, dir);
    let Some(variant) = variant.filter(|_| vr.errors.is_empty()) else {
        return Err(SpecErrors(vr.errors));
    };
    let fam_path = family_path(dir, &variant.family.0);
    if !fam_path.is_file() {
        vr.err(
            variant.family.1,
            "family",
            format!(
                "family '{}' not found (looked for {})",
                variant.family.0,
                fam_path.display()
            ),
        );
        return Err(SpecErrors(vr.errors));
    }
    let fam_root = read_yaml(&fam_path)?;
    let mut fr = Reader::new(&fam_path);
    if parse::is_variant(&fam_root) {
        vr.err(
            variant.family.1,
            "family",
            format!("{} is a variant, not a family", fam_path.display()),
        );
        return Err(SpecErrors(vr.errors));
    }
    let family = parse::parse_family(&mut fr, &fam_root);
    let mut errors = fr.errors;
    let Some(mut family) = family.filter(|_| errors.is_empty()) else {
        return Err(SpecErrors(errors));
    };
    let by_name = !(variant.family.0.ends_with(".yaml") || variant.family.0.contains('/'));
    if by_name && family.name != variant.family.0 {
        vr.err(
            variant.family.1,
            "family",
            format!(
                "names family '{}' but {} defines family '{}'",
                variant.family.0,
                fam_path.display(),
                family.name
            ),
        );
    }
    let hyper = resolve_hyper(&mut vr, &variant, &family);
    let mut fr = Reader::new(&fam_path);
    resolve_ties(&mut fr, &mut family, &hyper);
    bounds::check(&mut vr, &mut fr, &variant, &family, &hyper);
    check_dims(&mut fr, &family, &hyper);
    check_roles(&mut fr, &family);
    let hf_config = resolve_hf_config(&mut fr, &family, &hyper);
    let hf_defaults = resolve_hf_defaults(&mut fr, &family, &hyper);
    vr.errors.sort_by_key(|e| e.loc);
    fr.errors.sort_by_key(|e| e.loc);
    errors.extend(vr.errors);
    errors.extend(fr.errors);
    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    Ok(ModelSpec {
        variant,
        family,
        hyper,
        hf_config,
        hf_defaults,
    })
}

/// Every variant spec in `dir` (files ending in `.yaml` that name a family), sorted by path.
/// Family files are skipped. Unreadable files are returned as errors so that `pio list` can
/// show them without hiding the good ones.
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") || !path.is_file() {
            continue;
        }
        match read_yaml(&path) {
            Ok(root) if !parse::is_variant(&root) && root.get("layers").is_some() => {}
            _ => out.push(path),
        }
    }
    out.sort();
    Ok(out)
}
