//! Writing what `pio-compile` produces into its output folder without losing anything the user
//! had there.
//!
//! - Everything is written into a fresh scratch folder beside the target
//!   (`.NAME.pio-tmp-PID`) and swapped in at the end, atomically where the OS can
//!   (`renameat2(RENAME_EXCHANGE)`), so an interrupted or failed compile leaves the old output
//!   whole and never a mix of two compiles.
//! - The folder holds a manifest ([`MANIFEST`]) of every file pio-compile wrote with its hash.
//!   A later compile replaces only those files, leaves out those the new compile does not
//!   write (no stale kernels of another model), and carries every other file over untouched
//!   (a file the user added, even inside `kernels/`, is kept).
//! - A file pio-compile wrote that was edited since, a user file in the way of a new output,
//!   or a non-empty folder pio-compile did not write is refused unless `force` is given.

use crate::error::CompileError;
use pio_artifact::hash_hex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest pio-compile keeps in its output folder (JSON: `{"written_by": "pio-compile",
/// "files": {"relative/path": "fnv1a hash"}}`).
pub const MANIFEST: &str = ".pio-compile";
const WRITTEN_BY: &str = "pio-compile";

/// What an existing output folder holds besides pio-compile's own (checked) files.
struct Existing {
    /// Every file pio-compile did not write there (relative paths).
    theirs: Vec<String>,
}

/// An output folder being written: files go to the scratch folder until [`OutputDir::commit`].
pub struct OutputDir {
    target: PathBuf,
    scratch: PathBuf,
    existing: Option<Existing>,
    force: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CompileError + '_ {
    move |e| CompileError::io(path, e)
}

fn refuse(message: String) -> CompileError {
    CompileError::Output(message)
}

