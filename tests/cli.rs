//! The command-line tools end to end, as a user runs them (no GPU needed).

mod common;

fn pio(args: &[&str]) -> (bool, String, String) {
    common::run(env!("CARGO_BIN_EXE_pio"), args)
}

fn compile(args: &[&str]) -> (bool, String, String) {
    common::run(env!("CARGO_BIN_EXE_pio-compile"), args)
}

#[test]
fn list_shows_every_spec_with_exact_parameter_counts() {
    let (ok, out, err) = pio(&["list"]);
    assert!(ok, "{err}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{out}"))
            .to_string()
    };
    assert!(line("Qwen3-0.6B ").contains("596,049,920"));
    assert!(line("Qwen3-0.6B ").contains("40,960"));
    assert!(line("Qwen3-4B-Instruct-2507").contains("4,022,468,096"));
    assert!(line("Qwen3-4B-Instruct-2507").contains("262,144"));
    assert!(line("Qwen3-tiny").contains("119,232"));
    // The LM head counted once where tied (1.7B, 4B) and on its own where not (8B and up).
    assert!(line("Qwen3-1.7B ").contains("1,720,574,976"));
    assert!(line("Qwen3-4B ").contains("4,022,468,096"));
    assert!(line("Qwen3-8B ").contains("8,190,735,360"));
    assert!(line("Qwen3-14B ").contains("14,768,307,200"));
    assert!(line("Qwen3-32B ").contains("32,762,123,264"));
    // The qwen2 and llama families (Q/K/V biases; untied heads where config.json says so).
    assert!(line("Qwen2.5-0.5B ").contains("494,032,768"));
    assert!(line("Qwen2.5-7B-Instruct").contains("7,615,616,512"));
    assert!(line("Llama-3.2-1B ").contains("1,235,814,400"));
    assert!(line("Llama-3.2-3B-Instruct").contains("3,212,749,824"));
    assert!(line("Llama-3.1-8B ").contains("8,030,261,248"));
    assert!(line("Llama-3.1-8B ").contains(" llama "));
    // A header and one line per spec in model-specs/.
    assert_eq!(out.lines().count(), 26, "{out}");
}

#[test]
fn compile_writes_ir_dot_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let o = out_dir.to_str().unwrap();
    let (ok, out, err) = compile(&["model-specs/qwen3-0.6b.yaml", "-o", o]);
    assert!(ok, "{err}");
    assert!(out.contains("596,049,920 params"), "{out}");
    assert!(out.contains("KV 114,688 bytes/token"), "{out}");
    assert!(
        out.contains("988 -> 651 nodes, 19 distinct kernels, 170 launches per decode step"),
        "{out}"
    );
    let ir = std::fs::read_to_string(out_dir.join("ir-before.txt")).unwrap();
    assert!(ir.contains("layers.27.x_out = add("));
    let fused = std::fs::read_to_string(out_dir.join("ir-after.txt")).unwrap();
    assert!(fused.contains("layers.27.x_out = linear_add("));
    for f in [
        "ir-before.dot",
        "ir-after.dot",
        "artifact.json",
        "launches-decode.txt",
        "launches-prefill.txt",
        "launches-paged.txt",
        "memory-plan.json",
        "weights.json",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    let kernels = std::fs::read_dir(out_dir.join("kernels")).unwrap().count();
    assert_eq!(kernels, 19);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["params"], 596_049_920u64);
    assert_eq!(summary["nodes"], 988);
    // A second run into its own output folder is fine...
    assert!(compile(&["qwen3-0.6b", "-o", o]).0);
    // ...but a folder of the user's is never written into without --force.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep").unwrap();
    let (ok, _, err) = compile(&["qwen3-tiny", "-o", mine.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("was not written by pio-compile"), "{err}");
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep"
    );
}

#[test]
fn compile_reports_a_broken_spec_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = compile(&[
        "tests/specs/broken/unknown-op.yaml",
        "-o",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains(
        "unknown-op.family.yaml:40:13: layers.h: unknown op 'rmsnrom' (did you mean 'rmsnorm'?)"
    ), "{err}");
    let (ok, _, err) = compile(&["no-such-model", "-o", "/tmp/x"]);
    assert!(
        !ok && err.contains("spec 'no-such-model' not found"),
        "{err}"
    );
}

