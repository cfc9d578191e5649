//! How a model is loaded: where its weights come from, the device, and the settings of a load.

use crate::error::PioError;
use pio_compiler::codegen::{
    CodegenOptions, GemvTuning, ATTENTION_SPANS, DEFAULT_PREFILL, MAX_ATTENTION_SPANS,
};
use std::path::PathBuf;

/// Where the weights come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsSource {
    /// Random weights of the real shapes (normal, std from the spec; norms 1.0), seeded.
    Random { seed: u64 },
    /// A Hugging Face model directory (config.json, safetensors, tokenizer files).
    Dir(PathBuf),
}

impl WeightsSource {
    /// `random` (seeded with `seed`) or a directory.
    pub fn from_arg(arg: &str, seed: u64) -> WeightsSource {
        if arg == "random" {
            WeightsSource::Random { seed }
        } else {
            WeightsSource::Dir(PathBuf::from(arg))
        }
    }
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

/// Settings of a load.
///
/// `max_context`, `max_prefill` and `attention_spans` are compile settings: a load from a spec
/// compiles with them; a load from an artifact checks that the artifact was compiled with them
/// (when they are given) and refuses otherwise.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// KV-cache length (default: the spec's bound, at most 32,768 tokens).
    pub max_context: Option<usize>,
    /// Most tokens per prefill step (default 512; longer prompts are chunked).
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
    /// Tensor-parallel ranks (default 1). More than 1: the graph sharded over one GPU per rank
    /// (NCCL between them), or over simulated ranks on the CPU backend.
    pub tensor_parallel: Option<usize>,
}

impl LoadOptions {
    /// The tensor-parallel ranks asked for (1 when not asked).
    pub fn ranks(&self) -> Result<usize, PioError> {
        match self.tensor_parallel {
            None => Ok(1),
            Some(0) => Err(PioError::Options(
                "--tp 0: tensor parallel needs at least one rank".into(),
            )),
            Some(n) => Ok(n),
        }
    }

    /// The codegen settings of a load from a spec: these options, the developer knobs
    /// `PIO_GEMV`, `PIO_DECODE_SPANS`, `PIO_PAGED_ATTENTION_HEADS`,
    /// `PIO_PAGED_ATTENTION_MIN_BLOCKS`, `PIO_PAGED_ATTENTION_TARGET_BLOCKS`,
    /// `PIO_WIDE_ROW_ACCESS`, `PIO_ONLINE_CHUNK_ATTENTION`, `PIO_CHUNK_ATTENTION_MIN_BLOCKS` and
    /// `PIO_FUSED_ROW_GEMM` (README), else the defaults; a bad value is an error that names the
    /// variable.
    pub fn codegen_options(&self) -> Result<CodegenOptions, PioError> {
        Ok(CodegenOptions {
            max_prefill: self.max_prefill.unwrap_or(DEFAULT_PREFILL),
            max_context: self.max_context,
            gemv: match std::env::var("PIO_GEMV") {
                Ok(t) => GemvTuning::parse(&t)
                    .map_err(|e| PioError::Options(format!("PIO_GEMV: {e}")))?,
                Err(_) => GemvTuning::default(),
            },
            attention_spans: self.attention_spans()?,
            paged_attention_heads: match std::env::var("PIO_PAGED_ATTENTION_HEADS") {
                Ok(t) => Some(t.parse().ok().filter(|&n: &usize| n > 0).ok_or_else(|| {
                    PioError::Options(format!(
                        "PIO_PAGED_ATTENTION_HEADS '{t}': not a positive integer"
                    ))
                })?),
                Err(_) => None,
            },
            paged_attention_min_blocks: match std::env::var("PIO_PAGED_ATTENTION_MIN_BLOCKS") {
                Ok(t) => Some(t.parse().ok().filter(|&n: &usize| n <= 32).ok_or_else(|| {
                    PioError::Options(format!(
                        "PIO_PAGED_ATTENTION_MIN_BLOCKS '{t}': not an integer from 0 to 32"
                    ))
                })?),
                Err(_) => None,
            },
            paged_attention_target_blocks: match std::env::var(
                "PIO_PAGED_ATTENTION_TARGET_BLOCKS",
            ) {
                Ok(t) => Some(
                    t.parse()
                        .ok()
                        .filter(|n: &usize| (1..=1 << 20).contains(n))
                        .ok_or_else(|| {
                            PioError::Options(format!(
                                "PIO_PAGED_ATTENTION_TARGET_BLOCKS '{t}': not an integer from 1 to 1048576"
                            ))
                        })?,
                ),
                Err(_) => None,
            },
            wide_row_access: env_flag("PIO_WIDE_ROW_ACCESS", true)?,
            online_chunk_attention: env_flag("PIO_ONLINE_CHUNK_ATTENTION", false)?,
            fused_row_gemm: env_flag("PIO_FUSED_ROW_GEMM", false)?,
            chunk_attention_min_blocks: match std::env::var("PIO_CHUNK_ATTENTION_MIN_BLOCKS") {
                Ok(t) => t.parse().ok().filter(|&n: &usize| n <= 8).ok_or_else(|| {
                    PioError::Options(format!(
                        "PIO_CHUNK_ATTENTION_MIN_BLOCKS '{t}': not an integer from 0 to 8"
                    ))
                })?,
                Err(_) => 0,
            },
            ..Default::default()
        })
    }

