//! Records the git commit of the build (for benchmark reports), when git is available.
fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(c) = commit {
        println!("cargo:rustc-env=PIO_GIT_COMMIT={c}");
    }
    // Rerun when HEAD moves: HEAD itself (a checkout), the branch file it names (a commit) and
    // the packed refs. Watching a directory would only see files added to it.
    // (Only paths that exist: cargo reruns a script every build for a missing one.)
    let mut watch = vec![".git/HEAD".to_string(), ".git/packed-refs".to_string()];
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(branch) = head.trim().strip_prefix("ref: ") {
            watch.push(format!(".git/{branch}"));
        }
    }
    for path in watch.iter().filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}
