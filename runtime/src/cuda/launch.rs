//! Running the launch lists. Every step is resolved once at load (function, grid, device
//! addresses of its arguments), so a run does no lookups and no allocation: it only writes the
//! step's token count where an argument or a dimension takes it, and launches. GEMM steps go
//! through cuBLAS with its own workspace.

use super::collective::{CollectiveStep, RankComm};
use super::device::{CudaError, Gpu, GpuTimer};
use super::gemm::{gemm, resolve_gemm, row_class, Blas, GemmStep, GemmTuner};
use super::logit_rows::{gather_rows, LogitRows};
use super::modules::Functions;
use super::observe::{StepAt, StepHook};
use super::profile::{label, Phase};
use super::regions::DeviceRegions;
use cudarc::driver::{result, sys};
use pio_artifact::{Arg, Dim, Launch, Step};
use std::collections::HashSet;
use std::ffi::c_void;

/// A kernel argument resolved at load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ArgValue {
    /// A device address (a region base plus offset).
    Ptr(u64),
    /// The step's token count, known at each run.
    Tokens,
    I32(i32),
}

/// A kernel's arguments at stable addresses: pointers as u64 and ints as i32 (what the kernels'
/// parameters are), and the parameter array the driver reads them through.
pub(crate) struct ArgPack {
    ptrs: Box<[u64]>,
    ints: Box<[i32]>,
    /// Each parameter in the kernel's order: `Ok(i)` is `ptrs[i]`, `Err(i)` is `ints[i]`.
    order: Box<[Result<usize, usize>]>,
    /// Indices into `ints` that take the step's token count.
    tokens: Box<[usize]>,
    /// Scratch for the parameter pointers, rebuilt by every [`ArgPack::params`].
    params: Box<[*mut c_void]>,
}

// SAFETY: `params` only holds pointers into the pack's own boxed slices, rewritten before every
// use; the pack owns everything it points to. It is not `Sync`.
unsafe impl Send for ArgPack {}

impl ArgPack {
    pub(crate) fn new(args: &[ArgValue]) -> ArgPack {
        let (mut ptrs, mut ints, mut order, mut tokens) = (vec![], vec![], vec![], vec![]);
        for a in args {
            match *a {
                ArgValue::Ptr(p) => {
                    order.push(Ok(ptrs.len()));
                    ptrs.push(p);
                }
                ArgValue::Tokens | ArgValue::I32(_) => {
                    if *a == ArgValue::Tokens {
                        tokens.push(ints.len());
                    }
                    order.push(Err(ints.len()));
                    ints.push(match *a {
                        ArgValue::I32(v) => v,
                        _ => 0,
                    });
                }
            }
        }
        ArgPack {
            ptrs: ptrs.into(),
            ints: ints.into(),
            params: vec![std::ptr::null_mut(); order.len()].into(),
            order: order.into(),
            tokens: tokens.into(),
        }
    }

    /// The parameter array for a step of `tokens` tokens, valid until the pack is used again.
    pub(crate) fn params(&mut self, tokens: u32) -> &mut [*mut c_void] {
        for &i in self.tokens.iter() {
            self.ints[i] = tokens as i32;
        }
        // Every pointer derives from one base pointer per slice, so none invalidates another.
        let (ptrs, ints) = (self.ptrs.as_mut_ptr(), self.ints.as_mut_ptr());
        for (p, slot) in self.params.iter_mut().zip(self.order.iter()) {
            *p = match *slot {
                Ok(i) => ptrs.wrapping_add(i).cast(),
                Err(i) => ints.wrapping_add(i).cast(),
            };
        }
        &mut self.params
    }
}

/// A kernel launch resolved at load.
struct KernelStep {
    func: sys::CUfunction,
    grid: [Dim; 3],
    block: (u32, u32, u32),
    shared_bytes: u32,
    args: ArgPack,
    /// Pointer arguments into the paged pool: (index among the pack's pointers, offset within a
    /// block), rebased when the pool is allocated.
    pool_ptrs: Box<[(usize, u64)]>,
    /// The kernel's name and IR node, for error messages.
    kernel: String,
    node: String,
    /// The profile's row ("rmsnorm layers.*.input_layernorm").
    label: String,
}