    /// The decode attention's spans per kv head: the option, else `$PIO_DECODE_SPANS`, else the
    /// default.
    fn attention_spans(&self) -> Result<usize, PioError> {
        let (n, from) = match (self.attention_spans, std::env::var("PIO_DECODE_SPANS")) {
            (Some(n), _) => (Some(n), "the load option attention_spans".to_string()),
            (None, Ok(t)) => (t.parse().ok(), format!("PIO_DECODE_SPANS '{t}'")),
            (None, Err(_)) => return Ok(ATTENTION_SPANS),
        };
        n.filter(|n| (1..=MAX_ATTENTION_SPANS).contains(n))
            .ok_or_else(|| {
                PioError::Options(format!(
                    "{from}: spans per kv head must be 1 to {MAX_ATTENTION_SPANS}"
                ))
            })
    }

    /// An artifact was compiled with the settings these options ask for, where they ask.
    pub fn check_artifact(&self, a: &pio_artifact::Artifact) -> Result<(), PioError> {
        let mismatch = |what: &str, flag: &str, asked: usize, compiled: usize| {
            PioError::Options(format!(
                "{what} {asked} was asked for, but the artifact was compiled for {compiled}; \
                 recompile with pio-compile {flag} {asked}"
            ))
        };
        if let Some(n) = self.max_context.filter(|&n| n != a.max_context) {
            return Err(mismatch("max context", "--max-context", n, a.max_context));
        }
        if let Some(n) = self.max_prefill.filter(|&n| n != a.max_prefill) {
            return Err(mismatch("max prefill", "--max-prefill", n, a.max_prefill));
        }
        if self.attention_spans.is_some() {
            return Err(PioError::Options(
                "attention spans are a compile setting: pass pio-compile --attention-spans".into(),
            ));
        }
        let compiled = a.tensor_parallel.map_or(1, |tp| tp.ranks);
        if let Some(n) = self
            .tensor_parallel
            .filter(|&n| n != compiled && compiled > 1)
        {
            return Err(mismatch("--tp", "--tp", n, compiled));
        }
        Ok(())
    }

    /// The ranks a load of `a` runs: `--tp`, else the ranks the artifact was compiled for.
    pub fn ranks_for(&self, a: &pio_artifact::Artifact) -> Result<usize, PioError> {
        match (self.tensor_parallel, a.tensor_parallel) {
            (None, Some(tp)) => Ok(tp.ranks),
            _ => self.ranks(),
        }
    }
}

/// A 0/1 switch from the environment, `default` where it is unset.
fn env_flag(name: &str, default: bool) -> Result<bool, PioError> {
    match std::env::var(name).as_deref() {
        Err(_) => Ok(default),
        Ok("1") => Ok(true),
        Ok("0") => Ok(false),
        Ok(t) => Err(PioError::Options(format!("{name} '{t}': not 0 or 1"))),
    }
}
