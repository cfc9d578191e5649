//! Compiling the artifact's kernels and the GPU sampler (NVRTC through the disk cache) and
//! loading their functions: a table from kernel name to function and kernel family, consulted
//! once at load when the launch lists are resolved.

use super::device::{CudaError, Gpu};
use super::gemm::rows::{self, RowsKernels, RowsMode};
use super::nvrtc::{arch_number, options_for, target_arch_from_env, KernelCache};
use cudarc::driver::sys;
use pio_artifact::{Artifact, DType, KernelFamily, Phase, Step};
use std::collections::HashMap;

/// The sampler's source name in the kernel cache, and its two functions.
const SAMPLER_SOURCE: &str = "pio_sampler";
const SAMPLER_PARTIAL: &str = "pio_topk_partial";
const SAMPLER_FINAL: &str = "pio_sample_final";
const ARGMAX_ROWS: &str = "pio_argmax_rows";

/// One loaded kernel.
#[derive(Clone, Copy)]
pub(crate) struct KernelFn {
    pub func: sys::CUfunction,
    /// The artifact's family of the kernel, for profiles.
    pub family: KernelFamily,
}

/// Every function pio launches, by name. Module images stay loaded for the process, so the
/// functions stay valid after the table is dropped.
pub(crate) struct Functions<'a> {
    kernels: HashMap<&'a str, KernelFn>,
    pub sampler_partial: sys::CUfunction,
    pub sampler_final: sys::CUfunction,
    /// Greedy picks of a batch of logits rows (the batching engine).
    pub argmax_rows: sys::CUfunction,
    /// The architecture the kernels were compiled for (`sm_90`; `PIO_ARCH` may lower it).
    pub arch: String,
    /// pio's few-rows GEMM (`gemm/rows.rs`): `None` before sm_80 (no bf16 mma).
    pub gemm_rows: Option<RowsKernels>,
}

impl<'a> Functions<'a> {
    /// Checks the artifact's dtypes, compiles its kernels with the sampler for `gpu` and loads
    /// every function. Each kernel's family comes from the artifact's `kernels` list.
    pub(crate) fn load(
        gpu: &Gpu,
        artifact: &'a Artifact,
        cache: &KernelCache,
    ) -> Result<Functions<'a>, CudaError> {
        check_dtypes(artifact)?;
        let mut sources: Vec<(String, String)> = artifact
            .kernels
            .iter()
            .map(|k| (k.name.clone(), k.source.clone()))
            .collect();
        sources.push((SAMPLER_SOURCE.into(), include_str!("sample.cu").to_string()));
        let arch = target_arch_from_env(&gpu.arch).map_err(CudaError::Other)?;
        let arch_n = arch_number(&arch).unwrap_or(0);
        let rows_mode = RowsMode::from_env()?;
        if arch_n >= 80 {
            sources.push((rows::SOURCE_NAME.into(), rows::SOURCE.to_string()));
        }
        let options = options_for(&arch, &artifact.nvrtc_options);
        let compiled = cache.compile_all(&sources, &options)?;
        let listed: HashMap<&str, KernelFamily> = artifact
            .kernels
            .iter()
            .map(|k| (k.name.as_str(), k.family))
            .collect();
        let mut kernels = HashMap::new();
        let mut sampler = (None, None);
        let mut argmax_rows = None;
        let mut gemm_rows = None;
        for c in &compiled {
            if c.name == rows::SOURCE_NAME {
                let mut funcs = [std::ptr::null_mut(); 3];
                for (f, (_, name)) in funcs.iter_mut().zip(rows::VARIANTS) {
                    *f = gpu.load_function(&c.image, name)?;
                }
                gemm_rows = Some(RowsKernels {
                    funcs,
                    // Clusters (and the kernel's cluster code) from sm_90; PTX for an older
                    // architecture compiles the kernel without them.
                    clusters: arch_n >= 90,
                    mode: rows_mode,
                });
                continue;
            }
            if c.name == SAMPLER_SOURCE {
                sampler = (
                    Some(gpu.load_function(&c.image, SAMPLER_PARTIAL)?),
                    Some(gpu.load_function(&c.image, SAMPLER_FINAL)?),
                );
                argmax_rows = Some(gpu.load_function(&c.image, ARGMAX_ROWS)?);
                continue;
            }
            let Some((&name, &family)) = listed.get_key_value(c.name.as_str()) else {
                return Err(CudaError::Other(format!(
                    "kernel {} is not in the artifact's kernels list",
                    c.name
                )));
            };
            let func = gpu.load_function(&c.image, name)?;
            kernels.insert(name, KernelFn { func, family });
        }
        for (name, bytes) in dynamic_shared(artifact) {
            if let Some(k) = kernels.get(name) {
                gpu.allow_dynamic_shared(k.func, name, bytes)?;
            }
        }
        let (Some(sampler_partial), Some(sampler_final), Some(argmax_rows)) =
            (sampler.0, sampler.1, argmax_rows)
        else {
            return Err(CudaError::Other(
                "the GPU sampler was not compiled".to_string(),
            ));
        };
        Ok(Functions {
            kernels,
            sampler_partial,
            sampler_final,
            argmax_rows,
            arch,
            gemm_rows,
        })
    }

    /// The kernel a launch names; an error if it was not compiled.
    pub(crate) fn kernel(&self, name: &str) -> Result<KernelFn, CudaError> {
        self.kernels
            .get(name)
            .copied()
            .ok_or_else(|| CudaError::Other(format!("kernel {name} was not compiled")))
    }
}

