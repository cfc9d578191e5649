//! Cross-checking a Hugging Face `config.json` against the values the compiled model spec
//! expects (head_dim, rope_theta, ...).

use std::path::Path;

use serde_json::{Map, Value};

use super::error::{ConfigMismatch, WeightsError};

/// Largest config.json read (real ones are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The `torch_dtype` values of checkpoints pio loads (float tensors, converted on load).
pub const FLOAT_DTYPES: [&str; 3] = ["bfloat16", "float16", "float32"];

/// Reads a small JSON file of a checkpoint (config.json, generation_config.json) with a size
/// bound; errors name the file.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, WeightsError> {
    pio_artifact::read::read_bounded(path, MAX_CONFIG_BYTES).map_err(|e| WeightsError::Config {
        path: path.to_path_buf(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "file not found".to_string()
        } else {
            format!("cannot read: {e}")
        },
    })
}

/// The checkpoint's dtype and quantization: pio loads float checkpoints only.
fn check_dtype(config_path: &Path, found: &Map<String, Value>) -> Result<(), WeightsError> {
    let bad = |reason: String| WeightsError::Config {
        path: config_path.to_path_buf(),
        reason,
    };
    for key in ["torch_dtype", "dtype"] {
        match found.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(d)) if FLOAT_DTYPES.contains(&d.as_str()) => {}
            Some(other) => {
                return Err(bad(format!(
                    "{key} is {other}: pio loads checkpoints of {} only",
                    FLOAT_DTYPES.join(", ")
                )))
            }
        }
    }
    if found.contains_key("quantization_config") {
        return Err(bad(
            "has a quantization_config: quantized checkpoints are not supported (pio loads \
             bfloat16, float16 or float32 weights)"
                .to_string(),
        ));
    }
    Ok(())
}

/// Checks that every field of `expected` is present in the HF `config.json` at `config_path`
/// with an equal value, or absent where `defaults` holds the value transformers then assumes
/// and that value is the expected one. A config written by transformers 5 (`rope_parameters`)
/// is read as the older `rope_theta` and `rope_scaling`, and `rope_scaling` compares by meaning
/// (`null` or `{rope_type: default}`, `type` or `rope_type`).
///
/// Equality rules: [`pio_artifact::hf_config::field_equal`] (integers exactly, other numbers
/// within a relative 1e-9, arrays and objects element by element, `rope_scaling` by meaning).
/// Fields of `config.json` that are not in `expected` are ignored.
///
/// Errors: [`WeightsError::Config`] naming the path if the file is missing, unreadable, bad
/// JSON or not an object; [`WeightsError::ConfigMismatch`] listing *every* differing or missing
/// field with its expected and found values.
pub fn check_config(
    config_path: &Path,
    expected: &Map<String, Value>,
    defaults: &Map<String, Value>,
) -> Result<(), WeightsError> {
    let text = read_bounded(config_path)?;
    let found: Value = serde_json::from_slice(&text).map_err(|e| WeightsError::Config {
        path: config_path.to_path_buf(),
        reason: format!("invalid JSON: {e}"),
    })?;
    let Value::Object(mut found) = found else {
        return Err(WeightsError::Config {
            path: config_path.to_path_buf(),
            reason: "top-level JSON value is not an object".to_string(),
        });
    };
    check_dtype(config_path, &found)?;
    pio_artifact::lift_rope_parameters(&mut found);
    let mut mismatches = Vec::new();
    for (field, want) in expected {
        let got = found.get(field).or_else(|| defaults.get(field));
        match got {
            Some(got) if pio_artifact::hf_config::field_equal(field, want, got) => {}
            // Absent (with or without a default that differs) is reported as absent.
            _ => mismatches.push(ConfigMismatch {
                field: field.clone(),
                expected: want.clone(),
                found: found.get(field).cloned(),
            }),
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(WeightsError::ConfigMismatch {
            path: config_path.to_path_buf(),
            mismatches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::check_config;
    use serde_json::json;

    fn check(config: serde_json::Value) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        check_config(&path, &serde_json::Map::new(), &serde_json::Map::new())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn only_float_checkpoints() {
        for ok in ["bfloat16", "float16", "float32"] {
            assert_eq!(check(json!({"torch_dtype": ok})), Ok(()));
        }
        assert_eq!(check(json!({})), Ok(()));
        let e = check(json!({"torch_dtype": "int8"})).unwrap_err();
        assert!(
            e.contains("config.json") && e.contains("torch_dtype is \"int8\""),
            "{e}"
        );
        assert!(check(json!({"dtype": 3})).is_err());
        let e = check(json!({"torch_dtype": "bfloat16", "quantization_config": {}})).unwrap_err();
        assert!(e.contains("quantized"), "{e}");
    }

    #[test]
    fn oversized_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(super::MAX_CONFIG_BYTES + 1).unwrap();
        let e = check_config(&path, &serde_json::Map::new(), &serde_json::Map::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 16777216 bytes"), "{e}");
    }
}
