//! Cross-checking a Hugging Face `config.json` against the values the compiled model spec
//! expects (head_dim, rope_theta, ...).

use std::path::Path;

use serde_json::{Map, Value};

use super::error::{ConfigMismatch, WeightsError};

/// Relative tolerance for comparing non-integer numbers.
const REL_TOL: f64 = 1e-9;

/// Checks that every field of `expected` is present in the HF `config.json` at `config_path`
/// with an equal value.
///
/// Equality rules: two integers compare exactly; any other pair of numbers compares as `f64`
/// with relative tolerance 1e-9 (so `rope_theta` `1000000` equals `1000000.0`); arrays and
/// objects compare element by element with the same rules (so `"architectures"` must match
/// exactly); strings, booleans and null compare exactly. Fields of `config.json` that are not in
/// `expected` are ignored.
///
/// Errors: [`WeightsError::Config`] naming the path if the file is missing, unreadable, bad
/// JSON or not an object; [`WeightsError::ConfigMismatch`] listing *every* differing or missing
/// field with its expected and found values.
pub fn check_config(config_path: &Path, expected: &Map<String, Value>) -> Result<(), WeightsError> {
    let text = std::fs::read(config_path).map_err(|e| WeightsError::Config {
        path: config_path.to_path_buf(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "file not found".to_string()
        } else {
            format!("cannot read: {e}")
        },
    })?;
    let found: Value = serde_json::from_slice(&text).map_err(|e| WeightsError::Config {
        path: config_path.to_path_buf(),
        reason: format!("invalid JSON: {e}"),
    })?;
    let Value::Object(found) = found else {
        return Err(WeightsError::Config {
            path: config_path.to_path_buf(),
            reason: "top-level JSON value is not an object".to_string(),
        });
    };
    let mut mismatches = Vec::new();
    for (field, want) in expected {
        match found.get(field) {
            Some(got) if values_equal(want, got) => {}
            got => mismatches.push(ConfigMismatch {
                field: field.clone(),
                expected: want.clone(),
                found: got.cloned(),
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

/// Compares two JSON values with the rules documented on [`check_config`].
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            if x.is_f64() || y.is_f64() {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => floats_equal(x, y),
                    _ => false,
                }
            } else {
                // One fits only i64 (negative), the other only u64 (> i64::MAX): different.
                false
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

fn floats_equal(x: f64, y: f64) -> bool {
    if x == y {
        return true;
    }
    if !x.is_finite() || !y.is_finite() {
        return false;
    }
    (x - y).abs() <= REL_TOL * x.abs().max(y.abs())
}

#[cfg(test)]
mod tests {
    use super::values_equal;
    use serde_json::json;

    #[test]
    fn numbers() {
        assert!(values_equal(&json!(1000000), &json!(1000000.0)));
        assert!(values_equal(&json!(1e-6), &json!(0.000001)));
        assert!(values_equal(&json!(1e-6), &json!(1.0000000001e-6)));
        assert!(!values_equal(&json!(1e-6), &json!(1.00001e-6)));
        assert!(!values_equal(&json!(151936), &json!(151937)));
        assert!(!values_equal(&json!(1), &json!(true)));
        assert!(!values_equal(&json!(-1), &json!(u64::MAX)));
        assert!(values_equal(
            &json!(["Qwen3ForCausalLM"]),
            &json!(["Qwen3ForCausalLM"])
        ));
        assert!(!values_equal(
            &json!(["Qwen3ForCausalLM"]),
            &json!(["Qwen3ForCausalLM", "x"])
        ));
        assert!(!values_equal(&json!("1"), &json!(1)));
    }
}
