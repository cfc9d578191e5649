//! The memory a load needs, computed from the artifact before anything is allocated, and
//! checked against what the device has: a model that cannot fit is a clear error with both
//! figures, never an abort in the allocator or an out-of-memory kill halfway through.

use crate::error::PioError;
use pio_artifact::Artifact;
use pio_runtime::resources::{check_host_memory, NotEnough};

/// Stored parameters of the artifact (tied tensors once); saturates instead of overflowing.
pub fn params(a: &Artifact) -> u64 {
    a.weights
        .iter()
        .map(|w| {
            w.shape
                .iter()
                .fold(1u64, |n, &d| n.saturating_mul(d as u64))
        })
        .fold(0u64, u64::saturating_add)
}

/// Host memory the CPU reference executor needs before its first step: every weight in f32.
/// (Its KV cache grows with the tokens, by a fraction of this for any real context.)
pub fn cpu_bytes(a: &Artifact) -> u64 {
    params(a).saturating_mul(4)
}

/// Device memory a CUDA load allocates: the artifact's four regions.
pub fn gpu_bytes(a: &Artifact) -> u64 {
    let r = &a.regions;
    [r.weights, r.kv, r.io, r.arena]
        .into_iter()
        .fold(0u64, u64::saturating_add)
}

/// Refuses a CPU load that the host's available memory cannot hold.
pub fn check_cpu(a: &Artifact) -> Result<(), PioError> {
    let what = format!("the f32 weights of {} on the CPU", a.model.name);
    check_host_memory(cpu_bytes(a), &what)?;
    Ok(())
}

/// Refuses a CUDA load that needs more than `free` bytes of device memory.
pub fn check_gpu(a: &Artifact, free: u64) -> Result<(), PioError> {
    let needed = gpu_bytes(a);
    if needed > free {
        return Err(NotEnough {
            resource: "GPU memory".into(),
            what: format!(
                "{} (weights {}, KV cache {}, activations {}; a smaller --max-context shrinks \
                 the KV cache)",
                a.model.name,
                pio_artifact::bytes_human(a.regions.weights),
                pio_artifact::bytes_human(a.regions.kv),
                pio_artifact::bytes_human(a.regions.arena + a.regions.io),
            ),
            needed,
            available: free,
        }
        .into());
    }
    Ok(())
}
