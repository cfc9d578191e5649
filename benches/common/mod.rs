//! Shared by the criterion benches.

use std::path::PathBuf;

/// The workspace root: where the bench was compiled, else the current directory (cargo runs
/// benches from the package root, also when the binary was built elsewhere).
pub fn root() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if built.join("model-specs").is_dir() {
        built
    } else {
        PathBuf::from(".")
    }
}
