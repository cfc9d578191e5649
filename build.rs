//! Records the git commit of the build (for benchmark reports), when git is available, and
//! whether this machine has what the GPU and NVRTC tests need (cfg `pio_gpu`, `pio_nvrtc`):
//! without it they are reported as ignored, not as passed. `PIO_REQUIRE_GPU=1` /
//! `PIO_REQUIRE_NVRTC=1` turn them on regardless, so that a missing GPU or library fails them.

use std::path::Path;

fn env_is_set(name: &str) -> bool {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// An NVIDIA driver is loaded (the kernel module's version file, or its control device).
fn gpu_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidiactl").exists()
}

/// libnvrtc is where the dynamic loader will look: LD_LIBRARY_PATH, CUDA's and the system's
/// library folders.
fn nvrtc_present() -> bool {
    println!("cargo:rerun-if-env-changed=LD_LIBRARY_PATH");
    let mut dirs: Vec<String> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    dirs.extend(
        [
            "/usr/local/cuda/lib64",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
        ]
        .map(str::to_string),
    );
    dirs.iter().any(|d| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libnvrtc.so"))
        })
    })
}

fn main() {
    println!("cargo:rustc-check-cfg=cfg(pio_gpu)");
    println!("cargo:rustc-check-cfg=cfg(pio_nvrtc)");
    if env_is_set("PIO_REQUIRE_GPU") || gpu_present() {
        println!("cargo:rustc-cfg=pio_gpu");
    }
    if env_is_set("PIO_REQUIRE_NVRTC") || nvrtc_present() {
        println!("cargo:rustc-cfg=pio_nvrtc");
    }
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
