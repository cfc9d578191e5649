//! Mutation fuzzing of the real specs through the binaries (issue 14): each mutant applies 1
//! to 3 random line/character/number/word mutations to the qwen3 family and/or a variant
//! (qwen3-tiny, or qwen3-0.6b). `pio-compile` must either compile it (exit 0) or reject it
//! (exit 1 with an `error:` message); a mutant that compiles and is small is then run with
//! `pio run --artifact OUT --weights random --device cpu --chat --max-new-tokens 2` under the same
//! rule. A signal (abort, segfault), a `panicked at` on stderr, another exit code, or running
//! past the timeout is a failure. Children run under `ulimit -v` (`PIO_SPEC_MUTANT_MEM_MIB`,
//! default 8192), so a runaway allocation aborts them.
//!
//! `PIO_SPEC_MUTANTS` (default 1000) mutants, seed `PIO_FUZZ_SEED` (default 1), timeout
//! `PIO_SPEC_MUTANT_TIMEOUT` seconds (default 30), `PIO_SPEC_MUTANT_JOBS` children at once
//! (default: the number of CPUs). Failing mutants are kept under
//! `$CARGO_TARGET_DIR/tmp/spec-mutant-failures/`.
//!
//! The committed variants of `tests/fuzz/corpus/spec_variant/` go first (the `regress-*` ones
//! are the bugs this fuzzer found: huge hyperparameters, init_std < 0 or inf as an f32; each
//! must now be a clean error). A spec that hits a known, not yet fixed bug would be skipped and
//! counted (`Plan::known`, and `known-*` corpus files); there is none at present.

#[path = "fuzz/mutate.rs"]
#[allow(dead_code)]
mod mutate;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mutate::{Mutator, Rng};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v}")))
        .unwrap_or(default)
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What one mutant did.
enum Outcome {
    /// pio-compile rejected it with an error.
    Rejected,
    /// Compiled; too big to run.
    Compiled,
    /// Compiled and ran.
    Ran,
    /// Compiled; pio run rejected it with an error.
    RunRejected,
    /// Not run: hits a known bug (or, for the ignored test, does not).
    Skipped,
    Failed(String),
}

/// The three files of a mutant: family, variant name, variant text.
struct Mutant {
    family: Vec<u8>,
    variant_name: &'static str,
    variant: Vec<u8>,
}

