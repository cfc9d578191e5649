//! Comparing config.json values as transformers means them, for both sides: the runtime's check
//! of a checkpoint against the spec, and the compiler's reading of a checkpoint's config.json
//! against a family (`spec::from_config`).

use serde_json::Value;

/// Relative tolerance for comparing non-integer numbers.
const REL_TOL: f64 = 1e-9;

/// Whether config.json field `field` holds the same value in `a` and `b`: `rope_scaling` by
/// meaning ([`crate::same_scaling`]), every other field by [`values_equal`].
pub fn field_equal(field: &str, a: &Value, b: &Value) -> bool {
    if field == "rope_scaling" {
        crate::same_scaling(a, b)
    } else {
        values_equal(a, b)
    }
}

/// Two integers compare exactly; any other pair of numbers compares as `f64` with relative
/// tolerance 1e-9 (so `rope_theta` `1000000` equals `1000000.0`); arrays and objects compare
/// element by element with the same rules (so `"architectures"` must match exactly); strings,
/// booleans and null compare exactly.
pub fn values_equal(a: &Value, b: &Value) -> bool {
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
    use super::*;
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
    #[test]
    fn rope_scaling_compares_by_meaning() {
        assert!(field_equal(
            "rope_scaling",
            &Value::Null,
            &json!({"rope_type": "default"})
        ));
        assert!(!field_equal(
            "other",
            &Value::Null,
            &json!({"rope_type": "default"})
        ));
    }
}
