//! GPU-side timings of `pio bench`, built on the runtime's primitives: CUDA events
//! ([`GpuTimer`]) around work queued without host round trips.

use pio_runtime::cuda::device::{CudaError, GpuTimer};
use pio_runtime::cuda::executor::CudaModel;
use pio_runtime::sampling::SamplingParams;

/// GPU time (ms, CUDA events) of `steps` decode steps after the cached tokens, each one a graph
/// replay plus GPU sampling, with the sampled token fed to the next step on the device (no host
/// round trip). The cache must have room for them.
pub fn timed_decode(m: &mut CudaModel, steps: usize, p: &SamplingParams) -> Result<f64, CudaError> {
    let first = m.cached_len();
    if first + steps > m.context_bound() {
        return Err(CudaError::Other(format!(
            "{first} cached + {steps} decode steps exceed the context of {}",
            m.context_bound()
        )));
    }
    let timer = GpuTimer::new(m.gpu())?;
    timer.start(m.gpu())?;
    for i in 0..steps {
        m.enqueue_decode_step(first + i)?;
        m.enqueue_sample(p, i as u64)?;
    }
    timer.stop(m.gpu())
}

/// Device-to-device copy bandwidth: bytes read plus written per second, over a 1 GiB copy
/// (median of 5, after a warm-up). It only uses the model's GPU (a shared borrow, so the caller
/// may keep reading the model meanwhile).
pub fn copy_bandwidth(m: &CudaModel) -> Result<f64, CudaError> {
    let gpu = m.gpu();
    gpu.bind_to_thread()?;
    let bytes = 1u64 << 30;
    let (a, b) = (
        gpu.alloc(bytes, "bandwidth test")?,
        gpu.alloc(bytes, "bandwidth test")?,
    );
    let timer = GpuTimer::new(gpu)?;
    let mut times = Vec::new();
    for i in 0..6 {
        timer.start(gpu)?;
        gpu.copy_async(&b, &a)?;
        let ms = timer.stop(gpu)?;
        if i > 0 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(2.0 * bytes as f64 / (times[times.len() / 2] / 1e3))
}
