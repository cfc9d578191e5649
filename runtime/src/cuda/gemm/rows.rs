//! pio's GEMM kernel for few rows (`gemm_rows.cu`): one more candidate of the GEMM tuner, for
//! the GEMMs of decode batches (at most [`MAX_ROWS`] rows), where cuBLAS's kernels leave most of
//! the card's bandwidth unused. Which GEMMs it takes, the launches worth timing (its k range
//! split over a cluster of 1 to 8 blocks), and the launch itself.

use crate::cuda::device::{drv, CudaError, Gpu};
use cudarc::driver::sys;
use std::ffi::c_void;

/// The kernels' source name in the kernel cache, and the source: pio's device helpers and the
/// tensor-core core it shares with the generated fused row GEMMs (`templates/common/`), then
/// the kernels.
pub(crate) const SOURCE_NAME: &str = "pio_gemm_rows";
pub(crate) const SOURCE: &str = concat!(
    include_str!("../../../../templates/common/pio.cuh"),
    include_str!("../../../../templates/common/row_mma.cuh"),
    include_str!("../gemm_rows.cu")
);

/// The kernels, by the most rows each takes (smallest first).
pub(crate) const VARIANTS: [(u32, &str); 3] = [
    (32, "pio_gemm_rows_32"),
    (64, "pio_gemm_rows_64"),
    (128, "pio_gemm_rows_128"),
];

/// The most rows the kernels take.
pub(crate) const MAX_ROWS: u32 = 128;
/// Output columns per block, threads per block, k per fragment load, shared bytes per
/// (8-aligned) row: the kernel's `COLS`, `WARPS * 32`, `CHUNK` and `ROW_BYTES`.
const COLS: u32 = 64;
const THREADS: u32 = 128;
const CHUNK: u32 = 32;
const ROW_BYTES: u32 = 256;
/// The largest cluster the k range is split over (the portable cluster size).
const MAX_SPLITS: u32 = 8;

/// `PIO_GEMM_ROWS`: unset or `0` keeps the kernel out (cuBLAS and cuBLASLt only: the default
/// until the kernel has passed its GPU tests, `benches/reference/decode_gemm_ab.sh`), `1` makes
/// it a tuning candidate, `only` runs it for every GEMM it takes without timing (a test and
/// A/B switch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowsMode {
    Off,
    Candidate,
    Only,
}

impl RowsMode {
    pub(crate) fn from_env() -> Result<RowsMode, CudaError> {
        RowsMode::parse(std::env::var("PIO_GEMM_ROWS").ok().as_deref())
    }

    /// The mode a value of `PIO_GEMM_ROWS` (`None`: unset) asks for.
    fn parse(value: Option<&str>) -> Result<RowsMode, CudaError> {
        match value {
            None | Some("0") | Some("") => Ok(RowsMode::Off),
            Some("1") => Ok(RowsMode::Candidate),
            Some("only") => Ok(RowsMode::Only),
            Some(other) => Err(CudaError::Other(format!(
                "PIO_GEMM_ROWS={other:?}: expected 0, 1 or only"
            ))),
        }
    }
}

/// The loaded kernels and whether clusters may split k (sm_90 code).
#[derive(Clone, Copy)]
pub(crate) struct RowsKernels {
    pub(crate) funcs: [sys::CUfunction; 3],
    pub(crate) clusters: bool,
    pub(crate) mode: RowsMode,
}

/// The operands of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowsCall {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k: u32,
    pub(crate) lda: u32,
    pub(crate) ldc: u32,
    pub(crate) a: u64,
    pub(crate) b: u64,
    pub(crate) c: u64,
}

/// Whether the kernel computes `call` (its requirements, `gemm_rows.cu`'s head).
pub(crate) fn takes(call: &RowsCall) -> bool {
    (1..=MAX_ROWS).contains(&call.m)
        && call.k > 0
        && call.k % CHUNK == 0
        && call.n > 0
        && call.n % 8 == 0
        && call.lda % 8 == 0
        && call.lda >= call.k
        && call.ldc % 8 == 0
        && call.ldc >= call.n
        && [call.a, call.b, call.c].iter().all(|p| p % 16 == 0)
}

