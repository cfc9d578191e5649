//! Spec targets: `spec_variant` (mutated variant + the real qwen3 family) and `spec_family`
//! (the real qwen3-tiny variant + a mutated family). An input either loads (and, when its
//! hyperparameters are small, lowers) or fails with errors that each carry the file and a
//! line:col inside it.

use std::path::Path;

use pio_compiler::spec::model::HyperValue;
use pio_compiler::spec::ModelSpec;
use pio_compiler::SpecErrors;

use crate::target::{repo, Target};

pub const VARIANT: Target = Target {
    name: "spec_variant",
    input_file: "variant.yaml",
    max_len: 64 << 10,
    setup: |dir| setup(dir, &["qwen3.yaml"]),
    run: |ctx, bytes| {
        let family = ctx.dir.join("qwen3.yaml");
        let family_bytes = std::fs::read(&family).unwrap();
        check(&ctx.input, &[(&ctx.input, bytes), (&family, &family_bytes)])
    },
    mutate: None,
    known: crate::target::none_known,
};

pub const FAMILY: Target = Target {
    name: "spec_family",
    input_file: "qwen3.yaml",
    max_len: 64 << 10,
    setup: |dir| setup(dir, &["qwen3-tiny.yaml"]),
    run: |ctx, bytes| {
        let variant = ctx.dir.join("qwen3-tiny.yaml");
        let variant_bytes = std::fs::read(&variant).unwrap();
        check(&variant, &[(&variant, &variant_bytes), (&ctx.input, bytes)])
    },
    mutate: None,
    known: crate::target::none_known,
};

/// Copies real specs next to the input and links the tokenizers they name.
fn setup(dir: &Path, copies: &[&str]) {
    for name in copies {
        std::fs::copy(repo().join("model-specs").join(name), dir.join(name)).unwrap();
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        repo().join("model-specs/tokenizers"),
        dir.join("tokenizers"),
    )
    .unwrap();
}

/// Small enough to lower quickly (huge hyperparameters are the resolver's to refuse).
pub fn small(spec: &ModelSpec) -> bool {
    spec.hyper.values().all(|v| match v {
        HyperValue::Int(i) => *i <= 1_000_000,
        _ => true,
    }) && spec.int("num_layers").is_none_or(|n| n <= 64)
}

/// Loads the variant; every error must be located in a file we know the text of.
fn check(variant: &Path, files: &[(&Path, &[u8])]) -> Result<(), String> {
    match pio_compiler::spec::load(variant) {
        Err(e) => located(&e, files),
        Ok(spec) if small(&spec) => match pio_compiler::lower::lower(&spec) {
            Err(e) => located(&e, files),
            Ok(_) => Ok(()),
        },
        Ok(_) => Ok(()),
    }
}

/// Every error names a file and a 1-based line:col that exists in it.
pub fn located(e: &SpecErrors, files: &[(&Path, &[u8])]) -> Result<(), String> {
    if e.0.is_empty() {
        return Err("an empty error list".to_string());
    }
    let all = e.to_string();
    for err in &e.0 {
        let at = format!("{}:{}:{}: ", err.file.display(), err.loc.line, err.loc.col);
        if err.file.as_os_str().is_empty() || err.loc.line == 0 || err.loc.col == 0 {
            return Err(format!("unlocated error: {err}"));
        }
        if !all.contains(&at) {
            return Err(format!("the message does not start with {at:?}: {all}"));
        }
        if err.message.trim().is_empty() {
            return Err(format!("an error without a message: {err}"));
        }
        if let Some((_, text)) = files.iter().find(|(p, _)| *p == err.file) {
            let lines = yaml_lines(text);
            if err.loc.line > lines + 1 {
                return Err(format!(
                    "line {} is past the end of the file ({lines} lines): {err}",
                    err.loc.line
                ));
            }
        }
    }
    Ok(())
}

/// Lines as YAML counts them: `\n`, `\r\n` and a lone `\r` each end one.
fn yaml_lines(text: &[u8]) -> usize {
    let lone_cr = text
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\r' && text.get(i + 1) != Some(&b'\n'))
        .count();
    text.iter().filter(|&&b| b == b'\n').count() + lone_cr + 1
}
