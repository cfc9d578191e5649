//! cuBLASLt problems: the descriptors of one GEMM shape at an exact row count, the algorithms
//! cuBLASLt's heuristics offer for it, and whether an algorithm runs it.

use super::{lt_ok, CANDIDATES};
use crate::cuda::device::CudaError;
use cudarc::cublaslt::sys as lt;
use std::ffi::c_void;

/// What a GEMM of one shape is, apart from its row count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Shape {
    pub(super) n: u32,
    pub(super) k: u32,
    pub(super) lda: u32,
    pub(super) ldc: u32,
    pub(super) beta_bits: u32,
}

/// One problem (shape and exact row count) set up for cuBLASLt with the algorithm of its class.
pub(super) struct LtProblem {
    pub(super) desc: lt::cublasLtMatmulDesc_t,
    /// The weights [n, k] (column-major k x n, transposed), the activations (k x m), C and D.
    pub(super) layouts: [lt::cublasLtMatrixLayout_t; 3],
    pub(super) algo: lt::cublasLtMatmulAlgo_t,
}

impl Drop for LtProblem {
    fn drop(&mut self) {
        // SAFETY: created by `LtProblem::new`, destroyed once.
        unsafe {
            for l in self.layouts {
                let _ = lt::cublasLtMatrixLayoutDestroy(l);
            }
            let _ = lt::cublasLtMatmulDescDestroy(self.desc);
        }
    }
}

impl LtProblem {
    /// The descriptors of `shape` at `m` rows (the algorithm zeroed until one is set).
    pub(super) fn new(shape: Shape, m: u32) -> Result<LtProblem, CudaError> {
        let bf16 = lt::cudaDataType::CUDA_R_16BF;
        let mut desc = std::ptr::null_mut();
        // SAFETY: out-pointers to locals; the descriptors are destroyed by Drop (or below).
        unsafe {
            lt_ok(
                "matmul descriptor",
                lt::cublasLtMatmulDescCreate(
                    &mut desc,
                    lt::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    lt::cudaDataType::CUDA_R_32F,
                ),
            )?;
            let mut p = LtProblem {
                desc,
                layouts: [std::ptr::null_mut(); 3],
                algo: lt::cublasLtMatmulAlgo_t { data: [0; 8] },
            };
            // cublasOperation_t: 1 = transposed (the weights), 0 = as stored.
            let (t, n) = (1i32, 0i32);
            for (attr, v) in [
                (
                    lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                    &t,
                ),
                (
                    lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
                    &n,
                ),
            ] {
                lt_ok(
                    "matmul transpose",
                    lt::cublasLtMatmulDescSetAttribute(
                        p.desc,
                        attr,
                        v as *const i32 as *const c_void,
                        4,
                    ),
                )?;
            }
            let dims = [
                (shape.k, shape.n, shape.k),
                (shape.k, m, shape.lda),
                (shape.n, m, shape.ldc),
            ];
            for (slot, (rows, cols, ld)) in p.layouts.iter_mut().zip(dims) {
                lt_ok(
                    "matrix layout",
                    lt::cublasLtMatrixLayoutCreate(slot, bf16, rows as u64, cols as u64, ld as i64),
                )?;
            }
            Ok(p)
        }
    }

    /// Up to [`CANDIDATES`] algorithms cuBLASLt offers for this problem within `workspace`
    /// bytes.
    pub(super) fn candidates(
        &self,
        handle: lt::cublasLtHandle_t,
        workspace: u64,
    ) -> Result<Vec<lt::cublasLtMatmulAlgo_t>, CudaError> {
        let mut pref = std::ptr::null_mut();
        // SAFETY: out-pointers to locals; the preference is destroyed before returning.
        unsafe {
            lt_ok("preference", lt::cublasLtMatmulPreferenceCreate(&mut pref))?;
            let found = (|| {
                lt_ok(
                    "preference workspace",
                    lt::cublasLtMatmulPreferenceSetAttribute(
                        pref,
                        lt::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                        &workspace as *const u64 as *const c_void,
                        8,
                    ),
                )?;
                let mut results: Vec<lt::cublasLtMatmulHeuristicResult_t> =
                    vec![std::mem::zeroed(); CANDIDATES];
                let mut count = 0i32;
                let [a, b, c] = self.layouts;
                lt_ok(
                    "heuristics",
                    lt::cublasLtMatmulAlgoGetHeuristic(
                        handle,
                        self.desc,
                        a,
                        b,
                        c,
                        c,
                        pref,
                        CANDIDATES as i32,
                        results.as_mut_ptr(),
                        &mut count,
                    ),
                )?;
                Ok(results
                    .into_iter()
                    .take(count.max(0) as usize)
                    .filter(|r| r.state == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS)
                    .map(|r| r.algo)
                    .collect())
            })();
            let _ = lt::cublasLtMatmulPreferenceDestroy(pref);
            found
        }
    }

    /// Whether `algo` runs this problem (cuBLASLt's own check).
    pub(super) fn accepts(
        &self,
        handle: lt::cublasLtHandle_t,
        algo: &lt::cublasLtMatmulAlgo_t,
    ) -> bool {
        let [a, b, c] = self.layouts;
        // SAFETY: live descriptors; the result is written to a local.
        unsafe {
            let mut r: lt::cublasLtMatmulHeuristicResult_t = std::mem::zeroed();
            lt::cublasLtMatmulAlgoCheck(handle, self.desc, a, b, c, c, algo, &mut r)
                == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS
                && r.workspaceSize <= 32 << 20
        }
    }
}
