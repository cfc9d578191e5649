//! Finding and loading model specs for the command-line tools.

use anyhow::{Context, Result};
use pio::{SpecSource, WeightsSource};
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

/// A spec argument, or an HF checkpoint directory (one with a config.json): its config.json
/// read against the families of the specs folder, no variant file needed.
pub fn source_of(arg: &str) -> Result<SpecSource> {
    let dir = PathBuf::from(arg);
    if dir.is_dir() && dir.join("config.json").is_file() {
        return Ok(SpecSource::Checkpoint {
            dir,
            specs_dir: specs_dir(),
        });
    }
    Ok(SpecSource::File(resolve_spec(arg)?))
}

/// Where the model of a command comes from: `--spec` when given; else, for an HF checkpoint
/// directory in `--weights`, its config.json; else the tiny default spec.
#[allow(dead_code)] // pio-compile takes its spec positionally (source_of)
pub fn spec_source(spec: Option<&str>, weights: &WeightsSource) -> Result<SpecSource> {
    match (spec, weights) {
        (Some(s), _) => source_of(s),
        (None, WeightsSource::Dir(d)) if d.join("config.json").is_file() => {
            Ok(SpecSource::Checkpoint {
                dir: d.clone(),
                specs_dir: specs_dir(),
            })
        }
        // Neither a spec nor a checkpoint: the tiny default.
        (None, _) => source_of("qwen3-tiny"),
    }
}
