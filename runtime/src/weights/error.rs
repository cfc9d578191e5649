//! Errors of the weights module. Every message names the file or directory involved and,
//! for validation failures, lists every problem found rather than only the first.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::spec::ShapeDisplay;

/// One problem found while validating a weight directory against the expected tensors.
/// [`WeightsError::Invalid`] carries all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightProblem {
    /// An expected tensor is in no file.
    Missing {
        /// HF tensor name.
        name: String,
        /// Expected shape.
        shape: Vec<usize>,
    },
    /// A tensor is stored that the model does not expect (and that was not declared ignorable).
    Unexpected {
        /// HF tensor name.
        name: String,
        /// Shape stored in the file.
        shape: Vec<usize>,
        /// File holding it.
        file: PathBuf,
    },
    /// A tensor has the wrong shape.
    WrongShape {
        /// HF tensor name.
        name: String,
        /// Shape the model expects.
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored with a dtype other than bf16/f16/f32 (e.g. `I64`).
    WrongDType {
        /// HF tensor name.
        name: String,
        /// The safetensors dtype name found (e.g. `I64`).
        dtype: String,
        /// File holding it.
        file: PathBuf,
    },
    /// A shard holds a tensor that `model.safetensors.index.json` does not map to it.
    NotInIndex {
        /// HF tensor name.
        name: String,
        /// Shard holding it.
        file: PathBuf,
        /// The shard the index maps this name to, if any.
        indexed_file: Option<String>,
    },
    /// `model.safetensors.index.json` maps a tensor to a shard that does not hold it.
    AbsentFromShard {
        /// HF tensor name.
        name: String,
        /// Shard the index names.
        file: PathBuf,
    },
    /// The list of expected tensors names the same tensor twice (caller bug).
    DuplicateExpected {
        /// HF tensor name.
        name: String,
    },
}

impl fmt::Display for WeightProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightProblem::Missing { name, shape } => {
                write!(
                    f,
                    "missing tensor {name} (expected bf16/f16/f32 {})",
                    ShapeDisplay(shape)
                )
            }
            WeightProblem::Unexpected { name, shape, file } => write!(
                f,
                "unexpected tensor {name} {} in {}",
                ShapeDisplay(shape),
                file.display()
            ),
            WeightProblem::WrongShape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor {name} has shape {}, expected {}",
                ShapeDisplay(found),
                ShapeDisplay(expected)
            ),
            WeightProblem::WrongDType { name, dtype, file } => write!(
                f,
                "tensor {name} has dtype {dtype} in {}, expected BF16, F16 or F32",
                file.display()
            ),
            WeightProblem::NotInIndex {
                name,
                file,
                indexed_file: None,
            } => write!(
                f,
                "tensor {name} is in {} but not in model.safetensors.index.json",
                file.display()
            ),
            WeightProblem::NotInIndex {
                name,
                file,
                indexed_file: Some(other),
            } => write!(
                f,
                "tensor {name} is in {} but model.safetensors.index.json maps it to {other}",
                file.display()
            ),
            WeightProblem::AbsentFromShard { name, file } => write!(
                f,
                "model.safetensors.index.json maps tensor {name} to {}, which does not contain it",
                file.display()
            ),
            WeightProblem::DuplicateExpected { name } => {
                write!(f, "tensor {name} is listed twice in the expected weights")
            }
        }
    }
}

/// One field of `config.json` that differs from what the compiled model expects.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigMismatch {
    /// Field name, e.g. `rope_theta`.
    pub field: String,
    /// Value the model spec expects.
    pub expected: serde_json::Value,
    /// Value found in `config.json`; `None` if the field is absent.
    pub found: Option<serde_json::Value>,
}

impl fmt::Display for ConfigMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.found {
            Some(found) => write!(
                f,
                "{}: expected {}, found {}",
                self.field, self.expected, found
            ),
            None => write!(
                f,
                "{}: expected {}, but the field is missing",
                self.field, self.expected
            ),
        }
    }
}

