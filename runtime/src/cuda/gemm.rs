//! The launch lists' GEMMs: cuBLAS (`cublasGemmEx`) by default, or a cuBLASLt algorithm picked
//! by timing. For each GEMM shape and each class of row counts (the next power of two), the
//! tuner times cuBLAS's default against cuBLASLt's heuristic candidates (split-K among them,
//! which the default rarely picks for the few-row GEMMs of a decode batch) and keeps the
//! fastest; with `PIO_GEMM_ROWS=1`, for GEMMs of at most 128 rows pio's own few-rows kernel
//! (`gemm/rows.rs`) is timed too, with each of its k splits. Tuning runs between steps, never
//! inside a CUDA-graph capture, and writes only to GEMM outputs in the activation arena or the
//! io region (scratch until the step that follows rewrites them); GEMMs writing anywhere else
//! are never tuned.
//! `PIO_GEMM_TUNE=0` turns it off; `PIO_GEMM_ROWS` (see [`rows::RowsMode`]) makes the few-rows
//! kernel a candidate (`1`; off by default until it has run on a GPU) or runs it wherever it
//! applies (`only`).

use super::device::{CudaError, DeviceBuffer, Gpu, GpuTimer};
use super::logit_rows::LogitRows;
use super::profile::label;
use super::regions::DeviceRegions;
use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::cublaslt::sys as lt;
use pio_artifact::{Arg, Gemm, Region};
use std::collections::HashMap;

mod lt_problem;
pub(crate) mod rows;
use lt_problem::{LtProblem, Shape};
use rows::{RowsCall, RowsKernels, RowsMode};
use std::ffi::c_void;

/// cuBLASLt candidates timed per (shape, row class).
const CANDIDATES: usize = 16;
/// Timed runs per candidate (after two untimed ones).
const TIMED_RUNS: usize = 8;

/// The cuBLAS handle on the GPU's stream, with its workspace (shared with cuBLASLt: both run
/// on the one stream, one call at a time).
pub(crate) struct Blas {
    handle: blas_sys::cublasHandle_t,
    workspace: DeviceBuffer,
    /// The GPU's stream, which the handle was given (cuBLASLt takes it per call).
    stream: lt::cudaStream_t,
}

// SAFETY: the handle is a plain cuBLAS pointer bound to the GPU's context and stream, usable from
// any thread once that context is current; `Blas` is not `Sync`, so one thread at a time calls
// cuBLAS with it.
unsafe impl Send for Blas {}

