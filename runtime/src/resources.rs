//! What this machine has for a job, asked before the job starts: host memory available (the
//! kernel's `MemAvailable`, capped by a cgroup limit when the process runs under one) and
//! free disk space. A load or a write that needs more is refused with both figures, instead
//! of dying in the allocator or filling the disk halfway.

use pio_artifact::bytes_human as human;
use std::path::Path;

/// Not enough of something for a job: the job, what it needs and what there is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not enough {resource} for {what}: needs {needed} bytes ({}), {available} bytes ({}) available",
    human(*needed),
    human(*available)
)]
pub struct NotEnough {
    /// `host memory`, `GPU memory`, `disk space on /path`.
    pub resource: String,
    /// The job, e.g. `the f32 weights of Qwen3-4B on the CPU`.
    pub what: String,
    pub needed: u64,
    pub available: u64,
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn mem_available_from(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Room left under a cgroup v2 limit: `memory.max` minus `memory.current` (None when there is
/// no limit or the files are not there).
pub fn cgroup_room_from(max: &str, current: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?; // "max" (no limit) does not parse
    let current: u64 = current.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// Host memory this process can still allocate without swapping, as far as the kernel says;
/// None when it cannot be told (not Linux).
pub fn host_memory_available() -> Option<u64> {
    let avail = mem_available_from(&std::fs::read_to_string("/proc/meminfo").ok()?)?;
    let cg = |f: &str| std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(f)).ok();
    let room = match (cg("memory.max"), cg("memory.current")) {
        (Some(max), Some(cur)) => cgroup_room_from(&max, &cur),
        _ => None,
    };
    Some(room.map_or(avail, |r| r.min(avail)))
}

/// Checks that `needed` bytes of host memory are available for `what`.
pub fn check_host_memory(needed: u64, what: &str) -> Result<(), NotEnough> {
    match host_memory_available() {
        Some(available) if needed > available => Err(NotEnough {
            resource: "host memory".into(),
            what: what.into(),
            needed,
            available,
        }),
        _ => Ok(()),
    }
}

/// Free bytes for an unprivileged writer on the file system holding `path` (which must exist).
pub fn disk_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a valid out-pointer; statvfs writes the struct on 0.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so the struct is initialized.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    (st.f_bavail as u64).checked_mul(st.f_frsize as u64)
}

/// Checks that the file system holding `dir` has `needed` bytes free for `what`.
pub fn check_disk(dir: &Path, needed: u64, what: &str) -> Result<(), NotEnough> {
    match disk_free(dir) {
        Some(available) if needed > available => Err(NotEnough {
            resource: format!("disk space on {}", dir.display()),
            what: what.into(),
            needed,
            available,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(mem_available_from(text), Some(2000 * 1024));
        assert_eq!(mem_available_from("MemTotal: 5 kB\n"), None);
        assert_eq!(mem_available_from("MemAvailable: x kB\n"), None);
    }

    #[test]
    fn reads_cgroup_limits() {
        assert_eq!(cgroup_room_from("1000\n", "400\n"), Some(600));
        assert_eq!(cgroup_room_from("max\n", "400\n"), None);
        assert_eq!(cgroup_room_from("100", "400"), Some(0));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let e = check_host_memory(u64::MAX, "a test").unwrap_err();
        assert_eq!(e.needed, u64::MAX);
        let msg = e.to_string();
        assert!(msg.contains("not enough host memory for a test"), "{msg}");
        assert!(msg.contains("available"), "{msg}");
        assert!(check_host_memory(1, "one byte").is_ok());
        let dir = std::env::temp_dir();
        assert!(disk_free(&dir).is_some());
        assert!(check_disk(&dir, u64::MAX, "a test").is_err());
        assert!(check_disk(&dir, 1, "a byte").is_ok());
    }
}
