//! Errors of the compiler crate. Every spec problem carries its file, line, column and the path
//! inside the spec, so a user can jump straight to it.

use std::fmt;
use std::path::PathBuf;

/// A position inside a spec file (1-based line and column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
}

/// One problem found in a spec file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    pub loc: Loc,
    /// Where in the spec, e.g. `layer.q_norm` or `hyperparameters.hidden_size`; may be empty.
    pub path: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: ",
            self.file.display(),
            self.loc.line,
            self.loc.col
        )?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a spec (and the family it names), in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        if n != 1 {
            writeln!(f, "{n} problems in the spec:")?;
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A broken invariant of the IR, found by the verifier. These point at a compiler bug (or a
/// pass that went wrong), not at the user's spec: lowering reports spec problems itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("IR verification failed{}:\n  {}", .pass.as_ref().map(|p| format!(" after pass '{p}'")).unwrap_or_default(), .problems.join("\n  "))]
pub struct IrError {
    pub pass: Option<String>,
    pub problems: Vec<String>,
}

/// Any error of the compiler crate.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Spec(#[from] SpecErrors),
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error("{0}")]
    Output(String),
    #[error("{0}")]
    Options(String),
    /// The shard pass cannot split the graph over the ranks asked for.
    #[error("tensor parallel over {ranks} ranks: at '{node}': {message}")]
    Shard {
        ranks: usize,
        node: String,
        message: String,
    },
    /// The I/O error is part of the message, not a `source` (so a printed chain says it once).
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl CompileError {
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        CompileError::Io {
            path: path.into(),
            cause,
        }
    }
}
