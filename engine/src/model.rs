//! [`Model`]: a compiled model (an artifact) with its weights on a device, ready to generate.

use crate::cpu::CpuBackend;
use crate::cuda::CudaBackend;
use crate::error::PioError;
use crate::generation_config::GenerationDefaults;
use crate::options::{Device, LoadOptions, WeightsSource};
use pio_artifact::{Artifact, ModelInfo};
use pio_compiler::spec::from_config::SpecSource;
use pio_runtime::chat::ChatTemplate;
use pio_runtime::generate::{Forward, GenerateOptions, Generation};
use pio_runtime::sampling::SamplingParams;
use pio_runtime::tokenizer::Tokenizer;
use std::path::Path;

mod paged;

pub use paged::PagedLimits;
use std::time::Instant;

/// Where a load's time went, in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadTimings {
    /// Lowering, passes and codegen (0 for a load from an artifact folder).
    pub compile_s: f64,
    /// NVRTC, or reading its disk cache (GPU only).
    pub nvrtc_s: f64,
    /// Making and uploading (or building, on the CPU) the weights.
    pub weights_s: f64,
}

/// A loaded model. It is `Send`: one thread at a time may own and drive it.
///
/// ```
/// use pio_engine::{Device, Model, WeightsSource};
/// let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../model-specs/qwen3-tiny.yaml");
/// let mut model = Model::load(spec.as_ref(), &WeightsSource::Random { seed: 0 }, Device::Cpu)?;
/// let prompt = model.tokenizer().encode("Hello")?;
/// let opts = model.generate_options(4, Some(pio_engine::runtime::sampling::SamplingParams::greedy()));
/// let mut text = String::new();
/// for token in model.generate(&prompt, opts)? {
///     text.push_str(&token?.text);
/// }
/// assert!(!text.is_empty());
/// # Ok::<(), pio_engine::PioError>(())
/// ```
pub struct Model {
    info: ModelInfo,
    backend: Backend,
    tokenizer: Tokenizer,
    /// Where the chat template comes from; compiled on first use, so that a broken template
    /// only fails the runs that use it.
    chat_source: ChatSource,
    chat: std::sync::OnceLock<ChatTemplate>,
    defaults: GenerationDefaults,
    random_weights: bool,
    timings: LoadTimings,
    /// Parameters and their bytes in the checkpoint's dtype (tied tensors once).
    params: u64,
    weight_bytes: u64,
    /// Cached values (keys and values, every layer) per position.
    kv_values_per_position: u64,
}

/// A chat template not yet compiled.
enum ChatSource {
    /// A tokenizer_config.json in the weights directory.
    File(std::path::PathBuf),
    /// The artifact's copy (file label, bytes).
    Attached(String, Vec<u8>),
}

impl ChatSource {
    fn compile(&self) -> Result<ChatTemplate, pio_runtime::chat::ChatError> {
        match self {
            ChatSource::File(p) => ChatTemplate::from_tokenizer_config(p),
            ChatSource::Attached(label, bytes) => {
                ChatTemplate::from_tokenizer_config_bytes(bytes, label)
            }
        }
    }
}

enum Backend {
    Cpu(Box<CpuBackend>),
    Cuda(Box<CudaBackend>),
}

impl Model {
    /// Compiles `spec` (a variant file) and loads it with `weights` on `device`.
    pub fn load(spec: &Path, weights: &WeightsSource, device: Device) -> Result<Model, PioError> {
        Self::load_with(spec, weights, device, &LoadOptions::default())
    }

    /// [`Model::load`] with settings.
    pub fn load_with(
        spec: &Path,
        weights: &WeightsSource,
        device: Device,
        opts: &LoadOptions,
    ) -> Result<Model, PioError> {
        Self::load_source(&SpecSource::File(spec.to_path_buf()), weights, device, opts)
    }

    /// [`Model::load_with`] from a spec's source: a variant file, or a checkpoint's
    /// config.json (no spec: the family its `architectures` names).
    pub fn load_source(
        source: &SpecSource,
        weights: &WeightsSource,
        device: Device,
        opts: &LoadOptions,
    ) -> Result<Model, PioError> {
        let started = Instant::now();
        let spec = source.load()?;
        let compile_opts = pio_compiler::CompileOptions {
            codegen: opts.codegen_options()?,
            ..Default::default()
        };
        let artifact = pio_compiler::compile(&spec, &compile_opts)?.artifact;
        let compile_s = started.elapsed().as_secs_f64();
        let plain = LoadOptions {
            max_context: None,
            max_prefill: None,
            attention_spans: None,
            ..opts.clone()
        };
        let mut model = Self::from_artifact(artifact, weights, device, &plain)?;
        model.timings.compile_s = compile_s;
        Ok(model)
    }

