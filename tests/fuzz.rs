//! Hostile-input fuzzing (issue 14): a seeded, time-bounded mutational fuzzer over every reader
//! of untrusted files. Each target first replays its committed corpus
//! (`tests/fuzz/corpus/<target>/`, where every failure found is added), then mutates it for
//! `PIO_FUZZ_SECS` seconds (default 10). Each input must: not panic, not push its thread past
//! `harness::ALLOC_BOUND` live bytes, finish within `PIO_FUZZ_INPUT_TIMEOUT` seconds, and fail,
//! if it fails, with a located error (specs: file:line:col; weights and configs: the file).
//!
//! CI: `cargo test --test fuzz` (part of `cargo test --workspace`).
//! Long run: `PIO_FUZZ_SECS=600 PIO_FUZZ_SEED=$RANDOM cargo test --release --test fuzz -- --nocapture`.
//! Failures are saved to `$CARGO_TARGET_DIR/tmp/fuzz-crashes/<target>-<hash>`; hard crashes
//! (abort, stack overflow) print the path of the input they ran.

#[path = "fuzz/alloc.rs"]
mod alloc;
#[path = "fuzz/chat.rs"]
mod chat;
#[path = "fuzz/config.rs"]
mod config;
#[path = "fuzz/harness.rs"]
mod harness;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/spec.rs"]
mod spec;
#[path = "fuzz/target.rs"]
mod target;
#[path = "fuzz/weights.rs"]
mod weights;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// The harness itself: a panic is caught with its location, an allocation past the bound is
/// refused and reported, a failed check is reported.
#[test]
fn harness_catches_panics_allocations_and_failed_checks() {
    let t = target::Target {
        name: "harness_selftest",
        input_file: "input",
        max_len: 16,
        setup: |_| {},
        run: |_, bytes| match bytes {
            b"panic" => panic!("boom"),
            b"alloc" => {
                let mut v: Vec<u8> = Vec::new();
                let _ = v.try_reserve(harness::ALLOC_BOUND + 1);
                Ok(())
            }
            b"check" => Err("bad".to_string()),
            _ => Ok(()),
        },
        mutate: None,
        known: target::none_known,
    };
    assert_eq!(harness::run_input(&t, b"fine"), Ok(()));
    let p = harness::run_input(&t, b"panic").unwrap_err();
    assert!(p.contains("tests/fuzz.rs:") && p.contains("boom"), "{p}");
    let a = harness::run_input(&t, b"alloc").unwrap_err();
    assert!(a.contains("allocation beyond the bound"), "{a}");
    assert_eq!(
        harness::run_input(&t, b"check"),
        Err("check failed: bad".to_string())
    );
    // Bounds apply only while an input runs.
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve(harness::ALLOC_BOUND + 1).unwrap();
}

#[test]
fn spec_variant() {
    harness::fuzz(&spec::VARIANT);
}

#[test]
fn spec_family() {
    harness::fuzz(&spec::FAMILY);
}

#[test]
fn safetensors() {
    harness::fuzz(&weights::SINGLE);
}

#[test]
fn safetensors_index() {
    harness::fuzz(&weights::INDEX);
}

#[test]
fn config_json() {
    harness::fuzz(&config::CONFIG);
}

#[test]
fn generation_config() {
    harness::fuzz(&config::GENERATION);
}

#[test]
fn chat_config() {
    harness::fuzz(&chat::CONFIG);
}

#[test]
fn chat_messages() {
    harness::fuzz(&chat::MESSAGES);
}

#[test]
fn weights_dir_with_both_layouts_is_refused() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-work/both-layouts");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (weights::INDEX.setup)(&dir);
    let corpus = target::repo().join("tests/fuzz/corpus");
    std::fs::copy(
        corpus.join("safetensors/valid.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        corpus.join("safetensors_index/valid.json"),
        dir.join("model.safetensors.index.json"),
    )
    .unwrap();
    match pio_runtime::weights::WeightDir::open_with(
        &dir,
        &weights::expected(),
        &["lm_head.weight"],
    ) {
        Ok(_) => panic!("{}: both layouts accepted", dir.display()),
        Err(e) => weights::names_file(&e, &dir).unwrap(),
    }
}

#[test]
fn chat_template_errors_name_the_file() {
    let label = "/models/x/tokenizer_config.json";
    let config = br#"{"chat_template": "{% for m in messages %}{{ m.content }"}"#;
    let e = pio_runtime::chat::ChatTemplate::from_tokenizer_config_bytes(config, label)
        .unwrap_err()
        .to_string();
    assert!(e.contains(label), "{e}");
}
