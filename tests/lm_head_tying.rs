//! Whether the LM head is tied to the embedding is the variant's choice
//! (`tie_word_embeddings`, a bool hyperparameter of the qwen3 family): Qwen3-8B and larger store
//! `lm_head.weight`, the smaller ones share `model.embed_tokens.weight`. An untied tiny variant
//! writes, loads and runs its own head end to end on the CPU.

mod common;

use pio::compiler::ir::Op;
use std::path::Path;

/// The lowered graph's LM-head weight binding: (hf name, names tied to it).
fn head_binding(spec: &str) -> (String, Vec<String>, u64) {
    let s = pio::compiler::spec::load(Path::new(spec)).unwrap();
    let g = pio::compiler::lower::lower(&s).unwrap();
    let head = g
        .ids()
        .filter_map(|id| match &g.node(id).op {
            Op::Weight(b)
                if b.hf_name == "lm_head.weight" || b.tied.contains(&"lm_head.weight".into()) =>
            {
                Some((b.hf_name.clone(), b.tied.clone()))
            }
            _ => None,
        })
        .next()
        .expect("an LM head");
    (head.0, head.1, s.size().params)
}

#[test]
fn small_qwen3s_tie_the_head_and_large_ones_store_it() {
    let (hf, tied, p06) = head_binding("model-specs/qwen3-0.6b.yaml");
    assert_eq!(
        (hf.as_str(), tied),
        (
            "model.embed_tokens.weight",
            vec!["lm_head.weight".to_string()]
        )
    );
    assert_eq!(p06, 596_049_920);
    let (hf, tied, p8) = head_binding("model-specs/qwen3-8b.yaml");
    assert_eq!((hf.as_str(), tied.len()), ("lm_head.weight", 0));
    // 8.19 billion, the head counted once on its own.
    assert_eq!(p8, 8_190_735_360);
    for (spec, params) in [
        ("model-specs/qwen3-1.7b.yaml", 1_720_574_976u64),
        ("model-specs/qwen3-14b.yaml", 14_768_307_200),
        ("model-specs/qwen3-32b.yaml", 32_762_123_264),
    ] {
        assert_eq!(head_binding(spec).2, params, "{spec}");
    }
}

#[test]
fn an_untied_variant_writes_loads_and_runs_its_own_head() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let (ok, _, err) = common::run(
        env!("CARGO_BIN_EXE_pio"),
        &[
            "init-weights",
            "tests/specs/qwen3-tiny-untied.yaml",
            "-o",
            w.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["tie_word_embeddings"],
        serde_json::Value::Bool(false)
    );
    let st = std::fs::read(w.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&st[8..8 + header_len]).unwrap();
    assert!(
        header.get("lm_head.weight").is_some(),
        "no lm_head.weight in {header}"
    );
    let run = |spec: &str| {
        common::run(
            env!("CARGO_BIN_EXE_pio"),
            &[
                "run",
                "--spec",
                spec,
                "--weights",
                w.to_str().unwrap(),
                "--device",
                "cpu",
                "--max-new-tokens",
                "3",
                "--temperature",
                "0",
                "--prompt",
                "hello",
            ],
        )
    };
    let (ok, _, err) = run("tests/specs/qwen3-tiny-untied.yaml");
    assert!(ok && err.contains("generated: 3 tokens"), "{err}");
    // The tied tiny spec refuses the folder: its config.json says the head is not tied.
    let (ok, _, err) = run("qwen3-tiny");
    assert!(
        !ok && err.contains("tie_word_embeddings: expected true, found false"),
        "{err}"
    );
}
