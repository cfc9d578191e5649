//! The static executor: every buffer allocated once from the artifact's memory plan, the launch
//! lists replayed as they are, per-step values (token ids, positions) written to device memory,
//! and the decode step captured once as a CUDA graph and replayed for every token (with an eager
//! fallback that says why). Sampling runs on the GPU.
//!
//! The parts live next door: `modules` (compiling and loading the kernels), `regions` (device
//! memory), `launch` (the resolved launch lists and cuBLAS), `graph` (the decode graph),
//! `sampler` and `profile`.

use super::collective::RankComm;
use super::device::{CudaError, Gpu};
use super::graph::{BucketGraphs, DecodeGraph};
use super::launch::LaunchRunner;
use super::logit_rows::LogitRows;
use super::modules::Functions;
use super::nvrtc::{arch_number, KernelCache};
use super::observe::{StepHook, StepObserver};
use super::profile::{Profiler, ProfilerRange};
use super::regions::DeviceRegions;
use super::sampler::GpuSampler;
use pio_artifact::{Artifact, Region, WeightEntry};

mod paged;
mod sampling;

pub use super::profile::{Phase, Profile};
pub use super::sampler::{gpu_sampling_supported, GPU_MAX_TOP_K};
pub use paged::PagedSeqRef;

/// A compiled model resident on the GPU.
///
/// It is `Send`, so an engine thread can own it (every entry point that touches the GPU makes
/// the context current on the calling thread first), but not `Sync`:
///
/// ```compile_fail
/// fn assert_sync<T: Sync>() {}
/// assert_sync::<pio_runtime::cuda::executor::CudaModel>();
/// ```
pub struct CudaModel {
    pub artifact: Artifact,
    /// Why the decode step runs eagerly, if it does.
    pub graph_fallback: Option<String>,
    // Dropped in this order: the graph and cuBLAS before the memory they use.
    graph: DecodeGraph,
    /// The paged decode steps' graphs, one per batch bucket.
    paged_graphs: BucketGraphs,
    runner: LaunchRunner,
    sampler: GpuSampler,
    regions: DeviceRegions,
    /// With `PIO_PROFILE` set: GPU time per kernel family and phase (decode runs eagerly).
    profiler: Option<Profiler>,
    /// With `PIO_PROFILER_CALLS` set: the paged calls an external profiler sees.
    profiler_range: ProfilerRange,
    gpu: Gpu,
    use_graph: bool,
    /// Single tokens run through the prefill launch list (cuBLAS GEMMs) instead of the decode
    /// list: a diagnostic for parity checks, off by default.
    single_tokens_as_prefill: bool,
    /// A paged decode step of one sequence runs the single-sequence list (GEMV kernels)
    /// rather than the batch list at one row; `PIO_NO_PAGED_SINGLE` turns that off (an A/B
    /// diagnostic).
    paged_single: bool,
    cached: usize,
    /// Rows of logits the last step left in the io region (its last token's row is the last).
    logit_rows: usize,
    /// The prefill's logits GEMM computes every row of the step (for `step_all_logits`), not
    /// just the last.
    logits_all_rows: bool,
    /// The prefill's logits come from a marked GEMM (`Gemm::logits`), which can compute the
    /// last row alone.
    logits_gemm: bool,
    /// Blocks of the paged pool (0 until [`Self::enable_paged`]).
    pool_blocks: usize,
    argmax: paged::BatchArgmax,
    paged_inputs: paged::PagedInputs,
}

impl CudaModel {
    /// Compiles the kernels (disk cache), allocates every region, uploads the weights through
    /// `fill` (which writes one weight's bf16 bytes, parts concatenated) and prepares sampling.
    pub fn new(
        gpu: Gpu,
        artifact: Artifact,
        cache: &KernelCache,
        fill: impl FnMut(&WeightEntry, &mut [u8]) -> Result<(), String>,
        progress: impl FnMut(u64, u64),
    ) -> Result<CudaModel, CudaError> {
        Self::new_rank(gpu, artifact, cache, fill, progress, None)
    }