    /// Loads what `pio-compile -o DIR` wrote: no spec and no compiler pass (the GPU's kernels
    /// still go through NVRTC and its cache).
    pub fn load_artifact(
        dir: &Path,
        weights: &WeightsSource,
        device: Device,
        opts: &LoadOptions,
    ) -> Result<Model, PioError> {
        let artifact = Artifact::load_dir(dir)?;
        Self::from_artifact(artifact, weights, device, opts)
    }

    /// Loads an artifact with `weights` on `device`. The CPU runs the artifact's reference
    /// graph with the f32 executor; CUDA runs its launch lists.
    pub fn from_artifact(
        artifact: Artifact,
        weights: &WeightsSource,
        device: Device,
        opts: &LoadOptions,
    ) -> Result<Model, PioError> {
        opts.check_artifact(&artifact)?;
        // Every layer's keys and values per position, as the paged pool lays them out.
        let kv_values_per_position = artifact
            .paged
            .pool
            .iter()
            .map(|e| (e.kv_heads * e.head_dim) as u64)
            .sum();
        let dir = match weights {
            WeightsSource::Dir(d) => Some(d.clone()),
            WeightsSource::Random { .. } => None,
        };
        use pio_runtime::cuda::device::{driver_present, Gpu};
        let ranks = opts.ranks_for(&artifact)?;
        // Several ranks run on one GPU each where there are enough (--device auto: else on the
        // CPU executor's simulated ranks).
        let enough_gpus = || driver_present() && Gpu::count().is_ok_and(|n| n >= ranks);
        let device = match device {
            Device::Auto if ranks > 1 && !enough_gpus() => Device::Cpu,
            Device::Auto if ranks > 1 => Device::Cuda,
            d => d,
        };
        let gpu = match device {
            Device::Cpu => None,
            Device::Cuda if ranks > 1 => None,
            Device::Cuda => {
                Some(Gpu::open().map_err(|e| PioError::Device(format!("--device cuda: {e}")))?)
            }
            Device::Auto => driver_present().then(Gpu::open).and_then(Result::ok),
        };
        let ranked_gpus = ranks > 1 && device == Device::Cuda;
        let mut info = artifact.model.clone();
        let file_in = |name: &str| dir.as_ref().map(|d| d.join(name)).filter(|p| p.is_file());
        let tokenizer = match file_in("tokenizer.json") {
            Some(p) => Tokenizer::from_file(&p)?,
            None => Tokenizer::from_bytes(&info.tokenizer.data, &info.tokenizer.file)?,
        };
        let chat_source = match file_in("tokenizer_config.json") {
            Some(p) => ChatSource::File(p),
            None => ChatSource::Attached(
                info.tokenizer_config.file.clone(),
                std::mem::take(&mut info.tokenizer_config.data),
            ),
        };
        // The tokenizer's bytes are not needed past this point.
        info.tokenizer.data = Vec::new();
        // Streams of generated text start without a pause for the byte table.
        tokenizer.prepare_streaming();
        if tokenizer.vocab_size() > info.vocab_size {
            return Err(PioError::Options(format!(
                "the tokenizer has {} tokens but the model's vocabulary is {}",
                tokenizer.vocab_size(),
                info.vocab_size
            )));
        }
        let s = &info.sampling;
        let mut defaults = GenerationDefaults {
            eos_token_ids: info.eos_token_ids.clone(),
            sampling: SamplingParams {
                temperature: s.temperature,
                top_k: s.top_k,
                top_p: s.top_p,
                min_p: s.min_p,
                repetition_penalty: s.repetition_penalty,
                presence_penalty: s.presence_penalty,
                frequency_penalty: 0.0,
                seed: 0,
            },
        };
        if let Some(d) = &dir {
            crate::generation_config::apply(
                &d.join("generation_config.json"),
                &mut defaults,
                info.vocab_size,
            )?;
        }
        let params = crate::footprint::params(&artifact);
        let weight_bytes = params.saturating_mul(info.weights_dtype.size() as u64);
        match &gpu {
            Some(gpu) => crate::footprint::check_gpu(&artifact, gpu.memory().0)?,
            // Each rank's GPU is checked as it is opened.
            None if ranked_gpus => {}
            None => crate::footprint::check_cpu(&artifact)?,
        }
        let started = Instant::now();
        let (backend, timings) = match gpu {
            None if ranked_gpus => {
                let c = crate::cuda::load_ranks(ranks, artifact, weights, opts)?;
                let t = LoadTimings {
                    compile_s: 0.0,
                    nvrtc_s: c.nvrtc_s,
                    weights_s: c.load_s,
                };
                (Backend::Cuda(Box::new(c)), t)
            }
            Some(gpu) => {
                let c = crate::cuda::load(gpu, artifact, weights, opts)?;
                let t = LoadTimings {
                    compile_s: 0.0,
                    nvrtc_s: c.nvrtc_s,
                    weights_s: c.load_s,
                };
                (Backend::Cuda(Box::new(c)), t)
            }
            None => {
                let c = CpuBackend::load(&artifact, weights, opts.progress, ranks)?;
                let t = LoadTimings {
                    weights_s: started.elapsed().as_secs_f64(),
                    ..Default::default()
                };
                (Backend::Cpu(Box::new(c)), t)
            }
        };
        Ok(Model {
            info,
            backend,
            tokenizer,
            chat_source,
            chat: std::sync::OnceLock::new(),
            defaults,
            random_weights: matches!(weights, WeightsSource::Random { .. }),
            timings,
            params,
            weight_bytes,
            kv_values_per_position,
        })
    }