// SAFETY: the function is a plain driver handle of a module loaded for the process, valid in
// any thread once the GPU's context is current; the step is not `Sync`.
unsafe impl Send for KernelStep {}

enum Resolved {
    Kernel(KernelStep),
    Gemm(GemmStep),
    Collective(CollectiveStep),
}

impl Resolved {
    fn label(&self) -> &str {
        match self {
            Resolved::Kernel(k) => &k.label,
            Resolved::Gemm(g) => &g.label,
            Resolved::Collective(c) => &c.label,
        }
    }
}

/// The decode, prefill and three paged launch lists, resolved, and what runs them.
pub(crate) struct LaunchRunner {
    decode: Vec<Resolved>,
    prefill: Vec<Resolved>,
    paged: Vec<Resolved>,
    paged_chunk: Vec<Resolved>,
    paged_single: Vec<Resolved>,
    blas: Blas,
    tuner: GemmTuner,
    /// The (list, row class of the step's tokens, its logits rows' class) already tuned, so
    /// that a step of a tuned class costs one lookup.
    tuned_lists: HashSet<(Phase, u32, Option<u32>)>,
    /// Times the tuner's candidates.
    timer: GpuTimer,
    /// Launch kernels as programmatic dependent launches (Hopper and later).
    pub pdl: bool,
    /// A tensor-parallel rank's communicator (None on a whole model).
    comm: Option<RankComm>,
}

impl LaunchRunner {
    /// Resolves every launch list of `artifact`; a tensor-parallel artifact's collectives and
    /// rank arguments take `comm` (its rank's communicator).
    pub(crate) fn new(
        gpu: &Gpu,
        artifact: &pio_artifact::Artifact,
        funcs: &Functions,
        regions: &DeviceRegions,
        pdl: bool,
        comm: Option<RankComm>,
    ) -> Result<LaunchRunner, CudaError> {
        let rank = comm.as_ref().map(|c| c.rank);
        let resolve = |steps: &[Step]| -> Result<Vec<Resolved>, CudaError> {
            steps
                .iter()
                .map(|s| match s {
                    Step::Kernel(l) => {
                        resolve_kernel(l, funcs, regions, rank).map(Resolved::Kernel)
                    }
                    Step::Gemm(g) => resolve_gemm(g, regions).map(Resolved::Gemm),
                    Step::Collective(c) if rank.is_some() => {
                        CollectiveStep::resolve(c, regions).map(Resolved::Collective)
                    }
                    Step::Collective(_) => Err(CudaError::TensorParallel {
                        ranks: artifact.tensor_parallel.map_or(0, |tp| tp.ranks),
                    }),
                })
                .collect()
        };
        let (decode, prefill) = (&artifact.decode, &artifact.prefill);
        let paged = &artifact.paged;
        Ok(LaunchRunner {
            decode: resolve(decode)?,
            prefill: resolve(prefill)?,
            paged: resolve(&paged.steps)?,
            paged_chunk: resolve(&paged.chunk_steps)?,
            paged_single: resolve(&paged.single_steps)?,
            blas: Blas::new(gpu)?,
            tuner: GemmTuner::new(funcs.gemm_rows),
            tuned_lists: HashSet::new(),
            timer: GpuTimer::new(gpu)?,
            pdl,
            comm,
        })
    }

    /// Points the paged lists' pool arguments at a pool based at `base`.
    pub(crate) fn rebase_pool(&mut self, base: u64) {
        let lists = [
            &mut self.paged,
            &mut self.paged_chunk,
            &mut self.paged_single,
        ];
        for s in lists.into_iter().flat_map(|l| l.iter_mut()) {
            if let Resolved::Kernel(k) = s {
                for &(ptr, offset) in k.pool_ptrs.iter() {
                    k.args.ptrs[ptr] = base + offset;
                }
            }
        }
    }

    /// Device memory of the cuBLAS workspace.
    pub(crate) fn workspace_bytes(&self) -> u64 {
        self.blas.workspace_bytes()
    }