fn make(
    rng: &mut Rng,
    fam: &Mutator,
    var: &Mutator,
    bases: &[(&'static str, Vec<u8>)],
    family: &[u8],
) -> Mutant {
    let (variant_name, variant) = rng.pick(bases).clone();
    let (mut f, mut v) = (family.to_vec(), variant);
    let n = 1 + rng.below(3);
    for _ in 0..n {
        if rng.chance(50) {
            f = fam.mutate(rng, &f, family, 1);
        } else {
            let other = rng.pick(bases).1.clone();
            v = var.mutate(rng, &v, &other, 1);
        }
    }
    Mutant {
        family: f,
        variant_name,
        variant: v,
    }
}

/// What loading the spec tells before running anything.
struct Plan {
    /// A known, not yet fixed bug this spec hits.
    known: Option<&'static str>,
    /// Small enough to also run with random weights on the CPU.
    runnable: bool,
}

fn plan(variant: &Path) -> Plan {
    let Ok(spec) = pio_compiler::spec::load(variant) else {
        return Plan {
            known: None,
            runnable: false,
        };
    };
    let int = |n: &str| spec.int(n).unwrap_or(0);
    Plan {
        known: None,
        runnable: int("hidden_size") <= 1024
            && int("vocab_size") <= 8192
            && int("intermediate_size") <= 4096
            && int("num_layers") <= 8
            && int("max_context") <= 4096
            && int("num_heads") * int("head_dim") <= 4096,
    }
}

/// Runs a child (under `ulimit -v`, in `dir`) with stderr to `dir/log`: Ok(true) for exit 0,
/// Ok(false) for exit 1 with an `error:` message, Err for anything else.
fn run_child(
    dir: &Path,
    exe: &str,
    args: &[&OsStr],
    log: &str,
    timeout: Duration,
) -> Result<bool, String> {
    let mem_kib = env_u64("PIO_SPEC_MUTANT_MEM_MIB", 8192) * 1024;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {mem_kib} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "timeout: still running after {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        return Err(format!("killed by signal {sig}:\n    {tail}"));
    }
    if let Some(at) = stderr.find("panicked at") {
        let msg: Vec<&str> = stderr[at..].lines().take(2).collect();
        return Err(format!("panic: {}", msg.join("\n    ")));
    }
    match status.code() {
        Some(0) => Ok(true),
        Some(1) if stderr.contains("error:") => Ok(false),
        c => Err(format!("exit code {c:?}:\n    {tail}")),
    }
}

/// Compiles the variant with pio-compile; when it compiles and is small, runs it with `pio run`.
fn run_mutant(dir: &Path, variant: &Path, runnable: bool, timeout: Duration) -> Outcome {
    let os = OsStr::new;
    let out = dir.join("out");
    let compile = [variant.as_os_str(), os("-o"), out.as_os_str()];
    let pio_compile = env!("CARGO_BIN_EXE_pio-compile");
    match run_child(dir, pio_compile, &compile, "stderr.txt", timeout) {
        Err(why) => return Outcome::Failed(format!("pio-compile: {why}")),
        Ok(false) => return Outcome::Rejected,
        Ok(true) if !runnable => return Outcome::Compiled,
        Ok(true) => {}
    }
    let run = [
        os("run"),
        os("--artifact"),
        out.as_os_str(),
        os("--weights"),
        os("random"),
        os("--device"),
        os("cpu"),
        os("--chat"),
        os("--max-new-tokens"),
        os("2"),
    ];
    match run_child(
        dir,
        env!("CARGO_BIN_EXE_pio"),
        &run,
        "run-stderr.txt",
        timeout,
    ) {
        Err(why) => Outcome::Failed(format!("pio run (it compiled): {why}")),
        Ok(true) => Outcome::Ran,
        Ok(false) => Outcome::RunRejected,
    }
}

/// Runs the corpus variants and `count` mutants; `known_only` runs just the ones that hit a
/// known bug (skipped otherwise).
fn mutants(count: usize, known_only: bool) {
    let seed = env_u64("PIO_FUZZ_SEED", 1);
    let timeout = Duration::from_secs(env_u64("PIO_SPEC_MUTANT_TIMEOUT", 30));
    let jobs = env_u64(
        "PIO_SPEC_MUTANT_JOBS",
        std::thread::available_parallelism().map_or(2, |n| n.get()) as u64,
    ) as usize;
    let specs = repo().join("model-specs");
    let family = std::fs::read(specs.join("qwen3.yaml")).unwrap();
    let bases: Vec<(&'static str, Vec<u8>)> =
        ["qwen3-tiny.yaml", "qwen3-tiny.yaml", "qwen3-0.6b.yaml"]
            .into_iter()
            .map(|n| (n, std::fs::read(specs.join(n)).unwrap()))
            .collect();
    let fam = Mutator::new(std::slice::from_ref(&family), 64 << 10);
    let var = Mutator::new(
        &bases.iter().map(|b| b.1.clone()).collect::<Vec<_>>(),
        64 << 10,
    );
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = tmp.join(if known_only {
        "spec-mutants-known"
    } else {
        "spec-mutants"
    });
    let keep = tmp.join("spec-mutant-failures");
    let _ = std::fs::remove_dir_all(&root);
    // The committed variants of the spec_variant corpus first (a `known-*` one is a known bug),
    // then mutants made up front (sequentially, so the seed alone fixes them).
    let mut all: Vec<(Mutant, bool)> = Vec::new();
    let corpus = repo().join("tests/fuzz/corpus/spec_variant");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let m = Mutant {
            family: family.clone(),
            variant_name: "variant.yaml",
            variant: std::fs::read(&f).unwrap(),
        };
        all.push((m, name.starts_with("known-")));
    }
    let replayed = all.len();
    let mut rng = Rng::new(seed);
    all.extend((0..count).map(|_| (make(&mut rng, &fam, &var, &bases, &family), false)));
    let next = AtomicUsize::new(0);
    // rejected, compiled, ran, run rejected, skipped, failures
    let tally = Mutex::new(([0usize; 5], Vec::<String>::new()));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((m, known_file)) = all.get(i) else {
                    break;
                };
                let dir = root.join(format!("m{i:04}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("qwen3.yaml"), &m.family).unwrap();
                let variant = dir.join(m.variant_name);
                std::fs::write(&variant, &m.variant).unwrap();
                std::os::unix::fs::symlink(specs.join("tokenizers"), dir.join("tokenizers"))
                    .unwrap();
                let plan = plan(&variant);
                let known = *known_file || plan.known.is_some();
                let outcome = if known != known_only {
                    Outcome::Skipped
                } else {
                    run_mutant(&dir, &variant, plan.runnable, timeout)
                };
                let mut t = tally.lock().unwrap();
                let slot = match outcome {
                    Outcome::Rejected => 0,
                    Outcome::Compiled => 1,
                    Outcome::Ran => 2,
                    Outcome::RunRejected => 3,
                    Outcome::Skipped => 4,
                    Outcome::Failed(why) => {
                        let saved = keep.join(format!("seed{seed}-m{i:04}"));
                        let _ = std::fs::remove_dir_all(&saved);
                        std::fs::create_dir_all(&saved).unwrap();
                        for f in ["qwen3.yaml", m.variant_name, "stderr.txt", "run-stderr.txt"] {
                            let _ = std::fs::copy(dir.join(f), saved.join(f));
                        }
                        t.1.push(format!("mutant {i} ({}): {why}", saved.display()));
                        drop(t);
                        let _ = std::fs::remove_dir_all(&dir);
                        continue;
                    }
                };
                t.0[slot] += 1;
                drop(t);
                let _ = std::fs::remove_dir_all(&dir);
            });
        }
    });
    let ([rejected, compiled, ran, run_rejected, skipped], failures) = tally.into_inner().unwrap();
    let line = format!(
        "spec mutants (seed {seed}): {replayed} corpus variants and {count} mutants, {} run in \
         {:.1} s: {rejected} rejected by pio-compile, {} compiled ({ran} ran, {run_rejected} \
         rejected by pio run, {compiled} too big to run), {skipped} skipped ({}), {} failed",
        all.len() - skipped,
        t0.elapsed().as_secs_f64(),
        compiled + ran + run_rejected,
        if known_only {
            "no known bug"
        } else {
            "known bugs"
        },
        failures.len()
    );
    // Written to the stderr handle: the test harness captures `eprintln!` of passing tests.
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    assert!(
        failures.is_empty(),
        "{} failing mutants:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn spec_mutants() {
    mutants(env_u64("PIO_SPEC_MUTANTS", 1000) as usize, false);
}