#[test]
fn run_generates_on_the_tiny_model_by_default() {
    let (ok, out, err) = pio(&["run", "--max-new-tokens", "5", "--device", "cpu"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("The capital of France is"), "{out}");
    assert_eq!(err.matches("random weights").count(), 1, "{err}");
    assert!(err.contains("generated: 5 tokens"), "{err}");
}

#[test]
fn run_chat_and_seeded_sampling_are_reproducible() {
    let args = [
        "run",
        "--chat",
        "--system",
        "Be brief.",
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "6",
        "--temperature",
        "1.0",
        "--seed",
        "3",
        "--device",
        "cpu",
    ];
    let (ok, a, err) = pio(&args);
    assert!(ok, "{err}");
    let (_, b, _) = pio(&args);
    assert_eq!(a, b);
}

#[test]
fn bad_flags_and_devices_are_clear_errors() {
    let (ok, _, err) = pio(&["run", "--device", "cuda"]);
    assert!(
        !ok && err.contains("--device cuda: no CUDA driver found (libcuda); use --device cpu"),
        "{err}"
    );
    let (ok, _, err) = pio(&["run", "--top-p", "0", "--device", "cpu"]);
    assert!(!ok && err.contains("top_p"), "{err}");
    let (ok, _, err) = pio(&["run", "--weights", "/nonexistent/dir", "--device", "cpu"]);
    assert!(!ok && err.contains("/nonexistent/dir"), "{err}");
    let (ok, _, err) = pio(&["run", "--device", "tpu"]);
    assert!(!ok && err.contains("unknown device 'tpu'"), "{err}");
}

#[test]
fn init_weights_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(pio(&["init-weights", "qwen3-tiny", "-o", d]).0);
    std::fs::write(dir.path().join("config.json"), "mine").unwrap();
    let (ok, _, err) = pio(&["init-weights", "qwen3-tiny", "-o", d]);
    assert!(!ok && err.contains("config.json"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
        "mine"
    );
    assert!(pio(&["init-weights", "qwen3-tiny", "-o", d, "--force"]).0);
    // The directory loads back, and a config that contradicts the spec is refused.
    assert!(
        pio(&[
            "run",
            "--weights",
            d,
            "--max-new-tokens",
            "2",
            "--device",
            "cpu"
        ])
        .0
    );
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        cfg.replace("\"rope_theta\": 1000000.0", "\"rope_theta\": 5000000.0"),
    )
    .unwrap();
    // The spec's theta against the checkpoint's: refused, with the field named.
    let (ok, _, err) = pio(&[
        "run",
        "--spec",
        "qwen3-tiny",
        "--weights",
        d,
        "--device",
        "cpu",
    ]);
    assert!(!ok && err.contains("rope_theta"), "{err}");
    // Without a spec the checkpoint's config.json is the model: it runs with its own theta.
    let (ok, _, err) = pio(&[
        "run",
        "--weights",
        d,
        "--device",
        "cpu",
        "--max-new-tokens",
        "2",
    ]);
    assert!(ok, "{err}");
}

#[test]
fn compile_pass_flags() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("o");
    let o = o.to_str().unwrap();
    let (ok, _, err) = compile(&["qwen3-tiny", "-o", o, "--disable-pass", "fusion"]);
    assert!(!ok);
    assert!(
        err.contains(
            "unknown pass 'fusion' (passes: canonicalize, cse, dce, kv-cache, fuse, dce-final; not run here: shard)"
        ),
        "{err}"
    );
    let (ok, out, err) = compile(&[
        "qwen3-tiny",
        "-o",
        o,
        "--dump-ir-after",
        "fuse",
        "--no-fusion",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("78 -> 78 nodes"), "{out}");
    let (ok, _, err) = compile(&["qwen3-tiny", "-o", o, "--dump-ir-after", "fuse"]);
    assert!(ok, "{err}");
    assert!(
        std::fs::read_to_string(dir.path().join("o/ir-after-fuse.txt"))
            .unwrap()
            .contains("norm_linear_swiglu(")
    );
}

