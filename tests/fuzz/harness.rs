//! The fuzz loop: replay a target's committed corpus, then mutate it for a bounded time.
//!
//! Every input is written to the target's work folder before it runs (targets that take paths
//! read it from there), so a hard crash (abort, stack overflow, over-bound allocation, a
//! watchdog timeout) leaves its reproducer on disk; soft failures (panics, failed checks) are
//! copied to `CARGO_TARGET_TMPDIR/fuzz-crashes/<target>-<hash>` and make the test fail.
//!
//! Environment: `PIO_FUZZ_SECS` (mutation time per target, default 10), `PIO_FUZZ_SEED`
//! (default 1), `PIO_FUZZ_INPUT_TIMEOUT` (seconds one input may run, default 30).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::alloc;
use crate::mutate::{Mutator, Rng};
use crate::target::{repo, Ctx, Target};

/// Live bytes one input may add to its thread.
pub const ALLOC_BOUND: usize = 512 << 20;

pub fn crash_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes")
}

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Copies the input file to `crash_dir/<target>-<hash>` and returns that path.
pub fn save_crash(crash_dir: &Path, target: &str, input: &Path) -> PathBuf {
    let bytes = std::fs::read(input).unwrap_or_default();
    save_bytes(crash_dir, target, &bytes)
}

pub fn save_bytes(crash_dir: &Path, target: &str, bytes: &[u8]) -> PathBuf {
    let _ = std::fs::create_dir_all(crash_dir);
    let path = crash_dir.join(format!("{target}-{:016x}", fnv1a64(bytes)));
    let _ = std::fs::write(&path, bytes);
    path
}

