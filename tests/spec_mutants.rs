//! Mutation fuzzing of the real specs through the `pio-compile` binary (issue 14): each mutant
//! applies 1 to 3 random line/character/number/word mutations to the qwen3 family and/or a
//! variant (qwen3-tiny, or qwen3-0.6b), and `pio-compile` must either compile it (exit 0) or
//! reject it (exit 1 with an `error:` message); a signal (abort, segfault), a `panicked at` on
//! stderr, another exit code, or running past the timeout is a failure. The child runs under
//! `ulimit -v` (`PIO_SPEC_MUTANT_MEM_MIB`, default 8192), so a runaway allocation aborts it.
//!
//! `PIO_SPEC_MUTANTS` (default 1000) mutants, seed `PIO_FUZZ_SEED` (default 1), timeout
//! `PIO_SPEC_MUTANT_TIMEOUT` seconds (default 30), `PIO_SPEC_MUTANT_JOBS` children at once
//! (default: the number of CPUs). Failing mutants are kept under
//! `$CARGO_TARGET_DIR/tmp/spec-mutant-failures/`.
//!
//! The committed variants of `tests/fuzz/corpus/spec_variant/` are compiled first. Mutants whose spec loads with an integer hyperparameter above 100000 or more than 64
//! layers are skipped (counted) until the resolver bounds hyperparameters; the ignored test
//! `spec_mutants_with_huge_hyperparameters` runs only those.

#[path = "fuzz/mutate.rs"]
#[allow(dead_code)]
mod mutate;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mutate::{Mutator, Rng};
use pio_compiler::spec::model::HyperValue;

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
    Compiled,
    Rejected,
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

/// Too big to compile until the resolver bounds hyperparameters.
fn huge(variant: &Path) -> bool {
    match pio_compiler::spec::load(variant) {
        Ok(spec) => {
            spec.hyper
                .values()
                .any(|v| matches!(v, HyperValue::Int(i) if *i > 100_000))
                || spec.int("num_layers").is_some_and(|n| n > 64)
        }
        Err(_) => false,
    }
}

fn run_compile(dir: &Path, variant: &Path, timeout: Duration) -> Outcome {
    let mem_kib = env_u64("PIO_SPEC_MUTANT_MEM_MIB", 8192) * 1024;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {mem_kib} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_pio-compile"))
        .arg(variant)
        .arg("-o")
        .arg(dir.join("out"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap())
        .spawn()
        .expect("spawn pio-compile");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::Failed(format!(
                "timeout: still running after {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
    let tail: String = stderr
        .lines()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n    ");
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        return Outcome::Failed(format!("killed by signal {sig}:\n    {tail}"));
    }
    if let Some(at) = stderr.find("panicked at") {
        let msg: Vec<&str> = stderr[at..].lines().take(2).collect();
        return Outcome::Failed(format!("panic: {}", msg.join("\n    ")));
    }
    match status.code() {
        Some(0) => Outcome::Compiled,
        Some(1) if stderr.contains("error:") => Outcome::Rejected,
        c => Outcome::Failed(format!("exit code {c:?}:\n    {tail}")),
    }
}

/// Runs `count` mutants; `only_huge` runs just the ones skipped otherwise.
fn mutants(count: usize, only_huge: bool) {
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
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(if only_huge {
        "spec-mutants-huge"
    } else {
        "spec-mutants"
    });
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("spec-mutant-failures");
    let _ = std::fs::remove_dir_all(&root);
    // The committed variants of the spec_variant corpus first (`known-huge-*` ones only with
    // `only_huge`), then mutants made up front (sequentially, so the seed alone fixes them).
    let mut all: Vec<Mutant> = Vec::new();
    let corpus = repo().join("tests/fuzz/corpus/spec_variant");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let known_huge = f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("known-huge-");
        if known_huge == only_huge {
            all.push(Mutant {
                family: family.clone(),
                variant_name: "variant.yaml",
                variant: std::fs::read(&f).unwrap(),
            });
        }
    }
    let replayed = all.len();
    let mut rng = Rng::new(seed);
    all.extend((0..count).map(|_| make(&mut rng, &fam, &var, &bases, &family)));
    let next = AtomicUsize::new(0);
    let tally = Mutex::new((0usize, 0usize, 0usize, Vec::<String>::new()));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = all.get(i) else { break };
                let dir = root.join(format!("m{i:04}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("qwen3.yaml"), &m.family).unwrap();
                let variant = dir.join(m.variant_name);
                std::fs::write(&variant, &m.variant).unwrap();
                std::os::unix::fs::symlink(specs.join("tokenizers"), dir.join("tokenizers"))
                    .unwrap();
                let outcome = if i >= replayed && huge(&variant) != only_huge {
                    Outcome::Skipped
                } else {
                    run_compile(&dir, &variant, timeout)
                };
                let mut t = tally.lock().unwrap();
                match outcome {
                    Outcome::Compiled => t.0 += 1,
                    Outcome::Rejected => t.1 += 1,
                    Outcome::Skipped => t.2 += 1,
                    Outcome::Failed(why) => {
                        let saved = keep.join(format!("seed{seed}-m{i:04}"));
                        let _ = std::fs::remove_dir_all(&saved);
                        std::fs::create_dir_all(&saved).unwrap();
                        for f in ["qwen3.yaml", m.variant_name, "stderr.txt"] {
                            let _ = std::fs::copy(dir.join(f), saved.join(f));
                        }
                        t.3.push(format!("mutant {i} ({}): {why}", saved.display()));
                    }
                }
                drop(t);
                let _ = std::fs::remove_dir_all(&dir);
            });
        }
    });
    let (compiled, rejected, skipped, failures) = tally.into_inner().unwrap();
    let line = format!(
        "spec mutants (seed {seed}): {replayed} corpus variants and {count} mutants, {} run in \
         {:.1} s: {compiled} compiled, {rejected} rejected with an error, {skipped} skipped{}, \
         {} failed",
        all.len() - skipped,
        t0.elapsed().as_secs_f64(),
        if only_huge {
            " (not huge)"
        } else {
            " (huge hyperparameters)"
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

#[test]
#[ignore = "needs fix: huge hyperparameters (num_layers 10^12, hidden_size 10^12, vocab 2^32) abort or grow memory; enable once the resolver bounds them"]
fn spec_mutants_with_huge_hyperparameters() {
    mutants(env_u64("PIO_SPEC_MUTANTS", 1000) as usize, true);
}
