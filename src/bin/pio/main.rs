//! `pio`: list models, run them, write random-weight checkpoints.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pio::{errln, outln};
use pio::{Device, LoadOptions, Model, WeightsSource};
use pio_compiler::summary::bytes_human;
use std::path::PathBuf;

#[path = "../../specs.rs"]
mod specs;

mod inspect;
mod reports;
mod run;
mod serve;
mod serving;

#[derive(Parser)]
#[command(
    version,
    about = "pio: a declarative model compiler and executor for LLMs (Qwen3, Qwen2.5, Llama 3 and any family written as a spec)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The launch list that runs single teacher-forced tokens (`pio logits --step-path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StepPath {
    Decode,
    Prefill,
}

#[derive(Subcommand)]
enum Command {
    /// List the model specs in a folder (default: model-specs/).
    List {
        /// Folder to search.
        #[arg(long)]
        specs: Option<PathBuf>,
    },
    /// Generate text (streams to stdout; timings go to stderr).
    Run(RunArgs),
    /// Logits for given token ids: a prefill, then greedy decode steps; written as .npy
    /// (one row per position), generated ids printed. For parity checks against references.
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        /// An HF model directory, or `random`.
        #[arg(long, default_value = "random")]
        weights: String,
        /// Prompt token ids, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        ids: Vec<u32>,
        /// Greedy decode steps after the prefill (their logits are appended).
        #[arg(long, default_value_t = 0)]
        decode_steps: usize,
        /// Teacher forcing: decode these ids one at a time after the prefill (instead of
        /// greedy steps); their logits are appended.
        #[arg(long, value_delimiter = ',')]
        forced_ids: Vec<u32>,
        /// Which launch list runs each single decode token on the GPU: `decode` (the GEMVs
        /// and the CUDA graph, as generation does) or `prefill` (cuBLAS GEMMs and the prefill
        /// attention; a parity diagnostic).
        #[arg(long, value_enum, default_value_t = StepPath::Decode)]
        step_path: StepPath,
        /// Tensor-parallel ranks: one GPU each, or simulated ranks on the CPU backend.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        tp: Option<u32>,
        /// KV-cache length on the GPU.
        #[arg(long)]
        max_context: Option<usize>,
        /// Output .npy file.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "auto")]
        device: Device,
    },
    /// Compile every kernel of a pio-compile output folder with NVRTC (needs CUDA's NVRTC
    /// library, no GPU): prints the options, the NVRTC version and each kernel's resources.
    CheckKernels {
        /// A folder written by pio-compile.
        dir: PathBuf,
        /// Target architecture.
        #[arg(long, default_value = "sm_90")]
        arch: String,
    },
    /// Benchmark one or more specs: compile, load, TTFT, prefill and decode speed, memory.
    /// Prints a markdown table; --json writes every figure with the machine and settings.
    Bench(BenchArgs),
    /// Side by side from saved reports (no run): pio's JSON against others (e.g. HF transformers
    /// from benches/reference/hf_bench.py; reports of one engine, one per model, are merged):
    /// pio's markdown table, a ratio table per other engine, and plots with --plots.
    Compare {
        /// pio's report (pio bench --json).
        ours: PathBuf,
        /// Reports to compare against.
        #[arg(required = true)]
        others: Vec<PathBuf>,
        /// Write decode.svg and prefill.svg with every report into this folder.
        #[arg(long)]
        plots: Option<PathBuf>,
    },
    /// An OpenAI-compatible HTTP server on the batching engine (/v1/chat/completions,
    /// /v1/completions, /v1/models, /health, /metrics).
    Serve(serve::ServeArgs),
    /// Model specs of checkpoints.
    Spec {
        #[command(subcommand)]
        command: SpecCommand,
    },
    /// Write a complete HF-layout directory of random weights for a spec.
    InitWeights {
        /// The variant spec (a path or a name in model-specs/).
        spec: String,
        /// Output directory.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replace files that already exist in the directory.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SpecCommand {
    /// Print the variant spec pio uses for an HF checkpoint directory (what `pio run --weights
    /// DIR` without --spec runs): the family its config.json's `architectures` names, the
    /// hyperparameters from config.json, the manifest from its tokenizer and generation files.
    /// Save it in model-specs/ to keep or edit it.
    FromConfig {
        /// The checkpoint directory (config.json, tokenizer.json, tokenizer_config.json).
        dir: PathBuf,
        /// Folder of the model families (default: model-specs/).
        #[arg(long)]
        specs: Option<PathBuf>,
    },
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// What to measure: `latency` (batch 1: compile, TTFT, prefill and decode speed, memory),
    /// `throughput` (the batching engine: --requests requests of --prompt-len tokens and --gen
    /// generated tokens submitted at once) or `shared-prefix` (requests sharing a prefix, the
    /// prefix cache on and off).
    #[arg(long, value_enum, default_value_t = BenchMode::Latency)]
    mode: BenchMode,
    /// throughput: request counts, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128,256")]
    requests: Vec<usize>,
    /// shared-prefix: requests, shared prefix tokens, tokens of each request's own.
    #[arg(long, value_delimiter = ',', default_value = "64,4096,64")]
    shared_prefix: Vec<usize>,
    /// Batching engine: most requests running at once (a GPU artifact caps it).
    #[arg(long, default_value_t = 128)]
    max_running: usize,
    /// Batching engine: most tokens per step (decode tokens plus prefill chunks).
    #[arg(long, default_value_t = 2048)]
    max_batch_tokens: usize,
    /// Batching engine: KV blocks in the pool [default: enough for --max-running whole
    /// sequences, within --memory-fraction of the free memory].
    #[arg(long)]
    kv_blocks: Option<usize>,
    /// Batching engine: share of the free GPU memory (CPU: available host memory) the KV pool
    /// may take, in (0, 1].
    #[arg(long, default_value_t = 0.9)]
    memory_fraction: f64,
    /// Specs to measure (repeatable; a path or a name in model-specs/; default qwen3-tiny when
    /// no --artifact is given either).
    #[arg(long)]
    spec: Vec<String>,
    /// pio-compile output folders to measure (repeatable), after the specs: their context and
    /// prefill sizes are what pio-compile gave them.
    #[arg(long, value_name = "DIR")]
    artifact: Vec<PathBuf>,
    /// `random`, or HF directories: one for every spec, or one per spec (repeatable).
    #[arg(long, default_value = "random")]
    weights: Vec<String>,
    /// Prompt lengths for TTFT and prefill speed [default: 128,2048, those that fit the model].
    #[arg(long, value_delimiter = ',')]
    prompt_len: Option<Vec<usize>>,
    /// Tokens generated per decode measurement.
    #[arg(long, default_value_t = 256)]
    gen: usize,
    /// Context positions at which decode speed is measured [default: 128,1024,4096,16384,
    /// those that fit the model].
    #[arg(long, value_delimiter = ',')]
    context: Option<Vec<usize>>,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    device: Device,
    /// Tensor-parallel ranks: one GPU each (NCCL between them), or simulated ranks on the CPU
    /// backend (a functional check, not a speed figure).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    tp: Option<u32>,
    /// Write the report as JSON (schema: benches/bench-schema.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write decode.svg and prefill.svg into this folder (with --compare reports drawn too).
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Other reports (JSON, e.g. HF transformers from benches/reference/hf_bench.py) to draw
    /// beside this run and to print a ratio table against.
    #[arg(long)]
    compare: Vec<PathBuf>,
}