fn blas_err(what: &str) -> impl Fn(blas::CublasError) -> CudaError + '_ {
    move |e| CudaError::Cublas {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn lt_err(what: &str, status: lt::cublasStatus_t) -> CudaError {
    CudaError::Cublas {
        what: format!("cuBLASLt {what}"),
        message: format!("{status:?}"),
    }
}

fn lt_ok(what: &str, status: lt::cublasStatus_t) -> Result<(), CudaError> {
    match status {
        lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS => Ok(()),
        s => Err(lt_err(what, s)),
    }
}

impl Blas {
    pub(crate) fn new(gpu: &Gpu) -> Result<Blas, CudaError> {
        let handle = blas::create_handle().map_err(blas_err("create"))?;
        // Owned at once, so that an error below still destroys the handle.
        let workspace = match gpu.alloc(32 << 20, "the cuBLAS workspace") {
            Ok(w) => w,
            Err(e) => {
                // SAFETY: created above, destroyed once.
                let _ = unsafe { blas::destroy_handle(handle) };
                return Err(e);
            }
        };
        let b = Blas {
            handle,
            workspace,
            stream: gpu.stream as lt::cudaStream_t,
        };
        // SAFETY: valid handle, stream and workspace allocation.
        unsafe {
            blas::set_stream(b.handle, gpu.stream as _).map_err(blas_err("set stream"))?;
            blas_sys::cublasSetWorkspace_v2(
                b.handle,
                b.workspace.ptr as *mut c_void,
                b.workspace.bytes as usize,
            )
            .result()
            .map_err(blas_err("workspace"))?;
        }
        Ok(b)
    }

    pub(crate) fn workspace_bytes(&self) -> u64 {
        self.workspace.bytes
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: created by us, destroyed once (before the workspace is freed).
        let _ = unsafe { blas::destroy_handle(self.handle) };
    }
}

/// A GEMM resolved at load: its operands are device addresses.
pub(crate) struct GemmStep {
    pub(crate) gemm: Gemm,
    a: u64,
    b: u64,
    c: u64,
    /// C lies in scratch memory (the arena or the io region), so tuning may write it.
    tunable: bool,
    pub(crate) label: String,
}

impl GemmStep {
    /// The device address of A (the GEMM's input rows).
    pub(crate) fn a_ptr(&self) -> u64 {
        self.a
    }
}

pub(crate) fn resolve_gemm(g: &Gemm, regions: &DeviceRegions) -> Result<GemmStep, CudaError> {
    let ptr = |a: &Arg| match *a {
        Arg::Ptr { region, offset } => Ok(regions.addr(region, offset)),
        _ => Err(CudaError::Other(format!(
            "gemm {}: operand is not a pointer",
            g.node
        ))),
    };
    Ok(GemmStep {
        a: ptr(&g.a)?,
        b: ptr(&g.b)?,
        c: ptr(&g.c)?,
        tunable: matches!(
            g.c,
            Arg::Ptr {
                region: Region::Arena | Region::Io,
                ..
            }
        ),
        label: label("cublas_gemm", &g.node),
        gemm: g.clone(),
    })
}

/// The row class a row count is tuned in: the next power of two.
pub(crate) fn row_class(m: u32) -> u32 {
    m.max(1).next_power_of_two()
}

/// Row counts and pointers of one GEMM call.
#[derive(Clone, Copy)]
struct Call {
    m: u32,
    a: u64,
    b: u64,
    c: u64,
    beta: f32,
}

/// What runs a GEMM of one (shape, row class).
#[derive(Clone, Copy)]
enum Choice {
    /// cuBLAS's default.
    Blas,
    /// A cuBLASLt algorithm.
    Lt(lt::cublasLtMatmulAlgo_t),
    /// pio's few-rows kernel with k split over this many blocks.
    Rows(u32),
}

/// The tuned choices and the problems set up from them.
pub(crate) struct GemmTuner {
    /// Whether GEMMs are tuned at all (`PIO_GEMM_TUNE` is not `0`).
    tuning: bool,
    handle: Option<lt::cublasLtHandle_t>,
    /// The few-rows kernel, where it was compiled.
    rows: Option<RowsKernels>,
    /// Per (shape, row class): what won.
    choices: HashMap<(Shape, u32), Choice>,
    /// Per (shape, exact rows): the problem with its class's algorithm, or `None` (cuBLAS).
    problems: HashMap<(Shape, u32), Option<LtProblem>>,
    /// Classes tuned so far, and how many of them a cuBLASLt candidate or the few-rows kernel
    /// won (for the log line).
    pub(crate) tuned: usize,
    pub(crate) lt_wins: usize,
    pub(crate) rows_wins: usize,
}

// SAFETY: the cuBLASLt handle and descriptors are plain pointers used from one thread at a time
// with the GPU's context current; the tuner is not `Sync`.
unsafe impl Send for GemmTuner {}

impl Drop for GemmTuner {
    fn drop(&mut self) {
        self.problems.clear();
        if let Some(h) = self.handle {
            // SAFETY: created in `new`, destroyed once, after every descriptor.
            let _ = unsafe { lt::cublasLtDestroy(h) };
        }
    }
}

impl GemmTuner {
    /// A tuner; with `PIO_GEMM_TUNE=0` one that never tunes (every GEMM runs cuBLAS's default,
    /// or the few-rows kernel with `PIO_GEMM_ROWS=only`); without cuBLASLt only the few-rows
    /// kernel (`rows`, where it was compiled) competes with cuBLAS.
    pub(crate) fn new(rows: Option<RowsKernels>) -> GemmTuner {
        let wanted = std::env::var("PIO_GEMM_TUNE").map_or(true, |v| v != "0");
        // SAFETY: only probes whether the library loads.
        let handle = (wanted && unsafe { lt::is_culib_present() })
            .then(|| {
                let mut h = std::ptr::null_mut();
                // SAFETY: out-pointer to a local.
                let ok = unsafe { lt::cublasLtCreate(&mut h) }
                    == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS;
                ok.then_some(h)
            })
            .flatten();
        GemmTuner {
            tuning: wanted,
            handle,
            rows: rows.filter(|r| r.mode != RowsMode::Off),
            choices: HashMap::new(),
            problems: HashMap::new(),
            tuned: 0,
            lt_wins: 0,
            rows_wins: 0,
        }
    }

    fn shape(g: &Gemm) -> Shape {
        Shape {
            n: g.n,
            k: g.k,
            lda: g.lda,
            ldc: g.ldc,
            beta_bits: g.beta.to_bits(),
        }
    }

    /// Tunes `step` for a step of `tokens` tokens unless its row class is tuned (or it may not
    /// be). Runs GEMMs and waits for them: never call it while a graph is being captured.
    pub(crate) fn tune(
        &mut self,
        gpu: &Gpu,
        blas: &Blas,
        timer: &GpuTimer,
        step: &GemmStep,
        (tokens, logit_rows): (u32, LogitRows<'_>),
    ) -> Result<(), CudaError> {
        let call = call_of(step, tokens, logit_rows);
        let shape = Self::shape(&step.gemm);
        let key = (shape, row_class(call.m));
        let rows_only = self.rows.is_some_and(|r| r.mode == RowsMode::Only);
        let nothing_to_time = self.handle.is_none() && self.rows.is_none();
        if !self.tuning || rows_only || nothing_to_time || !step.tunable {
            return Ok(());
        }
        if self.choices.contains_key(&key) {
            return Ok(());
        }
        let time = |run: &mut dyn FnMut() -> Result<(), CudaError>| -> Result<f64, CudaError> {
            run()?;
            run()?;
            timer.start(gpu)?;
            for _ in 0..TIMED_RUNS {
                run()?;
            }
            timer.stop(gpu)
        };
        let mut best = (time(&mut || gemm_ex(blas, &step.gemm, call))?, Choice::Blas);
        if let Some(handle) = self.handle {
            let mut problem = LtProblem::new(shape, call.m)?;
            for algo in problem.candidates(handle, blas.workspace.bytes)? {
                problem.algo = algo;
                // A candidate that fails to run is skipped, not an error.
                if let Ok(ms) = time(&mut || lt_matmul(handle, blas, &problem, call)) {
                    if ms < best.0 {
                        best = (ms, Choice::Lt(algo));
                    }
                }
            }
        }
        if let Some(kernels) = self.rows {
            let rc = rows_call(&step.gemm, call);
            if rows::takes(&rc) {
                for splits in rows::split_options(rc.k, kernels.clusters) {
                    // As with cuBLASLt's candidates, a launch the driver refuses is skipped.
                    if let Ok(ms) = time(&mut || rows::run(gpu, &kernels, &rc, splits, call.beta)) {
                        if ms < best.0 {
                            best = (ms, Choice::Rows(splits));
                        }
                    }
                }
            }
        }
        gpu.sync()?;
        self.lt_wins += usize::from(matches!(best.1, Choice::Lt(_)));
        self.rows_wins += usize::from(matches!(best.1, Choice::Rows(_)));
        self.choices.insert(key, best.1);
        self.tuned += 1;
        Ok(())
    }

    /// The problem to run `call` of `step` with: its class's cuBLASLt algorithm when one won
    /// and cuBLASLt accepts it at this row count; `None` means cuBLAS's default.
    fn problem(&mut self, step: &GemmStep, m: u32) -> Option<&LtProblem> {
        let handle = self.handle?;
        let shape = Self::shape(&step.gemm);
        let Choice::Lt(algo) = *self.choices.get(&(shape, row_class(m)))? else {
            return None;
        };
        self.problems
            .entry((shape, m))
            .or_insert_with(|| {
                let mut p = LtProblem::new(shape, m).ok()?;
                p.algo = algo;
                p.accepts(handle, &algo).then_some(p)
            })
            .as_ref()
    }
}

/// The rows and pointers of `step` for a step of `tokens` tokens: a logits GEMM computes A's last
/// `logit_rows.count` rows into C's first (every row when all are asked for; the rows of
/// [`LogitRows::Ends`] are moved there first, see `logit_rows.rs`).
fn call_of(step: &GemmStep, tokens: u32, logit_rows: LogitRows<'_>) -> Call {
    let g = &step.gemm;
    let mut call = Call {
        m: g.m.eval(tokens),
        a: step.a,
        b: step.b,
        c: step.c,
        beta: g.beta,
    };
    let rows = logit_rows.count(call.m);
    if g.logits && rows < call.m {
        call.a += (call.m - rows) as u64 * g.lda as u64 * 2;
        call.m = rows;
    }
    call
}

/// The few-rows kernel's view of `call` of `g`.
fn rows_call(g: &Gemm, call: Call) -> RowsCall {
    RowsCall {
        m: call.m,
        n: g.n,
        k: g.k,
        lda: g.lda,
        ldc: g.ldc,
        a: call.a,
        b: call.b,
        c: call.c,
    }
}

/// Queues `step` for a step of `tokens` tokens: what won its tuning (cuBLASLt's algorithm or the
/// few-rows kernel), else cuBLAS; with `PIO_GEMM_ROWS=only` the few-rows kernel wherever it
/// applies.
pub(crate) fn gemm(
    gpu: &Gpu,
    tuner: &mut GemmTuner,
    blas: &Blas,
    step: &GemmStep,
    tokens: u32,
    logit_rows: LogitRows<'_>,
) -> Result<(), CudaError> {
    let call = call_of(step, tokens, logit_rows);
    if let Some(kernels) = tuner.rows {
        let rc = rows_call(&step.gemm, call);
        let splits = match kernels.mode {
            RowsMode::Only => Some(rows::default_splits(&rc, kernels.clusters)),
            _ => match tuner
                .choices
                .get(&(GemmTuner::shape(&step.gemm), row_class(call.m)))
            {
                Some(&Choice::Rows(s)) => Some(s),
                _ => None,
            },
        };
        if let Some(s) = splits.filter(|_| rows::takes(&rc)) {
            return rows::run(gpu, &kernels, &rc, s, call.beta);
        }
    }
    if let Some(handle) = tuner.handle {
        if let Some(p) = tuner.problem(step, call.m) {
            if lt_matmul(handle, blas, p, call).is_ok() {
                return Ok(());
            }
        }
    }
    gemm_ex(blas, &step.gemm, call)
}

fn lt_matmul(
    handle: lt::cublasLtHandle_t,
    blas: &Blas,
    p: &LtProblem,
    call: Call,
) -> Result<(), CudaError> {
    let alpha = 1.0f32;
    let [a, b, c] = p.layouts;
    // SAFETY: pointers are inside our regions with the shapes the artifact gives; the
    // descriptors are live; the workspace is ours.
    lt_ok("matmul", unsafe {
        lt::cublasLtMatmul(
            handle,
            p.desc,
            &alpha as *const f32 as *const c_void,
            call.b as *const c_void,
            a,
            call.a as *const c_void,
            b,
            &call.beta as *const f32 as *const c_void,
            call.c as *const c_void,
            c,
            call.c as *mut c_void,
            c,
            &p.algo,
            blas.workspace.ptr as *mut c_void,
            blas.workspace.bytes as usize,
            blas.stream,
        )
    })
}

/// cuBLAS's `C[m, n] = A[m, k] · B[n, k]ᵀ + beta · C` on packed operands (no row padding), for
/// checks of the other GEMMs.
pub(crate) fn blas_gemm(
    blas: &Blas,
    (m, n, k): (u32, u32, u32),
    (a, b, c): (u64, u64, u64),
    beta: f32,
) -> Result<(), CudaError> {
    let g = Gemm {
        node: "check".into(),
        m: pio_artifact::Dim::Fixed(m),
        n,
        k,
        a: Arg::I32(0),
        lda: k,
        b: Arg::I32(0),
        c: Arg::I32(0),
        ldc: n,
        beta,
        logits: false,
    };
    gemm_ex(blas, &g, Call { m, a, b, c, beta })
}

fn gemm_ex(blas: &Blas, g: &Gemm, call: Call) -> Result<(), CudaError> {
    let alpha = 1.0f32;
    // Row-major C[m,n] = A[m,k] · B[n,k]ᵀ is column-major Cᵀ[n,m] = B · Aᵀ.
    // SAFETY: pointers are inside our regions with the shapes the artifact gives.
    unsafe {
        blas::gemm_ex(
            blas.handle,
            blas_sys::cublasOperation_t::CUBLAS_OP_T,
            blas_sys::cublasOperation_t::CUBLAS_OP_N,
            g.n as i32,
            call.m as i32,
            g.k as i32,
            &alpha as *const f32 as *const c_void,
            call.b as *const c_void,
            blas_sys::cudaDataType::CUDA_R_16BF,
            g.k as i32,
            call.a as *const c_void,
            blas_sys::cudaDataType::CUDA_R_16BF,
            g.lda as i32,
            &call.beta as *const f32 as *const c_void,
            call.c as *mut c_void,
            blas_sys::cudaDataType::CUDA_R_16BF,
            g.ldc as i32,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| CudaError::Cublas {
        what: format!("gemm {}", g.node),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_tuned_in_power_of_two_classes() {
        assert_eq!(row_class(0), 1);
        assert_eq!(row_class(1), 1);
        assert_eq!(row_class(3), 4);
        assert_eq!(row_class(128), 128);
        assert_eq!(row_class(129), 256);
        assert_eq!(row_class(2000), 2048);
    }
}
