//! Helpers shared by the integration tests.

use std::process::Command;

/// Runs a binary of this package; returns (success, stdout, stderr).
#[allow(dead_code)]
pub fn run(bin: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Relative L2 error ||a - b|| / ||b||, accumulated in f64.
#[allow(dead_code)] // not every test binary uses every helper
pub fn rel_l2<B: Copy + Into<f64>>(a: &[f32], b: &[B]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y.into()).powi(2))
        .sum();
    let den: f64 = b.iter().map(|&y| y.into().powi(2)).sum();
    (num / den).sqrt()
}

/// Whether a `PIO_REQUIRE_*` switch is on (set, and not empty or `0`): a test that would skip
/// must fail instead.
#[allow(dead_code)]
pub fn required(switch: &str) -> bool {
    std::env::var(switch).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// [`run`] with a time limit: a binary still running after `limit` is killed and the test
/// fails (a hang is a bug, never a wait).
#[allow(dead_code)]
pub fn run_with_timeout(
    bin: &str,
    args: &[&str],
    limit: std::time::Duration,
) -> (bool, String, String) {
    use std::process::Stdio;
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} {args:?} still running after {limit:?}: killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.signal().is_none(),
        "{bin} {args:?} died by signal {:?}:\n{err}",
        status.signal()
    );
    assert!(!err.contains("panicked"), "{bin} {args:?} panicked:\n{err}");
    (status.success(), out, err)
}
