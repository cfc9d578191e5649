//! [`Model`]: a spec, its weights and a device, ready to generate.

use crate::error::PioError;
use pio_compiler::interp::CpuExecutor;
use pio_compiler::ir::{Graph, Init, Op};
use pio_compiler::spec::ModelSpec;
use pio_runtime::chat::ChatTemplate;
use pio_runtime::generate::{BoxError, Forward, GenerateOptions, Generation};
use pio_runtime::sampling::SamplingParams;
use pio_runtime::tokenizer::Tokenizer;
use pio_runtime::weights::{self, WeightDir, WeightInit, WeightSpec};
use std::path::{Path, PathBuf};

/// Where the weights come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsSource {
    /// Random weights of the real shapes (normal, std from the spec; norms 1.0), seeded.
    Random { seed: u64 },
    /// A Hugging Face model directory (config.json, safetensors, tokenizer files).
    Dir(PathBuf),
}

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
    /// CUDA when a driver and GPU are present, else the CPU.
    Auto,
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            _ => Err(format!("unknown device '{s}' (expected cpu, cuda or auto)")),
        }
    }
}

/// Generation defaults of a model: from its generation_config.json, else from the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationDefaults {
    pub eos_token_ids: Vec<u32>,
    pub sampling: SamplingParams,
}

/// Settings of a load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// KV-cache length on the GPU (default: the spec's bound, at most 32,768 tokens).
    pub max_context: Option<usize>,
    /// Most tokens per prefill step on the GPU (default 512; longer prompts are chunked).
    pub max_prefill: Option<usize>,
    /// Show a progress bar while weights load.
    pub progress: bool,
    /// Folder of compiled kernels (default: `$PIO_CACHE_DIR` or `~/.cache/pio/kernels`).
    pub kernel_cache: Option<PathBuf>,
    /// Tuning: spans (thread-block clusters) per kv head of the GPU decode attention, at most;
    /// longer contexts take longer spans (default: `$PIO_DECODE_SPANS`, else
    /// `pio_compiler::codegen::ATTENTION_SPANS`, 5). Every setting computes the same up to f32
    /// summation order.
    pub attention_spans: Option<usize>,
}

/// A loaded model.
///
/// ```no_run
/// use pio::{Model, WeightsSource, Device};
/// let mut model = Model::load("model-specs/qwen3-tiny.yaml".as_ref(),
///                             &WeightsSource::Random { seed: 0 }, Device::Cpu)?;
/// let prompt = model.tokenizer().encode("Hello")?;
/// let opts = model.generate_options(16, None);
/// for token in model.generate(&prompt, opts)? {
///     print!("{}", token?.text);
/// }
/// # Ok::<(), pio::PioError>(())
/// ```
pub struct Model {
    spec: ModelSpec,
    backend: Backend,
    tokenizer: Tokenizer,
    chat: ChatTemplate,
    defaults: GenerationDefaults,
    random_weights: bool,
}

enum Backend {
    Cpu(Box<CpuBackend>),
    Cuda(Box<crate::cuda_backend::CudaBackend>),
}

