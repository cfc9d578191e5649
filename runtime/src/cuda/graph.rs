//! The decode step as a CUDA graph: its launches are captured once from the stream,
//! instantiated and replayed for every token (one driver call instead of one per kernel). When
//! the graph is off or its capture fails, the step runs eagerly and the reason is kept.

use super::device::{drv, CudaError, Gpu};
use cudarc::driver::{result, sys};
use pio_artifact::Phase;

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

/// The batching engine's decode steps as CUDA graphs, one per launch list and batch bucket: a
/// batch of `n` sequences runs as [`bucket`]`(n)` rows (the extra rows are padding the caller
/// writes), so a handful of graphs covers every batch size.
#[derive(Default)]
pub(crate) struct BucketGraphs {
    /// (list, bucket, its graph), in the order first used.
    graphs: Vec<(Phase, u32, DecodeGraph)>,
    /// Why the paged decode steps run eagerly, once a capture failed (said once on stderr).
    fallback: Option<String>,
}

impl BucketGraphs {
    /// Queues one decode step of `phase`'s list at `bucket` rows: its graph (captured from
    /// `eager` on first use), or `eager` itself without `use_graph` or after a failed capture.
    pub(crate) fn launch(
        &mut self,
        gpu: &Gpu,
        phase: Phase,
        bucket: u32,
        use_graph: bool,
        eager: impl FnMut() -> Result<(), CudaError>,
    ) -> Result<(), CudaError> {
        let key = |(p, b, _): &(Phase, u32, DecodeGraph)| *p == phase && *b == bucket;
        let i = match self.graphs.iter().position(key) {
            Some(i) => i,
            None => {
                self.graphs.push((phase, bucket, DecodeGraph::default()));
                self.graphs.len() - 1
            }
        };
        self.graphs[i]
            .2
            .launch(gpu, use_graph, &mut self.fallback, eager)
    }

    /// Drops every graph (after the pool moved or PDL was switched: they hold old arguments).
    pub(crate) fn destroy(&mut self) {
        self.graphs.clear();
    }
}

/// The rows a decode batch of `n` sequences runs as: the next power of two, at most `max` (the
/// batch size the launch list is planned for); `n` itself past `max` (the caller refuses it).
pub(crate) fn bucket(n: usize, max: usize) -> usize {
    if n >= max {
        return n;
    }
    n.max(1).next_power_of_two().min(max)
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn buckets_are_powers_of_two_capped_at_the_planned_batch() {
        let got: Vec<usize> = [1, 2, 3, 5, 8, 9, 33, 64, 65, 100, 128]
            .iter()
            .map(|&n| bucket(n, 128))
            .collect();
        assert_eq!(got, [1, 2, 4, 8, 8, 16, 64, 64, 128, 128, 128]);
        // A planned batch that is not a power of two is the last bucket.
        assert_eq!(bucket(70, 100), 100);
        assert_eq!(bucket(60, 100), 64);
        assert_eq!(bucket(100, 100), 100);
        // Every batch fits its bucket, and a bucket never exceeds the plan.
        for max in [1, 3, 64, 100, 256] {
            for n in 1..=max {
                let b = bucket(n, max);
                assert!(b >= n && b <= max, "n {n} max {max}: bucket {b}");
            }
        }
    }
}
