//! `pio serve` against the real `openai` Python client and curl: runs
//! `tests/serve/openai_client_test.py` with the built `pio` binary (chat, completions,
//! streaming, stop strings, seeds, a tool round trip, error cases, 64 concurrent streaming
//! clients, /metrics afterwards, SIGTERM). Needs python3 with the `openai` package, which
//! `.ci/run` installs (pinned) and requires with `PIO_REQUIRE_OPENAI=1`: a missing package
//! then fails this test instead of skipping it.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn openai_importable() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn openai_python_client_against_pio_serve() {
    if !openai_importable() {
        assert!(
            !common::required("PIO_REQUIRE_OPENAI"),
            "PIO_REQUIRE_OPENAI is set but python3 cannot import openai"
        );
        eprintln!("skipped: python3 with the openai package not found (.ci/run installs it)");
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/serve/openai_client_test.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_pio"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    // The script has its own 120 s watchdog; this one catches a wedged interpreter.
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("openai_client_test.py still running after 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all passed"),
        "openai_client_test.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