/// `pio bench --mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchMode {
    Latency,
    Throughput,
    SharedPrefix,
}

#[derive(Args)]
pub(crate) struct ModelArgs {
    /// The variant spec (a path or a name in model-specs/), compiled at load [default: with
    /// --weights DIR, the variant its config.json describes (`pio spec from-config DIR` prints
    /// it); else qwen3-tiny].
    #[arg(long, conflicts_with = "artifact")]
    spec: Option<String>,
    /// A folder written by pio-compile: runs that compiled graph, no spec and no compiler pass.
    #[arg(long, value_name = "DIR")]
    pub(crate) artifact: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the model these arguments name.
    fn load(&self, weights: &WeightsSource, device: Device, opts: &LoadOptions) -> Result<Model> {
        Ok(match &self.artifact {
            Some(dir) => Model::load_artifact(dir, weights, device, opts)?,
            None => {
                let source = specs::spec_source(self.spec.as_deref(), weights)?;
                Model::load_source(&source, weights, device, opts)?
            }
        })
    }
}

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An HF model directory, or `random` for seeded random weights of the real shapes.
    #[arg(long, default_value = "random")]
    weights: String,
    #[arg(long, default_value = "The capital of France is")]
    prompt: String,
    /// Wrap the prompt in the model's chat template (user turn + assistant prompt).
    #[arg(long)]
    chat: bool,
    /// System prompt (with --chat).
    #[arg(long)]
    system: Option<String>,
    /// Turn thinking off (enable_thinking=false) for models whose template supports it.
    #[arg(long)]
    no_think: bool,
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Sampling temperature (0 = greedy); default from the model's generation config.
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Keep only the k most probable tokens; 0 turns the filter off (as in HF).
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    min_p: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    repetition_penalty: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    presence_penalty: Option<f32>,
    /// Seed of the sampler (and of random weights).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    device: Device,
    /// Tensor-parallel ranks: the graph sharded over N ranks, one GPU each (NCCL between
    /// them), or simulated ranks on the CPU backend.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    tp: Option<u32>,
    /// KV-cache length on the GPU (default: the spec's bound, at most 32768).
    #[arg(long)]
    max_context: Option<usize>,
    /// Keep generating past end-of-sequence tokens (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
}

