//! The CUDA backend of [`crate::Model`]: compiles the spec (passes + codegen), JIT-compiles the
//! kernels, uploads the weights and runs generation with GPU sampling.

use crate::error::PioError;
use crate::model::{tied_names, weight_specs, LoadOptions, WeightsSource};
use half::bf16;
use pio_artifact::WeightEntry;
use pio_compiler::codegen::{
    generate, CodegenOptions, GemvTuning, ATTENTION_SPANS, MAX_ATTENTION_SPANS,
};
use pio_compiler::ir::Graph;
use pio_compiler::pass::{default_pipeline, PassOptions};
use pio_compiler::spec::ModelSpec;
use pio_runtime::cuda::device::Gpu;
use pio_runtime::cuda::executor::{gpu_sampling_supported, CudaModel};
use pio_runtime::cuda::nvrtc::KernelCache;
use pio_runtime::generate::{BoxError, Forward};
use pio_runtime::sampling::Sampler;
use pio_runtime::weights::{self, DType, WeightDir, WeightInit, WeightSpec};

/// A model on the GPU.
pub struct CudaBackend {
    model: CudaModel,
    /// Seconds spent compiling (passes, codegen, NVRTC or the kernel cache).
    pub compile_s: f64,
    /// Seconds spent making and uploading the weights.
    pub load_s: f64,
}

/// Compiles `graph` (the lowered spec) and loads it with its weights onto `gpu`.
pub fn load(
    gpu: Gpu,
    spec: &ModelSpec,
    graph: &Graph,
    source: &WeightsSource,
    opts: &LoadOptions,
) -> Result<CudaBackend, PioError> {
    let started = std::time::Instant::now();
    let mut optimized = graph.clone();
    default_pipeline(PassOptions::default())?.run(&mut optimized)?;
    let compiled = generate(&optimized, spec, &codegen_options(opts)?)?;
    let sources: Vec<(String, String)> = compiled
        .kernels
        .iter()
        .map(|k| (k.name.clone(), k.source.clone()))
        .collect();
    let dir = match source {
        WeightsSource::Dir(d) => {
            let tied = tied_names(graph);
            let tied: Vec<&str> = tied.iter().map(String::as_str).collect();
            Some(WeightDir::open_with(d, &weight_specs(graph), &tied)?)
        }
        WeightsSource::Random { .. } => None,
    };
    let seed = match source {
        WeightsSource::Random { seed } => *seed,
        WeightsSource::Dir(_) => 0,
    };
    let fill = |w: &WeightEntry, out: &mut [u8]| -> Result<(), String> {
        let cols: usize = w.shape[1..].iter().product();
        let mut at = 0usize;
        for part in &w.parts {
            let n = part.rows * cols;
            let dst = &mut out[at..at + 2 * n];
            match &dir {
                Some(wd) => {
                    let (dtype, bytes) =
                        wd.tensor_bytes(&part.hf_name).map_err(|e| e.to_string())?;
                    if dtype == DType::BF16 {
                        dst.copy_from_slice(bytes);
                    } else {
                        let f = wd.tensor_f32(&part.hf_name).map_err(|e| e.to_string())?;
                        for (d, v) in dst.chunks_mut(2).zip(f) {
                            d.copy_from_slice(&bf16::from_f32(v).to_le_bytes());
                        }
                    }
                }
                None => {
                    let init = match w.init.strip_prefix("normal:") {
                        Some(std) => WeightInit::Normal {
                            std: std.parse().map_err(|_| format!("bad init {}", w.init))?,
                        },
                        None => WeightInit::Ones,
                    };
                    let mut shape = vec![part.rows];
                    shape.extend(&w.shape[1..]);
                    let spec = WeightSpec {
                        name: part.hf_name.clone(),
                        shape,
                        init,
                    };
                    for (d, v) in dst
                        .chunks_mut(2)
                        .zip(weights::random_tensor_bf16(seed, &spec))
                    {
                        d.copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
            at += 2 * n;
        }
        Ok(())
    };
    let total: u64 = compiled.artifact.weights.iter().map(|w| w.bytes).sum();
    let bar = (opts.progress && total > 256 << 20).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "loading weights {bar:40} {binary_bytes}/{binary_total_bytes} {elapsed}",
            )
            .expect("static template"),
        );
        b
    });
    let progress = |done: u64, _total: u64| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    };
    let cache_dir = opts
        .kernel_cache
        .clone()
        .unwrap_or_else(KernelCache::default_dir);
    let mut weights_started = None;
    let progress = |done: u64, total: u64| {
        weights_started.get_or_insert_with(std::time::Instant::now);
        progress(done, total)
    };
    let model = CudaModel::new(
        gpu,
        compiled.artifact,
        &sources,
        &KernelCache::new(cache_dir),
        fill,
        progress,
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let total = started.elapsed().as_secs_f64();
    // The first progress call comes after the first weight; close enough to split the two.
    let load_s = weights_started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(CudaBackend {
        model,
        compile_s: total - load_s,
        load_s,
    })
}

