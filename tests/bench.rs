//! `pio bench` on the CPU with short settings (so the bench code cannot rot): the markdown table,
//! the JSON report against its schema, the plots, and bad settings.

mod common;

fn pio(args: &[&str]) -> (bool, String, String) {
    common::run(env!("CARGO_BIN_EXE_pio"), args)
}

#[test]
fn cpu_bench_on_the_tiny_spec() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let plots = dir.path().join("plots");
    let (ok, out, err) = pio(&[
        "bench",
        "--device",
        "cpu",
        "--spec",
        "qwen3-tiny",
        "--prompt-len",
        "8,32",
        "--gen",
        "4",
        "--context",
        "8,64",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| Qwen3-tiny | 32 |"), "{out}");
    assert!(
        out.contains("| model | context | decode (tokens/s) | bandwidth floor |"),
        "{out}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("benches/bench-schema.json").unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let m = &report["models"][0];
    assert_eq!(m["model"], "Qwen3-tiny");
    assert_eq!(m["params"], 119_232);
    assert_eq!(m["decode"].as_array().unwrap().len(), 2);
    assert!(m["decode"][0]["tokens_per_s"]["median"].as_f64().unwrap() > 0.0);
    assert!(m["prefill"][1]["ttft_ms"]["min"].as_f64().unwrap() > 0.0);
    assert_eq!(report["settings"]["repeats"], 2);
    for f in ["decode.svg", "prefill.svg"] {
        let svg = std::fs::read_to_string(plots.join(f)).unwrap();
        assert!(svg.contains("Qwen3-tiny"), "{f}");
    }
}

#[test]
fn bench_settings_that_cannot_fit_are_clear_errors() {
    let (ok, _, err) = pio(&[
        "bench",
        "--device",
        "cpu",
        "--context",
        "600",
        "--gen",
        "4",
        "--prompt-len",
        "8",
    ]);
    assert!(!ok);
    assert!(
        err.contains("context 600 + 4 generated tokens exceed Qwen3-tiny's context of 512"),
        "{err}"
    );
    let (ok, _, err) = pio(&[
        "bench",
        "--device",
        "cpu",
        "--spec",
        "qwen3-tiny",
        "--spec",
        "qwen3-tiny",
        "--weights",
        "random",
        "--weights",
        "random",
        "--weights",
        "random",
        "--context",
        "8",
        "--prompt-len",
        "8",
    ]);
    assert!(!ok && err.contains("3 --weights for 2 --spec"), "{err}");
}
