//! The decode step as a CUDA graph: its launches are captured once from the stream,
//! instantiated and replayed for every token (one driver call instead of one per kernel). When
//! the graph is off or its capture fails, the step runs eagerly and the reason is kept.

use super::device::{drv, CudaError, Gpu};
use cudarc::driver::{result, sys};

/// The instantiated decode graph, once captured.
#[derive(Default)]
pub(crate) struct DecodeGraph {
    exec: Option<sys::CUgraphExec>,
}

// SAFETY: the executable graph is a plain driver handle of the GPU's context, valid in any thread
// once that context is current; `DecodeGraph` is not `Sync`, so one thread at a time replays it.
unsafe impl Send for DecodeGraph {}

impl DecodeGraph {
    /// Queues one decode step. With `use_graph` and no `fallback` reason yet, the first call
    /// captures what `eager` queues and instantiates it (a failure becomes the `fallback`
    /// reason, said once on stderr); then the graph is replayed. Otherwise `eager` runs.
    pub(crate) fn launch(
        &mut self,
        gpu: &Gpu,
        use_graph: bool,
        fallback: &mut Option<String>,
        mut eager: impl FnMut() -> Result<(), CudaError>,
    ) -> Result<(), CudaError> {
        if use_graph && self.exec.is_none() && fallback.is_none() {
            match capture(gpu, &mut eager) {
                Ok(g) => self.exec = Some(g),
                Err(e) => {
                    *fallback = Some(format!("CUDA graph capture failed: {e}"));
                    eprintln!("note: decoding without a CUDA graph: {e}");
                }
            }
        }
        match self.exec {
            // SAFETY: the graph was instantiated from our stream's work and is still valid.
            Some(g) => drv("graph launch", unsafe {
                result::graph::launch(g, gpu.stream)
            }),
            None => eager(),
        }
    }

    /// Drops the graph (the next launch captures it again, e.g. after PDL was switched).
    pub(crate) fn destroy(&mut self) {
        if let Some(g) = self.exec.take() {
            // SAFETY: instantiated by us, no longer referenced; destroyed once.
            let _ = unsafe { result::graph::exec_destroy(g) };
        }
    }
}

impl Drop for DecodeGraph {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Captures the work `record` queues on the GPU's stream and instantiates it.
fn capture(
    gpu: &Gpu,
    record: &mut impl FnMut() -> Result<(), CudaError>,
) -> Result<sys::CUgraphExec, CudaError> {
    // SAFETY: capture on our own stream; nothing allocates or frees while capturing. The
    // captured graph is destroyed once, after instantiation (the executable graph does not
    // depend on it).
    unsafe {
        drv(
            "begin capture",
            result::stream::begin_capture(
                gpu.stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            ),
        )?;
        let launched = record();
        let graph = drv("end capture", result::stream::end_capture(gpu.stream))?;
        let exec = launched.and_then(|()| {
            drv(
                "instantiate graph",
                result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)),
            )
        });
        let _ = result::graph::destroy(graph);
        exec
    }
}