/// Joins items as an indented list, one per line, each line prefixed by a newline.
fn list<T: fmt::Display>(items: &[T]) -> String {
    let mut s = String::new();
    for it in items {
        s.push_str("\n  ");
        s.push_str(&it.to_string());
    }
    s
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn path_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Errors of [`crate::weights`].
#[derive(thiserror::Error, Debug)]
pub enum WeightsError {
    /// An I/O operation on `path` failed.
    #[error("{op} {}: {cause}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot create", ...).
        op: &'static str,
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        /// (Part of the message, not a `source`: a printed chain says it once.)
        cause: io::Error,
    },
    /// The directory holds neither `model.safetensors` nor `model.safetensors.index.json`.
    #[error(
        "no weights in {}: expected model.safetensors or model.safetensors.index.json",
        dir.display()
    )]
    NoWeights {
        /// Directory searched.
        dir: PathBuf,
    },
    /// `model.safetensors.index.json` is unreadable JSON, lacks `weight_map`, or names a shard
    /// that is missing or lies outside the directory.
    #[error("bad index {}: {reason}", path.display())]
    BadIndex {
        /// Path of the index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A safetensors file is truncated or corrupt (header length beyond the file, bad header
    /// JSON, data offsets beyond the file, byte size not matching shape and dtype, ...).
    #[error("corrupt safetensors file {}: {reason}", path.display())]
    Corrupt {
        /// Path of the file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory's tensors do not match the expected list; every problem is listed.
    #[error(
        "weights in {}: {}:{}",
        dir.display(),
        plural(problems.len(), "problem", "problems"),
        list(problems)
    )]
    Invalid {
        /// Directory validated.
        dir: PathBuf,
        /// Every problem found.
        problems: Vec<WeightProblem>,
    },
    /// `config.json` is missing, unreadable or not a JSON object.
    #[error("bad config {}: {reason}", path.display())]
    Config {
        /// Path of `config.json`.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `config.json` disagrees with the model spec; every differing field is listed.
    #[error(
        "config {} does not match the model spec: {}:{}",
        path.display(),
        plural(mismatches.len(), "mismatch", "mismatches"),
        list(mismatches)
    )]
    ConfigMismatch {
        /// Path of `config.json`.
        path: PathBuf,
        /// Every differing field.
        mismatches: Vec<ConfigMismatch>,
    },
    /// A tensor was asked for by a name the directory does not provide.
    #[error("no tensor named {name} in weights {}", dir.display())]
    UnknownTensor {
        /// Name asked for.
        name: String,
        /// Directory of the weights.
        dir: PathBuf,
    },
    /// A tensor-parallel rank's part of a tensor cannot be cut as asked.
    #[error("tensor {name} of shape {shape:?}: rank {rank} of {ranks}, split {shard}: {reason}")]
    BadPart {
        /// HF tensor name.
        name: String,
        shape: Vec<usize>,
        shard: pio_artifact::Shard,
        ranks: usize,
        rank: usize,
        /// What is wrong.
        reason: String,
    },
    /// The writer would overwrite existing files and `force` is false; nothing was written.
    #[error(
        "refusing to overwrite existing files in {} (pass --force to replace them): {}",
        dir.display(),
        path_list(paths)
    )]
    WouldOverwrite {
        /// Output directory.
        dir: PathBuf,
        /// Every existing file that would have been replaced.
        paths: Vec<PathBuf>,
    },
    /// The writer was given inconsistent input (duplicate names, data length not matching the
    /// shape, a file name with a path separator, ...).
    #[error("cannot write weights to {}: {reason}", dir.display())]
    BadWriteInput {
        /// Output directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A [`WeightSpec`](super::WeightSpec) cannot be generated (shape overflow, bad std).
    #[error("bad weight spec for {name}: {reason}")]
    BadSpec {
        /// HF tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Both a single `model.safetensors` and a sharded index: which one is the model?
    #[error(
        "{}: has both model.safetensors and model.safetensors.index.json; which holds the \
         model is ambiguous: remove one",
        dir.display()
    )]
    AmbiguousLayout {
        /// The weights directory.
        dir: PathBuf,
    },
    /// The machine lacks the memory or disk space a job needs.
    #[error(transparent)]
    NotEnough(#[from] crate::resources::NotEnough),
}

impl WeightsError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WeightsError::Io {
            op,
            path: path.into(),
            cause: source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        WeightsError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
