//! Small pure parts of the CUDA runtime: the NVIDIA driver release that bench reports name (from
//! /proc/driver/nvidia/version) and the architecture kernels are compiled for.

use pio_runtime::cuda::device::driver_release_from;

#[test]
fn driver_release_is_read_from_the_kernel_module_line() {
    let text =
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  \
                (dvs-builder@U22-I3-AF03-09-1)  Tue Sep 30 00:00:00 UTC 2025\n\
                GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n";
    assert_eq!(driver_release_from(text).as_deref(), Some("580.159.04"));
    let closed = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.86.15  Wed Jan 22 2025\n";
    assert_eq!(driver_release_from(closed).as_deref(), Some("570.86.15"));
    assert_eq!(driver_release_from("GCC version: 12\n"), None);
    assert_eq!(
        driver_release_from("NVRM version: NVIDIA Kernel Module\n"),
        None
    );
}

#[test]
fn kernels_target_the_gpu_or_an_older_virtual_architecture() {
    use pio_runtime::cuda::nvrtc::{arch_number, options_for, target_arch};
    assert_eq!(arch_number("sm_90"), Some(90));
    assert_eq!(arch_number("compute_80"), Some(80));
    assert_eq!(arch_number("sm_x"), None);
    assert_eq!(target_arch("sm_90", None).unwrap(), "sm_90");
    assert_eq!(
        target_arch("sm_90", Some("compute_80")).unwrap(),
        "compute_80"
    );
    assert_eq!(target_arch("sm_90", Some("sm_90")).unwrap(), "sm_90");
    for bad in ["sm_80", "compute_100", "compute_", "ampere"] {
        assert_eq!(
            target_arch("sm_90", Some(bad)).unwrap_err(),
            format!("PIO_NVRTC_ARCH '{bad}': expected sm_90 or compute_XY no newer than it")
        );
    }
    // ptxas does not run for PTX: its options are left out.
    let base = [
        "--use_fast_math".to_string(),
        "--ptxas-options=-v".to_string(),
    ];
    assert_eq!(
        options_for("compute_80", &base),
        ["--gpu-architecture=compute_80", "--use_fast_math"]
    );
    assert_eq!(options_for("sm_90", &base).len(), 3);
}