#[test]
fn tensor_parallel_on_simulated_ranks() {
    // The same greedy text whole and over 2 or 4 ranks (the tiny model's 2 KV heads replicate
    // at 4); a split that cannot be made is a clear error naming the tensor; CUDA without a
    // GPU per rank says so; pio-compile --tp writes one rank's artifact, which runs on simulated
    // ranks too.
    // Greedy text of `pio run` on `weights` over `tp` ranks.
    let text_of = |weights: &str, tp: &str| {
        let (ok, out, err) = pio(&[
            "run",
            "--weights",
            weights,
            "--device",
            "cpu",
            "--tp",
            tp,
            "--temperature",
            "0",
            "--max-new-tokens",
            "8",
        ]);
        assert!(ok, "--weights {weights} --tp {tp}: {err}");
        out
    };
    let text = |tp: &str| text_of("random", tp);
    let whole = text("1");
    assert_eq!(text("2"), whole);
    assert_eq!(text("4"), whole);
    let (ok, _, err) = pio(&["run", "--device", "cpu", "--tp", "3"]);
    assert!(
        !ok && err.contains("tensor parallel over 3 ranks") && err.contains("embed_tokens"),
        "{err}"
    );
    // Without a GPU (CI), or with one only, --tp 2 on CUDA says what it needs.
    let (ok, _, err) = pio(&["run", "--device", "cuda", "--tp", "2"]);
    assert!(
        ok || (err.contains("--tp 2") && err.contains("--device cpu")),
        "{err}"
    );
    let (ok, _, err) = pio(&["run", "--tp", "0"]);
    assert!(!ok && err.contains("--tp"), "{err}");
    // A checkpoint directory (Qwen2.5-tiny: biases split with their heads): each rank reads
    // its parts from the files; the same text as the whole model.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let c = ckpt.to_str().unwrap();
    assert!(pio(&["init-weights", "qwen2.5-tiny", "-o", c]).0);
    let from_dir = |tp: &str| text_of(c, tp);
    assert_eq!(from_dir("2"), from_dir("1"));
    assert_eq!(from_dir("4"), from_dir("1"));
    let out_dir = dir.path().join("tp2");
    let (ok, out, err) = compile(&["qwen3-tiny", "-o", out_dir.to_str().unwrap(), "--tp", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("5 all_reduce, 1 all_gather"), "{out}");
    // Each rank holds one of Qwen3-tiny's 2 KV heads: 2 layers x (K, V) x 32 dims x 2 bytes.
    assert!(out.contains("KV 256 bytes/token per rank"), "{out}");
    let ir = std::fs::read_to_string(out_dir.join("ir-after.txt")).unwrap();
    assert!(
        ir.starts_with("graph \"Qwen3-tiny\"") && ir.contains("ranks 2"),
        "{ir}"
    );
    let artifact = out_dir.to_str().unwrap();
    let (ok, out, err) = pio(&[
        "run",
        "--artifact",
        artifact,
        "--weights",
        "random",
        "--device",
        "cpu",
        "--temperature",
        "0",
        "--max-new-tokens",
        "8",
    ]);
    assert!(ok && out == whole, "{out}\n{err}");
    let (ok, _, err) = pio(&[
        "run",
        "--artifact",
        artifact,
        "--device",
        "cpu",
        "--tp",
        "4",
    ]);
    assert!(
        !ok && err.contains("compiled for 2; recompile with pio-compile --tp 4"),
        "{err}"
    );
    let (ok, _, err) = pio(&["run", "--artifact", artifact, "--device", "cuda"]);
    assert!(
        ok || (err.contains("--tp 2") && err.contains("--device cpu")),
        "{err}"
    );
}

#[test]
fn bad_codegen_switches_in_the_environment_are_clear_errors() {
    for (var, value, expected) in [
        ("PIO_WIDE_ROW_ACCESS", "yes", "not 0 or 1"),
        ("PIO_ONLINE_CHUNK_ATTENTION", "2", "not 0 or 1"),
        ("PIO_FUSED_ROW_GEMM", "on", "not 0 or 1"),
        (
            "PIO_CHUNK_ATTENTION_MIN_BLOCKS",
            "9",
            "not an integer from 0 to 8",
        ),
        (
            "PIO_PAGED_ATTENTION_MIN_BLOCKS",
            "-1",
            "not an integer from 0 to 32",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pio"))
            .args(["run", "--max-new-tokens", "1", "--device", "cpu"])
            .env(var, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} ran");
        assert!(
            err.contains(&format!("{var} '{value}': {expected}")) && !err.contains("panicked"),
            "{var}={value}: {err}"
        );
    }
    // The switches' good values run.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pio"))
        .args(["run", "--max-new-tokens", "2", "--device", "cpu"])
        .env("PIO_WIDE_ROW_ACCESS", "0")
        .env("PIO_ONLINE_CHUNK_ATTENTION", "1")
        .env("PIO_FUSED_ROW_GEMM", "1")
        .env("PIO_CHUNK_ATTENTION_MIN_BLOCKS", "3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
