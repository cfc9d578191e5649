//! Compiling the artifact's kernels and the GPU sampler (NVRTC through the disk cache) and
//! loading their functions: a table from kernel name to function and kernel family, consulted
//! once at load when the launch lists are resolved.

use super::device::{CudaError, Gpu};
use super::nvrtc::{options_for, target_arch_from_env, KernelCache};
use cudarc::driver::sys;
use pio_artifact::Artifact;
use std::collections::HashMap;

/// The sampler's source name in the kernel cache, and its two functions.
const SAMPLER_SOURCE: &str = "pio_sampler";
const SAMPLER_PARTIAL: &str = "pio_topk_partial";
const SAMPLER_FINAL: &str = "pio_sample_final";

/// One loaded kernel.
#[derive(Clone, Copy)]
pub(crate) struct KernelFn<'a> {
    pub func: sys::CUfunction,
    /// The artifact's family of the kernel (e.g. "rmsnorm"), for profiles.
    pub family: &'a str,
}

/// Every function pio launches, by name. Module images stay loaded for the process, so the
/// functions stay valid after the table is dropped.
pub(crate) struct Functions<'a> {
    kernels: HashMap<&'a str, KernelFn<'a>>,
    pub sampler_partial: sys::CUfunction,
    pub sampler_final: sys::CUfunction,
    /// The architecture the kernels were compiled for (`sm_90`; `PIO_ARCH` may lower it).
    pub arch: String,
}

impl<'a> Functions<'a> {
    /// Checks the artifact's dtypes, compiles `kernel_sources` (name, source) with the sampler
    /// for `gpu` and loads every function. Each kernel's family comes from the artifact's
    /// `kernels` list.
    pub(crate) fn load(
        gpu: &Gpu,
        artifact: &'a Artifact,
        kernel_sources: &[(String, String)],
        cache: &KernelCache,
    ) -> Result<Functions<'a>, CudaError> {
        check_dtypes(artifact)?;
        let mut sources = kernel_sources.to_vec();
        sources.push((SAMPLER_SOURCE.into(), include_str!("sample.cu").to_string()));
        let arch = target_arch_from_env(&gpu.arch).map_err(CudaError::Other)?;
        let options = options_for(&arch, &artifact.nvrtc_options);
        let compiled = cache.compile_all(&sources, &options)?;
        let listed: HashMap<&str, &str> = artifact
            .kernels
            .iter()
            .map(|k| (k.name.as_str(), k.family.as_str()))
            .collect();
        let mut kernels = HashMap::new();
        let mut sampler = (None, None);
        for c in &compiled {
            if c.name == SAMPLER_SOURCE {
                sampler = (
                    Some(gpu.load_function(&c.image, SAMPLER_PARTIAL)?),
                    Some(gpu.load_function(&c.image, SAMPLER_FINAL)?),
                );
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
        let (Some(sampler_partial), Some(sampler_final)) = sampler else {
            return Err(CudaError::Other(
                "the GPU sampler was not compiled".to_string(),
            ));
        };
        Ok(Functions {
            kernels,
            sampler_partial,
            sampler_final,
            arch,
        })
    }

    /// The kernel a launch names; an error if it was not compiled.
    pub(crate) fn kernel(&self, name: &str) -> Result<KernelFn<'a>, CudaError> {
        self.kernels
            .get(name)
            .copied()
            .ok_or_else(|| CudaError::Other(format!("kernel {name} was not compiled")))
    }
}

/// The runtime has bf16 kernels only (and reads the logits as bf16): any other dtype in the
/// artifact is an error at load, not wrong numbers later.
fn check_dtypes(a: &Artifact) -> Result<(), CudaError> {
    for (field, value) in [("dtype", &a.dtype), ("io.logits_dtype", &a.io.logits_dtype)] {
        if value != "bf16" {
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
    fn dtypes_other_than_bf16_are_refused_by_name() {
        let text = r#"{"format_version":2,"model":"m","spec_file":"s","dtype":"bf16",
            "max_batch":1,"max_prefill":1,"max_context":1,"vocab_size":1,"eos_token_ids":[],
            "regions":{"weights":0,"kv":0,"io":0,"arena":0},"weights":[],"kv_caches":[],
            "io":{"tokens":0,"positions":0,"logits":0,"logits_dtype":"bf16","logits_rows":1},
            "kernels":[],"decode":[],"prefill":[],"nvrtc_options":[],
            "memory":{"decode_activation_bytes_unplanned":0,"decode_arena_bytes":0,
            "prefill_activation_bytes_unplanned":0,"prefill_arena_bytes":0,"alignment":256}}"#;
        let mut a: Artifact = serde_json::from_str(text).unwrap();
        assert!(check_dtypes(&a).is_ok());
        a.io.logits_dtype = "f32".into();
        let e = check_dtypes(&a).unwrap_err().to_string();
        assert_eq!(
            e,
            "artifact io.logits_dtype is \"f32\", but the CUDA runtime runs bf16 only"
        );
        a.dtype = "f16".into();
        let e = check_dtypes(&a).unwrap_err().to_string();
        assert!(e.starts_with("artifact dtype is \"f16\""), "{e}");
    }
}