    /// Tunes the GEMMs of `phase`'s list for a step of `tokens` tokens whose row class is not
    /// tuned yet (see [`super::gemm`]); returns how many classes were tuned. Waits for the GPU:
    /// call it between steps, never while a graph is captured.
    pub(crate) fn tune(
        &mut self,
        gpu: &Gpu,
        phase: Phase,
        tokens: u32,
        logit_rows: LogitRows<'_>,
    ) -> Result<usize, CudaError> {
        if !self
            .tuned_lists
            .insert((phase, row_class(tokens), logit_rows.tuning_key()))
        {
            return Ok(0);
        }
        let before = self.tuner.tuned;
        let steps = match phase {
            Phase::Decode => &self.decode,
            Phase::Prefill => &self.prefill,
            Phase::Paged => &self.paged,
            Phase::PagedChunk => &self.paged_chunk,
            Phase::PagedSingle => &self.paged_single,
        };
        for s in steps {
            if let Resolved::Gemm(g) = s {
                self.tuner
                    .tune(gpu, &self.blas, &self.timer, g, (tokens, logit_rows))?;
            }
        }
        Ok(self.tuner.tuned - before)
    }

    /// GEMM classes tuned so far, and how many a cuBLASLt algorithm and the few-rows kernel
    /// won.
    pub(crate) fn tuned(&self) -> (usize, usize, usize) {
        (self.tuner.tuned, self.tuner.lt_wins, self.tuner.rows_wins)
    }

    /// Queues `phase`'s launch list for a step of `tokens` tokens on the GPU's stream, the logits
    /// GEMM computing `logit_rows` (see `logit_rows.rs`). With a
    /// profiler every launch is timed (and waited for); with an observer it is called before
    /// and after every step.
    pub(crate) fn run(
        &mut self,
        gpu: &Gpu,
        phase: Phase,
        tokens: u32,
        logit_rows: LogitRows<'_>,
        mut hook: StepHook<'_, '_>,
    ) -> Result<(), CudaError> {
        let steps = match phase {
            Phase::Decode => &mut self.decode,
            Phase::Prefill => &mut self.prefill,
            Phase::Paged => &mut self.paged,
            Phase::PagedChunk => &mut self.paged_chunk,
            Phase::PagedSingle => &mut self.paged_single,
        };
        let (blas, tuner, pdl) = (&self.blas, &mut self.tuner, self.pdl);
        let comm = self.comm.as_ref();
        for (index, s) in steps.iter_mut().enumerate() {
            let at = |after| StepAt {
                phase,
                index,
                after,
                tokens,
            };
            match &mut hook {
                StepHook::None => run_step(s, gpu, blas, tuner, pdl, comm, tokens, logit_rows)?,
                StepHook::Profile(p) => {
                    let label = s.label().to_string();
                    p.time(gpu, phase, &label, || {
                        run_step(s, gpu, blas, tuner, pdl, comm, tokens, logit_rows)
                    })?
                }
                StepHook::Observe { .. } => {
                    hook.notify(gpu, at(false))?;
                    run_step(s, gpu, blas, tuner, pdl, comm, tokens, logit_rows)?;
                    hook.notify(gpu, at(true))?;
                }
            }
        }
        Ok(())
    }
}

