//! Running the benchmark: compile (cold and warm kernel cache), load, prefill per prompt length
//! (TTFT and tokens/s), decode at each context position, memory. On the GPU, decode is timed
//! with CUDA events around graph replays with GPU sampling; prefill and TTFT with the host
//! clock around synchronized steps. Warm-up runs are not counted.

use super::report::*;
use crate::{Device, LoadOptions, Model, PioError, SpecSource, WeightsSource};
use pio_runtime::sampling::SamplingParams;
use std::path::PathBuf;
use std::time::Instant;

/// A model to measure: a spec (a variant file or a checkpoint's config.json, compiled as a
/// load does) or a `pio-compile` output folder.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    Spec(SpecSource),
    Artifact(PathBuf),
}

impl ModelSource {
    /// The file or folder it comes from.
    pub fn path(&self) -> &std::path::Path {
        match self {
            ModelSource::Spec(SpecSource::File(p))
            | ModelSource::Spec(SpecSource::Checkpoint { dir: p, .. })
            | ModelSource::Artifact(p) => p,
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub specs: Vec<ModelSource>,
    /// One source for every spec, or one per spec.
    pub weights: Vec<WeightsSource>,
    pub prompt_lens: Vec<usize>,
    pub gen: usize,
    pub contexts: Vec<usize>,
    pub repeats: usize,
    pub warmup: usize,
    pub device: Device,
    /// Tensor-parallel ranks (more than 1: one GPU each, or the CPU backend's simulated ranks).
    pub tensor_parallel: usize,
    pub progress: bool,
    /// The sizes are defaults, not the user's: drop the contexts and prompt lengths a model
    /// cannot hold (with a note) instead of refusing it.
    pub fit_to_model: bool,
}

/// The prompt lengths and contexts to measure on a model of context `bound`: the user's, each
/// checked, or the defaults that fit (see [`BenchOptions::fit_to_model`]).
fn fit_sizes(
    o: &BenchOptions,
    bound: usize,
    name: &str,
) -> Result<(Vec<usize>, Vec<usize>), PioError> {
    let prompt_fits = |p: usize| p >= 1 && p < bound;
    // A context of 0 still prefills one token.
    let context_fits = |c: usize| c.max(1).saturating_add(o.gen) <= bound;
    if !o.fit_to_model {
        if let Some(&c) = o.contexts.iter().find(|&&c| !context_fits(c)) {
            return Err(PioError::Device(format!(
                "bench: context {c} + {} generated tokens exceed {name}'s context of {bound}",
                o.gen
            )));
        }
        if let Some(&p) = o.prompt_lens.iter().find(|&&p| !prompt_fits(p)) {
            return Err(PioError::Device(format!(
                "bench: prompt length {p} must be between 1 and {name}'s context of {bound}"
            )));
        }
        return Ok((o.prompt_lens.clone(), o.contexts.clone()));
    }
    let (prompts, dropped_p): (Vec<usize>, Vec<usize>) =
        o.prompt_lens.iter().partition(|&&p| prompt_fits(p));
    let (contexts, dropped_c): (Vec<usize>, Vec<usize>) =
        o.contexts.iter().partition(|&&c| context_fits(c));
    if prompts.is_empty() && contexts.is_empty() {
        return Err(PioError::Device(format!(
            "bench: no default size fits {name}'s context of {bound}: give --prompt-len and \
             --context"
        )));
    }
    if !dropped_p.is_empty() || !dropped_c.is_empty() {
        eprintln!(
            "note: {name} holds {bound} tokens: skipping prompt lengths {dropped_p:?} and \
             contexts {dropped_c:?} (+ {} generated)",
            o.gen
        );
    }
    Ok((prompts, contexts))
}

/// Runs every measurement for every spec.
pub fn run(o: &BenchOptions) -> Result<BenchReport, PioError> {
    if o.specs.is_empty() || o.repeats == 0 || o.gen == 0 {
        return Err(PioError::Device(
            "bench: needs a spec, --repeats >= 1 and --gen >= 1".into(),
        ));
    }
    if o.weights.len() != 1 && o.weights.len() != o.specs.len() {
        return Err(PioError::Device(format!(
            "bench: {} --weights for {} --spec (give one for all, or one per spec)",
            o.weights.len(),
            o.specs.len()
        )));
    }
    let max_ctx = o.contexts.iter().copied().max().unwrap_or(0) + o.gen;
    let max_prompt = o.prompt_lens.iter().copied().max().unwrap_or(0);
    let steps = o.specs.len() as u64
        * (o.repeats + o.warmup) as u64
        * (o.prompt_lens.len() + o.contexts.len()) as u64;
    let bar = o.progress.then(|| {
        let b = indicatif::ProgressBar::new(steps);
        b.set_style(
            indicatif::ProgressStyle::with_template("bench {bar:40} {pos}/{len} {msg}")
                .expect("static template"),
        );
        b
    });
    let mut models = Vec::new();
    let mut machine = Machine {
        device: "cpu".into(),
        driver: None,
        cuda: None,
        commit: option_env!("PIO_GIT_COMMIT").map(str::to_string),
        date: today(),
        copy_bandwidth_bytes_per_s: None,
    };
    for (i, spec) in o.specs.iter().enumerate() {
        let weights = o.weights.get(i).unwrap_or(&o.weights[0]).clone();
        let cache =
            std::env::temp_dir().join(format!("pio-bench-cache-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let mut opts = LoadOptions {
            progress: false,
            kernel_cache: Some(cache.clone()),
            tensor_parallel: Some(o.tensor_parallel),
            ..Default::default()
        };
        let mut model = match spec {
            ModelSource::Spec(source) => {
                // As long a cache as the runs need, within the spec's bound (runs that do not
                // fit are refused below).
                let bound = source.load()?.context_bound().unwrap_or(usize::MAX);
                opts.max_context = Some(max_ctx.max(max_prompt + 1).min(bound));
                opts.max_prefill = Some(max_prompt.clamp(1, 2048));
                Model::load_source(source, &weights, o.device, &opts)?
            }
            // An artifact's context and prefill sizes are what pio-compile gave it.
            ModelSource::Artifact(dir) => Model::load_artifact(dir, &weights, o.device, &opts)?,
        };
        let name = model.info().name.clone();
        if let Some(b) = &bar {
            b.set_message(name.clone());
        }
        let (prompt_lens, contexts) = fit_sizes(o, model.context_bound(), &name)?;
        let timings = model.timings().clone();
        let compile_cold_s = timings.compile_s + timings.nvrtc_s;
        // Warm: the same compile again (the spec compile when there is one), every kernel now in
        // the cache.
        let t = Instant::now();
        if let ModelSource::Spec(source) = spec {
            let s = source.load()?;
            let compile_opts = pio_compiler::CompileOptions {
                codegen: opts.codegen_options()?,
                ..Default::default()
            };
            pio_compiler::compile(&s, &compile_opts)?;
        }
        if let Some(c) = model.cuda() {
            let arch = c.model().gpu().arch.clone();
            crate::cuda::compile_kernels(&c.model().artifact, &arch, &cache)?;
        }
        let compile_warm_s = t.elapsed().as_secs_f64();
        let load_s = timings.weights_s;
        let _ = std::fs::remove_dir_all(&cache);
        let tokens =
            |n: usize| -> Vec<u32> { (0..n).map(|i| 100 + ((i * 7919) % 400) as u32).collect() };
        let greedy = SamplingParams::greedy();

        let mut prefill = Vec::new();
        for &p in &prompt_lens {
            let ids = tokens(p);
            let (mut ttft, mut tps) = (Vec::new(), Vec::new());
            for r in 0..o.warmup + o.repeats {
                let t0 = Instant::now();
                let (prefill_s, _) = first_token(&mut model, &ids, &greedy)?;
                let total = t0.elapsed().as_secs_f64();
                if r >= o.warmup {
                    ttft.push(total * 1e3);
                    tps.push(p as f64 / prefill_s);
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            prefill.push(PrefillBench {
                prompt_len: p,
                ttft_ms: Stat::of(&ttft),
                tokens_per_s: Stat::of(&tps),
            });
        }

        let weight_bytes = model_weight_bytes(&mut model);
        let mut decode = Vec::new();
        for &c in &contexts {
            let ids = tokens(c.max(1));
            let mut tps = Vec::new();
            // The cache is filled once per context. On the GPU every run rewinds to it (the runs
            // overwrite only the positions after it); the CPU fills it again.
            let (_, first) = first_token(&mut model, &ids, &greedy)?;
            for r in 0..o.warmup + o.repeats {
                let secs = match model.cuda() {
                    Some(cuda) => {
                        let (len, gen) = (ids.len(), o.gen);
                        // Every rank of a tensor-parallel model decodes; rank 0's time counts.
                        cuda.each(|m| {
                            m.rewind(len, first)?;
                            super::gpu_timing::timed_decode(m, gen, &greedy)
                        })? / 1e3
                    }
                    None => {
                        if r > 0 {
                            first_token(&mut model, &ids, &greedy)?;
                        }
                        let t = Instant::now();
                        let mut next = first;
                        for _ in 0..o.gen {
                            let row = model.step_logits(&[next])?.pop().unwrap_or_default();
                            next = crate::argmax(&row);
                        }
                        t.elapsed().as_secs_f64()
                    }
                };
                if r >= o.warmup {
                    tps.push(o.gen as f64 / secs);
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            decode.push(DecodeBench {
                context: c,
                tokens_per_s: Stat::of(&tps),
                bandwidth_floor_tokens_per_s: None,
            });
        }

        if let Some(p) = model.cuda().and_then(|c| c.model().profile_report()) {
            eprintln!("{name}, PIO_PROFILE:\n{}", p.trim_end());
        }
        let memory = match model.cuda() {
            Some(c) => {
                let m = c.model();
                let r = &m.artifact.regions;
                if machine.copy_bandwidth_bytes_per_s.is_none() {
                    machine.copy_bandwidth_bytes_per_s =
                        Some(super::gpu_timing::copy_bandwidth(m)?);
                    machine.device = m.gpu().name.clone();
                    machine.driver = m.gpu().driver_release();
                    let nvrtc = pio_runtime::cuda::nvrtc::version()
                        .ok()
                        .map(|(a, b)| format!("NVRTC {a}.{b}"));
                    machine.cuda = match (m.gpu().driver_version(), nvrtc) {
                        (Some(c), Some(n)) => Some(format!("CUDA {c} ({n})")),
                        (c, n) => c.map(|c| format!("CUDA {c}")).or(n),
                    };
                }
                let (free, total) = m.gpu().memory();
                let workspace = m.workspace_bytes();
                Memory {
                    peak: r.weights + r.kv + r.arena + r.io + workspace,
                    device_in_use: Some(total - free),
                    weights: r.weights,
                    kv_cache: r.kv,
                    activations: r.arena + r.io,
                    workspace,
                }
            }
            None => Memory {
                peak: peak_rss(),
                device_in_use: None,
                weights: weight_bytes,
                kv_cache: 0,
                activations: 0,
                workspace: 0,
            },
        };
        if let Some(bw) = machine.copy_bandwidth_bytes_per_s {
            for d in &mut decode {
                d.bandwidth_floor_tokens_per_s = Some(bw / weight_bytes as f64);
            }
        }
        models.push(ModelBench {
            model: name,
            spec: spec.path().display().to_string(),
            params: model.param_count(),
            weight_bytes: model.weight_bytes(),
            compile_cold_s,
            compile_warm_s,
            load_s,
            prefill,
            decode,
            memory,
        });
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(BenchReport {
        schema_version: SCHEMA_VERSION,
        engine: "pio".into(),
        machine,
        settings: Settings {
            weights: o
                .weights
                .iter()
                .map(|w| match w {
                    WeightsSource::Random { seed } => format!("random:{seed}"),
                    WeightsSource::Dir(d) => d.display().to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            prompt_lens: o.prompt_lens.clone(),
            gen: o.gen,
            contexts: o.contexts.clone(),
            repeats: o.repeats,
            warmup: o.warmup,
            dtype: if o.device == Device::Cpu || o.tensor_parallel > 1 {
                "f32".into()
            } else {
                "bf16".into()
            },
            batch: 1,
            tensor_parallel: o.tensor_parallel,
        },
        models,
    })
}

/// Prefills `ids` on an empty cache and picks the first token (greedy); returns the seconds
/// that took and the token.
fn first_token(
    model: &mut Model,
    ids: &[u32],
    greedy: &SamplingParams,
) -> Result<(f64, u32), PioError> {
    let t = Instant::now();
    let token = match model.cuda() {
        Some(c) => c.each(|m| {
            m.reset()?;
            m.step(ids)?;
            m.sample(greedy, 0)
        })?,
        None => {
            let rows = model.prefill_logits(ids)?;
            crate::argmax(rows.last().map(Vec::as_slice).unwrap_or(&[]))
        }
    };
    Ok((t.elapsed().as_secs_f64(), token))
}

/// Bytes of weights as the device holds them.
fn model_weight_bytes(model: &mut Model) -> u64 {
    match model.cuda() {
        Some(c) => c.model().artifact.regions.weights,
        // The CPU executor holds f32: twice the bf16 bytes.
        None => 2 * model.weight_bytes(),
    }
}

/// Peak resident memory of this process (Linux; 0 elsewhere).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
