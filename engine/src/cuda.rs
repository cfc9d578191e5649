//! The CUDA backend: an artifact's kernels JIT-compiled through NVRTC (and its disk cache), its
//! weights uploaded, generation with GPU sampling; a tensor-parallel artifact on one GPU per
//! rank (`ranks`).

mod ranks;

use crate::error::PioError;
use crate::options::{LoadOptions, WeightsSource};
use pio_artifact::Artifact;
use pio_runtime::cuda::device::{CudaError, Gpu};
use pio_runtime::cuda::executor::{gpu_sampling_supported, CudaModel};
use pio_runtime::cuda::nvrtc::KernelCache;
use pio_runtime::generate::{BoxError, Forward};
use pio_runtime::sampling::Sampler;

/// A model on the GPU, or on one GPU per rank.
pub struct CudaBackend {
    /// The model, or a tensor-parallel model's rank 0.
    model: CudaModel,
    /// A tensor-parallel model's other ranks.
    followers: Option<ranks::Followers>,
    /// Seconds spent compiling the kernels (NVRTC or the kernel cache).
    pub nvrtc_s: f64,
    /// Seconds spent making and uploading the weights.
    pub load_s: f64,
}

/// Loads `artifact` with its weights onto `gpu`.
pub fn load(
    gpu: Gpu,
    artifact: Artifact,
    source: &WeightsSource,
    opts: &LoadOptions,
) -> Result<CudaBackend, PioError> {
    let started = std::time::Instant::now();
    let dir = match source {
        WeightsSource::Dir(d) => Some(crate::weights::open_dir(&artifact, d)?),
        WeightsSource::Random { .. } => None,
    };
    let fill = |w: &pio_artifact::WeightEntry, out: &mut [u8]| {
        crate::weights::fill_bf16(w, out, dir.as_ref(), source)
    };
    let total: u64 = artifact.weights.iter().map(|w| w.bytes).sum();
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
    let cache_dir = opts
        .kernel_cache
        .clone()
        .unwrap_or_else(KernelCache::default_dir);
    let mut weights_started = None;
    let progress = |done: u64, _total: u64| {
        weights_started.get_or_insert_with(std::time::Instant::now);
        if let Some(b) = &bar {
            b.set_position(done);
        }
    };
    let model = CudaModel::new(gpu, artifact, &KernelCache::new(cache_dir), fill, progress)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let total = started.elapsed().as_secs_f64();
    // The first progress call comes after the first weight; close enough to split the two.
    let load_s = weights_started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(CudaBackend {
        model,
        followers: None,
        nvrtc_s: total - load_s,
        load_s,
    })
}

/// Loads `artifact`, compiled with `pio-compile --tp ranks`, onto GPUs 0..ranks (one rank
/// each, NCCL between them).
pub fn load_ranks(
    ranks: usize,
    artifact: Artifact,
    source: &WeightsSource,
    opts: &LoadOptions,
) -> Result<CudaBackend, PioError> {
    let started = std::time::Instant::now();
    let dir = match source {
        WeightsSource::Dir(d) => Some(crate::weights::open_dir(&artifact, d)?),
        WeightsSource::Random { .. } => None,
    };
    let mut weights_started = None;
    let loaded = ranks::load(ranks, &artifact, source, dir.as_ref(), opts, |_, _| {
        weights_started.get_or_insert_with(std::time::Instant::now);
    })?;
    let total = started.elapsed().as_secs_f64();
    let load_s = weights_started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(CudaBackend {
        model: loaded.rank0,
        followers: Some(loaded.followers),
        nvrtc_s: total - load_s,
        load_s,
    })
}

/// Compiles an artifact's kernels as a load does on a GPU of `gpu_arch` (NVRTC through the cache
/// at `cache`): the same kernels, for timing a warm cache. Returns how many were compiled.
pub fn compile_kernels(
    artifact: &Artifact,
    gpu_arch: &str,
    cache: &std::path::Path,
) -> Result<usize, PioError> {
    let gpu_arch =
        pio_runtime::cuda::nvrtc::target_arch_from_env(gpu_arch).map_err(PioError::Device)?;
    let sources: Vec<(String, String)> = artifact
        .kernels
        .iter()
        .map(|k| (k.name.clone(), k.source.clone()))
        .collect();
    let options = pio_runtime::cuda::nvrtc::options_for(&gpu_arch, &artifact.nvrtc_options);
    let done = KernelCache::new(cache.to_path_buf())
        .compile_all(&sources, &options)
        .map_err(pio_runtime::cuda::device::CudaError::from)?;
    Ok(done.len())
}

impl CudaBackend {
    /// "NVIDIA H100 80GB HBM3 (sm_90)"; "2 x NVIDIA H100 80GB HBM3 (sm_90), tensor parallel"
    /// for a model split over GPUs.
    pub fn describe(&self) -> String {
        let g = self.model.gpu();
        match self.ranks() {
            1 => format!("{} ({})", g.name, g.arch),
            n => format!("{n} x {} ({}), tensor parallel", g.name, g.arch),
        }
    }

    /// The model (a tensor-parallel model's rank 0: its reports and settings; its steps go
    /// through [`Self::each`], since a step on one rank alone waits for the others at its
    /// first collective).
    pub fn model(&mut self) -> &mut CudaModel {
        &mut self.model
    }

    /// Tensor-parallel ranks (1 for a model on one GPU).
    pub fn ranks(&self) -> usize {
        self.followers.as_ref().map_or(1, |f| f.ranks())
    }

    /// Runs `f` on the model, on every rank at once for a tensor-parallel model; returns the
    /// model's (rank 0's) result.
    pub fn each<R>(
        &mut self,
        f: impl Fn(&mut CudaModel) -> Result<R, CudaError> + Sync,
    ) -> Result<R, CudaError> {
        match &self.followers {
            None => f(&mut self.model),
            Some(followers) => followers.each(&mut self.model, f),
        }
    }

    pub fn model_ref(&self) -> &CudaModel {
        &self.model
    }

    pub fn reset_cache(&mut self) -> Result<(), PioError> {
        Ok(self.each(|m| m.reset())?)
    }

    /// Runs `tokens` after the cached ones and returns the logits of every one of them.
    pub fn step_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, PioError> {
        Ok(self.each(|m| m.step_all_logits(tokens))?)
    }
}

impl Forward for CudaBackend {
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BoxError> {
        self.each(|m| m.step(tokens))?;
        Ok(self.model.logits()?.pop().unwrap_or_default())
    }

    fn reset(&mut self) {
        if let Err(e) = self.each(|m| m.reset()) {
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
            self.each(|m| m.mark_seen(tokens))?;
        }
        self.each(|m| m.step(tokens))?;
        if gpu_sampling_supported(&p) {
            // Every rank samples the same token from the same logits, which keeps their
            // samplers' state (seen tokens, step) the same.
            let step = generated.len() as u64;
            return Ok(self.each(|m| m.sample(&p, step))?);
        }
        // Sampling the GPU sampler cannot do exactly (no top-k): on the host.
        let logits = self.model.logits()?.pop().unwrap_or_default();
        Ok(sampler.sample(&logits, context, generated)?)
    }
}
