//! `pio`: list models, run them, write random-weight checkpoints.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pio::runtime::chat::{ChatOptions, Message};
use pio::runtime::sampling::SamplingParams;
use pio::{errln, outln};
use pio::{Device, LoadOptions, Model, WeightsSource};
use pio_compiler::summary::{bytes_human, thousands};
use std::path::PathBuf;

#[path = "../specs.rs"]
mod specs;

#[derive(Parser)]
#[command(
    version,
    about = "pio: a declarative model compiler and executor for Qwen3"
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

#[derive(Args)]
struct BenchArgs {
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

#[derive(Args)]
struct ModelArgs {
    /// The variant spec (a path or a name in model-specs/), compiled at load [default:
    /// qwen3-tiny].
    #[arg(long, conflicts_with = "artifact")]
    spec: Option<String>,
    /// A folder written by pio-compile: runs that compiled graph, no spec and no compiler pass.
    #[arg(long, value_name = "DIR")]
    artifact: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the model these arguments name.
    fn load(&self, weights: &WeightsSource, device: Device, opts: &LoadOptions) -> Result<Model> {
        Ok(match &self.artifact {
            Some(dir) => Model::load_artifact(dir, weights, device, opts)?,
            None => {
                let spec = specs::resolve_spec(self.spec.as_deref().unwrap_or("qwen3-tiny"))?;
                Model::load_with(&spec, weights, device, opts)?
            }
        })
    }
}

#[derive(Args)]
struct RunArgs {
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
    /// KV-cache length on the GPU (default: the spec's bound, at most 32768).
    #[arg(long)]
    max_context: Option<usize>,
    /// Keep generating past end-of-sequence tokens (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
}

fn main() {
    pio::cli::remove_temporaries_on_interrupt();
    pio::cli::finish(run())
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Command::List { specs } => list(specs.unwrap_or_else(specs::specs_dir)),
        Command::Run(args) => run_model(args),
        Command::Bench(args) => bench(args),
        Command::Compare {
            ours,
            others,
            plots,
        } => compare(&ours, &others, plots.as_deref()),
        Command::CheckKernels { dir, arch } => check_kernels(&dir, &arch),
        Command::Logits {
            model,
            weights,
            ids,
            decode_steps,
            forced_ids,
            step_path,
            max_context,
            output,
            seed,
            device,
        } => {
            pio::cli::check_output_file(&output, "--output")?;
            let opts = LoadOptions {
                max_context,
                ..Default::default()
            };
            let mut model = model.load(&WeightsSource::from_arg(&weights, seed), device, &opts)?;
            errln!("device: {}", model.device_name());
            if step_path == StepPath::Prefill {
                let gpu = model
                    .cuda()
                    .ok_or_else(|| anyhow::anyhow!("--step-path prefill needs --device cuda"))?;
                gpu.model().set_single_tokens_as_prefill(true);
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

fn bench(a: BenchArgs) -> Result<()> {
    use pio::bench::runner::ModelSource;
    // Output paths first: a finished benchmark must never be lost to a bad path.
    if let Some(p) = &a.json {
        pio::cli::check_output_file(p, "--json")?;
    }
    if let Some(d) = &a.plots {
        pio::cli::check_output_folder(d, "--plots")?;
    }
    let mut specs = a
        .spec
        .iter()
        .map(|s| specs::resolve_spec(s).map(ModelSource::Spec))
        .collect::<Result<Vec<_>>>()?;
    specs.extend(a.artifact.iter().cloned().map(ModelSource::Artifact));
    if specs.is_empty() {
        specs.push(ModelSource::Spec(specs::resolve_spec("qwen3-tiny")?));
    }
    let others = read_reports(&a.compare)?;
    let opts = pio::bench::runner::BenchOptions {
        specs,
        weights: a
            .weights
            .iter()
            .map(|w| WeightsSource::from_arg(w, 0))
            .collect(),
        fit_to_model: a.prompt_len.is_none() && a.context.is_none(),
        prompt_lens: a.prompt_len.unwrap_or_else(|| vec![128, 2048]),
        gen: a.gen,
        contexts: a.context.unwrap_or_else(|| vec![128, 1024, 4096, 16384]),
        repeats: a.repeats,
        warmup: a.warmup,
        device: a.device,
        progress: true,
    };
    let report = pio::bench::runner::run(&opts)?;
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        errln!("wrote {}", path.display());
    }
    show(&report, &others, a.plots.as_deref())
}

/// `pio compare`: the same output as `pio bench` from a saved report.
fn compare(
    ours: &std::path::Path,
    others: &[PathBuf],
    plots: Option<&std::path::Path>,
) -> Result<()> {
    if let Some(d) = plots {
        pio::cli::check_output_folder(d, "--plots")?;
    }
    let ours = read_reports(&[ours.to_path_buf()])?.remove(0);
    show(&ours, &read_reports(others)?, plots)
}

/// Reads bench reports (JSON); reports of one engine are merged into one.
fn read_reports(paths: &[PathBuf]) -> Result<Vec<pio::bench::report::BenchReport>> {
    let reports = paths
        .iter()
        .map(|p| {
            let text = pio_artifact::read::read_bounded_text(p, pio_artifact::read::MAX_JSON_BYTES)
                .with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a bench report", p.display()))
        })
        .collect::<Result<_>>()?;
    Ok(pio::bench::compare::merge_by_engine(reports))
}

/// pio's markdown table, a ratio table against each other report, and the plots with all of them.
fn show(
    ours: &pio::bench::report::BenchReport,
    others: &[pio::bench::report::BenchReport],
    plots: Option<&std::path::Path>,
) -> Result<()> {
    outln!("{}", pio::bench::report::markdown(ours))?;
    for other in others {
        outln!(
            "pio vs {}:\n{}",
            other.engine,
            pio::bench::compare::ratio_table(ours, other)
        )?;
    }
    if let Some(dir) = plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut all = vec![ours];
        all.extend(others.iter());
        for f in pio::bench::plot::write_plots(&all, dir)? {
            errln!("wrote {}", f.display());
        }
    }
    Ok(())
}

/// The sampling flags the user gave, over neutral values: checked before anything loads.
fn sampling_flags(a: &RunArgs) -> SamplingParams {
    let n = SamplingParams::greedy();
    SamplingParams {
        temperature: a.temperature.unwrap_or(n.temperature),
        top_k: a.top_k.unwrap_or(n.top_k),
        top_p: a.top_p.unwrap_or(n.top_p),
        min_p: a.min_p.unwrap_or(n.min_p),
        repetition_penalty: a.repetition_penalty.unwrap_or(n.repetition_penalty),
        presence_penalty: a.presence_penalty.unwrap_or(n.presence_penalty),
        seed: a.seed,
    }
}

fn run_model(a: RunArgs) -> Result<()> {
    // Argument errors first: nothing is loaded for a command line that cannot run.
    if !a.chat && (a.system.is_some() || a.no_think) {
        anyhow::bail!("--system and --no-think need --chat");
    }
    sampling_flags(&a).validate()?;
    let opts = LoadOptions {
        max_context: a.max_context,
        progress: true,
        ..Default::default()
    };
    let weights = WeightsSource::from_arg(&a.weights, a.seed);
    let mut model = a.model.load(&weights, a.device, &opts)?;
    if model.has_random_weights() {
        errln!(
            "note: {} runs with random weights: the output is gibberish",
            model.info().name
        );
    }
    let text = if a.chat {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(Message::system(s.clone()));
        }
        msgs.push(Message::user(a.prompt.clone()));
        let thinking = model.info().thinking;
        if a.no_think && !thinking {
            errln!("note: --no-think has no effect: this model never thinks");
        }
        let opts = ChatOptions {
            add_generation_prompt: true,
            enable_thinking: (thinking && a.no_think).then_some(false),
        };
        model.chat_template()?.render(&msgs, &opts)?
    } else {
        a.prompt.clone()
    };
    let prompt = model.tokenizer().encode(&text)?;
    let d = model.defaults().sampling.clone();
    let sampling = SamplingParams {
        temperature: a.temperature.unwrap_or(d.temperature),
        top_k: a.top_k.unwrap_or(d.top_k),
        top_p: a.top_p.unwrap_or(d.top_p),
        min_p: a.min_p.unwrap_or(d.min_p),
        repetition_penalty: a.repetition_penalty.unwrap_or(d.repetition_penalty),
        presence_penalty: a.presence_penalty.unwrap_or(d.presence_penalty),
        seed: a.seed,
    };
    sampling.validate()?;
    let mut opts = model.generate_options(a.max_new_tokens, Some(sampling));
    if a.ignore_eos {
        opts.eos_token_ids.clear();
    }
    if !a.chat {
        pio::cli::out_text(&text)?;
    }
    let mut gen = model.generate(&prompt, opts)?;
    for token in gen.by_ref() {
        pio::cli::out_text(&token?.text)?;
    }
    let tail = gen.flush()?;
    outln!("{tail}")?;
    let s = gen.stats().clone();
    drop(gen);
    if let Some(c) = model.cuda() {
        errln!("memory: {}", c.model().memory_report());
        if let Some(p) = c.model().profile_report() {
            errln!("{}", p.trim_end());
        }
        if let Some(why) = &c.model().graph_fallback {
            errln!("note: decode ran without a CUDA graph: {why}");
        }
    }
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |r| format!("{r:.1}"));
    errln!(
        "{} | prompt: {} tokens, {} tokens/s | generated: {} tokens, {} tokens/s | stop: {}",
        model.device_name(),
        s.prompt_tokens,
        rate(s.prefill_tokens_per_s()),
        s.generated_tokens,
        rate(s.decode_tokens_per_s()),
        match s.stop {
            Some(pio::runtime::generate::StopReason::Eos(id)) => format!("eos ({id})"),
            Some(pio::runtime::generate::StopReason::MaxTokens) => "max tokens".into(),
            Some(pio::runtime::generate::StopReason::ContextFull) => "context full".into(),
            None => "?".into(),
        }
    );
    Ok(())
}

