//! pio's RoPE frequency tables against HF transformers' own (tests/fixtures/hf_rope_tables.json,
//! written by tests/reference/hf_rope_tables.py on the GPU machine from the model classes'
//! rotary embeddings): every scaling pio computes (default, linear, llama3, yarn; `type` as
//! well as `rope_type`), at the real models' sizes and the tiny test models'. Equal but for at
//! most one entry per table, one ulp apart (torch's f32 power is not correctly rounded).

use pio_artifact::{Rope, RopeScaling};
use pio_compiler::rope::{attention_factor_f32, inv_freq_f32, with_context};
use serde_json::Value;
use std::path::Path;

/// Units in the last place between two f32 of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

#[test]
fn frequency_tables_equal_transformers_to_the_ulp() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf_rope_tables.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_object().unwrap();
    assert!(cases.len() >= 8, "{} cases", cases.len());
    let mut report = Vec::new();
    for (name, case) in cases {
        let config = &case["config"];
        let scaling = RopeScaling::from_json(config.get("rope_scaling").unwrap_or(&Value::Null))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rope = Rope {
            theta: config["rope_theta"].as_f64().unwrap(),
            scaling: with_context(
                scaling,
                config["max_position_embeddings"].as_u64().unwrap() as usize,
            ),
        };
        let d = case["head_dim"].as_u64().unwrap() as usize;
        let theirs: Vec<f32> = case["inv_freq"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let ours = inv_freq_f32(&rope, d);
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(&a, &b)| ulps(a, b))
            .max()
            .unwrap();
        let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        let af = case["attention_scaling"].as_f64().unwrap() as f32;
        report.push(format!(
            "{name}: {differ} of {} differ, worst {worst} ulp; attention factor {} vs {af}",
            ours.len(),
            attention_factor_f32(&rope)
        ));
        assert_eq!(attention_factor_f32(&rope), af, "{name}");
        // transformers' `base ** exponent` runs torch's vectorized f32 pow (accurate to 1 ulp,
        // not correctly rounded): at theta 1e6 and d 128 its frequency 37 is 1 ulp above the
        // correctly rounded one (3.3982084e-4 against 3.3982080e-4, which `pow` in f64 rounded
        // to f32 gives too). Every step after the power is exact.
        assert!(worst <= 1 && differ <= 1, "{}", report.join("\n"));
    }
    println!("{}", report.join("\n"));
}
