//! The targets of `tests/fuzz.rs` (the same files) for cargo-fuzz: libFuzzer supplies the
//! inputs, the coverage guidance, the allocation bound (`-malloc_limit_mb`), the timeout
//! (`-timeout`) and the crash files; a failed check of a target (e.g. an unlocated error)
//! panics, which libFuzzer records as a crash.
#![allow(dead_code)]

#[path = "../../tests/fuzz/chat.rs"]
pub mod chat;
#[path = "../../tests/fuzz/config.rs"]
pub mod config;
#[path = "../../tests/fuzz/mutate.rs"]
pub mod mutate;
#[path = "../../tests/fuzz/spec.rs"]
pub mod spec;
#[path = "../../tests/fuzz/target.rs"]
pub mod target;
#[path = "../../tests/fuzz/weights.rs"]
pub mod weights;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use target::{Ctx, Target};

/// Runs one input of `t` (skipping inputs that hit a known, not yet fixed bug).
pub fn run(t: &Target, data: &[u8]) {
    if data.len() > t.max_len || (t.known)(data).is_some() {
        return;
    }
    static DIRS: Mutex<Option<HashMap<&'static str, PathBuf>>> = Mutex::new(None);
    let dir = {
        let mut dirs = DIRS.lock().unwrap();
        dirs.get_or_insert_with(HashMap::new)
            .entry(t.name)
            .or_insert_with(|| {
                let d = std::env::temp_dir().join(format!(
                    "pio-fuzz-{}-{}",
                    t.name,
                    std::process::id()
                ));
                let _ = std::fs::remove_dir_all(&d);
                std::fs::create_dir_all(&d).unwrap();
                (t.setup)(&d);
                d
            })
            .clone()
    };
    let ctx = Ctx {
        input: dir.join(t.input_file),
        dir,
    };
    std::fs::write(&ctx.input, data).unwrap();
    if let Err(e) = (t.run)(&ctx, data) {
        panic!("fuzz target {}: check failed: {e}", t.name);
    }
}
