//! Every kind of bad weight directory or config gives its own precise error, never a panic.

use std::path::Path;

use pio_runtime::weights::{
    check_config, write_random_hf_dir, WeightDir, WeightProblem, WeightSpec, WeightsError,
    WriteOptions,
};
use serde_json::json;

fn specs() -> Vec<WeightSpec> {
    vec![
        WeightSpec::normal("model.embed_tokens.weight", vec![10, 4], 0.02),
        WeightSpec::normal("model.layers.0.self_attn.q_proj.weight", vec![8, 4], 0.02),
        WeightSpec::ones("model.norm.weight", vec![4]),
    ]
}

const NO_FILES: &[(&str, Vec<u8>)] = &[];

/// Writes a safetensors file by hand: `(name, dtype, shape, data)` entries, laid out in order.
fn write_raw(path: &Path, entries: &[(&str, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in entries {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

fn good_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_random_hf_dir(tmp.path(), 9, &specs(), NO_FILES, &WriteOptions::default()).unwrap();
    tmp
}

#[test]
fn all_tensor_problems_in_one_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_raw(
        &tmp.path().join("model.safetensors"),
        &[
            // wrong shape
            (
                "model.embed_tokens.weight",
                "BF16",
                vec![10, 5],
                vec![0; 100],
            ),
            // wrong dtype
            ("model.norm.weight", "I64", vec![4], vec![0; 32]),
            // unexpected
            (
                "model.layers.0.mlp.up_proj.weight",
                "BF16",
                vec![2, 2],
                vec![0; 8],
            ),
            // q_proj missing
        ],
    );
    let err = WeightDir::open(tmp.path(), &specs()).unwrap_err();
    let WeightsError::Invalid { problems, dir } = &err else {
        panic!("wrong error {err}")
    };
    assert_eq!(dir, tmp.path());
    assert_eq!(problems.len(), 4, "{err}");
    assert!(problems.contains(&WeightProblem::Missing {
        name: "model.layers.0.self_attn.q_proj.weight".into(),
        shape: vec![8, 4],
    }));
    assert!(problems.contains(&WeightProblem::WrongShape {
        name: "model.embed_tokens.weight".into(),
        expected: vec![10, 4],
        found: vec![10, 5],
    }));
    let msg = err.to_string();
    for needle in [
        &format!("weights in {}: 4 problems:", tmp.path().display()),
        "\n  missing tensor model.layers.0.self_attn.q_proj.weight (expected bf16/f16/f32 [8, 4])",
        "\n  tensor model.embed_tokens.weight has shape [10, 5], expected [10, 4]",
        "\n  tensor model.norm.weight has dtype I64",
        "\n  unexpected tensor model.layers.0.mlp.up_proj.weight [2, 2]",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
}

#[test]
fn single_missing_tensor() {
    let tmp = good_dir();
    let mut more = specs();
    more.push(WeightSpec::ones(
        "model.layers.0.input_layernorm.weight",
        vec![4],
    ));
    let err = WeightDir::open(tmp.path(), &more).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "1 problem:\n  missing tensor model.layers.0.input_layernorm.weight \
             (expected bf16/f16/f32 [4])"
        ),
        "{err}"
    );
}

fn expect_corrupt(dir: &Path, needle: &str) {
    let err = WeightDir::open(dir, &specs()).unwrap_err();
    let WeightsError::Corrupt { path, reason } = &err else {
        panic!("wrong error {err}")
    };
    assert_eq!(path, &dir.join("model.safetensors"));
    assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn truncated_file() {
    let tmp = good_dir();
    let p = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    expect_corrupt(tmp.path(), "run past the end of the data section");
    // Cut inside the header.
    std::fs::write(&p, &bytes[..40]).unwrap();
    expect_corrupt(tmp.path(), "runs past the end of the file");
    // Cut inside the length prefix, and empty.
    std::fs::write(&p, &bytes[..5]).unwrap();
    expect_corrupt(tmp.path(), "too short");
    std::fs::write(&p, b"").unwrap();
    expect_corrupt(tmp.path(), "too short");
}

#[test]
fn corrupt_header() {
    let tmp = good_dir();
    let p = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8] = b'#';
    std::fs::write(&p, &bytes).unwrap();
    expect_corrupt(tmp.path(), "header is not valid JSON");

    // Absurd header length.
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    expect_corrupt(tmp.path(), "header length");

    // Header that is JSON but not a safetensors header.
    let h = br#"[1, 2]"#;
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h);
    std::fs::write(&p, &out).unwrap();
    expect_corrupt(tmp.path(), "not a JSON object");

    let h = br#"{"model.norm.weight": {"dtype": "BF16", "shape": [4]}}"#;
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h);
    std::fs::write(&p, &out).unwrap();
    expect_corrupt(
        tmp.path(),
        "tensor model.norm.weight: missing or invalid \"data_offsets\"",
    );
}