/// The cluster sizes worth timing for a GEMM of `k` columns: 1, 2, 4 and 8 where each block
/// keeps at least two chunks of k, 1 alone without clusters.
pub(crate) fn split_options(k: u32, clusters: bool) -> Vec<u32> {
    let chunks = k / CHUNK;
    [1, 2, 4, MAX_SPLITS]
        .into_iter()
        .filter(|&s| s == 1 || (clusters && chunks >= 2 * s))
        .collect()
}

/// Blocks a launch of [`RowsMode::Only`] aims for: about two per SM of an H100 or H200.
const TARGET_BLOCKS: u32 = 256;

/// The split [`RowsMode::Only`] runs `call` with, untimed: the fewest blocks per column tile
/// that give the grid [`TARGET_BLOCKS`] blocks, else the most splits `call` allows.
pub(crate) fn default_splits(call: &RowsCall, clusters: bool) -> u32 {
    let tiles = call.n.div_ceil(COLS);
    let options = split_options(call.k, clusters);
    options
        .iter()
        .copied()
        .find(|&s| tiles * s >= TARGET_BLOCKS)
        .unwrap_or_else(|| options.last().copied().unwrap_or(1))
}

/// A launch: the kernel (index into [`VARIANTS`]), the grid and the dynamic shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowsLaunch {
    pub(crate) variant: usize,
    pub(crate) grid: (u32, u32, u32),
    pub(crate) shared: u32,
}

/// The launch of `call` with k split over `splits` blocks (`None` where the kernel does not
/// take it).
pub(crate) fn launch_of(call: &RowsCall, splits: u32) -> Option<RowsLaunch> {
    if !takes(call) || !(1..=MAX_SPLITS).contains(&splits) {
        return None;
    }
    let variant = VARIANTS.iter().position(|&(rows, _)| call.m <= rows)?;
    Some(RowsLaunch {
        variant,
        grid: (call.n.div_ceil(COLS), splits, 1),
        shared: call.m.div_ceil(8) * 8 * ROW_BYTES,
    })
}