/// The kernels whose launches ask for dynamic shared memory, with the most any of their
/// launches asks for (each is allowed that much: past 48 KB, static and dynamic together, a
/// function must opt in).
fn dynamic_shared(a: &Artifact) -> HashMap<&str, u32> {
    let phases = [
        Phase::Decode,
        Phase::Prefill,
        Phase::Paged,
        Phase::PagedChunk,
        Phase::PagedSingle,
    ];
    most_shared(phases.into_iter().flat_map(|p| a.steps(p)))
}

fn most_shared<'a>(steps: impl Iterator<Item = &'a Step>) -> HashMap<&'a str, u32> {
    let mut most: HashMap<&str, u32> = HashMap::new();
    for step in steps {
        if let Step::Kernel(l) = step {
            if l.shared_bytes > 0 {
                let e = most.entry(l.kernel.as_str()).or_default();
                *e = (*e).max(l.shared_bytes);
            }
        }
    }
    most
}

/// The runtime has bf16 kernels only (and reads the logits as bf16): any other dtype in the
/// artifact is an error at load, not wrong numbers later.
/// Likewise one sequence per step: the executor's inputs and sampler are sized for one.
fn check_dtypes(a: &Artifact) -> Result<(), CudaError> {
    if a.max_batch != 1 {
        return Err(CudaError::Other(format!(
            "artifact max_batch is {}, but the CUDA runtime runs one sequence per step",
            a.max_batch
        )));
    }
    check_dtype_fields(a.dtype, a.io.logits_dtype)
}

fn check_dtype_fields(dtype: DType, logits: DType) -> Result<(), CudaError> {
    for (field, value) in [("dtype", dtype), ("io.logits_dtype", logits)] {
        if value != DType::BF16 {
            return Err(CudaError::Other(format!(
                "artifact {field} is \"{value}\", but the CUDA runtime runs bf16 only"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kernel_is_allowed_the_most_shared_memory_its_launches_ask_for() {
        let launch = |kernel: &str, shared_bytes| {
            Step::Kernel(pio_artifact::Launch {
                kernel: kernel.into(),
                node: "n".into(),
                grid: [pio_artifact::Dim::Fixed(1); 3],
                block: [32, 1, 1],
                shared_bytes,
                args: vec![],
            })
        };
        let steps = [
            launch("attn", 69_632),
            launch("norm", 0),
            launch("attn", 1_024),
            launch("small", 512),
            launch("small", 4_096),
        ];
        let most = most_shared(steps.iter());
        assert_eq!(most.len(), 2, "{most:?}");
        assert_eq!(most["attn"], 69_632);
        assert_eq!(most["small"], 4_096);
    }

    #[test]
    fn dtypes_other_than_bf16_are_refused_by_name() {
        assert!(check_dtype_fields(DType::BF16, DType::BF16).is_ok());
        let e = check_dtype_fields(DType::BF16, DType::F32)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "artifact io.logits_dtype is \"f32\", but the CUDA runtime runs bf16 only"
        );
        let e = check_dtype_fields(DType::F16, DType::BF16)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("artifact dtype is \"f16\""), "{e}");
    }
}