#[test]
fn byte_size_not_matching_shape() {
    let tmp = tempfile::tempdir().unwrap();
    write_raw(
        &tmp.path().join("model.safetensors"),
        &[("model.norm.weight", "BF16", vec![4], vec![0; 6])],
    );
    expect_corrupt(
        tmp.path(),
        "needs 8 bytes but data_offsets [0, 6] span 6 bytes",
    );
    // Offsets beyond the file, hand-made.
    let h = br#"{"model.norm.weight": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8000]}}"#;
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h);
    out.extend_from_slice(&[0; 8]);
    std::fs::write(tmp.path().join("model.safetensors"), &out).unwrap();
    expect_corrupt(tmp.path(), "data_offsets [0, 8000] run past the end");
}

#[test]
fn no_weights_in_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let err = WeightDir::open(tmp.path(), &specs()).unwrap_err();
    assert!(matches!(err, WeightsError::NoWeights { .. }));
    assert!(
        err.to_string().contains("model.safetensors.index.json"),
        "{err}"
    );
    let err = WeightDir::open(&tmp.path().join("absent"), &specs()).unwrap_err();
    assert!(err.to_string().contains("absent"), "{err}");
}

fn sharded_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WriteOptions {
        force: false,
        shard_bytes: 70,
    };
    let s = write_random_hf_dir(tmp.path(), 9, &specs(), NO_FILES, &opts).unwrap();
    assert!(s.weight_files.len() >= 2);
    tmp
}

fn read_index(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap())
        .unwrap()
}

fn write_index(dir: &Path, v: &serde_json::Value) {
    std::fs::write(dir.join("model.safetensors.index.json"), v.to_string()).unwrap();
}

#[test]
fn index_naming_a_missing_shard() {
    let tmp = sharded_dir();
    let mut index = read_index(tmp.path());
    index["weight_map"]["model.norm.weight"] = json!("model-00009-of-00009.safetensors");
    write_index(tmp.path(), &index);
    let err = WeightDir::open(tmp.path(), &specs()).unwrap_err();
    assert!(matches!(err, WeightsError::BadIndex { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("model-00009-of-00009.safetensors") && msg.contains("do not exist"),
        "{msg}"
    );
    assert!(msg.contains("model.safetensors.index.json"), "{msg}");
}

#[test]
fn index_path_escape_rejected() {
    let tmp = sharded_dir();
    let mut index = read_index(tmp.path());
    let shard = index["weight_map"]["model.norm.weight"]
        .as_str()
        .unwrap()
        .to_string();
    // Make the escaping path really exist so only the name check can reject it.
    let sub = tmp.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    for e in std::fs::read_dir(tmp.path()).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), sub.join(e.file_name())).unwrap();
        }
    }
    index["weight_map"]["model.norm.weight"] = json!(format!("../{}/{shard}", "x"));
    write_index(&sub, &index);
    let err = WeightDir::open(&sub, &specs()).unwrap_err();
    assert!(err.to_string().contains("plain file names"), "{err}");
    index["weight_map"]["model.norm.weight"] = json!("/etc/passwd");
    write_index(&sub, &index);
    assert!(WeightDir::open(&sub, &specs())
        .unwrap_err()
        .to_string()
        .contains("/etc/passwd"));
}

#[test]
fn index_and_shards_disagree() {
    let tmp = sharded_dir();
    let mut index = read_index(tmp.path());
    let map = index["weight_map"].as_object_mut().unwrap();
    let shard = map.remove("model.norm.weight").unwrap();
    // An indexed tensor that its shard lacks.
    map.insert("model.extra.weight".into(), shard.clone());
    write_index(tmp.path(), &index);
    let err = WeightDir::open(tmp.path(), &specs()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "tensor model.norm.weight is in {} but not in model.safetensors.index.json",
            tmp.path().join(shard.as_str().unwrap()).display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("maps tensor model.extra.weight to")
            && msg.contains("which does not contain it"),
        "{msg}"
    );
    // model.norm.weight is reported as missing too (it is unusable), but only once per cause.
    let WeightsError::Invalid { problems, .. } = &err else {
        panic!()
    };
    assert_eq!(problems.len(), 3, "{msg}");
}

