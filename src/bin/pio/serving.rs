//! `pio bench --mode throughput | shared-prefix`: the batching engine under offline load.

use crate::{specs, BenchArgs, BenchMode};
use anyhow::{bail, Context, Result};
use pio::bench::serving::{self, ServingOptions};
use pio::{errln, outln, EngineConfig, LoadOptions, Model, WeightsSource};
use pio_compiler::codegen::{DEFAULT_PREFILL, MAX_PREFILL};

/// The prefill size a spec is compiled with for an engine of `max_batch_tokens` tokens per
/// step: the default, or more where the steps are to be longer (a GPU's paged steps take at
/// most that many tokens).
pub(crate) fn step_tokens(max_batch_tokens: usize) -> Result<usize> {
    if max_batch_tokens > MAX_PREFILL {
        bail!("--max-batch-tokens {max_batch_tokens}: a step takes at most {MAX_PREFILL} tokens");
    }
    Ok(max_batch_tokens.max(DEFAULT_PREFILL))
}

/// Says where the model's compiled steps take fewer sequences or tokens than asked (an
/// artifact compiled with a smaller --max-prefill); the engine runs with what they take.
pub(crate) fn note_step_limits(model: &Model, asked: &EngineConfig) {
    let ran = asked.within(model.paged_limits());
    if ran.max_batch_tokens < asked.max_batch_tokens {
        errln!(
            "note: --max-batch-tokens {}: this model's steps take {} tokens at most \
             (pio-compile --max-prefill); running with {}",
            asked.max_batch_tokens,
            ran.max_batch_tokens,
            ran.max_batch_tokens
        );
    }
    if ran.max_running < asked.max_running {
        errln!(
            "note: --max-running {}: this model's steps take {} sequences at most; running \
             with {}",
            asked.max_running,
            ran.max_running,
            ran.max_running
        );
    }
}

pub(crate) fn bench_serving(a: BenchArgs) -> Result<()> {
    if let Some(p) = &a.json {
        pio::cli::check_output_file(p, "--json")?;
    }
    let mode = match a.mode {
        BenchMode::Throughput => "throughput",
        _ => "shared-prefix",
    };
    if a.spec.len() + a.artifact.len() > 1 || a.weights.len() > 1 {
        bail!("--mode {mode} measures one model: give one --spec or --artifact");
    }
    let prompt_len = match a.prompt_len.as_deref() {
        None => 512,
        Some([p]) => *p,
        Some(_) => bail!("--mode {mode} takes one --prompt-len"),
    };
    if a.kv_blocks == Some(0) || a.max_running == 0 || a.max_batch_tokens == 0 {
        bail!("--kv-blocks, --max-running and --max-batch-tokens must be at least 1");
    }
    let max_prefill = step_tokens(a.max_batch_tokens)?;
    if !(a.memory_fraction > 0.0 && a.memory_fraction <= 1.0) {
        bail!(
            "--memory-fraction must be in (0, 1] (got {})",
            a.memory_fraction
        );
    }
    let shared = match (a.mode, a.shared_prefix.as_slice()) {
        (BenchMode::SharedPrefix, &[n, prefix, own]) => Some((n, prefix, own)),
        (BenchMode::SharedPrefix, _) => {
            bail!("--shared-prefix takes three numbers: requests, prefix tokens, own tokens")
        }
        _ => None,
    };
    if let Some((n, prefix, own)) = shared {
        if n == 0 || prefix == 0 {
            bail!("--shared-prefix: at least one request and one prefix token");
        }
        let _ = own;
    }
    let requests = match a.mode {
        BenchMode::Throughput => a.requests.clone(),
        _ => Vec::new(),
    };
    let engine = EngineConfig {
        num_blocks: a.kv_blocks,
        memory_fraction: a.memory_fraction,
        max_batch_tokens: a.max_batch_tokens,
        max_running: a.max_running,
        ..EngineConfig::default()
    };
    // Long enough for every sequence of the run.
    let longest = match shared {
        Some((_, prefix, own)) => prefix + own + a.gen,
        None => prompt_len + a.gen,
    };
    let weights_arg = a
        .weights
        .first()
        .cloned()
        .unwrap_or_else(|| "random".into());
    let weights = WeightsSource::from_arg(&weights_arg, 0);
    let tensor_parallel = a.tp.map(|n| n as usize);
    let mut model = match (a.spec.first(), a.artifact.first()) {
        (_, Some(dir)) => {
            let opts = LoadOptions {
                tensor_parallel,
                ..Default::default()
            };
            Model::load_artifact(dir, &weights, a.device, &opts)?
        }
        (spec, None) => {
            let source = specs::spec_source(spec.map(String::as_str), &weights)?;
            // Within the spec's bound: a run that does not fit is refused with its sizes.
            let bound = source.load()?.context_bound().unwrap_or(usize::MAX);
            let opts = LoadOptions {
                max_context: Some(longest.next_multiple_of(engine.block_size).min(bound)),
                max_prefill: Some(max_prefill),
                progress: true,
                tensor_parallel,
                ..Default::default()
            };
            Model::load_source(&source, &weights, a.device, &opts)?
        }
    };
    if model.has_random_weights() {
        errln!("note: random weights: every request generates exactly --gen tokens");
    }
    note_step_limits(&model, &engine);
    let machine = serving::machine(&mut model);
    let o = ServingOptions {
        requests,
        prompt_len,
        gen: a.gen,
        shared_prefix: shared,
        engine,
    };
    let report = serving::run(model, machine, weights_arg, &o)?;
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        errln!("wrote {}", path.display());
    }
    outln!("{}", serving::markdown(&report))?;
    Ok(())
}
