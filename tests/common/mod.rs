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