#[test]
fn bad_index_json() {
    let tmp = sharded_dir();
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        b"{not json",
    )
    .unwrap();
    let err = WeightDir::open(tmp.path(), &specs()).unwrap_err();
    assert!(err.to_string().contains("invalid JSON"), "{err}");
    write_index(tmp.path(), &json!({"metadata": {}}));
    let err = WeightDir::open(tmp.path(), &specs()).unwrap_err();
    assert!(err.to_string().contains("weight_map"), "{err}");
}

fn expected_config() -> serde_json::Map<String, serde_json::Value> {
    json!({
        "hidden_size": 1024,
        "head_dim": 128,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": true,
        "architectures": ["Qwen3ForCausalLM"],
    })
    .as_object()
    .unwrap()
    .clone()
}

#[test]
fn config_matches_with_numeric_tolerance() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("config.json");
    std::fs::write(
        &p,
        r#"{"hidden_size": 1024, "head_dim": 128.0, "rope_theta": 1000000, "rms_norm_eps": 1e-06,
            "tie_word_embeddings": true, "architectures": ["Qwen3ForCausalLM"],
            "torch_dtype": "bfloat16"}"#,
    )
    .unwrap();
    check_config(&p, &expected_config(), &serde_json::Map::new()).unwrap();
}

#[test]
fn config_mismatches_all_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("config.json");
    std::fs::write(
        &p,
        r#"{"hidden_size": 1024, "rope_theta": 5000000, "rms_norm_eps": 1e-06,
            "tie_word_embeddings": false, "architectures": ["Qwen2ForCausalLM"]}"#,
    )
    .unwrap();
    let err = check_config(&p, &expected_config(), &serde_json::Map::new()).unwrap_err();
    let WeightsError::ConfigMismatch { mismatches, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(mismatches.len(), 4, "{err}");
    let msg = err.to_string();
    for needle in [
        p.display().to_string(),
        "4 mismatches".to_string(),
        "\n  head_dim: expected 128, but the field is missing".to_string(),
        "\n  rope_theta: expected 1000000.0, found 5000000".to_string(),
        "\n  tie_word_embeddings: expected true, found false".to_string(),
        "\n  architectures: expected [\"Qwen3ForCausalLM\"], found [\"Qwen2ForCausalLM\"]"
            .to_string(),
    ] {
        assert!(msg.contains(&needle), "missing {needle:?} in:\n{msg}");
    }
}

#[test]
fn config_missing_or_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("config.json");
    let err = check_config(&p, &expected_config(), &serde_json::Map::new()).unwrap_err();
    assert!(matches!(err, WeightsError::Config { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("not found"),
        "{msg}"
    );
    std::fs::write(&p, b"{\"hidden_size\": ").unwrap();
    let msg = check_config(&p, &expected_config(), &serde_json::Map::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("invalid JSON"),
        "{msg}"
    );
    std::fs::write(&p, b"[1]").unwrap();
    let msg = check_config(&p, &expected_config(), &serde_json::Map::new())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not an object"), "{msg}");
}

#[test]
fn overlapping_tensors_are_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    // model.norm.weight's 8 bytes lie inside the embedding's: aliasing tensors.
    let h = json!({
        "model.embed_tokens.weight": {"dtype": "BF16", "shape": [10, 4], "data_offsets": [0, 80]},
        "model.layers.0.self_attn.q_proj.weight":
            {"dtype": "BF16", "shape": [8, 4], "data_offsets": [80, 144]},
        "model.norm.weight": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]},
    });
    let h = serde_json::to_vec(&h).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&[0; 144]);
    std::fs::write(tmp.path().join("model.safetensors"), &out).unwrap();
    expect_corrupt(
        tmp.path(),
        "tensors model.embed_tokens.weight and model.norm.weight overlap",
    );
}

#[test]
fn single_file_and_index_together_are_ambiguous() {
    let tmp = good_dir();
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {}}"#,
    )
    .unwrap();
    let err = WeightDir::open(tmp.path(), &specs()).unwrap_err();
    assert!(matches!(err, WeightsError::AmbiguousLayout { .. }), "{err}");
    assert!(err.to_string().contains("ambiguous"), "{err}");
}
