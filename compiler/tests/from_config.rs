//! Variants written from a checkpoint's config.json (`pio run --weights DIR` without a spec):
//! the family its `architectures` names, hyperparameters read back through the family's
//! hf_config mapping, the defaults transformers assumes for fields a config leaves out, and a
//! clear error for every config no family can run.

use pio_compiler::ir::RopeScaling;
use pio_compiler::spec::from_config::{from_config, load, FromConfigError};
use pio_compiler::spec::model::HyperValue;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-specs")
}

/// A checkpoint folder with `config`, a generation_config and placeholder tokenizer files.
fn checkpoint(config: &Value, generation: Option<&Value>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
    if let Some(g) = generation {
        std::fs::write(d.path().join("generation_config.json"), g.to_string()).unwrap();
    }
    std::fs::write(d.path().join("tokenizer.json"), "{}").unwrap();
    std::fs::write(
        d.path().join("tokenizer_config.json"),
        json!({"chat_template": "{{ messages }}", "eos_token": "<|eot_id|>"}).to_string(),
    )
    .unwrap();
    d
}

/// Llama-3.1-8B's config.json as published (no head_dim: transformers derives it).
fn llama_31_8b() -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
        "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072,
        "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
        "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256
    })
}

fn int(spec: &pio_compiler::spec::ModelSpec, name: &str) -> i64 {
    spec.int(name).unwrap_or_else(|| panic!("{name} missing"))
}

fn message(e: FromConfigError) -> String {
    e.to_string()
}

