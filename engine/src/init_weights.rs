//! `pio init-weights`: a complete HF-layout directory of random weights for a spec, loadable by
//! both pio and HF transformers.

use crate::error::PioError;
use crate::weights::weight_specs;
use pio_runtime::weights::{write_random_hf_dir_with_progress, WriteOptions, WriteSummary};
use serde_json::Value;
use std::path::Path;

/// config.json for a spec: the family's `hf_config` plus the dtype and token ids.
pub fn config_json(spec: &pio_compiler::spec::ModelSpec) -> Value {
    let mut c = Value::Object(spec.hf_config.clone());
    let m = &spec.variant.manifest;
    c["torch_dtype"] = "bfloat16".into();
    if let Some(std) = spec.float("init_std") {
        c["initializer_range"] = std.into();
    }
    if let Some(b) = m.bos_token_id {
        c["bos_token_id"] = b.into();
    }
    if let Some(e) = m.eos_token_ids.first() {
        c["eos_token_id"] = (*e).into();
    }
    c
}

/// Writes config.json, generation_config.json, the tokenizer files and random bf16 weights
/// (seeded) into `dir`. Existing files are never replaced unless `force`; `progress` draws a
/// bar for checkpoints over 64 MB.
pub fn init_weights(
    spec_path: &Path,
    dir: &Path,
    seed: u64,
    force: bool,
    progress: bool,
) -> Result<WriteSummary, PioError> {
    let spec = pio_compiler::spec::load(spec_path)?;
    let graph = pio_compiler::lower::lower(&spec)?;
    let specs = weight_specs(&graph);
    let read = |p: &Path| {
        pio_artifact::read::read_bounded(p, pio_artifact::read::MAX_TOKENIZER_BYTES).map_err(|e| {
            PioError::File {
                path: p.to_path_buf(),
                message: e.to_string(),
            }
        })
    };
    let m = &spec.variant.manifest;
    let pretty = |v: &Value| {
        let mut s = serde_json::to_string_pretty(v).expect("JSON values serialize");
        s.push('\n');
        s.into_bytes()
    };
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("config.json", pretty(&config_json(&spec))),
        (
            "generation_config.json",
            pretty(&crate::generation_config::for_spec(&spec)),
        ),
        ("tokenizer.json", read(&m.tokenizer)?),
        ("tokenizer_config.json", read(&m.chat_template)?),
    ];
    std::fs::create_dir_all(dir).map_err(|e| PioError::File {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let opts = WriteOptions {
        force,
        ..WriteOptions::default()
    };
    let total: u64 = specs
        .iter()
        .map(|s| 2 * s.numel().unwrap_or(0) as u64)
        .sum();
    let bar = (progress && total > 64 << 20).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "writing random weights {bar:40} {binary_bytes}/{binary_total_bytes} {elapsed}",
            )
            .expect("static template"),
        );
        b
    });
    let advance = |bytes: u64| {
        if let Some(b) = &bar {
            b.inc(bytes);
        }
    };
    let summary = write_random_hf_dir_with_progress(dir, seed, &specs, &files, &opts, &advance)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(summary)
}