/// How a load with `opts` compiles the model.
fn codegen_options(opts: &LoadOptions) -> Result<CodegenOptions, PioError> {
    Ok(CodegenOptions {
        max_prefill: opts.max_prefill.unwrap_or(512),
        max_context: opts.max_context,
        // A developer knob for tuning the decode GEMVs' launch shape (README).
        gemv: match std::env::var("PIO_GEMV") {
            Ok(t) => {
                GemvTuning::parse(&t).map_err(|e| PioError::Device(format!("PIO_GEMV: {e}")))?
            }
            Err(_) => GemvTuning::default(),
        },
        attention_spans: attention_spans(opts)?,
    })
}

/// Compiles a spec's kernels as a load with `opts` does on a GPU of `gpu_arch` (passes, codegen,
/// NVRTC through the cache at `cache`): the same kernels, for timing a warm cache.
pub fn compile_kernels(
    spec: &ModelSpec,
    opts: &LoadOptions,
    gpu_arch: &str,
    cache: &std::path::Path,
) -> Result<usize, PioError> {
    let gpu_arch =
        pio_runtime::cuda::nvrtc::target_arch_from_env(gpu_arch).map_err(PioError::Device)?;
    let mut g = pio_compiler::lower::lower(spec)?;
    default_pipeline(PassOptions::default())?.run(&mut g)?;
    let compiled = generate(&g, spec, &codegen_options(opts)?)?;
    let sources: Vec<(String, String)> = compiled
        .kernels
        .iter()
        .map(|k| (k.name.clone(), k.source.clone()))
        .collect();
    let options =
        pio_runtime::cuda::nvrtc::options_for(&gpu_arch, &compiled.artifact.nvrtc_options);
    let done = KernelCache::new(cache.to_path_buf())
        .compile_all(&sources, &options)
        .map_err(pio_runtime::cuda::device::CudaError::from)?;
    Ok(done.len())
}

impl CudaBackend {
    /// "NVIDIA H100 80GB HBM3 (sm_90)".
    pub fn describe(&self) -> String {
        let g = self.model.gpu();
        format!("{} ({})", g.name, g.arch)
    }

    pub fn model(&mut self) -> &mut CudaModel {
        &mut self.model
    }

    pub fn reset_cache(&mut self) -> Result<(), PioError> {
        Ok(self.model.reset()?)
    }

    /// Runs `tokens` after the cached ones and returns the logits of every one of them.
    pub fn step_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, PioError> {
        Ok(self.model.step_all_logits(tokens)?)
    }
}

impl Forward for CudaBackend {
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BoxError> {
        self.model.step(tokens)?;
        Ok(self.model.logits()?.pop().unwrap_or_default())
    }

    fn reset(&mut self) {
        if let Err(e) = self.model.reset() {
            eprintln!("warning: resetting the GPU sampler state failed: {e}");
        }
    }

    fn cached_len(&self) -> usize {
        self.model.cached_len()
    }

    fn context_bound(&self) -> usize {
        self.model.context_bound()
    }

    fn next_token(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        context: &[u32],
        generated: &[u32],
    ) -> Result<u32, BoxError> {
        let p = sampler.params().clone();
        if generated.is_empty() && p.repetition_penalty != 1.0 {
            self.model.mark_seen(tokens)?;
        }
        self.model.step(tokens)?;
        if gpu_sampling_supported(&p) {
            return Ok(self.model.sample(&p, generated.len() as u64)?);
        }
        // Sampling the GPU sampler cannot do exactly (no top-k): on the host.
        let logits = self.model.logits()?.pop().unwrap_or_default();
        Ok(sampler.sample(&logits, context, generated)?)
    }
}

/// The decode attention's spans per kv head: the load option, else `$PIO_DECODE_SPANS` (a
/// developer knob, like `PIO_GEMV`), else the default.
fn attention_spans(opts: &LoadOptions) -> Result<usize, PioError> {
    let (n, from) = match (opts.attention_spans, std::env::var("PIO_DECODE_SPANS")) {
        (Some(n), _) => (Some(n), "the load option attention_spans".to_string()),
        (None, Ok(t)) => (t.parse().ok(), format!("PIO_DECODE_SPANS '{t}'")),
        (None, Err(_)) => return Ok(ATTENTION_SPANS),
    };
    n.filter(|n| (1..=MAX_ATTENTION_SPANS).contains(n))
        .ok_or_else(|| {
            PioError::Device(format!(
                "{from}: spans per kv head must be 1 to {MAX_ATTENTION_SPANS}"
            ))
        })
}
