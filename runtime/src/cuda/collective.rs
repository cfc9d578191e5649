//! Tensor parallel on GPUs: a rank's NCCL communicator ([`RankComm`]) and the launch lists'
//! `Step::Collective`s resolved against it ([`CollectiveStep`]). NCCL is loaded dynamically
//! (cudarc's `nccl` bindings), so builds without it still run every single-GPU path; a missing
//! library is an error at the first tensor-parallel load, never a panic.
//!
//! An all-reduce sums the ranks' bf16 buffers in place or into the output; an all-gather lays
//! the ranks' parts one after another (NCCL's layout), which for a step of several rows lands
//! in scratch and is then interleaved into rows by one 2-D copy per rank
//! ([`gather_copies`]). Both are queued on the model's stream, so a decode step's collectives
//! are captured into its CUDA graph with its kernels.

use super::device::{CudaError, Gpu};
use super::logit_rows::LogitRows;
use super::regions::DeviceRegions;
use cudarc::driver::sys as drv;
use cudarc::nccl::{result as nccl, sys};
use pio_artifact::{Arg, Collective, CollectiveOp, Dim};
use std::ffi::{c_void, CStr};

/// Whether the NCCL library (libnccl.so.2) can be loaded (never panics).
pub fn nccl_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { sys::is_culib_present() }
}

