//! What the binaries share about their own output: writing to stdout without panicking when
//! it is closed or full, and ending with the right exit status.
//!
//! `println!` panics when stdout is a closed pipe (`pio list | head -1`) or a full device
//! (`> /dev/full`). [`outln!`](crate::outln) writes through a fallible path instead; [`finish`]
//! ends quietly on a closed pipe (the reader chose to stop) and reports every other error.

use std::io::Write;
use std::path::PathBuf;

/// Scratch folders of this process (pio-compile's output being built), removed on interrupt.
static SCRATCH_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn scratch_dirs() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    SCRATCH_DIRS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks `dir` as scratch: an interrupt removes it.
pub fn register_scratch_dir(dir: PathBuf) {
    scratch_dirs().push(dir);
}

/// `dir` is no longer scratch (it was moved into place, or removed).
pub fn unregister_scratch_dir(dir: &std::path::Path) {
    scratch_dirs().retain(|d| d != dir);
}

/// On SIGINT or SIGTERM: remove every temporary file and scratch folder this process is
/// writing (nothing half-written stays behind), then exit with status 130.
pub fn remove_temporaries_on_interrupt() {
    let installed = ctrlc::set_handler(|| {
        pio_runtime::weights::remove_temporaries();
        for d in scratch_dirs().drain(..) {
            let _ = std::fs::remove_dir_all(d);
        }
        crate::errln!("interrupted: temporary files removed");
        std::process::exit(130);
    });
    if let Err(e) = installed {
        crate::errln!("warning: cannot clean up on interrupt: {e}");
    }
}

/// A failed write to stdout (the process's own output, not a file it was asked to write).
/// (Its Display includes the I/O error, which is therefore not also its `source`: a chain
/// printed with `{:#}` says it once.)
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout: {0}")]
pub struct StdoutError(pub std::io::Error);

impl From<std::io::Error> for StdoutError {
    fn from(e: std::io::Error) -> Self {
        StdoutError(e)
    }
}

/// `writeln!` to stdout, returning `Result<(), StdoutError>`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::StdoutError)
    }};
}

/// `writeln!` to stderr, ignoring failure (diagnostics must never turn into a panic).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Writes `text` to stdout as it is (no newline) and flushes, for streamed tokens.
pub fn out_text(text: &str) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Checks, before any work, that `path` can be written as a file: its folder exists and takes
/// a new file, and it is not itself a folder. An existing file is left as it is.
pub fn check_output_file(path: &std::path::Path, flag: &str) -> anyhow::Result<()> {
    let shown = path.display();
    if path.is_dir() {
        anyhow::bail!("{flag} {shown}: is a folder, not a file");
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{flag} {shown}: cannot be written: {e}"))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Checks, before any work, that `dir` is a folder that exists or can be created.
pub fn check_output_folder(dir: &std::path::Path, flag: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{flag} {}: cannot create the folder: {e}", dir.display()))
}

/// True when the error is a write to stdout whose reader went away.
pub fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StdoutError>()
            .is_some_and(|s| s.0.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Ends the process: flushes stdout, exits 0 on success or a closed pipe, and prints any other
/// error with its causes and exits 1.
pub fn finish(result: anyhow::Result<()>) -> ! {
    let result = result.and_then(|()| std::io::stdout().flush().map_err(|e| StdoutError(e).into()));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) if is_closed_stdout(&e) => std::process::exit(0),
        Err(e) => {
            crate::errln!("error: {e:#}");
            std::process::exit(1)
        }
    }
}
