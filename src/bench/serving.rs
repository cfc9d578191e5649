//! `pio bench --mode throughput` and `--mode shared-prefix`: the batching engine under offline
//! load. Throughput: N requests of P prompt tokens and G generated tokens submitted at once,
//! output tokens/s and total tokens/s over the whole run's wall time (prefill included), for
//! each N. Shared prefix: requests that share a long prefix plus a few tokens of their own, the
//! first one alone (a miss), then the rest (hits); TTFT of a hit against the miss and the run's
//! throughput with the prefix cache on and off.

use super::report::Machine;
use crate::{Engine, EngineConfig, FinishReason, Model, PioError, RequestId};
use pio_runtime::sampling::SamplingParams;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Instant;

/// The report's version (`benches/serving-schema.md`).
pub const SERVING_SCHEMA_VERSION: u32 = 1;

/// A serving benchmark run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServingReport {
    pub schema_version: u32,
    pub engine: String,
    pub machine: Machine,
    pub model: String,
    pub weights: String,
    /// The engine's settings: positions per block, blocks, the step's token budget, most
    /// requests running.
    pub block_size: usize,
    pub num_blocks: usize,
    pub pool_bytes: u64,
    pub max_batch_tokens: usize,
    pub max_running: usize,
    pub throughput: Vec<ThroughputRun>,
    pub shared_prefix: Option<SharedPrefixRun>,
}

/// One offline run: `requests` requests submitted at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThroughputRun {
    pub requests: usize,
    pub prompt_len: usize,
    pub gen: usize,
    pub wall_s: f64,
    pub output_tokens: u64,
    pub output_tokens_per_s: f64,
    /// Prompt and output tokens per second.
    pub total_tokens_per_s: f64,
    pub ttft_median_s: f64,
    pub ttft_max_s: f64,
    pub steps: u64,
    pub preemptions: u64,
    /// Of `wall_s`, the time inside the model's steps (the rest: scheduling, sampling, text).
    pub model_s: f64,
}

/// The shared-prefix run, with the prefix cache on and off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedPrefixRun {
    pub requests: usize,
    pub prefix_len: usize,
    pub own_len: usize,
    pub gen: usize,
    /// Time to first token of the first request, alone (nothing cached).
    pub ttft_miss_s: f64,
    /// Time to first token of a later request alone, its prefix cached.
    pub ttft_hit_s: f64,
    pub prefix_hit_tokens: u64,
    pub cached: ThroughputRun,
    pub uncached: ThroughputRun,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct ServingOptions {
    pub requests: Vec<usize>,
    pub prompt_len: usize,
    pub gen: usize,
    /// (requests, prefix length, own tokens) for the shared-prefix run.
    pub shared_prefix: Option<(usize, usize, usize)>,
    pub engine: EngineConfig,
}

/// Distinct prompts: request `r` of a run, `len` tokens, ids inside a 400-id range.
fn prompt(r: usize, len: usize, salt: usize) -> Vec<u32> {
    (0..len)
        .map(|i| 100 + ((i * 7919 + r * 104_729 + salt * 31) % 400) as u32)
        .collect()
}

