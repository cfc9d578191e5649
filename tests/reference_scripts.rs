//! The reference scripts' pure parts, run with the machine's python3 (no GPU, no torch):
//! benches/reference/llama_batched_bench.py turns llama-batched-bench's JSON lines into the
//! report pio's throughput runs are compared with.

use std::path::Path;
use std::process::Command;

fn convert(raw: &Path, json: &Path) -> std::process::Output {
    Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/reference/llama_batched_bench.py"
        ))
        .arg(raw)
        .args([
            "--model-name",
            "qwen3-0.6b",
            "--weights",
            "/w",
            "--device",
            "cpu",
        ])
        .arg("--json")
        .arg(json)
        .output()
        .expect("python3 runs")
}

#[test]
fn llama_batched_bench_lines_become_a_throughput_report() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama-batched-bench/cpu-qwen3-0.6b.jsonl");
    let json = dir.path().join("report.json");
    let out = convert(&fixture, &json);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["engine"], "llama.cpp-batched-bench");
    let runs = r["throughput"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "the log line and the empty line are skipped");
    // N = 2: 2 x 8 tokens over t = 0.891711 s (prefill included); decode alone as measured.
    let n2 = &runs[1];
    assert_eq!(
        (n2["requests"].as_u64(), n2["output_tokens"].as_u64()),
        (Some(2), Some(16))
    );
    let tps = n2["output_tokens_per_s"].as_f64().unwrap();
    assert!((tps - 16.0 / 0.891711).abs() < 1e-6, "{tps}");
    assert_eq!(n2["decode_tokens_per_s"].as_f64(), Some(26.68014));
    assert_eq!(
        n2["ttft_median_s"].as_f64(),
        Some(0.292014),
        "every first token after the prefill"
    );
    assert_eq!(r["settings"]["flash_attn"], 1);
}

#[test]
fn bad_or_empty_output_is_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    for (text, expected) in [
        ("", "no result lines"),
        ("{\"pp\": 16, \"tg\": 8}\n", "line 1: no pl, t_pp, t_tg, t, speed_pp, speed_tg, speed"),
        ("log\n{\"pp\": 1,\n", "line 2: not JSON"),
        (
            "{\"pp\": 1, \"tg\": 1, \"pl\": 1, \"t_pp\": 1, \"t_tg\": 1, \"t\": 2, \"speed_pp\": 1, \"speed_tg\": 1, \"speed\": 1, \"is_pp_shared\": 1}\n",
            "line 1: a shared prompt",
        ),
    ] {
        let raw = dir.path().join("raw.jsonl");
        std::fs::write(&raw, text).unwrap();
        let out = convert(&raw, &json);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expected), "{text:?}: {err}");
        assert!(!json.exists(), "no report written for {text:?}");
    }
}