#[test]
fn llama_config_without_head_dim_gets_transformers_default() {
    let gen = json!({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
                     "do_sample": true, "temperature": 0.6, "top_p": 0.9});
    let d = checkpoint(&llama_31_8b(), Some(&gen));
    let spec = load(d.path(), &specs()).unwrap();
    assert_eq!(spec.family.name, "llama");
    assert_eq!(int(&spec, "head_dim"), 128);
    assert_eq!(int(&spec, "num_layers"), 32);
    assert_eq!(int(&spec, "max_context"), 131072);
    assert_eq!(spec.hyper["tie_word_embeddings"], HyperValue::Bool(false));
    let rope = spec.hyper["rope_scaling"].as_rope_scaling().unwrap();
    assert!(matches!(rope, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    assert_eq!(
        spec.variant.manifest.eos_token_ids,
        vec![128001, 128008, 128009]
    );
    assert_eq!(spec.variant.manifest.bos_token_id, Some(128000));
    assert_eq!(spec.variant.manifest.sampling.temperature, 0.6);
    assert!(!spec.variant.manifest.thinking);
    // Exact parameter count of Llama-3.1-8B (untied head).
    assert_eq!(spec.size().params, 8_030_261_248);
}

#[test]
fn transformers_5_rope_parameters_are_read() {
    let mut c = llama_31_8b();
    let o = c.as_object_mut().unwrap();
    let scaling = o.remove("rope_scaling").unwrap();
    let theta = o.remove("rope_theta").unwrap();
    let mut params = scaling.as_object().unwrap().clone();
    params.insert("rope_theta".into(), theta);
    o.insert("rope_parameters".into(), Value::Object(params));
    let d = checkpoint(&c, None);
    let spec = load(d.path(), &specs()).unwrap();
    assert_eq!(spec.float("rope_theta"), Some(500000.0));
    assert!(spec.hyper["rope_scaling"]
        .as_rope_scaling()
        .is_some_and(|s| !s.is_default()));
    // No generation_config.json: eos from config.json.
    assert_eq!(spec.variant.manifest.eos_token_ids, vec![128001]);
}

#[test]
fn the_written_text_loads_as_a_variant_and_keeps_every_value() {
    let d = checkpoint(&llama_31_8b(), None);
    let v = from_config(d.path(), &specs()).unwrap();
    assert!(v.text.contains("family: llama\n"), "{}", v.text);
    assert!(v.text.contains("rope_scaling: {"), "{}", v.text);
    assert!(v.family.ends_with("llama.yaml"));
    let spec = pio_compiler::spec::load_text(&v.text, &v.path).unwrap();
    assert_eq!(spec.hf_config["rope_theta"], json!(500000.0));
    assert_eq!(spec.hf_config["head_dim"], json!(128));
    // What the spec expects of config.json, this config.json meets (head_dim by default).
    for (k, want) in &spec.hf_config {
        let got = llama_31_8b()
            .get(k)
            .cloned()
            .or_else(|| spec.hf_defaults.get(k).cloned());
        let got = got.unwrap_or_else(|| panic!("{k} neither in config.json nor defaulted"));
        let same = match (want, &got) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            _ if k == "rope_scaling" => pio_artifact::same_scaling(want, &got),
            _ => *want == got,
        };
        assert!(same, "{k}: spec {want} vs config {got}");
    }
}

#[test]
fn an_unknown_architecture_lists_the_families() {
    let mut c = llama_31_8b();
    c["architectures"] = json!(["MistralForCausalLM"]);
    let e = message(from_config(checkpoint(&c, None).path(), &specs()).unwrap_err());
    assert!(
        e.contains("architecture MistralForCausalLM is not one pio has a family for"),
        "{e}"
    );
    for f in [
        "llama (LlamaForCausalLM)",
        "qwen2 (Qwen2ForCausalLM)",
        "qwen3 (Qwen3ForCausalLM)",
    ] {
        assert!(e.contains(f), "{e}");
    }
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn what_a_family_cannot_run_is_named() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "attention_bias",
            json!(true),
            "attention_bias is true; pio runs this family with attention_bias false only",
        ),
        ("hidden_act", json!("gelu"), "hidden_act is \"gelu\""),
        (
            "num_hidden_layers",
            json!("32"),
            "num_hidden_layers is \"32\": expected an integer",
        ),
        (
            "rope_scaling",
            json!({"rope_type": "dynamic", "factor": 2.0}),
            "rope_type 'dynamic' is not supported",
        ),
        (
            "architectures",
            json!("LlamaForCausalLM"),
            "not a list of names",
        ),
    ];
    for (field, value, want) in cases {
        let mut c = llama_31_8b();
        c[field] = value;
        let e = message(from_config(checkpoint(&c, None).path(), &specs()).unwrap_err());
        assert!(e.contains(want), "{field}: {e}");
    }
    let mut c = llama_31_8b();
    c.as_object_mut().unwrap().remove("num_attention_heads");
    let e = message(from_config(checkpoint(&c, None).path(), &specs()).unwrap_err());
    assert!(e.contains("has no 'num_attention_heads'"), "{e}");
    let mut c = llama_31_8b();
    c.as_object_mut().unwrap().remove("eos_token_id");
    let e = message(from_config(checkpoint(&c, None).path(), &specs()).unwrap_err());
    assert!(e.contains("no eos_token_id"), "{e}");
}

#[test]
fn missing_files_are_named() {
    let d = checkpoint(&llama_31_8b(), None);
    std::fs::remove_file(d.path().join("tokenizer.json")).unwrap();
    let e = message(from_config(d.path(), &specs()).unwrap_err());
    assert!(e.contains("tokenizer.json: not found"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = message(from_config(empty.path(), &specs()).unwrap_err());
    assert!(e.contains("config.json: file not found"), "{e}");
    std::fs::write(empty.path().join("config.json"), "{not json").unwrap();
    let e = message(from_config(empty.path(), &specs()).unwrap_err());
    assert!(e.contains("invalid JSON"), "{e}");
}

#[test]
fn qwen2_config_takes_head_dim_from_hidden_size() {
    let c = json!({
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896,
        "initializer_range": 0.02, "intermediate_size": 4864, "max_position_embeddings": 32768,
        "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 14,
        "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
        "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
        "vocab_size": 151936
    });
    let spec = load(checkpoint(&c, None).path(), &specs()).unwrap();
    assert_eq!(spec.family.name, "qwen2");
    // Qwen2.5-0.5B: 494,032,768 parameters (tied head).
    assert_eq!(spec.size().params, 494_032_768);
    let mut sliding = c.clone();
    sliding["use_sliding_window"] = json!(true);
    let e = message(from_config(checkpoint(&sliding, None).path(), &specs()).unwrap_err());
    assert!(e.contains("use_sliding_window is true"), "{e}");
}
