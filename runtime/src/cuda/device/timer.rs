//! GPU time measured with CUDA events.

use super::{drv, CudaError, Gpu};
use cudarc::driver::{result, sys};

/// GPU time between two points of the stream, measured with a pair of CUDA events: `start`,
/// queue work, `stop` waits for it and returns the milliseconds in between.
pub struct GpuTimer {
    start: sys::CUevent,
    end: sys::CUevent,
}

// SAFETY: the events are plain driver handles of the GPU's context, valid in any thread once
// that context is current; the timer is not `Sync`, so one thread at a time records them.
unsafe impl Send for GpuTimer {}

impl GpuTimer {
    /// Creates the two events (in the GPU's context, made current on this thread).
    pub fn new(gpu: &Gpu) -> Result<GpuTimer, CudaError> {
        gpu.bind_to_thread()?;
        let ev = || {
            drv(
                "event",
                result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT),
            )
        };
        let start = ev()?;
        match ev() {
            Ok(end) => Ok(GpuTimer { start, end }),
            Err(e) => {
                // SAFETY: created above, destroyed once.
                let _ = unsafe { result::event::destroy(start) };
                Err(e)
            }
        }
    }

    /// Records the start on the GPU's stream (no wait).
    pub fn start(&self, gpu: &Gpu) -> Result<(), CudaError> {
        // SAFETY: a live event recorded on the GPU's live stream.
        drv("event", unsafe {
            result::event::record(self.start, gpu.stream)
        })
    }

    /// Records the end on the GPU's stream, waits for it and returns the milliseconds since
    /// the last [`GpuTimer::start`].
    pub fn stop(&self, gpu: &Gpu) -> Result<f64, CudaError> {
        // SAFETY: live events of this timer, the end recorded on the GPU's live stream.
        let ms = unsafe {
            drv("event", result::event::record(self.end, gpu.stream))?;
            drv("event", result::event::synchronize(self.end))?;
            drv("event", result::event::elapsed(self.start, self.end))?
        };
        Ok(ms as f64)
    }
}

impl Drop for GpuTimer {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            let _ = result::event::destroy(self.start);
            let _ = result::event::destroy(self.end);
        }
    }
}
