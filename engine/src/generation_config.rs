//! Reading and writing HF `generation_config.json`.

use crate::error::PioError;
use pio_compiler::spec::ModelSpec;
use pio_runtime::sampling::SamplingParams;
use serde_json::{json, Value};
use std::path::Path;

/// Generation defaults of a model: from its generation_config.json, else from the artifact.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationDefaults {
    pub eos_token_ids: Vec<u32>,
    pub sampling: SamplingParams,
}

/// Applies a checkpoint's generation_config.json (if present) over the spec's defaults:
/// eos ids (each inside the model's `vocab_size`), temperature, top_k, top_p, min_p,
/// repetition_penalty.
pub fn apply(path: &Path, d: &mut GenerationDefaults, vocab_size: usize) -> Result<(), PioError> {
    if !path.is_file() {
        return Ok(());
    }
    let bad = |message: String| PioError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = pio_runtime::weights::config::read_bounded(path)?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let token_id = |x: &Value| {
        x.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .filter(|&x| (x as usize) < vocab_size)
    };
    let ids_error = |found: &Value| {
        bad(format!(
            "eos_token_id must be a token id or a list of token ids below the vocabulary size \
             {vocab_size}, found {found}"
        ))
    };
    match v.get("eos_token_id") {
        None | Some(Value::Null) => {}
        Some(one @ Value::Number(_)) => {
            d.eos_token_ids = vec![token_id(one).ok_or_else(|| ids_error(one))?]
        }
        Some(list @ Value::Array(a)) => {
            d.eos_token_ids = a
                .iter()
                .map(token_id)
                .collect::<Option<_>>()
                .ok_or_else(|| ids_error(list))?
        }
        Some(other) => return Err(ids_error(other)),
    }
    let num = |key: &str| v.get(key).and_then(Value::as_f64);
    let s = &mut d.sampling;
    if v.get("do_sample") == Some(&Value::Bool(false)) {
        s.temperature = 0.0;
    } else if let Some(t) = num("temperature") {
        s.temperature = t as f32;
    }
    if let Some(k) = num("top_k") {
        s.top_k = k.max(0.0) as usize;
    }
    if let Some(p) = num("top_p") {
        s.top_p = p as f32;
    }
    if let Some(p) = num("min_p") {
        s.min_p = p as f32;
    }
    if let Some(p) = num("repetition_penalty") {
        s.repetition_penalty = p as f32;
    }
    s.validate()
        .map_err(|e| bad(format!("unusable sampling defaults: {e}")))?;
    Ok(())
}

/// generation_config.json for a spec, as HF writes it.
pub fn for_spec(spec: &ModelSpec) -> Value {
    let m = &spec.variant.manifest;
    let s = &m.sampling;
    // Greedy is `do_sample: false` (with no sampling fields: transformers warns about them).
    let mut v = if s.temperature > 0.0 {
        json!({
            "do_sample": true,
            "eos_token_id": m.eos_token_ids,
            "temperature": s.temperature,
            "top_k": s.top_k,
            "top_p": s.top_p,
        })
    } else {
        json!({"do_sample": false, "eos_token_id": m.eos_token_ids})
    };
    if s.min_p > 0.0 && s.temperature > 0.0 {
        v["min_p"] = s.min_p.into();
    }
    if s.repetition_penalty != 1.0 {
        v["repetition_penalty"] = s.repetition_penalty.into();
    }
    if let Some(b) = m.bos_token_id {
        v["bos_token_id"] = b.into();
    }
    if let Some(p) = m.pad_token_id {
        v["pad_token_id"] = p.into();
    }
    v
}
