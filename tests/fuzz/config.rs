//! `config.json` (checked against the real Qwen3-0.6B spec's hf_config) and
//! `generation_config.json` (applied over generation defaults): an input is accepted or fails
//! with an error that names the file.

use std::sync::OnceLock;

use pio_engine::generation_config::{self, GenerationDefaults};
use pio_runtime::sampling::SamplingParams;
use pio_runtime::weights::check_config;

use crate::target::{repo, Target};

/// The vocabulary eos ids are checked against (Qwen3's).
const VOCAB: usize = 151_936;

type Json = serde_json::Map<String, serde_json::Value>;

/// The spec's hf_config and hf_defaults.
fn expected() -> &'static (Json, Json) {
    static E: OnceLock<(Json, Json)> = OnceLock::new();
    E.get_or_init(|| {
        let spec = pio_compiler::spec::load(&repo().join("model-specs/qwen3-0.6b.yaml")).unwrap();
        (spec.hf_config, spec.hf_defaults)
    })
}

pub const CONFIG: Target = Target {
    name: "config_json",
    input_file: "config.json",
    max_len: 64 << 10,
    setup: |_| {
        expected();
    },
    run: |ctx, bytes| match check_config(&ctx.input, &expected().0, &expected().1) {
        Ok(()) => match float_dtype(bytes) {
            Some(false) => Err("accepted a torch_dtype that is not a float dtype".to_string()),
            _ => Ok(()),
        },
        Err(e) => crate::weights::names_file(&e, &ctx.dir),
    },
    mutate: None,
    known: crate::target::none_known,
};

/// Whether the config's `torch_dtype` (when it has one) is a float dtype weights can have.
fn float_dtype(bytes: &[u8]) -> Option<bool> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let d = v.get("torch_dtype")?;
    Some(matches!(
        d.as_str(),
        Some("bfloat16" | "float16" | "float32" | "bf16" | "fp16" | "fp32")
    ))
}

pub const GENERATION: Target = Target {
    name: "generation_config",
    input_file: "generation_config.json",
    max_len: 64 << 10,
    setup: |_| {},
    run: |ctx, bytes| {
        let mut d = GenerationDefaults {
            eos_token_ids: vec![151645, 151643],
            sampling: SamplingParams::default(),
        };
        match generation_config::apply(&ctx.input, &mut d, VOCAB) {
            Ok(()) => {
                d.sampling
                    .validate()
                    .map_err(|e| format!("accepted unusable sampling defaults: {e}"))?;
                match eos_ids(bytes) {
                    Some(ids)
                        if ids
                            != d.eos_token_ids
                                .iter()
                                .map(|&i| i as u64)
                                .collect::<Vec<_>>() =>
                    {
                        Err(format!(
                            "eos_token_id {ids:?} read as {:?}",
                            d.eos_token_ids
                        ))
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if msg.contains(&ctx.input.display().to_string()) {
                    Ok(())
                } else {
                    Err(format!("the error does not name the file: {msg}"))
                }
            }
        }
    },
    mutate: None,
    known: crate::target::none_known,
};

/// The eos ids of a generation_config.json, when it has a number or a list of numbers.
fn eos_ids(bytes: &[u8]) -> Option<Vec<u64>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    match v.get("eos_token_id")? {
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_u64()).collect(),
        n => Some(vec![n.as_u64()?]),
    }
}