fn main() {
    let cli = Cli::parse();
    // The server shuts down gracefully on its own signals (serve.rs); every other command
    // removes its temporaries and exits.
    if !matches!(cli.command, Command::Serve(_)) {
        pio::cli::remove_temporaries_on_interrupt();
    }
    pio::cli::finish(run(cli))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::List { specs } => inspect::list(specs.unwrap_or_else(specs::specs_dir)),
        Command::Run(args) => run::run_model(args),
        Command::Bench(args) => reports::bench(args),
        Command::Compare {
            ours,
            others,
            plots,
        } => reports::compare(&ours, &others, plots.as_deref()),
        Command::CheckKernels { dir, arch } => inspect::check_kernels(&dir, &arch),
        Command::Spec {
            command: SpecCommand::FromConfig { dir, specs },
        } => {
            let specs_dir = specs.unwrap_or_else(specs::specs_dir);
            let v = pio_compiler::spec::from_config::from_config(&dir, &specs_dir)?;
            // Checked as a load would check it before it is shown.
            pio_compiler::spec::load_text(&v.text, &v.path)?;
            outln!("{}", v.text.trim_end())?;
            Ok(())
        }
        Command::Logits {
            model,
            weights,
            ids,
            decode_steps,
            forced_ids,
            step_path,
            max_context,
            tp,
            output,
            seed,
            device,
        } => {
            pio::cli::check_output_file(&output, "--output")?;
            let opts = LoadOptions {
                max_context,
                tensor_parallel: tp.map(|n| n as usize),
                ..Default::default()
            };
            let mut model = model.load(&WeightsSource::from_arg(&weights, seed), device, &opts)?;
            errln!("device: {}", model.device_name());
            if step_path == StepPath::Prefill {
                let gpu = model
                    .cuda()
                    .ok_or_else(|| anyhow::anyhow!("--step-path prefill needs --device cuda"))?;
                gpu.each(|m| {
                    m.set_single_tokens_as_prefill(true);
                    Ok(())
                })?;
            }
            let (rows, generated) = if forced_ids.is_empty() {
                model.greedy_logits(&ids, decode_steps)?
            } else {
                let mut rows = model.prefill_logits(&ids)?;
                for &t in &forced_ids {
                    rows.extend(model.step_logits(&[t])?);
                }
                (rows, forced_ids.clone())
            };
            pio::npy::write_f32_2d(&output, &rows)
                .with_context(|| format!("writing {}", output.display()))?;
            let ids: Vec<String> = generated.iter().map(u32::to_string).collect();
            outln!("{}", ids.join(","))?;
            Ok(())
        }
        Command::InitWeights {
            spec,
            output,
            seed,
            force,
        } => {
            let path = specs::resolve_spec(&spec)?;
            let summary = pio::init_weights::init_weights(&path, &output, seed, force, true)?;
            outln!(
                "wrote {} ({} of weights in {})",
                output.display(),
                bytes_human(summary.total_bytes),
                summary.weight_files.join(", ")
            )?;
            Ok(())
        }
    }
}
