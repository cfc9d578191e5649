//! Rotary position embeddings as data: the base (`rope_theta`) and the scaling a checkpoint's
//! config.json asks for (`rope_scaling`), typed. Both sides read it: the compiler turns it into
//! frequencies (its `ir::rope`), the runtime compares a checkpoint's `rope_scaling` with the
//! spec's by meaning rather than by spelling (`type` or `rope_type`, `null` or `default`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// A rotary embedding: its base and its scaling.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rope {
    /// `rope_theta`: `inv_freq[i] = theta^(-2i/d)` before scaling.
    pub theta: f64,
    #[serde(default, skip_serializing_if = "RopeScaling::is_default")]
    pub scaling: RopeScaling,
}

impl Rope {
    /// Plain RoPE at `theta`.
    pub fn plain(theta: f64) -> Rope {
        Rope {
            theta,
            scaling: RopeScaling::Default,
        }
    }
}

impl fmt::Display for Rope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "theta={:?}", self.theta)?;
        if !self.scaling.is_default() {
            write!(f, " scaling={}", self.scaling)?;
        }
        Ok(())
    }
}

/// `rope_scaling` of HF transformers' config.json, with the field names it has there. Optional
/// fields keep whether they were given, so that the value is written back as it was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// No scaling (`rope_scaling: null`, or `rope_type: default`).
    #[default]
    Default,
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's: low frequencies divided by `factor`, high ones kept, a smooth blend between
    /// (by wavelength against `original_max_position_embeddings / {low,high}_freq_factor`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// YaRN: frequencies blended between interpolated and extrapolated by a ramp over the
    /// dimensions, and cos/sin multiplied by an attention factor.
    Yarn(Yarn),
}

/// YaRN's fields (transformers' `_compute_yarn_parameters`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Yarn {
    pub factor: f64,
    /// The pretrained context; when absent, the model's `max_position_embeddings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_fast: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_slow: Option<f64>,
    /// Multiplies cos and sin; when absent, `0.1 ln(factor) + 1` (or DeepSeek's mscale ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mscale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mscale_all_dim: Option<f64>,
    /// Whether the correction range is rounded to whole dimensions (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
}

/// The rope types pio computes, for messages.
pub const ROPE_TYPES: &str = "default, linear, llama3, yarn";

impl RopeScaling {
    pub fn is_default(&self) -> bool {
        matches!(self, RopeScaling::Default)
    }

    /// The scaling factor (1 without scaling).
    pub fn factor(&self) -> f64 {
        match self {
            RopeScaling::Default => 1.0,
            RopeScaling::Linear { factor } | RopeScaling::Llama3 { factor, .. } => *factor,
            RopeScaling::Yarn(y) => y.factor,
        }
    }