impl Model {
    /// Loads `spec` (a variant file) with `weights` on `device`.
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
        let spec = pio_compiler::spec::load(spec)?;
        let graph = pio_compiler::lower::lower(&spec)?;
        pio_compiler::ir::verify::verify(&graph, Some("lower"))?;
        let dir = match weights {
            WeightsSource::Dir(d) => {
                weights::check_config(&d.join("config.json"), &spec.hf_config)?;
                Some(d.clone())
            }
            WeightsSource::Random { .. } => None,
        };
        use pio_runtime::cuda::device::{driver_present, Gpu};
        let gpu = match device {
            Device::Cpu => None,
            Device::Cuda => {
                Some(Gpu::open().map_err(|e| PioError::Device(format!("--device cuda: {e}")))?)
            }
            Device::Auto => driver_present().then(Gpu::open).and_then(Result::ok),
        };
        let backend = match gpu {
            Some(gpu) => Backend::Cuda(Box::new(crate::cuda_backend::load(
                gpu, &spec, &graph, weights, opts,
            )?)),
            None => Backend::Cpu(Box::new(CpuBackend(load_cpu(graph, weights)?))),
        };
        let file_in = |name: &str, fallback: &Path| -> PathBuf {
            match &dir {
                Some(d) if d.join(name).is_file() => d.join(name),
                _ => fallback.to_path_buf(),
            }
        };
        let m = &spec.variant.manifest;
        let tokenizer = Tokenizer::from_file(&file_in("tokenizer.json", &m.tokenizer))?;
        let chat = ChatTemplate::from_tokenizer_config(&file_in(
            "tokenizer_config.json",
            &m.chat_template,
        ))?;
        let mut defaults = GenerationDefaults {
            eos_token_ids: m.eos_token_ids.clone(),
            sampling: SamplingParams {
                temperature: m.sampling.temperature as f32,
                top_k: m.sampling.top_k as usize,
                top_p: m.sampling.top_p as f32,
                min_p: m.sampling.min_p as f32,
                repetition_penalty: m.sampling.repetition_penalty as f32,
                presence_penalty: m.sampling.presence_penalty as f32,
                seed: 0,
            },
        };
        if let Some(d) = &dir {
            crate::generation_config::apply(&d.join("generation_config.json"), &mut defaults)?;
        }
        let vocab = spec.int("vocab_size").unwrap_or(0) as usize;
        if tokenizer.vocab_size() > vocab && vocab > 0 {
            return Err(PioError::File {
                path: m.tokenizer.clone(),
                message: format!(
                    "the tokenizer has {} tokens but the model's vocabulary is {vocab}",
                    tokenizer.vocab_size()
                ),
            });
        }
        Ok(Model {
            spec,
            backend,
            tokenizer,
            chat,
            defaults,
            random_weights: matches!(weights, WeightsSource::Random { .. }),
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
    pub fn cuda(&mut self) -> Option<&mut crate::cuda_backend::CudaBackend> {
        match &mut self.backend {
            Backend::Cuda(c) => Some(c),
            Backend::Cpu(_) => None,
        }
    }

    /// The resolved spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn chat_template(&self) -> &ChatTemplate {
        &self.chat
    }

    pub fn defaults(&self) -> &GenerationDefaults {
        &self.defaults
    }

    /// Whether the weights are random (output is gibberish).
    pub fn has_random_weights(&self) -> bool {
        self.random_weights
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
            Backend::Cpu(c) => c.0.reset(),
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
            let last = rows.last().expect("a prefill has at least one row");
            let next = argmax(last);
            generated.push(next);
            rows.extend(self.step_logits(&[next])?);
        }
        Ok((rows, generated))
    }

    /// Runs `tokens` after the cached ones (teacher forcing) and returns their logits.
    pub fn step_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, PioError> {
        let cpu = match &mut self.backend {
            Backend::Cpu(c) => c,
            Backend::Cuda(c) => return c.step_logits(tokens),
        };
        let out = cpu.0.step(tokens)?;
        let logits = out
            .get("logits")
            .ok_or_else(|| PioError::Device("the graph has no 'logits' output".into()))?;
        Ok(logits.rows().map(<[f32]>::to_vec).collect())
    }
}

/// Builds the CPU executor with the weights.
fn load_cpu(graph: Graph, weights: &WeightsSource) -> Result<CpuExecutor, PioError> {
    let specs = weight_specs(&graph);
    Ok(match weights {
        WeightsSource::Random { seed } => {
            let mut load = |name: &str, _: &[usize]| {
                let s = specs
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| format!("no weight spec for {name}"))?;
                Ok(weights::random_tensor_f32(*seed, s))
            };
            CpuExecutor::new(graph, &mut load)?
        }
        WeightsSource::Dir(dir) => {
            let tied = tied_names(&graph);
            let tied: Vec<&str> = tied.iter().map(String::as_str).collect();
            let wd = WeightDir::open_with(dir, &specs, &tied)?;
            let mut load = |name: &str, _: &[usize]| wd.tensor_f32(name).map_err(|e| e.to_string());
            CpuExecutor::new(graph, &mut load)?
        }
    })
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

/// The checkpoint tensors a graph needs (tied names excluded).
pub fn weight_specs(g: &Graph) -> Vec<WeightSpec> {
    g.ids()
        .filter_map(|id| {
            let n = g.node(id);
            let Op::Weight(b) = &n.op else { return None };
            let shape = n.ty.shape.as_fixed()?;
            let init = match b.init {
                Init::Ones => WeightInit::Ones,
                Init::Normal { std } => WeightInit::Normal { std: std as f32 },
            };
            Some(WeightSpec {
                name: b.hf_name.clone(),
                shape,
                init,
            })
        })
        .collect()
}

/// Checkpoint names tied to another tensor (e.g. `lm_head.weight`).
pub fn tied_names(g: &Graph) -> Vec<String> {
    g.ids()
        .filter_map(|id| match &g.node(id).op {
            Op::Weight(b) => Some(b.tied.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The CPU executor as a [`Forward`] model.
struct CpuBackend(CpuExecutor);

impl Forward for CpuBackend {
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BoxError> {
        let out = self.0.step(tokens)?;
        let logits = out
            .get("logits")
            .ok_or("the graph has no 'logits' output")?;
        Ok(logits
            .rows()
            .last()
            .map(<[f32]>::to_vec)
            .unwrap_or_default())
    }

    fn reset(&mut self) {
        self.0.reset();
    }

    fn cached_len(&self) -> usize {
        self.0.cached_len()
    }

    fn context_bound(&self) -> usize {
        self.0.context_bound()
    }
}
