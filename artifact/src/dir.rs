//! Reading and writing an artifact folder: `artifact.json`, the kernel sources and the
//! attachments, each file written through a temporary name and a rename; every problem on
//! reading is an error that names the file (and the line and column of a JSON error).

use crate::{hash_hex, Artifact, Attachment, FORMAT_VERSION};
use std::path::{Path, PathBuf};

/// The artifact's own file in its folder.
/// Largest artifact.json read (the 4B's is a few MB).
const MAX_ARTIFACT_JSON_BYTES: u64 = 256 << 20;
/// Largest kernel source read (generated ones are tens of KB).
const MAX_KERNEL_BYTES: u64 = 16 << 20;

pub const ARTIFACT_FILE: &str = "artifact.json";

/// Errors reading or writing an artifact folder.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The I/O error is part of the message, not a `source` (so a printed chain says it once).
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}:{line}:{column}: not a pio artifact: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: artifact format {found}, this pio reads format {expected}; recompile with this pio-compile", path.display())]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{}: {what} changed since pio-compile wrote it (hash {found}, artifact.json says {expected}); recompile", path.display())]
    Modified {
        path: PathBuf,
        what: String,
        expected: String,
        found: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |cause| ArtifactError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Writes `contents` to `dir/name` through a temporary file and a rename, so no half-written
/// file is ever left under the real name.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf, ArtifactError> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = dir.join(format!(".{}.tmp", name.replace('/', "_")));
    std::fs::write(&tmp, contents).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// A file name inside the artifact folder: relative, no `..`, no root.
fn inside(dir: &Path, file: &str) -> Result<PathBuf, ArtifactError> {
    let rel = Path::new(file);
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if file.is_empty() || !plain {
        return Err(ArtifactError::Invalid {
            path: dir.join(ARTIFACT_FILE),
            message: format!("file '{file}' is not a plain path inside the artifact folder"),
        });
    }
    Ok(dir.join(rel))
}

impl Artifact {
    /// Writes `artifact.json`, every kernel's source and every attachment into `dir` (which
    /// must exist; the caller decides whether it may be written).
    pub fn write_dir(&self, dir: &Path) -> Result<(), ArtifactError> {
        for k in &self.kernels {
            inside(dir, &k.file)?;
            write_atomic(dir, &k.file, k.source.as_bytes())?;
        }
        for a in self.attachments() {
            inside(dir, &a.file)?;
            write_atomic(dir, &a.file, &a.data)?;
        }
        let json = serde_json::to_string_pretty(self).map_err(|e| ArtifactError::Invalid {
            path: dir.join(ARTIFACT_FILE),
            message: e.to_string(),
        })?;
        write_atomic(dir, ARTIFACT_FILE, format!("{json}\n").as_bytes())?;
        Ok(())
    }

    /// Reads an artifact folder written by [`Artifact::write_dir`]: the format version first,
    /// then the whole description, every kernel source and attachment (checked against their
    /// hashes), and the description's own consistency (every launch names a kernel, every
    /// pointer lies inside its region).
    pub fn load_dir(dir: &Path) -> Result<Artifact, ArtifactError> {
        let path = dir.join(ARTIFACT_FILE);
        let text =
            crate::read::read_bounded_text(&path, MAX_ARTIFACT_JSON_BYTES).map_err(io(&path))?;
        let json_err = |e: serde_json::Error| ArtifactError::Json {
            path: path.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(json_err)?;
        let found = value.get("format_version").and_then(|v| v.as_u64());
        if found != Some(FORMAT_VERSION as u64) {
            return Err(ArtifactError::Version {
                path,
                found: found.map_or(0, |v| v.min(u32::MAX as u64) as u32),
                expected: FORMAT_VERSION,
            });
        }
        let mut a: Artifact = serde_json::from_str(&text).map_err(json_err)?;
        for k in &mut a.kernels {
            let file = inside(dir, &k.file)?;
            k.source =
                crate::read::read_bounded_text(&file, MAX_KERNEL_BYTES).map_err(io(&file))?;
            let found = hash_hex(k.source.as_bytes());
            if found != k.source_hash {
                return Err(ArtifactError::Modified {
                    path: file,
                    what: format!("kernel {}", k.name),
                    expected: k.source_hash.clone(),
                    found,
                });
            }
        }
        for att in a.attachments_mut() {
            read_attachment(dir, att)?;
        }
        crate::check::check(&a).map_err(|message| ArtifactError::Invalid { path, message })?;
        Ok(a)
    }

    fn attachments(&self) -> [&Attachment; 3] {
        [
            &self.model.tokenizer,
            &self.model.tokenizer_config,
            &self.reference_graph,
        ]
    }

    fn attachments_mut(&mut self) -> [&mut Attachment; 3] {
        [
            &mut self.model.tokenizer,
            &mut self.model.tokenizer_config,
            &mut self.reference_graph,
        ]
    }
}

fn read_attachment(dir: &Path, att: &mut Attachment) -> Result<(), ArtifactError> {
    let file = inside(dir, &att.file)?;
    // An attachment is exactly as long as artifact.json says: read at most one byte past that
    // (a longer file then fails the size check below), never a whole unknown file.
    let f = std::fs::File::open(&file).map_err(io(&file))?;
    let mut data = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(f, att.bytes.saturating_add(1)),
        &mut data,
    )
    .map_err(io(&file))?;
    att.data = data;
    let found = hash_hex(&att.data);
    if found != att.hash || att.data.len() as u64 != att.bytes {
        return Err(ArtifactError::Modified {
            path: file,
            what: format!("{} ({} bytes expected)", att.file, att.bytes),
            expected: att.hash.clone(),
            found,
        });
    }
    Ok(())
}