    /// Parses config.json's `rope_scaling` (`null`, or an object with `rope_type`, or with
    /// `type` as older files spell it). Unknown keys are refused: each changes the frequencies
    /// in some model, and a key pio ignored would give wrong positions silently.
    pub fn from_json(v: &Value) -> Result<RopeScaling, String> {
        let obj = match v {
            Value::Null => return Ok(RopeScaling::Default),
            Value::Object(o) => o,
            other => {
                return Err(format!(
                    "rope_scaling must be an object or null, got {other}"
                ))
            }
        };
        let mut obj: Map<String, Value> = obj.clone();
        let kind = match (obj.remove("rope_type"), obj.remove("type")) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!("rope_scaling has both rope_type {a} and type {b}"))
            }
            (Some(t), _) | (None, Some(t)) => t,
            (None, None) => return Err("rope_scaling has no rope_type".to_string()),
        };
        let Value::String(kind) = kind else {
            return Err(format!(
                "rope_scaling.rope_type must be a string, got {kind}"
            ));
        };
        let keys: &[&str] = match kind.as_str() {
            "default" => &[],
            "linear" => &["factor"],
            "llama3" => &[
                "factor",
                "low_freq_factor",
                "high_freq_factor",
                "original_max_position_embeddings",
            ],
            "yarn" => &[
                "factor",
                "original_max_position_embeddings",
                "beta_fast",
                "beta_slow",
                "attention_factor",
                "mscale",
                "mscale_all_dim",
                "truncate",
            ],
            other => {
                return Err(format!(
                    "rope_type '{other}' is not supported (pio computes: {ROPE_TYPES})"
                ))
            }
        };
        if let Some(k) = obj.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(format!(
                "rope_scaling of rope_type {kind} has an unknown field '{k}' (expected: {})",
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                }
            ));
        }
        obj.insert("rope_type".into(), Value::String(kind));
        let parsed: RopeScaling =
            serde_json::from_value(Value::Object(obj)).map_err(|e| format!("rope_scaling: {e}"))?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// config.json's form: `null` without scaling, else the object as it was given (a context
    /// length written as an integer, as transformers writes and checks it).
    pub fn to_json(&self) -> Value {
        match self {
            RopeScaling::Default => Value::Null,
            other => {
                let mut v = serde_json::to_value(other).expect("plain data serializes");
                let key = "original_max_position_embeddings";
                if let Some(n) = v.get(key).and_then(Value::as_f64) {
                    if n.fract() == 0.0 && n.abs() < 9e15 {
                        v[key] = Value::from(n as i64);
                    }
                }
                v
            }
        }
    }

    /// Values every formula needs: positive finite factors, bands in order.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| -> Result<(), String> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "rope_scaling.{name} must be a positive number, got {v}"
                ))
            }
        };
        match *self {
            RopeScaling::Default => Ok(()),
            RopeScaling::Linear { factor } => positive("factor", factor),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                positive("factor", factor)?;
                positive("low_freq_factor", low_freq_factor)?;
                positive("high_freq_factor", high_freq_factor)?;
                positive(
                    "original_max_position_embeddings",
                    original_max_position_embeddings,
                )?;
                if high_freq_factor <= low_freq_factor {
                    return Err(format!(
                        "rope_scaling.high_freq_factor ({high_freq_factor}) must be larger than \
                         low_freq_factor ({low_freq_factor})"
                    ));
                }
                Ok(())
            }
            RopeScaling::Yarn(y) => {
                positive("factor", y.factor)?;
                let optional = [
                    (
                        "original_max_position_embeddings",
                        y.original_max_position_embeddings,
                    ),
                    ("beta_fast", y.beta_fast),
                    ("beta_slow", y.beta_slow),
                    ("attention_factor", y.attention_factor),
                    ("mscale", y.mscale),
                    ("mscale_all_dim", y.mscale_all_dim),
                ];
                for (name, v) in optional {
                    if let Some(v) = v {
                        positive(name, v)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// What cos and sin are multiplied by (YaRN's attention factor; 1 otherwise), as
    /// transformers computes it in f64.
    pub fn attention_factor(&self) -> f64 {
        let RopeScaling::Yarn(y) = self else {
            return 1.0;
        };
        if let Some(a) = y.attention_factor {
            return a;
        }
        let mscale = |scale: f64, m: f64| {
            if scale <= 1.0 {
                1.0
            } else {
                0.1 * m * scale.ln() + 1.0
            }
        };
        match (y.mscale, y.mscale_all_dim) {
            (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                mscale(y.factor, m) / mscale(y.factor, all)
            }
            _ => mscale(y.factor, 1.0),
        }
    }
}

impl fmt::Display for RopeScaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_json() {
            Value::Null => f.write_str("default"),
            Value::Object(o) => {
                let kind = o.get("rope_type").and_then(Value::as_str).unwrap_or("?");
                let rest: Vec<String> = o
                    .iter()
                    .filter(|(k, _)| *k != "rope_type")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                write!(f, "{kind}({})", rest.join(","))
            }
            other => write!(f, "{other}"),
        }
    }
}

/// Reads a config.json that transformers 5 wrote, with `rope_parameters: {rope_theta,
/// rope_type, ...}` in place of `rope_theta` and `rope_scaling`, as the older fields (what
/// specs map), so that both spellings of a checkpoint load alike. A config with `rope_theta`
/// already is left as it is.
pub fn lift_rope_parameters(config: &mut Map<String, Value>) {
    if config.contains_key("rope_theta") {
        return;
    }
    let Some(Value::Object(params)) = config.get("rope_parameters").cloned() else {
        return;
    };
    let mut scaling = params;
    if let Some(theta) = scaling.remove("rope_theta") {
        config.insert("rope_theta".into(), theta);
    }
    scaling.remove("partial_rotary_factor");
    let plain = scaling.keys().all(|k| k == "rope_type")
        && scaling.get("rope_type").is_none_or(|t| t == "default");
    if !config.contains_key("rope_scaling") {
        let value = if plain {
            Value::Null
        } else {
            Value::Object(scaling)
        };
        config.insert("rope_scaling".into(), value);
    }
}