    /// Where the model runs, in words ("cpu" or the GPU's name).
    pub fn device_name(&self) -> String {
        match &self.backend {
            Backend::Cpu(_) => "cpu".into(),
            Backend::Cuda(c) => c.describe(),
        }
    }

    /// The CUDA backend, if the model runs on a GPU.
    pub fn cuda(&mut self) -> Option<&mut CudaBackend> {
        match &mut self.backend {
            Backend::Cuda(c) => Some(c),
            Backend::Cpu(_) => None,
        }
    }

    /// What the artifact says about the model (name, vocabulary, eos ids, ...).
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Parameters of the model (tied tensors counted once).
    pub fn param_count(&self) -> u64 {
        self.params
    }

    /// Bytes of the weights in the checkpoint's dtype.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    pub fn timings(&self) -> &LoadTimings {
        &self.timings
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's chat template, compiled on first use (an error names the template's file).
    pub fn chat_template(&self) -> Result<&ChatTemplate, PioError> {
        if let Some(t) = self.chat.get() {
            return Ok(t);
        }
        let compiled = self.chat_source.compile()?;
        Ok(self.chat.get_or_init(|| compiled))
    }

    pub fn defaults(&self) -> &GenerationDefaults {
        &self.defaults
    }

    /// Whether the weights are random (output is gibberish).
    pub fn has_random_weights(&self) -> bool {
        self.random_weights
    }

    /// Most tokens the KV cache holds.
    pub fn context_bound(&self) -> usize {
        self.forward().context_bound()
    }

    fn forward(&self) -> &dyn Forward {
        match &self.backend {
            Backend::Cpu(c) => c.as_ref(),
            Backend::Cuda(c) => c.as_ref(),
        }
    }

    /// The model's default options with `max_new_tokens` and, if given, other sampling.
    pub fn generate_options(
        &self,
        max_new_tokens: usize,
        sampling: Option<SamplingParams>,
    ) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens,
            eos_token_ids: self.defaults.eos_token_ids.clone(),
            sampling: sampling.unwrap_or_else(|| self.defaults.sampling.clone()),
        }
    }

    /// Starts a streaming generation from prompt token ids.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: GenerateOptions,
    ) -> Result<Generation<'_, dyn Forward>, PioError> {
        let backend: &mut dyn Forward = match &mut self.backend {
            Backend::Cpu(c) => c.as_mut(),
            Backend::Cuda(c) => c.as_mut(),
        };
        Ok(Generation::new(backend, &self.tokenizer, prompt, opts)?)
    }

    /// Logits at every position of `tokens`, run as one prefill on an empty cache.
    pub fn prefill_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, PioError> {
        match &mut self.backend {
            Backend::Cpu(c) => c.reset(),
            Backend::Cuda(c) => c.reset_cache()?,
        }
        self.step_logits(tokens)
    }

    /// Prefills `prompt`, then takes `decode_steps` greedy steps; returns the logits of every
    /// prompt position and of every decode step (one row each), and the generated ids.
    pub fn greedy_logits(
        &mut self,
        prompt: &[u32],
        decode_steps: usize,
    ) -> Result<(Vec<Vec<f32>>, Vec<u32>), PioError> {
        let mut rows = self.prefill_logits(prompt)?;
        let mut generated = Vec::new();
        for _ in 0..decode_steps {
            let next = argmax(rows.last().map(Vec::as_slice).unwrap_or(&[]));
            generated.push(next);
            rows.extend(self.step_logits(&[next])?);
        }
        Ok((rows, generated))
    }

    /// Runs `tokens` after the cached ones (teacher forcing) and returns their logits.
    pub fn step_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, PioError> {
        match &mut self.backend {
            Backend::Cpu(c) => c.step_logits(tokens),
            Backend::Cuda(c) => c.step_logits(tokens),
        }
    }
}

/// Index of the largest value (the first of equal ones).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}
