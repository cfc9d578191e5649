//! Hostile use of the command line (issue 14, items 3 and 5-9): closed or full stdout, output
//! paths checked before the work, outputs that never destroy the user's files, no leftovers
//! after an interrupt, and the small misbehaviours found by the audit.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const PIO: &str = env!("CARGO_BIN_EXE_pio");
const COMPILE: &str = env!("CARGO_BIN_EXE_pio-compile");

fn pio(args: &[&str]) -> (bool, String, String) {
    common::run_with_timeout(PIO, args, Duration::from_secs(120))
}

fn compile(args: &[&str]) -> (bool, String, String) {
    common::run_with_timeout(COMPILE, args, Duration::from_secs(120))
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_full_one_is_an_error() {
    // `pio list | head -0`: the reader is gone before pio writes.
    let mut child = Command::new(PIO)
        .arg("list")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked") && err.is_empty(), "{err}");
    // `> /dev/full`: every write fails with ENOSPC.
    let dir = tempfile::tempdir().unwrap();
    for (bin, args) in [
        (PIO, vec!["list".to_string()]),
        (
            COMPILE,
            vec![
                "qwen3-tiny".to_string(),
                "-o".to_string(),
                dir.path().join("o").display().to_string(),
            ],
        ),
    ] {
        let full = std::fs::File::create("/dev/full").unwrap();
        let out = Command::new(bin).args(&args).stdout(full).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bin}: {err}");
        assert!(err.contains("error: writing to stdout"), "{bin}: {err}");
        assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn output_paths_are_checked_before_the_work() {
    for args in [
        vec!["bench", "--device", "cpu", "--json", "/nonexistent/x.json"],
        vec!["bench", "--device", "cpu", "--plots", "/dev/null/plots"],
        vec![
            "logits",
            "--device",
            "cpu",
            "--ids",
            "1,2",
            "-o",
            "/nonexistent/x.npy",
        ],
    ] {
        let (ok, out, err) = pio(&args);
        assert!(!ok, "{args:?}");
        assert!(out.is_empty(), "{args:?} did work before failing: {out}");
        assert!(
            err.contains("/nonexistent") || err.contains("/dev/null"),
            "{err}"
        );
        assert!(
            !err.contains("note:"),
            "{args:?} loaded a model first: {err}"
        );
    }
}

/// Files of a folder (relative paths), sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn recompiling_into_an_output_folder_keeps_the_users_files_and_drops_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, o) = (dir.path().join("fresh"), dir.path().join("o"));
    let (fresh_s, o_s) = (fresh.to_str().unwrap(), o.to_str().unwrap());
    assert!(compile(&["qwen3-tiny", "-o", fresh_s]).0);
    assert!(compile(&["qwen3-0.6b", "-o", o_s]).0);
    std::fs::write(o.join("kernels/mine.cu"), "// mine").unwrap();
    std::fs::write(o.join("notes.txt"), "keep").unwrap();
    // Another model into the same folder: its files replace the old model's entirely.
    let (ok, _, err) = compile(&["qwen3-tiny", "-o", o_s]);
    assert!(ok, "{err}");
    let mut want = files(&fresh);
    want.extend(["kernels/mine.cu".to_string(), "notes.txt".to_string()]);
    want.sort();
    assert_eq!(files(&o), want, "stale files left or user files lost");
    assert_eq!(
        std::fs::read_to_string(o.join("kernels/mine.cu")).unwrap(),
        "// mine"
    );
    // An output edited since is not overwritten without --force...
    std::fs::write(o.join("summary.json"), "edited").unwrap();
    let (ok, _, err) = compile(&["qwen3-tiny", "-o", o_s]);
    assert!(
        !ok && err.contains("summary.json changed since pio-compile wrote it"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(o.join("summary.json")).unwrap(),
        "edited"
    );
    // ...and with it, the user's own files still stay.
    assert!(compile(&["qwen3-tiny", "-o", o_s, "--force"]).0);
    assert_ne!(
        std::fs::read_to_string(o.join("summary.json")).unwrap(),
        "edited"
    );
    assert_eq!(
        std::fs::read_to_string(o.join("notes.txt")).unwrap(),
        "keep"
    );
    // No scratch folder is left beside it.
    let beside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(beside.iter().all(|n| !n.contains("pio-tmp")), "{beside:?}");
    // The artifact written this way loads and runs.
    let (ok, _, err) = pio(&[
        "run",
        "--artifact",
        o_s,
        "--device",
        "cpu",
        "--max-new-tokens",
        "2",
    ]);
    assert!(ok, "{err}");
}

#[test]
fn an_interrupted_init_weights_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    // An earlier run killed without a chance to clean up left this (pid 4294967290 is no
    // process): the next run removes it.
    std::fs::create_dir(&w).unwrap();
    std::fs::write(w.join(".model.safetensors.pio-tmp-4294967290-0"), "x").unwrap();
    let child = Command::new(PIO)
        .args(["init-weights", "qwen3-0.6b", "-o", w.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Writing the 0.6B takes several seconds: interrupt it while its temporaries exist.
    let start = std::time::Instant::now();
    while !files(&w)
        .iter()
        .any(|f| f.starts_with(".model.safetensors.pio-tmp-") && !f.contains("4294967290"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files(&w), Vec::<String>::new(), "left behind");
}

#[test]
fn small_misbehaviours_of_the_audit() {
    // No tokens generated: no absurd tokens/s.
    let (ok, _, err) = pio(&["run", "--device", "cpu", "--max-new-tokens", "0"]);
    assert!(ok, "{err}");
    assert!(err.contains("generated: 0 tokens, - tokens/s"), "{err}");
    // Argument errors come before any model is loaded (no random-weights note).
    let (ok, _, err) = pio(&["run", "--device", "cpu", "--system", "x"]);
    assert!(
        !ok && err.contains("--system and --no-think need --chat"),
        "{err}"
    );
    assert!(!err.contains("note:"), "{err}");
    // Negative values reach the range check instead of the argument parser.
    let (ok, _, err) = pio(&["run", "--device", "cpu", "--temperature", "-1"]);
    assert!(
        !ok && err.contains("temperature = -1: must be finite and >= 0"),
        "{err}"
    );
    assert!(!err.contains("note:"), "{err}");
    // --max-context bounds the CPU's cache too: a 12-token prompt in 16 positions.
    let (ok, _, err) = pio(&[
        "run",
        "--device",
        "cpu",
        "--max-context",
        "16",
        "--max-new-tokens",
        "100",
        "--ignore-eos",
    ]);
    assert!(
        ok && err.contains("generated: 5 tokens") && err.contains("stop: context full"),
        "{err}"
    );
    // --top-k 0 has a documented meaning.
    let (_, help, _) = pio(&["run", "--help"]);
    assert!(help.contains("0 turns the filter off"), "{help}");
    // init-weights names its flag.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(pio(&["init-weights", "qwen3-tiny", "-o", d]).0);
    let (ok, _, err) = pio(&["init-weights", "qwen3-tiny", "-o", d]);
    assert!(!ok && err.contains("pass --force to replace them"), "{err}");
    // A generation_config.json with an eos id outside the vocabulary is refused.
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [505, 4000000000]}"#,
    )
    .unwrap();
    let (ok, _, err) = pio(&["run", "--weights", d, "--device", "cpu"]);
    assert!(
        !ok && err.contains("generation_config.json") && err.contains("vocabulary"),
        "{err}"
    );
}

#[test]
fn a_broken_chat_template_fails_only_chat_runs_and_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(pio(&["init-weights", "qwen3-tiny", "-o", d]).0);
    let cfg = dir.path().join("tokenizer_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["chat_template"] = "{% for m in messages %}{{ m.content }".into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    let run = [
        "run",
        "--weights",
        d,
        "--device",
        "cpu",
        "--max-new-tokens",
        "2",
    ];
    let (ok, _, err) = pio(&run);
    assert!(ok, "a plain run does not need the template: {err}");
    let (ok, _, err) = pio(&[&run[..], &["--chat"]].concat());
    assert!(!ok, "{err}");
    assert!(
        err.contains("tokenizer_config.json: chat template syntax error"),
        "{err}"
    );
}

#[test]
fn bench_with_no_size_flags_fits_the_default_model() {
    let (ok, out, err) = pio(&["bench", "--device", "cpu", "--gen", "8", "--repeats", "1"]);
    assert!(ok, "{err}");
    assert!(err.contains("skipping prompt lengths [2048]"), "{err}");
    assert!(out.contains("Qwen3-tiny"), "{out}");
    // Sizes the user asks for are never dropped silently.
    let (ok, _, err) = pio(&["bench", "--device", "cpu", "--context", "4096"]);
    assert!(
        !ok && err.contains("exceed Qwen3-tiny's context of 512"),
        "{err}"
    );
    // A context of 0 still prefills a token: 0 + 512 generated do not fit 512.
    let (ok, _, err) = pio(&["bench", "--device", "cpu", "--context", "0", "--gen", "512"]);
    assert!(
        !ok && err.contains("bench: context 0 + 512 generated tokens exceed"),
        "{err}"
    );
}

#[test]
fn endless_or_huge_input_files_are_bounded() {
    let (ok, _, err) = compile(&["/dev/zero", "-o", "/tmp/never-written"]);
    assert!(!ok && err.contains("/dev/zero"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(pio(&["init-weights", "qwen3-tiny", "-o", d]).0);
    // A device that never ends, and a (sparse) file far larger than any config.
    for (file, endless) in [("config.json", true), ("generation_config.json", false)] {
        let path = dir.path().join(file);
        let saved = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        if endless {
            std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        } else {
            std::fs::File::create(&path)
                .unwrap()
                .set_len(1 << 30)
                .unwrap();
        }
        let (ok, _, err) = pio(&["run", "--weights", d, "--device", "cpu"]);
        assert!(
            !ok && err.contains(file) && err.contains("more than"),
            "{file}: {err}"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, saved).unwrap();
    }
    let (ok, _, err) = pio(&["compare", "/dev/zero", "/dev/zero"]);
    assert!(!ok && err.contains("more than"), "{err}");
}
