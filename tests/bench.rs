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
    assert_eq!(report["settings"]["tensor_parallel"], 1);
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

/// `pio compare` on saved H100 reports (pio's and HF transformers' from
/// benches/reference/hf_bench.py, one per model and mode): every saved report fits the schema,
/// the HF reports merge per engine, and the ratio tables and plots come out.
#[test]
fn compare_saved_reports() {
    let dir = "benches/results/h100-2026-11-26";
    let reports: Vec<String> = [
        "pio",
        "hf-eager-qwen3-0.6b",
        "hf-eager-qwen3-4b-instruct-2507",
        "hf-compile-qwen3-0.6b",
        "hf-compile-qwen3-4b-instruct-2507",
    ]
    .iter()
    .map(|n| format!("{dir}/{n}.json"))
    .collect();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("benches/bench-schema.json").unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let serving: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("benches/serving-schema.json").unwrap())
            .unwrap();
    let serving = jsonschema::validator_for(&serving).unwrap();
    // Every saved report, of every run, fits its schema (the batching engine's reports have
    // `throughput`).
    let mut saved = Vec::new();
    for run in std::fs::read_dir("benches/results").unwrap() {
        for f in std::fs::read_dir(run.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                saved.push(path.display().to_string());
            }
        }
    }
    assert!(saved.len() >= 10, "{saved:?}");
    for r in saved.iter().chain(&reports) {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r).unwrap()).unwrap();
        let schema = if v.get("throughput").is_some() {
            &serving
        } else {
            &validator
        };
        let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{r}: {errors:?}");
    }
    let plots = tempfile::tempdir().unwrap();
    let mut args = vec!["compare"];
    args.extend(reports.iter().map(String::as_str));
    args.extend(["--plots", plots.path().to_str().unwrap()]);
    let (ok, out, err) = pio(&args);
    assert!(ok, "{err}");
    assert!(out.contains("pio vs hf-transformers-eager:"), "{out}");
    assert!(out.contains("pio vs hf-transformers-compile:"), "{out}");
    assert!(
        out.contains(
            "| Qwen3-4B-Instruct-2507 | decode at context | 128 | 267.5 | 204.1 | 1.31x |"
        ),
        "{out}"
    );
    assert!(
        out.contains("| Qwen3-0.6B | decode at context | 16384 | 477.7 | 34.9 | 13.68x |"),
        "{out}"
    );
    let svg = std::fs::read_to_string(plots.path().join("decode.svg")).unwrap();
    assert!(svg.contains("Qwen3-4B-Instruct-2507 (hf-transformers-compile)"));

    let (ok, _, err) = pio(&["compare", "no-such.json", &reports[1]]);
    assert!(!ok);
    assert!(err.contains("reading no-such.json"), "{err}");
}

/// `pio bench --mode throughput | shared-prefix` on the CPU: the batching engine end to end, the
/// report fitting benches/serving-schema.json, every request generating --gen tokens and the
/// shared prefix found in the cache.
#[test]
fn serving_modes_on_the_cpu() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("benches/serving-schema.json").unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("t.json");
    let j = json.to_str().unwrap();
    let common = ["bench", "--device", "cpu", "--gen", "4", "--json", j];
    let mut args = common.to_vec();
    args.extend([
        "--mode",
        "throughput",
        "--requests",
        "1,3",
        "--prompt-len",
        "20",
    ]);
    let (ok, out, err) = pio(&args);
    assert!(ok, "{err}");
    assert!(out.contains("| 3 | 20 | 4 |"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let runs = v["throughput"].as_array().unwrap();
    assert_eq!(runs[1]["output_tokens"], 12);
    // What the engine ran with (the CPU caps nothing).
    assert_eq!(
        (&v["max_batch_tokens"], &v["max_running"]),
        (&2048.into(), &128.into())
    );
    assert_eq!(
        runs[0]["steps"], 4,
        "one request: a prefill step and 3 decodes"
    );
    let mut args = common.to_vec();
    args.extend(["--mode", "shared-prefix", "--shared-prefix", "4,64,8"]);
    let (ok, out, err) = pio(&args);
    assert!(ok, "{err}");
    assert!(
        out.contains("shared prefix: 4 requests of 64 shared + 8 own tokens"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(validator.iter_errors(&v).next().is_none());
    // Four requests, each finding the 4 full blocks (16 positions) of the shared 64 tokens.
    assert_eq!(v["shared_prefix"]["prefix_hit_tokens"], 4 * 64);
    // A prompt the context cannot hold is a clear error, not a panic.
    let mut args = common.to_vec();
    args.extend(["--mode", "shared-prefix", "--shared-prefix", "4,600,8"]);
    let (ok, _, err) = pio(&args);
    assert!(!ok && err.contains("exceeds"), "{err}");
    // Engine flags out of range name the flag.
    for (flag, value) in [
        ("--memory-fraction", "1.5"),
        ("--kv-blocks", "0"),
        ("--max-batch-tokens", "70000"),
    ] {
        let mut args = common.to_vec();
        args.extend(["--mode", "throughput", flag, value]);
        let (ok, _, err) = pio(&args);
        assert!(!ok && err.contains(flag), "{flag} {value}: {err}");
    }
}

#[test]
fn tensor_parallel_bench_on_simulated_ranks() {
    // --tp runs the sharded graph on the CPU's simulated ranks; the report says so and still
    // validates against the schema.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tp.json");
    let (ok, _, err) = pio(&[
        "bench",
        "--device",
        "cpu",
        "--tp",
        "2",
        "--prompt-len",
        "8",
        "--gen",
        "4",
        "--context",
        "8",
        "--repeats",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["settings"]["tensor_parallel"], 2);
    assert_eq!(report["settings"]["dtype"], "f32");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("benches/bench-schema.json").unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&report));
}