fn check_kernels(dir: &std::path::Path, arch: &str) -> Result<()> {
    use pio::runtime::cuda::nvrtc;
    let artifact = pio_artifact::Artifact::load_dir(dir)?;
    let mut base = artifact.nvrtc_options.clone();
    base.push("--ptxas-options=-v".into());
    let options = nvrtc::options_for(arch, &base);
    let (major, minor) = nvrtc::version()?;
    outln!("NVRTC {major}.{minor}, options: {}", options.join(" "))?;
    let kernels: Vec<(String, String)> = artifact
        .kernels
        .iter()
        .map(|k| (k.name.clone(), k.source.clone()))
        .collect();
    let scratch = std::env::temp_dir().join(format!("pio-check-kernels-{}", std::process::id()));
    let cache = nvrtc::KernelCache::new(scratch.clone());
    let start = std::time::Instant::now();
    let compiled = cache.compile_all(&kernels, &options);
    let _ = std::fs::remove_dir_all(&scratch);
    let compiled = compiled?;
    for c in &compiled {
        let usage: Vec<&str> = c
            .log
            .lines()
            .filter(|l| l.contains("registers") || l.contains("spill"))
            .map(str::trim)
            .collect();
        outln!(
            "ok  {:<32} {:>7} bytes  {}",
            c.name,
            c.image.len(),
            usage.join(" | ")
        )?;
    }
    outln!(
        "{} kernels compiled for {arch} in {:.2} s",
        compiled.len(),
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}

fn list(dir: PathBuf) -> Result<()> {
    let files = pio_compiler::spec::discover(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?;
    outln!(
        "{:<26} {:>15} {:>10} {:>7} {:>9}  SPEC",
        "MODEL",
        "PARAMS",
        "WEIGHTS",
        "LAYERS",
        "CONTEXT"
    )?;
    let mut broken = 0;
    for path in files {
        let shown = path.display();
        // Sizes come from the declarations: listing never builds a graph.
        match pio_compiler::spec::load(&path) {
            Ok(spec) => {
                let size = spec.size();
                outln!(
                    "{:<26} {:>15} {:>10} {:>7} {:>9}  {shown}",
                    spec.name(),
                    thousands(size.params),
                    bytes_human(size.weight_bytes),
                    size.layers,
                    spec.context_bound()
                        .map(|c| thousands(c as u64))
                        .unwrap_or_default(),
                )?;
            }
            Err(e) => {
                broken += 1;
                errln!("{shown}: not a usable spec:\n{e}");
            }
        }
    }
    if broken > 0 {
        anyhow::bail!("{broken} spec file(s) could not be loaded (see above)");
    }
    Ok(())
}