/// NCCL's text for a failed call.
fn nccl_error(what: &str, e: nccl::NcclError) -> CudaError {
    // SAFETY: NCCL returns a static NUL-terminated string for every result code.
    let text = unsafe {
        let p = sys::ncclGetErrorString(e.0);
        if p.is_null() {
            format!("{:?}", e.0)
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    CudaError::Other(format!("NCCL {what}: {text} ({:?})", e.0))
}

/// One rank's communicator: rank `rank` of `ranks`, on one GPU.
pub struct RankComm {
    comm: sys::ncclComm_t,
    pub rank: usize,
    pub ranks: usize,
}

// SAFETY: a communicator is used by one thread at a time (the rank's), which is all NCCL asks;
// `RankComm` is not `Sync`.
unsafe impl Send for RankComm {}

impl RankComm {
    /// Communicators for `gpus`, rank i on `gpus[i]` (one call for all, as NCCL's
    /// `ncclCommInitAll` makes them in one process). NVLink multicast stays off
    /// (`NCCL_NVLS_ENABLE=0`): on shared machines it can take GPUs out of service.
    pub fn init_all(gpus: &[&Gpu]) -> Result<Vec<RankComm>, CudaError> {
        if !nccl_present() {
            return Err(CudaError::Other(
                "tensor parallel needs NCCL, and libnccl.so.2 was not found: install NCCL (e.g. \
                 the nvidia-nccl-cu13 wheel, or the libnccl2 package) and add its lib folder to \
                 LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let mut ordinals: Vec<i32> = gpus.iter().map(|g| g.ordinal as i32).collect();
        ordinals.sort_unstable();
        ordinals.dedup();
        if ordinals.len() != gpus.len() {
            return Err(CudaError::Other(format!(
                "tensor parallel needs one GPU per rank; the ranks were given GPUs {:?}",
                gpus.iter().map(|g| g.ordinal).collect::<Vec<_>>()
            )));
        }
        // Read by NCCL when a communicator is made; set before any is. Multicast off, always;
        // peers connected at init (unless the user says otherwise), so that no collective
        // sets up connections (allocations) while a decode step is being captured as a graph.
        std::env::set_var("NCCL_NVLS_ENABLE", "0");
        if std::env::var_os("NCCL_RUNTIME_CONNECT").is_none() {
            std::env::set_var("NCCL_RUNTIME_CONNECT", "0");
        }
        let devices: Vec<i32> = gpus.iter().map(|g| g.ordinal as i32).collect();
        let mut comms = vec![std::ptr::null_mut(); gpus.len()];
        // SAFETY: `comms` has room for one communicator per listed device.
        unsafe { nccl::comm_init_all(comms.as_mut_ptr(), devices.len() as i32, devices.as_ptr()) }
            .map_err(|e| nccl_error(&format!("making communicators for GPUs {devices:?}"), e))?;
        // ncclCommInitAll switches this thread's current device; give the first rank's back.
        if let Some(g) = gpus.first() {
            g.bind_to_thread()?;
        }
        let ranks = gpus.len();
        Ok(comms
            .into_iter()
            .enumerate()
            .map(|(rank, comm)| RankComm { comm, rank, ranks })
            .collect())
    }
}

impl Drop for RankComm {
    fn drop(&mut self) {
        // SAFETY: the communicator was made by init_all and is destroyed once.
        let _ = unsafe { nccl::comm_destroy(self.comm) };
    }
}

/// A 2-D device copy: `height` rows of `width` bytes, `src_pitch` / `dst_pitch` bytes apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copy2d {
    pub src: u64,
    pub src_pitch: usize,
    pub dst: u64,
    pub dst_pitch: usize,
    pub width: usize,
    pub height: usize,
}

/// The copies that turn an all-gather's `ranks` blocks of `[rows, row_bytes]` at `scratch`
/// (rank r's block at `r * rows * row_bytes`) into `rows` rows of `ranks * row_bytes` at
/// `output` (rank r's part of each row at `r * row_bytes`).
pub fn gather_copies(
    ranks: usize,
    rows: usize,
    row_bytes: usize,
    scratch: u64,
    output: u64,
) -> Vec<Copy2d> {
    (0..ranks)
        .map(|r| Copy2d {
            src: scratch + (r * rows * row_bytes) as u64,
            src_pitch: row_bytes,
            dst: output + (r * row_bytes) as u64,
            dst_pitch: ranks * row_bytes,
            width: row_bytes,
            height: rows,
        })
        .collect()
}

/// A collective of a launch list, resolved at load.
pub(crate) struct CollectiveStep {
    op: CollectiveOp,
    input: u64,
    output: u64,
    scratch: Option<u64>,
    /// Elements (bf16) per row of the rank's part.
    row: usize,
    rows: Dim,
    /// Gathers a marked logits GEMM's rows: the last row only, unless every row is asked for.
    logits: bool,
    /// The profile's row ("nccl_all_reduce layers.*.o_proj_sum").
    pub(crate) label: String,
    node: String,
}

impl CollectiveStep {
    pub(crate) fn resolve(
        c: &Collective,
        regions: &DeviceRegions,
    ) -> Result<CollectiveStep, CudaError> {
        let addr = |a: &Arg, what: &str| match *a {
            Arg::Ptr { region, offset } => Ok(regions.addr(region, offset)),
            _ => Err(CudaError::Other(format!(
                "collective {}: its {what} is {a:?}, not a buffer",
                c.node
            ))),
        };
        let family = match c.op {
            CollectiveOp::AllReduce => "nccl_all_reduce",
            CollectiveOp::AllGather => "nccl_all_gather",
        };
        Ok(CollectiveStep {
            op: c.op,
            input: addr(&c.input, "input")?,
            output: addr(&c.output, "output")?,
            scratch: c.scratch.as_ref().map(|s| addr(s, "scratch")).transpose()?,
            row: c.row as usize,
            rows: c.rows,
            logits: c.logits,
            label: super::profile::label(family, &c.node),
            node: c.node.clone(),
        })
    }

    /// Queues the collective for a step of `tokens` tokens on `gpu`'s stream (`logit_rows`: the
    /// rows the step's logits GEMM computes, as the GEMM is told).
    pub(crate) fn run(
        &self,
        comm: &RankComm,
        gpu: &Gpu,
        tokens: u32,
        logit_rows: LogitRows<'_>,
    ) -> Result<(), CudaError> {
        let rows = self.rows.eval(tokens);
        let rows = match self.logits {
            true => logit_rows.count(rows) as usize,
            false => rows as usize,
        };
        let count = rows * self.row;
        let stream = gpu.stream as sys::cudaStream_t;
        let bf16 = sys::ncclDataType_t::ncclBfloat16;
        let what = |op: &str| format!("{op} of {} ({rows} rows of {})", self.node, self.row);
        match self.op {
            // SAFETY: input and output are device buffers of at least `count` bf16 values (the
            // artifact's check), on this rank's GPU; the stream is the GPU's.
            CollectiveOp::AllReduce => unsafe {
                nccl::all_reduce(
                    self.input as *const c_void,
                    self.output as *mut c_void,
                    count,
                    bf16,
                    sys::ncclRedOp_t::ncclSum,
                    comm.comm,
                    stream,
                )
            }
            .map(|_| ())
            .map_err(|e| nccl_error(&what("all_reduce"), e)),
            CollectiveOp::AllGather => {
                let direct = rows <= 1 || self.scratch.is_none();
                let target = match self.scratch {
                    Some(s) if !direct => s,
                    _ => self.output,
                };
                // SAFETY: the target holds `ranks * count` bf16 values (output or scratch,
                // sized by the compiler for the most rows a step has).
                unsafe {
                    nccl::all_gather(
                        self.input as *const c_void,
                        target as *mut c_void,
                        count,
                        bf16,
                        comm.comm,
                        stream,
                    )
                }
                .map_err(|e| nccl_error(&what("all_gather"), e))?;
                if direct {
                    return Ok(());
                }
                for c in gather_copies(comm.ranks, rows, self.row * 2, target, self.output) {
                    copy_2d(gpu, &c)
                        .map_err(|e| CudaError::Other(format!("{}: {e}", what("all_gather"))))?;
                }
                Ok(())
            }
        }
    }
}

/// Queues a device-to-device 2-D copy on `gpu`'s stream.
fn copy_2d(gpu: &Gpu, c: &Copy2d) -> Result<(), CudaError> {
    // SAFETY: an all-zero CUDA_MEMCPY2D is a valid start (null host pointers and arrays).
    let mut p: drv::CUDA_MEMCPY2D = unsafe { std::mem::zeroed() };
    p.srcMemoryType = drv::CUmemorytype::CU_MEMORYTYPE_DEVICE;
    p.srcDevice = c.src;
    p.srcPitch = c.src_pitch;
    p.dstMemoryType = drv::CUmemorytype::CU_MEMORYTYPE_DEVICE;
    p.dstDevice = c.dst;
    p.dstPitch = c.dst_pitch;
    p.WidthInBytes = c.width;
    p.Height = c.height;
    // SAFETY: both ranges lie in this GPU's regions (gather_copies stays inside scratch and
    // output); the stream is the GPU's.
    unsafe { drv::cuMemcpy2DAsync_v2(&p, gpu.stream) }
        .result()
        .map_err(|e| CudaError::Driver {
            what: "2-D copy".into(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copies, run on host memory, turn NCCL's layout into rows.
    #[test]
    fn gather_copies_interleave_the_ranks_parts_into_rows() {
        let (ranks, rows, row) = (3usize, 4usize, 5usize);
        // Rank r's part of row t, value v, as NCCL lays the gather out: [r][t][v].
        let scratch: Vec<u8> = (0..ranks * rows * row)
            .map(|i| {
                let (r, t, v) = (i / (rows * row), i / row % rows, i % row);
                (r * 100 + t * 10 + v) as u8
            })
            .collect();
        let mut out = vec![0u8; ranks * rows * row];
        for c in gather_copies(ranks, rows, row, 0, 0) {
            for h in 0..c.height {
                let s = c.src as usize + h * c.src_pitch;
                let d = c.dst as usize + h * c.dst_pitch;
                out[d..d + c.width].copy_from_slice(&scratch[s..s + c.width]);
            }
        }
        for t in 0..rows {
            for r in 0..ranks {
                for v in 0..row {
                    assert_eq!(
                        out[t * ranks * row + r * row + v],
                        (r * 100 + t * 10 + v) as u8
                    );
                }
            }
        }
    }

    #[test]
    fn one_row_needs_no_copy_past_its_row() {
        let c = gather_copies(2, 1, 8, 1000, 5000);
        assert_eq!(c[1].src, 1008);
        assert_eq!(c[1].dst, 5008);
        assert_eq!((c[1].height, c[1].dst_pitch), (1, 16));
    }
}