fn resolve_kernel(
    l: &Launch,
    funcs: &Functions,
    regions: &DeviceRegions,
    rank: Option<usize>,
) -> Result<KernelStep, CudaError> {
    let f = funcs.kernel(&l.kernel)?;
    let args: Vec<ArgValue> = l
        .args
        .iter()
        .map(|a| match *a {
            Arg::Ptr { region, offset } => Ok(ArgValue::Ptr(regions.addr(region, offset))),
            Arg::Tokens => Ok(ArgValue::Tokens),
            Arg::I32(v) => Ok(ArgValue::I32(v)),
            Arg::Rank => match rank {
                Some(r) => Ok(ArgValue::I32(r as i32)),
                None => Err(CudaError::Other(format!(
                    "launch of {} ({}): a tensor-parallel rank argument, and this model was \
                     loaded without a rank",
                    l.kernel, l.node
                ))),
            },
        })
        .collect::<Result<_, _>>()?;
    let pool_ptrs = l
        .args
        .iter()
        .filter(|a| matches!(a, Arg::Ptr { .. }))
        .enumerate()
        .filter_map(|(i, a)| match a {
            Arg::Ptr {
                region: pio_artifact::Region::Pool,
                offset,
            } => Some((i, *offset)),
            _ => None,
        })
        .collect();
    Ok(KernelStep {
        func: f.func,
        pool_ptrs,
        grid: l.grid,
        block: (l.block[0], l.block[1], l.block[2]),
        shared_bytes: l.shared_bytes,
        args: ArgPack::new(&args),
        kernel: l.kernel.clone(),
        node: l.node.clone(),
        label: label(f.family.name(), &l.node),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    s: &mut Resolved,
    gpu: &Gpu,
    blas: &Blas,
    tuner: &mut GemmTuner,
    pdl: bool,
    comm: Option<&RankComm>,
    tokens: u32,
    logit_rows: LogitRows<'_>,
) -> Result<(), CudaError> {
    match s {
        Resolved::Kernel(k) => {
            let grid = (
                k.grid[0].eval(tokens),
                k.grid[1].eval(tokens),
                k.grid[2].eval(tokens),
            );
            // A dimension of 0: nothing to do at this token count (Dim::SplitTokens).
            if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
                return Ok(());
            }
            let (func, block, shared) = (k.func, k.block, k.shared_bytes);
            let params = k.args.params(tokens);
            // SAFETY: the artifact's arguments match the kernel's parameters (pointers into our
            // regions, i32 counts); the pack outlives the call.
            unsafe { launch(func, grid, block, shared, gpu.stream, params, pdl) }.map_err(|e| {
                CudaError::Driver {
                    what: format!("launching {} ({})", k.kernel, k.node),
                    message: e.to_string(),
                }
            })
        }
        Resolved::Gemm(g) => {
            if let (true, LogitRows::Ends(ends)) = (g.gemm.logits, logit_rows) {
                let (lda, k) = (g.gemm.lda as u64, g.gemm.k as usize);
                let rows = g.gemm.m.eval(tokens);
                gather_rows(gpu, g.a_ptr(), lda * 2, k * 2, ends, rows)?;
            }
            gemm(gpu, tuner, blas, g, tokens, logit_rows)
        }
        Resolved::Collective(c) => match comm {
            Some(comm) => c.run(comm, gpu, tokens, logit_rows),
            None => Err(CudaError::Other(
                "a collective step without a communicator".into(),
            )),
        },
    }
}

/// Launches `f` on `stream`; with `pdl`, as a programmatic dependent launch (it may start while
/// the previous kernel on the stream finishes; the kernel waits with `griddepcontrol.wait`).
///
/// # Safety
/// `params` must match the kernel's parameters and outlive the call.
pub(crate) unsafe fn launch(
    f: sys::CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_bytes: u32,
    stream: sys::CUstream,
    params: &mut [*mut c_void],
    pdl: bool,
) -> Result<(), result::DriverError> {
    if !pdl {
        return result::launch_kernel(f, grid, block, shared_bytes, stream, params);
    }
    // SAFETY: a zeroed attribute is valid plain data; we set the id and the one field it uses.
    let mut attr: sys::CUlaunchAttribute = std::mem::zeroed();
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: grid.0,
        gridDimY: grid.1,
        gridDimZ: grid.2,
        blockDimX: block.0,
        blockDimY: block.1,
        blockDimZ: block.2,
        sharedMemBytes: shared_bytes,
        hStream: stream,
        attrs: &mut attr,
        numAttrs: 1,
    };
    sys::cuLaunchKernelEx(&config, f, params.as_mut_ptr(), std::ptr::null_mut()).result()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pack_keeps_the_kernels_order_and_takes_the_token_count() {
        let mut p = ArgPack::new(&[
            ArgValue::Ptr(0xdead_beef_0000),
            ArgValue::Tokens,
            ArgValue::I32(-7),
            ArgValue::Ptr(42),
            ArgValue::Tokens,
        ]);
        let read = |p: &mut ArgPack, tokens| {
            let params = p.params(tokens);
            assert_eq!(params.len(), 5);
            // SAFETY: the pointers point into the pack, at the types the order gives.
            unsafe {
                (
                    *(params[0] as *const u64),
                    *(params[1] as *const i32),
                    *(params[2] as *const i32),
                    *(params[3] as *const u64),
                    *(params[4] as *const i32),
                )
            }
        };
        assert_eq!(read(&mut p, 128), (0xdead_beef_0000, 128, -7, 42, 128));
        assert_eq!(read(&mut p, 1), (0xdead_beef_0000, 1, -7, 42, 1));
    }
}
