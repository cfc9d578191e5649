//! Running what `pio-compile` wrote (`--artifact DIR`) as a user would, and the errors for an
//! artifact folder that was damaged, edited or written by another version (no GPU needed).

mod common;

use std::path::Path;

fn pio(args: &[&str]) -> (bool, String, String) {
    common::run(env!("CARGO_BIN_EXE_pio"), args)
}

fn compile_tiny(dir: &Path) {
    let (ok, out, err) = common::run(
        env!("CARGO_BIN_EXE_pio-compile"),
        &[
            "qwen3-tiny",
            "-o",
            dir.to_str().unwrap(),
            "--max-context",
            "256",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("pio run --artifact {}", dir.display())),
        "pio-compile prints how to run its output: {out}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn an_artifact_runs_on_the_cpu_like_its_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    compile_tiny(&dir);
    let a = dir.to_str().unwrap();
    let gen = [
        "--weights",
        "random",
        "--device",
        "cpu",
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "6",
        "--temperature",
        "0",
    ];
    let mut from_artifact = vec!["run", "--artifact", a];
    from_artifact.extend(gen);
    let mut from_spec = vec!["run", "--spec", "qwen3-tiny", "--max-context", "256"];
    from_spec.extend(gen);
    let (ok, art_out, err) = pio(&from_artifact);
    assert!(ok, "{err}");
    let (ok, spec_out, err) = pio(&from_spec);
    assert!(ok, "{err}");
    assert_eq!(art_out, spec_out);
    assert!(
        art_out.starts_with("Hello") && art_out.len() > "Hello".len(),
        "{art_out}"
    );

    // The same logits, to the bit, as the spec compiled at load.
    let npy = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (a_npy, s_npy) = (npy("a.npy"), npy("s.npy"));
    let ids = ["--ids", "5,9,13", "--decode-steps", "3", "--device", "cpu"];
    let mut args = vec!["logits", "--artifact", a, "-o", &a_npy];
    args.extend(ids);
    let (ok, _, err) = pio(&args);
    assert!(ok, "{err}");
    let mut args = vec![
        "logits",
        "--spec",
        "qwen3-tiny",
        "--max-context",
        "256",
        "-o",
        &s_npy,
    ];
    args.extend(ids);
    let (ok, _, err) = pio(&args);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&a_npy).unwrap(),
        std::fs::read(&s_npy).unwrap()
    );
}

#[test]
fn damaged_or_mismatched_artifacts_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    compile_tiny(&good);
    let run = |dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            "--artifact",
            dir.to_str().unwrap(),
            "--device",
            "cpu",
        ];
        args.extend(extra);
        let (ok, _, err) = pio(&args);
        assert!(!ok, "{} ran", dir.display());
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let variant = |name: &str, edit: &dyn Fn(&Path)| {
        let dir = tmp.path().join(name);
        copy_dir(&good, &dir);
        edit(&dir);
        dir
    };

    // A kernel source edited after the compile.
    let dir = variant("edited", &|d| {
        let k = std::fs::read_dir(d.join("kernels"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        std::fs::write(k.path(), "// edited\n").unwrap();
    });
    let err = run(&dir, &[]);
    assert!(err.contains("changed since pio-compile wrote it"), "{err}");
    assert!(err.contains("kernels/"), "{err}");

    // Another format version.
    let dir = variant("version", &|d| {
        let p = d.join("artifact.json");
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.replacen(
            &format!("\"format_version\": {}", pio_artifact::FORMAT_VERSION),
            "\"format_version\": 2",
            1,
        );
        std::fs::write(p, text).unwrap();
    });
    let err = run(&dir, &[]);
    assert!(
        err.contains(&format!(
            "artifact format 2, this pio reads format {}",
            pio_artifact::FORMAT_VERSION
        )),
        "{err}"
    );

    // Truncated JSON: the file, line and column.
    let dir = variant("truncated", &|d| {
        let p = d.join("artifact.json");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(p, &text[..text.len() / 2]).unwrap();
    });
    let err = run(&dir, &[]);
    assert!(
        err.contains("artifact.json:") && err.contains("not a pio artifact"),
        "{err}"
    );

    // A launch pointing outside its region.
    let dir = variant("offset", &|d| {
        let p = d.join("artifact.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v["decode"][0]["kernel"]["args"][0]["ptr"]["offset"] = serde_json::json!(1u64 << 40);
        std::fs::write(p, serde_json::to_string(&v).unwrap()).unwrap();
    });
    let err = run(&dir, &[]);
    assert!(
        err.contains("decode step 0") && err.contains("outside"),
        "{err}"
    );

    // A missing attachment.
    let dir = variant("no-tokenizer", &|d| {
        std::fs::remove_file(d.join("tokenizer.json")).unwrap()
    });
    let err = run(&dir, &[]);
    assert!(err.contains("tokenizer.json"), "{err}");

    // Not a folder pio-compile wrote.
    let err = run(tmp.path(), &[]);
    assert!(err.contains("artifact.json"), "{err}");

    // A context the artifact was not compiled for.
    let err = run(&good, &["--max-context", "128"]);
    assert!(
        err.contains("compiled for 256") && err.contains("pio-compile --max-context 128"),
        "{err}"
    );
    // --spec and --artifact together.
    let err = run(&good, &["--spec", "qwen3-tiny"]);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn an_artifact_carries_its_reference_graph_and_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    compile_tiny(&dir);
    let a = pio_artifact::Artifact::load_dir(&dir).unwrap();
    assert_eq!(a.model.name, "Qwen3-tiny");
    assert_eq!(a.max_context, 256);
    assert_eq!(a.model.context_bound, 512);
    let graph = pio_compiler::ir::serial::from_json(a.reference_graph.text().unwrap()).unwrap();
    let spec = pio_compiler::spec::load(Path::new("model-specs/qwen3-tiny.yaml")).unwrap();
    let lowered = pio_compiler::lower::lower(&spec).unwrap();
    use pio_compiler::ir::print::print;
    assert_eq!(print(&graph), print(&lowered));
    assert_eq!(
        a.model.tokenizer.data,
        std::fs::read("model-specs/tokenizers/qwen3-tiny/tokenizer.json").unwrap()
    );
}