/// Every file under `root` (relative paths with `/`), sorted; folders are walked, symlinks are
/// listed as files (never followed).
fn files_under(root: &Path) -> Result<Vec<String>, CompileError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let rel = rel.join(entry.file_name());
            let kind = entry.file_type().map_err(io(&dir))?;
            if kind.is_dir() {
                stack.push(rel);
            } else {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn file_hash(path: &Path) -> Result<String, CompileError> {
    Ok(hash_hex(&std::fs::read(path).map_err(io(path))?))
}

/// Reads the manifest of `dir`: Some(files) for a manifest, None for a folder without one or
/// with the marker of an older pio-compile (which listed no files).
fn read_manifest(dir: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    if v.get("written_by")?.as_str()? != WRITTEN_BY {
        return None;
    }
    let files = v.get("files")?.as_object()?;
    files
        .iter()
        .map(|(k, h)| Some((k.clone(), h.as_str()?.to_string())))
        .collect()
}

impl OutputDir {
    /// Checks `dir` before any work is done and creates the scratch folder beside it.
    pub fn begin(dir: &Path, force: bool) -> Result<OutputDir, CompileError> {
        let existing = if dir.exists() {
            let meta = std::fs::metadata(dir).map_err(io(dir))?;
            if !meta.is_dir() {
                return Err(refuse(format!(
                    "{} exists and is not a folder",
                    dir.display()
                )));
            }
            Some(Self::inspect(dir, force)?)
        } else {
            None
        };
        // Resolve symlinks and `.`: the swap renames real paths.
        let target = match &existing {
            Some(_) => dir.canonicalize().map_err(io(dir))?,
            None => std::path::absolute(dir).map_err(io(dir))?,
        };
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(refuse(format!(
                "{} cannot be an output folder (it has no parent)",
                dir.display()
            )));
        };
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let scratch = parent.join(format!(
            ".{}.pio-tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
        }
        std::fs::create_dir(&scratch).map_err(io(&scratch))?;
        Ok(OutputDir {
            target,
            scratch,
            existing,
            force,
        })
    }

    fn inspect(dir: &Path, force: bool) -> Result<Existing, CompileError> {
        let all = files_under(dir)?;
        let manifest = read_manifest(dir);
        let ours = manifest.clone().unwrap_or_default();
        let theirs: Vec<String> = all
            .iter()
            .filter(|f| f.as_str() != MANIFEST && !ours.contains_key(*f))
            .cloned()
            .collect();
        if manifest.is_none() && !theirs.is_empty() && !force {
            let why = if dir.join(MANIFEST).exists() {
                "was written by an older pio-compile that kept no list of its files"
            } else {
                "is not empty and was not written by pio-compile"
            };
            return Err(refuse(format!(
                "{} {why}; choose another folder, or pass --force to write into it (files \
                 pio-compile does not write are kept)",
                dir.display()
            )));
        }
        let mut edited = Vec::new();
        for (file, hash) in &ours {
            let path = dir.join(file);
            if path.is_file() && &file_hash(&path)? != hash {
                edited.push(file.clone());
            }
        }
        if !edited.is_empty() && !force {
            return Err(refuse(format!(
                "{}: {} changed since pio-compile wrote {}; move {} away, or pass --force to \
                 replace {}",
                dir.display(),
                edited.join(", "),
                if edited.len() == 1 { "it" } else { "them" },
                if edited.len() == 1 { "it" } else { "them" },
                if edited.len() == 1 { "it" } else { "them" },
            )));
        }
        Ok(Existing { theirs })
    }

    /// The folder files are written into until [`OutputDir::commit`] (for writers that take a
    /// folder, such as `Artifact::write_dir`).
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// The output folder as it will be named.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Writes one file (a relative path) into the scratch folder.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<(), CompileError> {
        let path = self.scratch.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, contents).map_err(io(&path))
    }

    /// Records the manifest, carries the user's files over and swaps the new folder in.
    pub fn commit(self) -> Result<PathBuf, CompileError> {
        let written = files_under(&self.scratch)?;
        let mut files = serde_json::Map::new();
        for f in &written {
            files.insert(f.clone(), file_hash(&self.scratch.join(f))?.into());
        }
        let manifest = serde_json::json!({"written_by": WRITTEN_BY, "files": files});
        let text = serde_json::to_string_pretty(&manifest).expect("JSON serializes");
        self.write(MANIFEST, format!("{text}\n").as_bytes())?;
        let Some(existing) = &self.existing else {
            std::fs::rename(&self.scratch, &self.target).map_err(io(&self.target))?;
            return Ok(self.target.clone());
        };
        let in_the_way: Vec<&String> = existing
            .theirs
            .iter()
            .filter(|f| written.contains(f) || f.as_str() == MANIFEST)
            .collect();
        if !in_the_way.is_empty() && !self.force {
            return Err(refuse(format!(
                "{}: {} would be replaced by pio-compile's output; move it away or pass --force",
                self.target.display(),
                in_the_way
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // The user's files move into the new folder (same file system: renames).
        for f in &existing.theirs {
            if written.contains(f) || f == MANIFEST {
                continue;
            }
            let to = self.scratch.join(f);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let from = self.target.join(f);
            std::fs::rename(&from, &to).map_err(io(&from))?;
        }
        swap(&self.scratch, &self.target)?;
        // The scratch path now holds the old folder: only files pio-compile wrote are left.
        std::fs::remove_dir_all(&self.scratch).map_err(io(&self.scratch))?;
        Ok(self.target.clone())
    }
}

impl Drop for OutputDir {
    /// A compile that did not commit leaves no scratch folder behind (a committed one has
    /// none left either).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Exchanges two folders: atomically with `renameat2(RENAME_EXCHANGE)` on Linux, else with two
/// renames (restoring the first on failure).
fn swap(new: &Path, target: &Path) -> Result<(), CompileError> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).ok();
        if let (Some(a), Some(b)) = (c(new), c(target)) {
            // SAFETY: two NUL-terminated paths relative to the working directory.
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            if rc == 0 {
                return Ok(());
            }
        }
    }
    let aside = new.with_extension("pio-old");
    std::fs::rename(target, &aside).map_err(io(target))?;
    if let Err(e) = std::fs::rename(new, target) {
        let _ = std::fs::rename(&aside, target);
        return Err(CompileError::io(target, e));
    }
    std::fs::rename(&aside, new).map_err(io(new))
}
