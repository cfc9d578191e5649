//! Writing what `pio-compile` produces into its output folder, without ever clobbering files
//! that were not written by `pio-compile`.

use crate::error::CompileError;
use std::path::{Path, PathBuf};

/// Marks a folder as written by `pio-compile` (so a later run may replace its files).
pub const MARKER: &str = ".pio-compile";

/// Prepares `dir` for writing: creates it, or accepts it if it is empty, was written by
/// `pio-compile` before, or `force` is set. Anything else is an error that names the folder.
pub fn prepare_dir(dir: &Path, force: bool) -> Result<(), CompileError> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(CompileError::Output(format!(
                "{} exists and is not a folder",
                dir.display()
            )));
        }
        let mut entries = std::fs::read_dir(dir).map_err(|e| CompileError::io(dir, e))?;
        let empty = entries.next().is_none();
        if !empty && !dir.join(MARKER).is_file() && !force {
            return Err(CompileError::Output(format!(
                "{} exists, is not empty and was not written by pio-compile; choose another folder or pass --force",
                dir.display()
            )));
        }
    } else {
        std::fs::create_dir_all(dir).map_err(|e| CompileError::io(dir, e))?;
    }
    write_file(dir, MARKER, b"written by pio-compile\n")?;
    Ok(())
}

/// Writes one file through a temporary name and a rename, so no half-written file is left
/// under the real name.
pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf, CompileError> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| CompileError::io(parent, e))?;
    }
    let tmp = dir.join(format!(".{}.tmp", name.replace('/', "_")));
    std::fs::write(&tmp, contents).map_err(|e| CompileError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| CompileError::io(&path, e))?;
    Ok(path)
}
