//! The CPU reference executor against HF transformers: tests/fixtures/hf-*/ each hold a tiny
//! model written by `pio init-weights` and the float32 logits HF transformers computed on it
//! (tests/reference/hf_reference.py, recorded on the GPU machine): a prefill, then 9 greedy
//! decode steps through the KV cache. One per family: Qwen3 (hf-tiny), Qwen2.5 (biases), Llama
//! (llama3 rope scaling), and Qwen3 with YaRN.

mod common;

use common::rel_l2;
use pio::{Device, LoadOptions, Model, SpecSource, WeightsSource};
use serde_json::Value;
use std::path::Path;

/// The CPU executor on a fixture folder against the HF float32 logits recorded on it: every
/// position within 1e-4 (relative L2), the same greedy tokens.
fn check_fixture(dir: &Path, source: &SpecSource) {
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("hf_logits.json")).unwrap())
            .unwrap();
    let ids_of = |key: &str| -> Vec<u32> {
        fixture[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    let (ids, hf_generated) = (ids_of("prompt_ids"), ids_of("generated_ids"));
    let steps = fixture["decode_steps"].as_u64().unwrap() as usize;
    assert!(ids.len() >= 7 && steps >= 9);
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
    let weights = WeightsSource::Dir(dir.to_path_buf());
    let mut model =
        Model::load_source(source, &weights, Device::Cpu, &LoadOptions::default()).unwrap();
    let (rows, generated) = model.greedy_logits(&ids, steps).unwrap();
    assert_eq!(rows.len(), hf_logits.len());
    for (pos, (ours, theirs)) in rows.iter().zip(&hf_logits).enumerate() {
        let err = rel_l2(ours, theirs);
        assert!(
            err <= 1e-4,
            "{}: position {pos}: relative L2 error {err:.3e} > 1e-4",
            dir.display()
        );
    }
    assert_eq!(generated, hf_generated, "{}", dir.display());
}

#[test]
fn cpu_executor_matches_hf_transformers_at_every_position() {
    check_fixture(
        Path::new("tests/fixtures/hf-tiny"),
        &SpecSource::File("model-specs/qwen3-tiny.yaml".into()),
    );
}

/// One tiny random-weight model per family (and a YaRN one), each read as a user would give
/// it, with no spec: the family from its config.json. HF's logits were recorded on the GPU
/// machine (tests/reference/families_on_gpu.sh).
#[test]
fn every_family_matches_hf_transformers_read_from_its_config_json() {
    for name in ["qwen2.5-tiny", "llama-tiny", "qwen3-tiny-yarn"] {
        let dir = Path::new("tests/fixtures").join(format!("hf-{name}"));
        let source = SpecSource::Checkpoint {
            dir: dir.clone(),
            specs_dir: "model-specs".into(),
        };
        check_fixture(&dir, &source);
    }
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
