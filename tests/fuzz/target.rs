//! What a fuzz target is (shared by the test harness and the cargo-fuzz crate `fuzz/`).

use std::path::{Path, PathBuf};

use crate::mutate::{Mutator, Rng};

/// A custom mutation: (mutator, rng, input, other corpus input) -> mutant.
pub type MutateFn = fn(&Mutator, &mut Rng, &[u8], &[u8]) -> Vec<u8>;

/// One fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// Its name: corpus folder `tests/fuzz/corpus/<name>/`, crash file prefix.
    pub name: &'static str,
    /// File name the input is written as, inside the work folder.
    pub input_file: &'static str,
    /// Largest input the mutator makes.
    pub max_len: usize,
    /// Prepares the work folder once (fixed sibling files).
    pub setup: fn(&Path),
    /// Runs one input; `Err` is a failed check (e.g. an error without a location).
    pub run: fn(&Ctx, &[u8]) -> Result<(), String>,
    /// Structure-aware mutation, used half of the time when set.
    pub mutate: Option<MutateFn>,
    /// Recognises inputs that hit a known, not yet fixed bug: they are skipped and counted, not
    /// run, so CI stays green (and a stack overflow does not abort the whole test binary). The
    /// corpus holds their reproducers as `known-*` files; `--ignored` tests replay those
    /// without this filter.
    pub known: fn(&[u8]) -> Option<&'static str>,
}

/// No known bugs.
pub fn none_known(_: &[u8]) -> Option<&'static str> {
    None
}

/// Where a target runs.
pub struct Ctx {
    /// The work folder (its own per target).
    pub dir: PathBuf,
    /// The input file, already written.
    pub input: PathBuf,
}

/// The repository root (this crate's folder, or its parent for the cargo-fuzz crate `fuzz/`).
pub fn repo() -> &'static Path {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("model-specs").is_dir() {
        here
    } else {
        here.parent().unwrap()
    }
}
