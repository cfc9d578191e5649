//! The NVIDIA driver release that bench reports name, read from /proc/driver/nvidia/version.

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