/// Queues `call` on the GPU's stream with k split over `splits` blocks (a cluster of them).
pub(crate) fn run(
    gpu: &Gpu,
    kernels: &RowsKernels,
    call: &RowsCall,
    splits: u32,
    beta: f32,
) -> Result<(), CudaError> {
    let Some(l) = launch_of(call, splits) else {
        return Err(CudaError::Other(format!(
            "the few-rows GEMM does not take {call:?} split {splits} ways"
        )));
    };
    if splits > 1 && !kernels.clusters {
        return Err(CudaError::Other(
            "the few-rows GEMM splits k over clusters, which need sm_90 code".into(),
        ));
    }
    let (mut a, mut b, mut c) = (call.a, call.b, call.c);
    let (mut lda, mut ldc, mut m, mut n, mut k, mut beta) = (
        call.lda as i32,
        call.ldc as i32,
        call.m as i32,
        call.n as i32,
        call.k as i32,
        beta,
    );
    let mut params: [*mut c_void; 9] = [
        &mut a as *mut u64 as *mut c_void,
        &mut lda as *mut i32 as *mut c_void,
        &mut b as *mut u64 as *mut c_void,
        &mut c as *mut u64 as *mut c_void,
        &mut ldc as *mut i32 as *mut c_void,
        &mut m as *mut i32 as *mut c_void,
        &mut n as *mut i32 as *mut c_void,
        &mut k as *mut i32 as *mut c_void,
        &mut beta as *mut f32 as *mut c_void,
    ];
    // SAFETY: a zeroed attribute is valid plain data; the cluster dimension is the one field
    // used. The parameters match the kernel's (pointers as u64, then i32s and an f32) and
    // outlive the call; the operands lie in our regions with the shapes of `call`.
    let r = unsafe {
        let mut attr: sys::CUlaunchAttribute = std::mem::zeroed();
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
        attr.value.clusterDim.x = 1;
        attr.value.clusterDim.y = splits;
        attr.value.clusterDim.z = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: l.grid.0,
            gridDimY: l.grid.1,
            gridDimZ: l.grid.2,
            blockDimX: THREADS,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: l.shared,
            hStream: gpu.stream,
            attrs: &mut attr,
            numAttrs: u32::from(splits > 1),
        };
        sys::cuLaunchKernelEx(
            &config,
            kernels.funcs[l.variant],
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
        .result()
    };
    drv("launching the few-rows GEMM", r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(m: u32, n: u32, k: u32) -> RowsCall {
        RowsCall {
            m,
            n,
            k,
            lda: k,
            ldc: n,
            a: 0x1000,
            b: 0x2000,
            c: 0x3000,
        }
    }

    #[test]
    fn the_switch_is_off_unless_asked_and_a_bad_value_is_named() {
        assert_eq!(RowsMode::parse(None).unwrap(), RowsMode::Off);
        assert_eq!(RowsMode::parse(Some("0")).unwrap(), RowsMode::Off);
        assert_eq!(RowsMode::parse(Some("1")).unwrap(), RowsMode::Candidate);
        assert_eq!(RowsMode::parse(Some("only")).unwrap(), RowsMode::Only);
        let e = RowsMode::parse(Some("yes")).unwrap_err().to_string();
        assert!(
            e.contains("PIO_GEMM_ROWS=\"yes\"") && e.contains("0, 1 or only"),
            "{e}"
        );
    }

    #[test]
    fn it_takes_the_shapes_of_decode_batches_only() {
        assert!(takes(&call(1, 4096, 1024)));
        assert!(takes(&call(128, 151_936, 1024)));
        assert!(
            !takes(&call(129, 4096, 1024)),
            "more rows than the kernels hold"
        );
        assert!(!takes(&call(0, 4096, 1024)));
        assert!(!takes(&call(8, 4096, 1000)), "k not a multiple of 32");
        assert!(!takes(&call(8, 4092, 1024)), "n not a multiple of 8");
        assert!(!takes(&RowsCall {
            lda: 1028,
            ..call(8, 4096, 1024)
        }));
        assert!(
            !takes(&RowsCall {
                a: 0x1008,
                ..call(8, 4096, 1024)
            }),
            "A not 16-byte aligned"
        );
        assert!(
            !takes(&RowsCall {
                ldc: 4088,
                ..call(8, 4096, 1024)
            }),
            "rows overlap"
        );
    }

    #[test]
    fn the_smallest_kernel_that_holds_the_rows_runs() {
        let v = |m| launch_of(&call(m, 1024, 2048), 1).unwrap().variant;
        assert_eq!(
            [v(1), v(32), v(33), v(64), v(65), v(128)],
            [0, 0, 1, 1, 2, 2]
        );
        let l = launch_of(&call(75, 1000, 2048), 4).unwrap();
        assert_eq!(
            l.grid,
            (16, 4, 1),
            "64 columns per block, a block per split"
        );
        assert_eq!(l.shared, 80 * 256, "rows rounded up to 8, 256 bytes each");
        assert_eq!(
            launch_of(&call(8, 1024, 2048), 16),
            None,
            "clusters of at most 8"
        );
    }

    #[test]
    fn splits_leave_each_block_two_chunks_and_need_clusters() {
        assert_eq!(split_options(1024, true), vec![1, 2, 4, 8]);
        assert_eq!(split_options(256, true), vec![1, 2, 4]);
        assert_eq!(split_options(64, true), vec![1]);
        assert_eq!(split_options(3072, false), vec![1]);
    }

    #[test]
    fn the_untimed_split_fills_the_card_with_the_fewest_blocks_per_tile() {
        // Qwen3-0.6B's decode GEMMs: q/k/v (4096 x 1024), o (1024 x 2048), gate/up (6144 x
        // 1024), down (1024 x 3072), the LM head (151,936 x 1024).
        let s = |n, k| default_splits(&call(64, n, k), true);
        assert_eq!(
            [s(4096, 1024), s(1024, 2048), s(6144, 1024), s(1024, 3072)],
            [4, 8, 4, 8]
        );
        assert_eq!(s(151_936, 1024), 1);
        assert_eq!(
            default_splits(&call(64, 1024, 2048), false),
            1,
            "no clusters: no split"
        );
        assert_eq!(s(1024, 64), 1, "too short a k to split");
    }
}
