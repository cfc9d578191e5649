//! Every generated kernel (and the runtime's sampler and few-rows GEMM) compiles with NVRTC for sm_90 (CUBIN), and
//! for compute_80 (PTX, what `PIO_NVRTC_ARCH=compute_80` loads). Needs only
//! CUDA's NVRTC library, no GPU: .ci/run installs it from PyPI (nvidia-cuda-nvrtc) so CI checks
//! the kernels on every change and sets `PIO_REQUIRE_NVRTC=1`, so that a broken install fails
//! the test instead of skipping it. Without the library (and without the switch) the test is
//! reported as ignored (build.rs sets cfg `pio_nvrtc` where it finds libnvrtc).

mod common;

use pio_compiler::pass::PassOptions;
use pio_runtime::cuda::nvrtc;
use std::path::Path;

#[test]
#[cfg_attr(not(pio_nvrtc), ignore = "libnvrtc not found (.ci/run installs it)")]
fn every_kernel_compiles_for_sm_90_and_as_ptx_for_compute_80() {
    if !nvrtc::available() {
        assert!(
            !common::required("PIO_REQUIRE_NVRTC"),
            "PIO_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
        );
        eprintln!("skipped: libnvrtc not found (.ci/run installs it)");
        return;
    }
    let mut sources = vec![
        (
            "pio_sampler".to_string(),
            include_str!("../runtime/src/cuda/sample.cu").to_string(),
        ),
        (
            "pio_gemm_rows".to_string(),
            pio_runtime::cuda::gemm_check::FEW_ROWS_GEMM_SOURCE.to_string(),
        ),
    ];
    let mut base = Vec::new();
    for spec in [
        "model-specs/qwen3-tiny.yaml",
        "model-specs/qwen3-0.6b.yaml",
        "model-specs/qwen3-4b-instruct-2507.yaml",
        "tests/specs/gpu/qwen3-odd50.yaml",
        "tests/specs/gpu/qwen3-odd3.yaml",
        "tests/specs/gpu/qwen3-long.yaml",
        "tests/specs/gpu/qwen3-wide.yaml",
        // The qwen2 and llama families: bias epilogues, rope without a norm, llama3 and yarn
        // rope tables with an attention factor, head_dim 64, groups of 6 and 7.
        "model-specs/qwen2.5-tiny.yaml",
        "model-specs/llama-tiny.yaml",
        "tests/specs/qwen3-tiny-yarn.yaml",
        "model-specs/qwen2.5-0.5b.yaml",
        "model-specs/qwen2.5-1.5b.yaml",
        "model-specs/llama-3.2-1b.yaml",
        "model-specs/llama-3.2-3b.yaml",
    ] {
        // Tensor parallel (the 0.6B over 2 ranks): a rank's kernels, the embedding over its
        // vocabulary rows among them.
        let tp = if spec.ends_with("qwen3-0.6b.yaml") {
            2
        } else {
            1
        };
        // The last two: elementwise and per-head kernels one element per thread (wide row
        // access off), and the chunk steps' attention in one pass, launch-bounded to 3 blocks
        // per SM, with the decode batches' projections as fused row GEMMs (codegen options).
        for (no_fusion, tensor_parallel, wide_row_access, online_chunk_attention) in [
            (false, 1, true, false),
            (true, 1, true, false),
            (false, tp, true, false),
            (false, 1, false, false),
            (false, 1, true, true),
        ] {
            let s = pio_compiler::spec::load(Path::new(spec)).unwrap();
            let opts = pio_compiler::CompileOptions {
                passes: PassOptions {
                    no_fusion,
                    tensor_parallel,
                    ..PassOptions::default()
                },
                codegen: pio_compiler::codegen::CodegenOptions {
                    wide_row_access,
                    online_chunk_attention,
                    chunk_attention_min_blocks: if online_chunk_attention { 3 } else { 0 },
                    fused_row_gemm: online_chunk_attention,
                    ..Default::default()
                },
            };
            let a = pio_compiler::compile(&s, &opts).unwrap().artifact;
            base = a.nvrtc_options;
            sources.extend(a.kernels.into_iter().map(|k| (k.name, k.source)));
        }
    }
    sources.sort();
    sources.dedup();
    let dir = tempfile::tempdir().unwrap();
    let cache = nvrtc::KernelCache::new(dir.path().to_path_buf());
    let compiled = cache
        .compile_all(&sources, &nvrtc::options_for("sm_90", &base))
        .unwrap();
    assert_eq!(compiled.len(), sources.len());
    assert!(compiled.iter().all(|c| c.image.starts_with(b"\x7fELF")));
    // PTX: text for the driver to compile, NUL-terminated.
    let ptx = cache
        .compile_all(&sources, &nvrtc::options_for("compute_80", &base))
        .unwrap();
    assert_eq!(ptx.len(), sources.len());
    for c in &ptx {
        let text = String::from_utf8_lossy(&c.image);
        assert!(
            c.image.ends_with(&[0]) && text.contains(".target sm_80"),
            "{}",
            c.name
        );
    }
    eprintln!(
        "{} kernels compiled with NVRTC {:?}",
        compiled.len(),
        nvrtc::version().unwrap()
    );
}
