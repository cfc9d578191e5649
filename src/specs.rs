//! Finding and loading model specs for the command-line tools.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The folder of model specs: `$PIO_SPECS`, else `./model-specs`, else the one this binary was
/// built from.
pub fn specs_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PIO_SPECS") {
        return PathBuf::from(d);
    }
    let local = PathBuf::from("model-specs");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("model-specs")
}

/// A spec argument: a path, or the name of a file in the specs folder (`qwen3-0.6b`).
pub fn resolve_spec(arg: &str) -> Result<PathBuf> {
    let p = PathBuf::from(arg);
    if p.exists() {
        return Ok(p);
    }
    let dir = specs_dir();
    for cand in [dir.join(arg), dir.join(format!("{arg}.yaml"))] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    let known =
        pio_compiler::spec::discover(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let names: Vec<String> = known
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    anyhow::bail!(
        "spec '{arg}' not found (not a file, nor a spec in {}; known: {})",
        dir.display(),
        names.join(", ")
    )
}