    /// [`Self::new`] for one rank of a tensor-parallel artifact (`comm`: the rank's
    /// communicator; `fill` writes the rank's slices). Every rank runs every step: a step's
    /// collectives wait for all ranks, so the ranks' steps must be issued together, one thread
    /// per rank.
    pub fn new_rank(
        gpu: Gpu,
        artifact: Artifact,
        cache: &KernelCache,
        fill: impl FnMut(&WeightEntry, &mut [u8]) -> Result<(), String>,
        progress: impl FnMut(u64, u64),
        comm: Option<RankComm>,
    ) -> Result<CudaModel, CudaError> {
        match (artifact.tensor_parallel, &comm) {
            (Some(tp), Some(c)) if tp.ranks == c.ranks => {}
            (Some(tp), _) => return Err(CudaError::TensorParallel { ranks: tp.ranks }),
            (None, Some(c)) => {
                return Err(CudaError::Other(format!(
                    "a communicator of {} ranks for an artifact of one rank (compile it with \
                     pio-compile --tp {})",
                    c.ranks, c.ranks
                )))
            }
            (None, None) => {}
        }
        gpu.bind_to_thread()?;
        let funcs = Functions::load(&gpu, &artifact, cache)?;
        let regions = DeviceRegions::alloc(&gpu, &artifact.regions)?;
        regions.clear_kv(&gpu)?;
        regions.upload_weights(&gpu, &artifact.weights, fill, progress)?;
        // PDL from sm_90 on; kernels compiled for an older architecture have no griddepcontrol.
        let pdl = arch_number(&funcs.arch).is_some_and(|n| n >= 90)
            && std::env::var_os("PIO_NO_PDL").is_none();
        let runner = LaunchRunner::new(&gpu, &artifact, &funcs, &regions, pdl, comm)?;
        let argmax = paged::BatchArgmax::new(funcs.argmax_rows);
        let sampler = GpuSampler::new(
            &gpu,
            funcs.sampler_partial,
            funcs.sampler_final,
            artifact.model.vocab_size,
        )?;
        let use_graph = std::env::var_os("PIO_NO_CUDA_GRAPH").is_none();
        let logits_gemm = artifact.prefill_logits_gemm();
        let profiler = match std::env::var_os("PIO_PROFILE") {
            Some(_) => Some(Profiler::new(&gpu)?),
            None => None,
        };
        let mut m = CudaModel {
            artifact,
            graph_fallback: (!use_graph).then(|| "PIO_NO_CUDA_GRAPH is set".to_string()),
            graph: DecodeGraph::default(),
            paged_graphs: BucketGraphs::default(),
            runner,
            sampler,
            regions,
            profiler,
            profiler_range: ProfilerRange::from_env()?,
            gpu,
            use_graph,
            single_tokens_as_prefill: false,
            paged_single: std::env::var_os("PIO_NO_PAGED_SINGLE").is_none(),
            cached: 0,
            logit_rows: 0,
            logits_all_rows: false,
            logits_gemm,
            pool_blocks: 0,
            argmax,
            paged_inputs: paged::PagedInputs::default(),
        };
        m.reset()?;
        Ok(m)
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// "weights 1.19 GB, KV cache 3.76 GB, activations 10 MB, io 78 MB; 6.2 GB of 85 GB in use".
    pub fn memory_report(&self) -> String {
        let _ = self.gpu.bind_to_thread();
        let gb = |b: u64| format!("{:.2} GB", b as f64 / 1e9);
        let r = &self.artifact.regions;
        let (free, total) = self.gpu.memory();
        let pool = match self.regions.pool_bytes() {
            0 => String::new(),
            b => format!(", paged KV pool {} ({} blocks)", gb(b), self.pool_blocks),
        };
        format!(
            "weights {}, KV cache {}, activations {}, io {}{pool}; {} of {} in use on the GPU",
            gb(r.weights),
            gb(r.kv),
            gb(r.arena),
            gb(r.io),
            gb(total - free),
            gb(total)
        )
    }

    pub fn cached_len(&self) -> usize {
        self.cached
    }

    pub fn context_bound(&self) -> usize {
        self.artifact.max_context
    }

    /// Forgets the sequence (cache contents are overwritten by the next steps).
    pub fn reset(&mut self) -> Result<(), CudaError> {
        self.gpu.bind_to_thread()?;
        self.cached = 0;
        self.logit_rows = 0;
        self.sampler.reset(&self.gpu)?;
        self.gpu.sync()
    }

    /// Goes back to the first `len` cached tokens, with `next` as the next decode step's input.
    /// The cache keeps what it holds up to `len` (the next steps overwrite the rest): a decode
    /// can be repeated from the same context without prefilling it again.
    pub fn rewind(&mut self, len: usize, next: u32) -> Result<(), CudaError> {
        self.gpu.bind_to_thread()?;
        if len > self.cached {
            return Err(CudaError::Other(format!(
                "cannot rewind to {len} tokens: only {} are cached",
                self.cached
            )));
        }
        self.check_tokens(&[next])?;
        self.cached = len;
        self.logit_rows = 0;
        self.write_inputs(&[next], len)?;
        self.gpu.sync()
    }

    /// Every token id is inside the vocabulary.
    fn check_tokens(&self, tokens: &[u32]) -> Result<(), CudaError> {
        match tokens
            .iter()
            .find(|&&t| t as usize >= self.artifact.model.vocab_size)
        {
            Some(bad) => Err(CudaError::Other(format!(
                "token id {bad} is out of range for a vocabulary of {}",
                self.artifact.model.vocab_size
            ))),
            None => Ok(()),
        }
    }

    /// Marks tokens as seen (the prompt, for the repetition penalty).
    pub fn mark_seen(&mut self, tokens: &[u32]) -> Result<(), CudaError> {
        self.gpu.bind_to_thread()?;
        self.sampler.mark_seen(&self.gpu, tokens)
    }

    fn io_addr(&self, offset: u64) -> u64 {
        self.regions.addr(Region::Io, offset)
    }

    fn write_inputs(&self, tokens: &[u32], start: usize) -> Result<(), CudaError> {
        self.regions
            .write_inputs(&self.gpu, &self.artifact.io, tokens, start)
    }

    /// The profile so far (with `PIO_PROFILE` set).
    pub fn profile_report(&self) -> Option<String> {
        self.profiler.as_ref().map(Profiler::report)
    }

    /// Runs `tokens` at the positions after the cached ones: prefill in chunks of at most
    /// `max_prefill` tokens, a single token through the decode launch list (CUDA graph) unless
    /// [`Self::set_single_tokens_as_prefill`] says otherwise. Only the last token's logits are
    /// computed (where the artifact's logits GEMM allows it); [`Self::step_all_logits`] gives
    /// every row's.
    pub fn step(&mut self, tokens: &[u32]) -> Result<(), CudaError> {
        self.step_with(tokens, None)
    }

    /// [`Self::step`] run eagerly with `observer` called before and after every step of its
    /// launch lists (see [`super::observe`]; a diagnostic for per-kernel checks).
    pub fn step_observed(
        &mut self,
        tokens: &[u32],
        observer: &mut dyn StepObserver,
    ) -> Result<(), CudaError> {
        self.step_with(tokens, Some(observer))
    }

    fn step_with(
        &mut self,
        tokens: &[u32],
        mut observer: Option<&mut (dyn StepObserver + '_)>,
    ) -> Result<(), CudaError> {
        self.gpu.bind_to_thread()?;
        self.check_step(tokens)?;
        if tokens.len() == 1 && !self.single_tokens_as_prefill {
            self.write_inputs(tokens, self.cached)?;
            self.decode_launch(observer)?;
            self.cached += 1;
            self.logit_rows = 1;
            // No sync: reading the logits or the sampled token waits for the step.
            return Ok(());
        }
        for chunk in tokens.chunks(self.artifact.max_prefill) {
            self.prefill_chunk(chunk, observer.as_deref_mut())?;
        }
        self.gpu.sync()
    }

    /// Runs `tokens` as [`Self::step`] does and returns the logits of every one of them (as
    /// f32). Prefill steps then take at most `io.logits_rows` tokens each, the rows the io
    /// region holds.
    pub fn step_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, CudaError> {
        self.gpu.bind_to_thread()?;
        self.check_step(tokens)?;
        if tokens.len() == 1 && !self.single_tokens_as_prefill {
            self.step(tokens)?;
            return self.logits();
        }
        let mut rows = Vec::with_capacity(tokens.len());
        self.logits_all_rows = true;
        let mut done = Ok(());
        for chunk in tokens.chunks(self.artifact.io.logits_rows.max(1)) {
            done = self.prefill_chunk(chunk, None).and_then(|()| {
                rows.extend(self.logits()?);
                Ok(())
            });
            if done.is_err() {
                break;
            }
        }
        self.logits_all_rows = false;
        done.map(|()| rows)
    }

    /// The step fits the context and its token ids the vocabulary.
    fn check_step(&self, tokens: &[u32]) -> Result<(), CudaError> {
        if tokens.is_empty() {
            return Err(CudaError::Other("a step needs at least one token".into()));
        }
        if self.cached + tokens.len() > self.artifact.max_context {
            return Err(CudaError::Other(format!(
                "context full: {} cached + {} new tokens exceed the context of {} (pio-compile --max-context)",
                self.cached,
                tokens.len(),
                self.artifact.max_context
            )));
        }
        self.check_tokens(tokens)
    }

    /// One prefill launch list run over `chunk` (at most `max_prefill` tokens).
    fn prefill_chunk(
        &mut self,
        chunk: &[u32],
        observer: Option<&mut (dyn StepObserver + '_)>,
    ) -> Result<(), CudaError> {
        self.write_inputs(chunk, self.cached)?;
        let rows = LogitRows::every_row(self.logits_all_rows);
        self.runner
            .tune(&self.gpu, Phase::Prefill, chunk.len() as u32, rows)?;
        self.runner.run(
            &self.gpu,
            Phase::Prefill,
            chunk.len() as u32,
            rows,
            step_hook(&mut self.profiler, &self.regions, observer),
        )?;
        self.cached += chunk.len();
        self.logit_rows = if self.logits_all_rows || !self.logits_gemm {
            chunk.len()
        } else {
            1
        };
        Ok(())
    }

    /// One decode step with the inputs already in device memory: graph replay, else eager
    /// (always eager while profiling, so that every launch is timed).
    fn decode_launch(
        &mut self,
        observer: Option<&mut (dyn StepObserver + '_)>,
    ) -> Result<(), CudaError> {
        let (runner, gpu) = (&mut self.runner, &self.gpu);
        let all_rows = LogitRows::every_row(self.logits_all_rows);
        runner.tune(gpu, Phase::Decode, 1, all_rows)?;
        let hook = step_hook(&mut self.profiler, &self.regions, observer);
        if hook.eager() {
            return runner.run(gpu, Phase::Decode, 1, all_rows, hook);
        }
        self.graph
            .launch(gpu, self.use_graph, &mut self.graph_fallback, || {
                runner.run(gpu, Phase::Decode, 1, all_rows, StepHook::None)
            })
    }

    /// Queues one decode step of the token already in the step's input (where the GPU sampler
    /// puts its draw, or [`Self::rewind`] the given one) at `position`, keeping the first
    /// `position` cached tokens (at most the cached count): writes the position and replays
    /// the decode graph, without waiting. Afterwards `position + 1` tokens are cached and the
    /// logits are this step's row. For timing decode on the device alone (`pio bench`).
    pub fn enqueue_decode_step(&mut self, position: usize) -> Result<(), CudaError> {
        self.gpu.bind_to_thread()?;
        if position > self.cached || position >= self.artifact.max_context {
            return Err(CudaError::Other(format!(
                "cannot decode at position {position}: {} tokens are cached, the context holds {}",
                self.cached, self.artifact.max_context
            )));
        }
        let at = self.io_addr(self.artifact.io.positions);
        self.gpu
            .upload_async(at, &(position as i32).to_le_bytes())?;
        self.decode_launch(None)?;
        self.cached = position + 1;
        self.logit_rows = 1;
        Ok(())
    }

    /// Turns the CUDA graph off or on (for the graph-vs-eager check).
    pub fn set_graph(&mut self, on: bool) {
        self.use_graph = on;
    }

    /// Runs single tokens through the prefill launch list (cuBLAS GEMMs, the tensor-core
    /// attention) instead of the decode list. Slower; for parity checks that separate the
    /// decode GEMVs' summation order from everything else.
    pub fn set_single_tokens_as_prefill(&mut self, on: bool) {
        self.single_tokens_as_prefill = on;
    }

    /// Runs a paged decode step of one sequence through the single-sequence list (GEMV
    /// kernels; the default) or the batch list at one row (for parity checks of both).
    pub fn set_paged_single(&mut self, on: bool) {
        self.paged_single = on;
    }

    /// Turns programmatic dependent launch off or on (on Hopper and later only); the decode
    /// graph is captured again at the next step.
    pub fn set_pdl(&mut self, on: bool) {
        let _ = self.gpu.bind_to_thread();
        let on = on && self.gpu.major >= 9;
        if on != self.runner.pdl {
            self.runner.pdl = on;
            let _ = self.gpu.sync();
            self.graph.destroy();
            self.paged_graphs.destroy();
        }
    }

    /// Device memory pio allocated beyond the four regions (cuBLAS workspace, sampler buffers).
    pub fn workspace_bytes(&self) -> u64 {
        self.runner.workspace_bytes() + self.sampler.bytes()
    }
}

impl Drop for CudaModel {
    fn drop(&mut self) {
        // The fields free their handles and memory next, in the context of this model (another
        // thread may have owned it last).
        let _ = self.gpu.bind_to_thread();
    }
}

/// What a run does around its steps: call the observer (if given), else time them while
/// profiling, else nothing.
fn step_hook<'a, 'o>(
    profiler: &'a mut Option<Profiler>,
    regions: &'a DeviceRegions,
    observer: Option<&'a mut (dyn StepObserver + 'o)>,
) -> StepHook<'a, 'o> {
    match (observer, profiler.as_mut()) {
        (Some(observer), _) => StepHook::Observe { observer, regions },
        (None, Some(p)) => StepHook::Profile(p),
        (None, None) => StepHook::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    /// An engine thread can own a model (and the GPU it runs on).
    #[test]
    fn the_model_is_send() {
        assert_send::<CudaModel>();
        assert_send::<Gpu>();
        assert_send::<super::super::device::GpuTimer>();
    }
}
