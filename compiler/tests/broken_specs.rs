//! The broken-spec corpus: every file in tests/specs/broken/ that is not a family must fail to
//! load or lower with exactly the error text in its `.expected` file (file, line, column, path
//! and message). `PIO_BLESS=1 cargo test -p pio-compiler --test broken_specs` rewrites the
//! `.expected` files. It lives in the compiler crate, next to the resolver it checks, so that
//! mutation testing of `compiler/src/spec/` runs it.

use std::path::{Path, PathBuf};

/// The error for `spec`, its paths written from the repository's root (as the `.expected`
/// files have them; this crate's tests run in `compiler/`).
fn error_text(spec: &Path) -> Option<String> {
    let loaded = pio_compiler::spec::load(spec);
    let text = match loaded {
        Err(e) => e.to_string(),
        Ok(s) => match pio_compiler::lower::lower(&s) {
            Err(e) => e.to_string(),
            Ok(_) => return None,
        },
    };
    Some(text.replace("../tests/specs/", "tests/specs/"))
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new("../tests/specs/broken");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/specs/broken exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".yaml") && !name.ends_with(".family.yaml")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_is_large_enough() {
    assert!(cases().len() >= 25, "only {} broken specs", cases().len());
}

#[test]
fn every_broken_spec_gives_its_exact_error() {
    let bless = std::env::var("PIO_BLESS").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut failures = Vec::new();
    for case in cases() {
        let expected_path = case.with_extension("expected");
        let Some(got) = error_text(&case) else {
            failures.push(format!("{}: loaded without error", case.display()));
            continue;
        };
        if bless {
            std::fs::write(&expected_path, format!("{got}\n")).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        if expected.trim_end() != got {
            failures.push(format!(
                "{}:\n  expected: {}\n  got:      {}",
                case.display(),
                expected.trim_end(),
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_mini_spec_itself_is_valid() {
    assert_eq!(
        error_text(Path::new("../tests/specs/mini-variant.yaml")),
        None
    );
}

/// The bounds are inclusive: a value at each bound loads, one more does not.
#[test]
fn the_largest_integer_hyperparameter_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("../tests/specs/mini.yaml", dir.path().join("mini.yaml")).unwrap();
    // The variant names its tokenizer and template `mini.yaml`, copied beside it.
    let variant = std::fs::read_to_string("../tests/specs/mini-variant.yaml").unwrap();
    // (vocab, hidden, layers): the largest integer; the largest tensor (2^24 x 2^12 = 2^36
    // elements); the most layers (1024); and one past each.
    for (vocab, hidden, layers, ok) in [
        (16_777_216, 32, 1, true),
        (16_777_217, 32, 1, false),
        (16_777_216, 4096, 1, true),
        (16_777_216, 4097, 1, false),
        (64, 32, 1024, true),
        (64, 32, 1025, false),
    ] {
        let v = variant
            .replace("vocab: 64", &format!("vocab: {vocab}"))
            .replace("hidden: 32", &format!("hidden: {hidden}"))
            .replace("layers: 1", &format!("layers: {layers}"));
        let path = dir.path().join("v.yaml");
        std::fs::write(&path, v).unwrap();
        let loaded = pio_compiler::spec::load(&path);
        let what = format!("vocab {vocab}, hidden {hidden}, layers {layers}");
        assert_eq!(
            loaded.is_ok(),
            ok,
            "{what}: {:?}",
            loaded.err().map(|e| e.to_string())
        );
    }
}

/// A model of exactly MAX_PARAMS (2^41) parameters loads; one more row of the embedding (4,096
/// parameters more) does not. Parameters: hidden x (vocab + 1 + layers x (1 + head_dim x
/// (2 x heads + kv_heads))) = 4096 x (12,581,887 + 1 + 1024 x 512,001) = 2^12 x 2^29.
#[test]
fn a_model_of_exactly_the_parameter_bound_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("../tests/specs/mini.yaml", dir.path().join("mini.yaml")).unwrap();
    let variant = std::fs::read_to_string("../tests/specs/mini-variant.yaml").unwrap();
    for (vocab, ok) in [(12_581_887, true), (12_581_888, false)] {
        let v = variant
            .replace("vocab: 64", &format!("vocab: {vocab}"))
            .replace("hidden: 32", "hidden: 4096")
            .replace("heads: 4", "heads: 1600")
            .replace("kv_heads: 2", "kv_heads: 800")
            .replace("head_dim: 16", "head_dim: 128")
            .replace("layers: 1", "layers: 1024");
        let path = dir.path().join("v.yaml");
        std::fs::write(&path, v).unwrap();
        let loaded = pio_compiler::spec::load(&path);
        match (&loaded, ok) {
            (Ok(_), true) => {}
            (Err(e), false) => assert!(
                e.to_string().contains("above pio's bound of 2199023255552"),
                "vocab {vocab}: {e}"
            ),
            _ => panic!("vocab {vocab}: {:?}", loaded.err().map(|e| e.to_string())),
        }
    }
}

/// A standard deviation of 0 (all-zero random weights) is allowed; below 0 it is not.
#[test]
fn an_init_std_of_zero_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let family = std::fs::read_to_string("../tests/specs/mini.yaml").unwrap();
    std::fs::copy(
        "../tests/specs/mini-variant.yaml",
        dir.path().join("v.yaml"),
    )
    .unwrap();
    for (std, ok) in [("0.0", true), ("-0.0001", false)] {
        let decl = format!(
            "  max_batch: {{type: int, default: 1}}\n  init_std: {{type: float, default: {std}}}"
        );
        let edited = family.replace("  max_batch: {type: int, default: 1}", &decl);
        assert_ne!(edited, family);
        std::fs::write(dir.path().join("mini.yaml"), edited).unwrap();
        let loaded = pio_compiler::spec::load(&dir.path().join("v.yaml"));
        assert_eq!(
            loaded.is_ok(),
            ok,
            "init_std {std}: {:?}",
            loaded.err().map(|e| e.to_string())
        );
    }
}

/// Mutated and truncated versions of a valid spec must give errors, never a panic.
#[test]
fn random_corruption_never_panics() {
    let family = std::fs::read("../tests/specs/mini.yaml").unwrap();
    let variant = std::fs::read("../tests/specs/mini-variant.yaml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let junk = b":-[]{}#&*!|>'\"%@`,? \n\tx0\xff";
    for round in 0..300 {
        let (mut fam, mut var) = (family.clone(), variant.clone());
        let target = if round % 2 == 0 { &mut fam } else { &mut var };
        match next() % 3 {
            0 => target.truncate((next() as usize) % target.len()),
            _ => {
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % target.len();
                    target[i] = junk[(next() as usize) % junk.len()];
                }
            }
        }
        std::fs::write(dir.path().join("mini.yaml"), &fam).unwrap();
        std::fs::write(dir.path().join("v.yaml"), &var).unwrap();
        let _ = error_text(&dir.path().join("v.yaml"));
    }
}