/// Whether two config.json `rope_scaling` values mean the same scaling (`null` and
/// `{rope_type: default}` alike, `type` and `rope_type` alike, `8192` and `8192.0` alike).
pub fn same_scaling(a: &Value, b: &Value) -> bool {
    match (RopeScaling::from_json(a), RopeScaling::from_json(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_what_configs_hold_and_writes_it_back() {
        let llama = json!({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192, "rope_type": "llama3"});
        let s = RopeScaling::from_json(&llama).unwrap();
        assert!(matches!(s, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        assert_eq!(s.to_json(), llama);
        let qwen =
            json!({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768});
        let y = RopeScaling::from_json(&qwen).unwrap();
        assert_eq!(
            y.to_json(),
            json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})
        );
        assert_eq!(
            RopeScaling::from_json(&Value::Null).unwrap(),
            RopeScaling::Default
        );
        assert_eq!(
            RopeScaling::from_json(&json!({"rope_type": "default"})).unwrap(),
            RopeScaling::Default
        );
        assert_eq!(RopeScaling::Default.to_json(), Value::Null);
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let err = |v: Value| RopeScaling::from_json(&v).unwrap_err();
        assert!(err(json!({"rope_type": "dynamic", "factor": 2.0})).contains("not supported"));
        assert!(err(json!({"factor": 2.0})).contains("no rope_type"));
        assert!(err(json!({"rope_type": "linear"})).contains("factor"));
        assert!(err(json!({"rope_type": "linear", "factor": 2.0, "beta": 1})).contains("'beta'"));
        assert!(err(json!({"rope_type": "linear", "factor": -2.0})).contains("positive"));
        assert!(err(json!({"rope_type": "linear", "factor": "2"})).contains("rope_scaling"));
        assert!(
            err(json!({"rope_type": "yarn", "type": "linear", "factor": 2.0})).contains("both")
        );
        assert!(err(json!([1])).contains("object or null"));
        let bands = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
                           "high_freq_factor": 1.0, "original_max_position_embeddings": 8192});
        assert!(err(bands).contains("larger than"));
    }

    #[test]
    fn yarn_attention_factor_as_transformers_computes_it() {
        let y = |v: Value| RopeScaling::from_json(&v).unwrap().attention_factor();
        let f = y(json!({"rope_type": "yarn", "factor": 4.0}));
        assert_eq!(f, 0.1 * 4f64.ln() + 1.0);
        assert_eq!(
            y(json!({"rope_type": "yarn", "factor": 4.0, "attention_factor": 1.5})),
            1.5
        );
        let ds =
            y(json!({"rope_type": "yarn", "factor": 40.0, "mscale": 1.0, "mscale_all_dim": 0.5}));
        assert_eq!(ds, (0.1 * 40f64.ln() + 1.0) / (0.05 * 40f64.ln() + 1.0));
        assert_eq!(y(json!({"rope_type": "yarn", "factor": 1.0})), 1.0);
        assert_eq!(RopeScaling::Linear { factor: 2.0 }.attention_factor(), 1.0);
    }

    #[test]
    fn transformers_5_rope_parameters_read_as_the_older_fields() {
        let mut c = json!({"rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3",
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}});
        lift_rope_parameters(c.as_object_mut().unwrap());
        assert_eq!(c["rope_theta"], json!(500000.0));
        assert!(same_scaling(
            &c["rope_scaling"],
            &json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192.0})
        ));
        let mut plain = json!({"rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}});
        lift_rope_parameters(plain.as_object_mut().unwrap());
        assert_eq!(plain["rope_theta"], json!(1e6));
        assert_eq!(plain["rope_scaling"], Value::Null);
        let mut old = json!({"rope_theta": 1e4, "rope_parameters": {"rope_theta": 5.0}});
        lift_rope_parameters(old.as_object_mut().unwrap());
        assert_eq!(old["rope_theta"], json!(1e4));
        assert!(same_scaling(&Value::Null, &json!({"rope_type": "default"})));
        assert!(same_scaling(
            &json!({"type": "linear", "factor": 2}),
            &json!({"rope_type": "linear", "factor": 2.0})
        ));
        assert!(!same_scaling(
            &Value::Null,
            &json!({"rope_type": "linear", "factor": 2.0})
        ));
    }

    #[test]
    fn display_names_the_type_and_fields() {
        assert_eq!(Rope::plain(1e6).to_string(), "theta=1000000.0");
        let r = Rope {
            theta: 5e5,
            scaling: RopeScaling::Linear { factor: 2.0 },
        };
        assert_eq!(r.to_string(), "theta=500000.0 scaling=linear(factor=2.0)");
    }
}
