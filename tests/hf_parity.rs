//! The CPU reference executor against HF transformers: tests/fixtures/hf-tiny/ holds a tiny
//! Qwen3 written by `pio init-weights` and the float32 logits HF transformers computed on it
//! (tests/reference/hf_reference.py, recorded on the GPU machine): a prefill of 8 tokens, then 9
//! greedy decode steps through the KV cache.

mod common;

use common::rel_l2;
use pio::{Device, Model, WeightsSource};
use serde_json::Value;
use std::path::Path;

#[test]
fn cpu_executor_matches_hf_transformers_at_every_position() {
    let dir = Path::new("tests/fixtures/hf-tiny");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("hf_logits.json")).unwrap())
            .unwrap();
    let ids: Vec<u32> = fixture["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let steps = fixture["decode_steps"].as_u64().unwrap() as usize;
    assert!(ids.len() >= 7 && steps >= 9);
    let hf_generated: Vec<u32> = fixture["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let hf_logits: Vec<Vec<f64>> = fixture["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();

    let mut model = Model::load(
        Path::new("model-specs/qwen3-tiny.yaml"),
        &WeightsSource::Dir(dir.to_path_buf()),
        Device::Cpu,
    )
    .unwrap();
    let (rows, generated) = model.greedy_logits(&ids, steps).unwrap();
    assert_eq!(rows.len(), hf_logits.len());
    for (pos, (ours, theirs)) in rows.iter().zip(&hf_logits).enumerate() {
        let err = rel_l2(ours, theirs);
        assert!(
            err <= 1e-4,
            "position {pos}: relative L2 error {err:.3e} > 1e-4"
        );
    }
    assert_eq!(generated, hf_generated);
}

#[test]
fn random_weights_equal_the_written_directory() {
    // `--weights random` and `pio init-weights` with the same seed must be the same model.
    let dir = tempfile::tempdir().unwrap();
    let spec = Path::new("model-specs/qwen3-tiny.yaml");
    pio::init_weights::init_weights(spec, dir.path(), 7, false, false).unwrap();
    let ids = [9, 72, 300, 17];
    let from_dir = Model::load(spec, &WeightsSource::Dir(dir.path().into()), Device::Cpu)
        .unwrap()
        .prefill_logits(&ids)
        .unwrap();
    let random = Model::load(spec, &WeightsSource::Random { seed: 7 }, Device::Cpu)
        .unwrap()
        .prefill_logits(&ids)
        .unwrap();
    assert_eq!(from_dir, random);
}