/// A line for the log even when the test passes (the test harness captures `eprintln!` of
/// passing tests, not writes to the stderr handle).
pub fn summary(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

thread_local! {
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside a target are recorded (message and location) instead of printed.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(|t| t.get()) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

/// Aborts the process when one input runs longer than the timeout, after saving it.
struct Watchdog {
    started_ms: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    t0: Instant,
}

impl Watchdog {
    fn new(target: &'static str, input: PathBuf, timeout: Duration) -> Watchdog {
        let started_ms = Arc::new(AtomicU64::new(u64::MAX));
        let done = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let (s, d) = (started_ms.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let start = s.load(Ordering::Relaxed);
                let now = t0.elapsed().as_millis() as u64;
                if start != u64::MAX && now.saturating_sub(start) > timeout.as_millis() as u64 {
                    let saved = save_crash(&crash_dir(), target, &input);
                    eprintln!(
                        "\nfuzz: target {target}: one input ran longer than {} s (timeout); \
                         input saved to {}",
                        timeout.as_secs(),
                        saved.display()
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog {
            started_ms,
            done,
            t0,
        }
    }
    fn start(&self) {
        self.started_ms
            .store(self.t0.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn stop(&self) {
        self.started_ms.store(u64::MAX, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// The committed corpus of a target, sorted by file name.
pub fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo().join("tests/fuzz/corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// Runs one input: `Err` describes the failure (panic with location, failed check).
pub fn run_one(
    t: &Target,
    ctx: &Ctx,
    current: &'static alloc::Current,
    bytes: &[u8],
) -> Result<(), String> {
    std::fs::write(&ctx.input, bytes).unwrap();
    IN_TARGET.with(|f| f.set(true));
    let result = alloc::bounded(ALLOC_BOUND, current, || {
        catch_unwind(AssertUnwindSafe(|| (t.run)(ctx, bytes)))
    });
    IN_TARGET.with(|f| f.set(false));
    let over = alloc::take_over();
    match result {
        _ if over => Err("allocation beyond the bound (refused and survived)".to_string()),
        Ok(Ok(())) => Ok(()),
        Ok(Err(check)) => Err(format!("check failed: {check}")),
        Err(_) => Err(LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panic without a message".to_string())),
    }
}

/// Replays the corpus, then mutates it for `PIO_FUZZ_SECS` seconds; panics listing every
/// distinct failure (with the saved input of each).
pub fn fuzz(t: &Target) {
    let secs = env_u64("PIO_FUZZ_SECS", 10);
    let seed = env_u64("PIO_FUZZ_SEED", 1) ^ fnv1a64(t.name.as_bytes());
    let timeout = Duration::from_secs(env_u64("PIO_FUZZ_INPUT_TIMEOUT", 30));
    let (ctx, current) = prepare(t, false);
    let watchdog = Watchdog::new(t.name, ctx.input.clone(), timeout);
    let corpus = corpus(t.name);
    // Mutants start from the corpus, less the reproducers of known bugs.
    let inputs: Vec<Vec<u8>> = corpus
        .iter()
        .filter(|(p, _)| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("known-")
        })
        .map(|(_, b)| b.clone())
        .collect();
    let mut failures: Vec<(String, String)> = Vec::new();
    let record = |failures: &mut Vec<(String, String)>, what: String, bytes: &[u8], msg: String| {
        let first = msg.lines().next().unwrap_or("").to_string();
        if failures.len() < 20
            && !failures
                .iter()
                .any(|(_, m)| m.lines().next() == Some(&first))
        {
            let saved = save_bytes(&crash_dir(), t.name, bytes);
            failures.push((format!("{what} (saved to {})", saved.display()), msg));
        }
    };
    let mut skipped = std::collections::BTreeMap::<&str, u64>::new();
    for (path, bytes) in &corpus {
        if let Some(bug) = (t.known)(bytes) {
            *skipped.entry(bug).or_default() += 1;
            continue;
        }
        watchdog.start();
        let r = run_one(t, &ctx, current, bytes);
        watchdog.stop();
        if let Err(msg) = r {
            record(
                &mut failures,
                format!("corpus {}", path.display()),
                bytes,
                msg,
            );
        }
    }
    let m = Mutator::new(&inputs, t.max_len);
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let mut runs = 0u64;
    while t0.elapsed().as_secs() < secs {
        let a = rng.pick(&inputs);
        let b = rng.pick(&inputs);
        let mutant = match t.mutate {
            Some(f) if rng.chance(50) => f(&m, &mut rng, a, b),
            _ => m.mutate(&mut rng, a, b, 4),
        };
        if let Some(bug) = (t.known)(&mutant) {
            *skipped.entry(bug).or_default() += 1;
            continue;
        }
        watchdog.start();
        let r = run_one(t, &ctx, current, &mutant);
        watchdog.stop();
        runs += 1;
        if let Err(msg) = r {
            record(&mut failures, format!("mutant {runs}"), &mutant, msg);
        }
    }
    drop(watchdog);
    summary(&format!(
        "fuzz {}: {} corpus inputs, {runs} mutants in {:.1} s (seed {}), {} distinct failures",
        t.name,
        corpus.len(),
        t0.elapsed().as_secs_f64(),
        env_u64("PIO_FUZZ_SEED", 1),
        failures.len()
    ));
    for (bug, n) in &skipped {
        summary(&format!(
            "fuzz {}: skipped {n} inputs that hit a known bug: {bug}",
            t.name
        ));
    }
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(what, msg)| format!("{what}:\n    {}", msg.replace('\n', "\n    ")))
            .collect();
        panic!(
            "fuzz target {}: {} distinct failures\n{}",
            t.name,
            failures.len(),
            list.join("\n")
        );
    }
}

/// Runs one input of `t` in a fresh work folder (for the harness's own tests).
pub fn run_input(t: &Target, bytes: &[u8]) -> Result<(), String> {
    let (ctx, current) = prepare(t, true);
    run_one(t, &ctx, current, bytes)
}

/// A fresh work folder for `t` (set up by the target) and the allocator's record of what is
/// running there (leaked: the allocator may read it until the process ends).
fn prepare(t: &Target, quiet: bool) -> (Ctx, &'static alloc::Current) {
    install_hook();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-work")
        .join(t.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (t.setup)(&dir);
    let ctx = Ctx {
        input: dir.join(t.input_file),
        dir,
    };
    let current = Box::leak(Box::new(alloc::Current {
        target: t.name.to_string(),
        input: ctx.input.clone(),
        crash_dir: crash_dir(),
        quiet,
    }));
    (ctx, current)
}
