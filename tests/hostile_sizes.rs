//! Hostile sizes (issue 14, items 1, 2 and 4): hyperparameters that would size unbounded work
//! or allocations are located spec errors; a model the machine cannot hold is refused with
//! the bytes needed and available; nothing aborts, nothing hangs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A variant of the tiny model with `edits` (`from` -> `to` line replacements), written into
/// `dir` with absolute paths to the real family and tokenizer files.
fn tiny_variant(dir: &Path, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(Path::new(ROOT).join("model-specs/qwen3-tiny.yaml"))
        .unwrap()
        .replace(
            "family: qwen3",
            &format!("family: {ROOT}/model-specs/qwen3.yaml"),
        )
        .replace("tokenizers/", &format!("{ROOT}/model-specs/tokenizers/"));
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in the tiny spec");
        text = text.replace(from, to);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn pio(args: &[&str]) -> (bool, String, String) {
    common::run_with_timeout(env!("CARGO_BIN_EXE_pio"), args, Duration::from_secs(120))
}

fn compile(args: &[&str]) -> (bool, String, String) {
    common::run_with_timeout(
        env!("CARGO_BIN_EXE_pio-compile"),
        args,
        Duration::from_secs(120),
    )
}

#[test]
fn huge_hyperparameters_are_located_errors_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cases = [
        (
            "num_layers: 2",
            "num_layers: 1000000000000",
            11,
            "num_layers",
        ),
        (
            "hidden_size: 64",
            "hidden_size: 1000000000000",
            10,
            "hidden_size",
        ),
        ("vocab_size: 512", "vocab_size: 4294967296", 9, "vocab_size"),
        (
            "num_layers: 2",
            "num_layers: 5000",
            11,
            "above the bound of 1024",
        ),
    ];
    for (i, (from, to, line, needle)) in cases.into_iter().enumerate() {
        let spec = tiny_variant(dir.path(), &format!("v{i}.yaml"), &[(from, to)]);
        let s = spec.to_str().unwrap();
        let located = format!("v{i}.yaml:{line}:3:");
        let (ok, _, err) = compile(&[s, "-o", out.to_str().unwrap()]);
        assert!(
            !ok && err.contains(&located) && err.contains(needle),
            "{to}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        for args in [
            vec!["run", "--spec", s, "--device", "cpu"],
            vec!["init-weights", s, "-o", out.to_str().unwrap()],
        ] {
            let (ok, _, err) = pio(&args);
            assert!(!ok && err.contains(&located), "{args:?}: {err}");
        }
        assert!(!out.exists(), "nothing is written for a bad spec");
    }
}

#[test]
fn a_model_too_big_for_this_machine_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    // Within every bound, but 65.5 billion parameters: 262 GB of f32 on the CPU, a 131 GB
    // embedding in bf16; no test machine has either.
    let spec = tiny_variant(
        dir.path(),
        "big.yaml",
        &[
            ("hidden_size: 64", "hidden_size: 16000000"),
            ("vocab_size: 512", "vocab_size: 4096"),
        ],
    );
    let s = spec.to_str().unwrap();
    let (ok, _, err) = pio(&["run", "--spec", s, "--device", "cpu"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("not enough host memory for the f32 weights of Qwen3-tiny on the CPU: needs"),
        "{err}"
    );
    assert!(err.contains("available"), "{err}");
    let w = dir.path().join("w");
    let (ok, _, err) = pio(&["init-weights", s, "-o", w.to_str().unwrap()]);
    assert!(!ok && err.contains("not enough"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&w)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "init-weights left {left:?}");
}

#[test]
fn negative_or_non_finite_init_std_is_a_spec_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for (i, std) in ["-1.0", ".nan", ".inf", "1e308"].into_iter().enumerate() {
        let spec = tiny_variant(
            dir.path(),
            &format!("s{i}.yaml"),
            &[(
                "max_context: 512",
                &format!("max_context: 512\n  init_std: {std}"),
            )],
        );
        let (ok, _, err) = pio(&["run", "--spec", spec.to_str().unwrap(), "--device", "cpu"]);
        assert!(!ok, "{std}: {err}");
        assert!(err.contains(&format!("s{i}.yaml:19:")), "{err}");
        assert!(err.contains("hyperparameters.init_std"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn list_reads_specs_without_building_graphs_and_fails_on_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    tiny_variant(dir.path(), "good.yaml", &[]);
    // Within the layer bound but enormous: listing must not lower it (it would take minutes).
    tiny_variant(
        dir.path(),
        "deep.yaml",
        &[
            ("num_layers: 2", "num_layers: 1024"),
            ("hidden_size: 64", "hidden_size: 65536"),
        ],
    );
    tiny_variant(
        dir.path(),
        "huge.yaml",
        &[("num_layers: 2", "num_layers: 1000000000000")],
    );
    let (ok, out, err) = pio(&["list", "--specs", dir.path().to_str().unwrap()]);
    assert!(!ok, "a broken spec makes list fail: {err}");
    assert!(
        err.contains("huge.yaml") && err.contains("1 spec file(s) could not be loaded"),
        "{err}"
    );
    let deep = out.lines().find(|l| l.contains("deep.yaml")).expect(&out);
    assert!(deep.contains(" 1024 "), "{deep}");
    assert!(
        out.lines()
            .any(|l| l.contains("good.yaml") && l.contains("119,232")),
        "{out}"
    );
}
