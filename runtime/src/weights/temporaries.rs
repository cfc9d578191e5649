//! Temporary files of the writers: every file is written under a hidden name in its folder
//! (`.NAME.pio-tmp-PID-N`) and renamed into place only when everything was written. A write
//! that fails removes its temporaries; one interrupted by a signal removes them through
//! [`remove_temporaries`] (the CLI's handler calls it); one killed outright leaves them, and the
//! next write into that folder removes those whose process is gone.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use super::error::WeightsError;

/// A file being written under a temporary name.
pub(super) struct Pending {
    pub tmp: PathBuf,
    pub dst: PathBuf,
}

/// Every temporary file being written by this process, so that an interrupt (SIGINT,
/// SIGTERM: see [`remove_temporaries`]) can remove them before the process ends.
static TEMPORARIES: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the temporary files of every write in progress; for a signal handler that is about
/// to end the process (nothing half-written is left behind).
pub fn remove_temporaries() {
    for p in registry().drain(..) {
        let _ = std::fs::remove_file(p);
    }
}

/// Removes temporaries unless disarmed.
pub(super) struct Cleanup(pub Vec<PathBuf>);

impl Cleanup {
    fn add(&mut self, tmp: PathBuf) {
        registry().push(tmp.clone());
        self.0.push(tmp);
    }

    /// The files were renamed into place: nothing to remove any more.
    pub fn disarm(&mut self) {
        registry().retain(|p| !self.0.contains(p));
        self.0.clear();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
        self.disarm();
    }
}

/// The process id in a temporary's name `.NAME.pio-tmp-PID-N`.
fn temporary_pid(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".pio-tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes temporaries that an earlier, interrupted write left in `dir` (their process is
/// gone); returns them.
pub(super) fn remove_abandoned_temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temporary_pid(&name) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

pub(super) fn create_tmp(
    dir: &Path,
    name: &str,
    cleanup: &mut Cleanup,
) -> Result<(File, Pending), WeightsError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
    let tmp = dir.join(format!(".{name}.pio-tmp-{}-{n}", std::process::id()));
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| WeightsError::io("cannot create", &tmp, e))?;
    cleanup.add(tmp.clone());
    Ok((
        f,
        Pending {
            tmp,
            dst: dir.join(name),
        },
    ))
}

pub(super) fn finish(f: File, path: &Path) -> Result<(), WeightsError> {
    f.sync_all()
        .map_err(|e| WeightsError::io("cannot sync", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names() {
        assert_eq!(temporary_pid(".model.safetensors.pio-tmp-123-0"), Some(123));
        assert_eq!(temporary_pid(".config.json.pio-tmp-7-12"), Some(7));
        assert_eq!(temporary_pid("model.safetensors"), None);
        assert_eq!(temporary_pid(".x.pio-tmp-abc-0"), None);
        assert_eq!(temporary_pid(".x.pio-tmp-1-"), None);
    }

    #[test]
    fn abandoned_temporaries_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // pid 0 is never a user process; our own pid is alive.
        let dead = dir.path().join(".model.safetensors.pio-tmp-4294967294-0");
        let live = dir.path().join(format!(
            ".model.safetensors.pio-tmp-{}-0",
            std::process::id()
        ));
        let user = dir.path().join(".model.safetensors.mine");
        for p in [&dead, &live, &user] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_abandoned_temporaries(dir.path()), vec![dead.clone()]);
        assert!(!dead.exists() && live.exists() && user.exists());
    }
}