/// Runs `prompts` through the engine, submitted at once; every request generates exactly `gen`
/// tokens (no stop ids).
fn offline(
    engine: &mut Engine,
    prompts: Vec<Vec<u32>>,
    gen: usize,
) -> Result<ThroughputRun, PioError> {
    let before = engine.stats();
    let steps_before = engine.steps();
    let model_before = engine.model_time();
    let n = prompts.len();
    let prompt_len = prompts.first().map_or(0, Vec::len);
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut ttft: HashMap<RequestId, f64> = HashMap::new();
    for p in prompts {
        let mut params = engine.request_params(gen, Some(SamplingParams::greedy()));
        params.stop_token_ids.clear();
        engine.add_request(p, params)?;
    }
    let mut output = 0u64;
    while engine.has_work() {
        for o in engine.step()? {
            output += o.new_tokens.len() as u64;
            if !o.new_tokens.is_empty() {
                ttft.entry(o.id)
                    .or_insert_with(|| started.elapsed().as_secs_f64());
            }
            if let Some(f @ (FinishReason::Aborted | FinishReason::Failed)) = o.finish {
                return Err(PioError::Device(format!(
                    "request {} ended early ({f:?}): {}",
                    o.id,
                    o.error.as_deref().unwrap_or("-")
                )));
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let after = engine.stats();
    let mut t: Vec<f64> = ttft.into_values().collect();
    t.sort_by(f64::total_cmp);
    Ok(ThroughputRun {
        requests: n,
        prompt_len,
        gen,
        wall_s: wall,
        output_tokens: output,
        output_tokens_per_s: output as f64 / wall,
        total_tokens_per_s: (output as f64 + prompt_tokens as f64) / wall,
        ttft_median_s: t.get(t.len() / 2).copied().unwrap_or(0.0),
        ttft_max_s: t.last().copied().unwrap_or(0.0),
        steps: engine.steps() - steps_before,
        preemptions: after.preemptions - before.preemptions,
        model_s: (engine.model_time() - model_before).as_secs_f64(),
    })
}

/// Time to the first token of one request alone.
fn ttft_alone(engine: &mut Engine, p: Vec<u32>) -> Result<f64, PioError> {
    let started = Instant::now();
    let params = engine.request_params(1, Some(SamplingParams::greedy()));
    engine.add_request(p, params)?;
    while engine.has_work() {
        engine.step()?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Where the numbers come from: the model's device (its GPU's name, driver and CUDA).
pub fn machine(model: &mut Model) -> Machine {
    let mut m = Machine {
        device: model.device_name(),
        driver: None,
        cuda: None,
        commit: option_env!("PIO_GIT_COMMIT").map(str::to_string),
        date: super::runner::today(),
        copy_bandwidth_bytes_per_s: None,
    };
    if let Some(c) = model.cuda() {
        let g = c.model().gpu();
        m.device = g.name.clone();
        m.driver = g.driver_release();
        m.cuda = g.driver_version().map(|v| format!("CUDA {v}"));
    }
    m
}

/// Runs the serving benchmarks on `model` (consumed: the engine owns it).
pub fn run(
    model: Model,
    machine: Machine,
    weights: String,
    o: &ServingOptions,
) -> Result<ServingReport, PioError> {
    if o.gen == 0 || o.prompt_len == 0 || o.requests.contains(&0) {
        return Err(PioError::Options(
            "bench: --gen, --prompt-len and every --requests must be at least 1".into(),
        ));
    }
    let name = model.info().name.clone();
    let mut engine = Engine::new(model, o.engine.clone())?;
    let limit = engine.max_seq_len();
    if !o.requests.is_empty() && o.prompt_len + o.gen > limit {
        return Err(PioError::Options(format!(
            "bench: a prompt of {} + {} generated tokens exceeds a sequence's {limit} positions",
            o.prompt_len, o.gen
        )));
    }
    // Warm-up: one short request (kernel loads, cuBLAS heuristics, first allocations).
    offline(&mut engine, vec![prompt(0, 16.min(limit - 1), 99)], 2)?;
    let mut throughput = Vec::new();
    for (k, &n) in o.requests.iter().enumerate() {
        engine.clear_prefix_cache();
        let prompts = (0..n).map(|r| prompt(r, o.prompt_len, k)).collect();
        throughput.push(offline(&mut engine, prompts, o.gen)?);
    }
    let shared_prefix = match o.shared_prefix {
        None => None,
        Some((n, prefix_len, own)) => {
            if prefix_len + own + o.gen > limit {
                return Err(PioError::Options(format!(
                    "bench: a shared prefix of {prefix_len} + {own} + {} generated tokens \
                     exceeds a sequence's {limit} positions",
                    o.gen
                )));
            }
            let base = prompt(7, prefix_len, 1);
            let with_own = |r: usize| {
                let mut p = base.clone();
                p.extend(prompt(r + 1000, own, 2));
                p
            };
            engine.clear_prefix_cache();
            let ttft_miss_s = ttft_alone(&mut engine, with_own(0))?;
            let ttft_hit_s = ttft_alone(&mut engine, with_own(1))?;
            let hits_before = engine.stats().prefix_hit_tokens;
            let cached = offline(&mut engine, (2..n + 2).map(with_own).collect(), o.gen)?;
            let prefix_hit_tokens = engine.stats().prefix_hit_tokens - hits_before;
            // The same run with nothing cached: a fresh pool of the same size and no sharing.
            let blocks = engine.stats().blocks.total;
            let model = engine.into_model();
            let mut off = Engine::new(
                model,
                EngineConfig {
                    prefix_caching: false,
                    num_blocks: Some(blocks),
                    ..o.engine.clone()
                },
            )?;
            let uncached = offline(&mut off, (2..n + 2).map(with_own).collect(), o.gen)?;
            engine = off;
            Some(SharedPrefixRun {
                requests: n,
                prefix_len,
                own_len: own,
                gen: o.gen,
                ttft_miss_s,
                ttft_hit_s,
                prefix_hit_tokens,
                cached,
                uncached,
            })
        }
    };
    if let Some(p) = engine
        .model_mut()
        .cuda()
        .and_then(|c| c.model().profile_report())
    {
        eprintln!("{}", p.trim_end());
    }
    let usage = engine.stats().blocks;
    let block_size = engine.config().block_size;
    let pool_bytes = engine
        .model()
        .kv_block_bytes(block_size)
        .saturating_mul(usage.total as u64);
    Ok(ServingReport {
        schema_version: SERVING_SCHEMA_VERSION,
        engine: "pio".into(),
        machine,
        model: name,
        weights,
        block_size,
        num_blocks: usage.total,
        pool_bytes,
        // What the engine ran with (the model's compiled steps may cap what was asked).
        max_batch_tokens: engine.config().max_batch_tokens,
        max_running: engine.config().max_running,
        throughput,
        shared_prefix,
    })
}

/// The report as markdown.
pub fn markdown(r: &ServingReport) -> String {
    let mut s = format!(
        "{} on {} ({} weights), blocks of {} positions x {} ({:.2} GB), {} tokens per step, \
         {} running at most\n\n| requests | prompt | gen | wall s | in model s | output tok/s \
         | total tok/s | TTFT median s | TTFT max s | steps | preemptions |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.model,
        r.machine.device,
        r.weights,
        r.block_size,
        r.num_blocks,
        r.pool_bytes as f64 / 1e9,
        r.max_batch_tokens,
        r.max_running
    );
    let row = |t: &ThroughputRun| {
        format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.3} | {:.3} | {} | {} |\n",
            t.requests,
            t.prompt_len,
            t.gen,
            t.wall_s,
            t.model_s,
            t.output_tokens_per_s,
            t.total_tokens_per_s,
            t.ttft_median_s,
            t.ttft_max_s,
            t.steps,
            t.preemptions
        )
    };
    for t in &r.throughput {
        s.push_str(&row(t));
    }
    if let Some(p) = &r.shared_prefix {
        s.push_str(&format!(
            "\nshared prefix: {} requests of {} shared + {} own tokens, {} generated\n\
             - TTFT alone: miss {:.4} s, hit {:.4} s ({:.1}% of the miss)\n\
             - prefix-cache hit tokens: {}\n\
             - with the cache: {:.0} output tok/s; without: {:.0} ({:.2}x)\n",
            p.requests,
            p.prefix_len,
            p.own_len,
            p.gen,
            p.ttft_miss_s,
            p.ttft_hit_s,
            100.0 * p.ttft_hit_s / p.ttft_miss_s,
            p.prefix_hit_tokens,
            p.cached.output_tokens_per_s,
            p.uncached.output_tokens_per_s,
            p.cached.output_tokens_per_s / p.uncached.output_tokens_per_s
        ));
    }
    s
}
