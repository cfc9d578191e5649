//! [`Engine`]: many requests at once on one [`Model`] — continuous batching over a paged KV
//! cache, chunked prefill, preemption and prefix caching ([`crate::scheduler`]), with streaming
//! text per request.

use crate::blocks::BlockPool;
use crate::error::PioError;
use crate::model::Model;
use crate::scheduler::{Picked, Plan, Scheduler, SchedulerConfig, SchedulerStats};
use crate::sequence::{RequestId, RequestOutput, RequestParams};
use pio_compiler::interp::PagedSeq;
use pio_runtime::sampling::SamplingParams;
use pio_runtime::tokenizer::DecodeState;
use std::collections::HashMap;

/// How an engine batches.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Positions per KV block.
    pub block_size: usize,
    /// Blocks in the pool. None: `max_running` whole contexts or `memory_fraction` of the free
    /// memory, whichever is less.
    pub num_blocks: Option<usize>,
    /// Share of the free memory the pool may take when `num_blocks` is not given, in (0, 1]:
    /// of the GPU's free memory (after the weights), or on the CPU of the host's available
    /// memory.
    pub memory_fraction: f64,
    /// Most tokens in one step (decode tokens plus prefill chunks).
    pub max_batch_tokens: usize,
    /// Most requests running at once.
    pub max_running: usize,
    /// Share full KV blocks between requests with the same prompt prefix.
    pub prefix_caching: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            block_size: 16,
            num_blocks: None,
            memory_fraction: 0.9,
            max_batch_tokens: 2048,
            max_running: 64,
            prefix_caching: true,
        }
    }
}

impl EngineConfig {
    /// This configuration within what a model's compiled steps take (`limits`, a GPU's; None:
    /// anything): `max_running` and `max_batch_tokens` capped, the rest as asked.
    pub fn within(&self, limits: Option<crate::PagedLimits>) -> EngineConfig {
        let mut c = self.clone();
        if let Some(l) = limits {
            c.max_running = c.max_running.min(l.max_seqs);
            c.max_batch_tokens = c.max_batch_tokens.min(l.max_tokens);
        }
        c
    }

    fn check(&self) -> Result<(), PioError> {
        let bad = |what: &str, v: usize| {
            Err(PioError::Options(format!(
                "engine: {what} must be at least 1 (got {v})"
            )))
        };
        if self.block_size == 0 {
            return bad("block_size", 0);
        }
        if self.num_blocks == Some(0) {
            return bad("num_blocks", 0);
        }
        if self.max_batch_tokens == 0 {
            return bad("max_batch_tokens", 0);
        }
        if self.max_running == 0 {
            return bad("max_running", 0);
        }
        if !(self.memory_fraction > 0.0 && self.memory_fraction <= 1.0) {
            return Err(PioError::Options(format!(
                "engine: memory_fraction must be in (0, 1] (got {})",
                self.memory_fraction
            )));
        }
        if self.block_size > 4096 {
            return Err(PioError::Options(format!(
                "engine: block_size {} is above 4096 positions",
                self.block_size
            )));
        }
        Ok(())
    }
}

/// A model serving many requests: add requests, call [`Engine::step`] until
/// [`Engine::has_work`] is false, read each request's tokens and text as they come.
///
/// ```
/// use pio_engine::{Device, Engine, EngineConfig, Model, WeightsSource};
/// let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../model-specs/qwen3-tiny.yaml");
/// let model = Model::load(spec.as_ref(), &WeightsSource::Random { seed: 0 }, Device::Cpu)?;
/// let mut engine = Engine::new(model, EngineConfig::default())?;
/// let greedy = Some(pio_engine::runtime::sampling::SamplingParams::greedy());
/// let a = engine.add_request(vec![1, 2, 3], engine.request_params(4, greedy.clone()))?;
/// let b = engine.add_request(vec![7, 8], engine.request_params(4, greedy))?;
/// let mut ended = 0;
/// while engine.has_work() {
///     for out in engine.step()? {
///         assert!(out.id == a || out.id == b);
///         ended += usize::from(out.finish.is_some());
///     }
/// }
/// assert_eq!(ended, 2);
/// # Ok::<(), pio_engine::PioError>(())
/// ```
pub struct Engine {
    model: Model,
    /// The configuration in force: the one asked for, its running and step-token limits
    /// capped at what the model's steps take, its block count resolved.
    config: EngineConfig,
    scheduler: Scheduler,
    decoders: HashMap<RequestId, DecodeState>,
    steps: u64,
    /// Time spent in the model's steps (the rest of a step is scheduling, sampling and text).
    model_time: std::time::Duration,
}

impl Engine {
    /// Takes `model` and gives it a paged KV cache sized by `cfg` (its memory checked first).
    pub fn new(mut model: Model, mut cfg: EngineConfig) -> Result<Engine, PioError> {
        cfg.check()?;
        let context = model.context_bound();
        // A GPU's steps are compiled for at most so many sequences and tokens.
        cfg = cfg.within(model.paged_limits());
        let per_seq = context.div_ceil(cfg.block_size);
        let num_blocks = match cfg.num_blocks {
            Some(n) => n,
            None => {
                let free = model
                    .gpu_free_bytes()
                    .or_else(pio_runtime::resources::host_memory_available)
                    .unwrap_or(u64::MAX);
                let block = model.kv_block_bytes(cfg.block_size).max(1);
                let fit = (free as f64 * cfg.memory_fraction) as u64 / block;
                (fit.min(usize::MAX as u64) as usize)
                    .min(per_seq.saturating_mul(cfg.max_running))
                    .max(1)
            }
        };
        model.enable_paged_cache(num_blocks, cfg.block_size)?;
        cfg.num_blocks = Some(num_blocks);
        let scheduler = Scheduler::new(
            SchedulerConfig {
                max_batch_tokens: cfg.max_batch_tokens,
                max_running: cfg.max_running,
                max_seq_len: context,
            },
            BlockPool::new(num_blocks, cfg.block_size, cfg.prefix_caching),
        );
        Ok(Engine {
            model,
            config: cfg,
            scheduler,
            decoders: HashMap::new(),
            steps: 0,
            model_time: std::time::Duration::ZERO,
        })
    }

    /// The configuration in force: `max_running` and `max_batch_tokens` at most what the
    /// model's compiled steps take (a GPU artifact's `paged` limits), `num_blocks` the pool's.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model, for reports (a step must not be in flight: steps take `&mut self` anyway).
    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }

    /// Gives the model back (its paged cache stays allocated).
    pub fn into_model(self) -> Model {
        self.model
    }

    /// Most positions one sequence may hold (the context, or the pool if smaller).
    pub fn max_seq_len(&self) -> usize {
        self.scheduler.config().max_seq_len
    }

    /// Parameters with the model's eos ids as stop ids and its default sampling unless given.
    pub fn request_params(
        &self,
        max_new_tokens: usize,
        sampling: Option<SamplingParams>,
    ) -> RequestParams {
        let d = self.model.defaults();
        RequestParams {
            max_new_tokens,
            sampling: sampling.unwrap_or_else(|| d.sampling.clone()),
            stop_token_ids: d.eos_token_ids.clone(),
            return_logits: false,
        }
    }

    /// Queues a request. Refused (with the reason) when its prompt is empty, longer than a
    /// sequence can hold, has an id outside the vocabulary, or its parameters are invalid.
    pub fn add_request(
        &mut self,
        prompt: Vec<u32>,
        params: RequestParams,
    ) -> Result<RequestId, PioError> {
        let vocab = self.model.info().vocab_size;
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(PioError::Options(format!(
                "token id {bad} is out of range for a vocabulary of {vocab}"
            )));
        }
        let id = self.scheduler.add(prompt, params)?;
        self.decoders.insert(id, DecodeState::default());
        Ok(id)
    }

    /// Ends a request now and frees its blocks; the next step reports it with
    /// [`crate::FinishReason::Aborted`]. False if the request is unknown or already ended.
    pub fn abort(&mut self, id: RequestId) -> bool {
        self.scheduler.abort(id)
    }

    pub fn has_work(&self) -> bool {
        self.scheduler.has_work()
    }

    pub fn stats(&self) -> SchedulerStats {
        self.scheduler.stats()
    }

    /// Time spent inside the model's steps so far (what is left of the wall time went to
    /// scheduling, host sampling and detokenizing).
    pub fn model_time(&self) -> std::time::Duration {
        self.model_time
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The tokens a queued request generated so far.
    pub fn generated(&self, id: RequestId) -> Option<&[u32]> {
        self.scheduler.generated(id)
    }

    /// Forgets every cached prefix.
    pub fn clear_prefix_cache(&mut self) {
        self.scheduler.clear_prefix_cache();
    }

    /// Runs one step: schedules, runs the model on every scheduled chunk, samples; returns what
    /// each request got (new tokens and their text, and its finish reason on its last output).
    pub fn step(&mut self) -> Result<Vec<RequestOutput>, PioError> {
        let plan = self.scheduler.schedule();
        let started = std::time::Instant::now();
        let picked = self.run(&plan)?;
        self.model_time += started.elapsed();
        let mut outputs = self.scheduler.complete(&plan, &picked);
        self.steps += 1;
        let tokenizer = self.model.tokenizer();
        for out in &mut outputs {
            let Some(state) = self.decoders.get_mut(&out.id) else {
                continue;
            };
            for &t in &out.new_tokens {
                if let Some(text) = state.push(tokenizer, t)? {
                    out.text.push_str(&text);
                }
            }
            if out.finish.is_some() {
                if let Some(rest) = state.finish(tokenizer)? {
                    out.text.push_str(&rest);
                }
                self.decoders.remove(&out.id);
            }
        }
        Ok(outputs)
    }

    /// Runs a plan's chunks: every chunk of one token (the decodes) in one batched call, every
    /// longer chunk in another (one run of the chunk launch list for all of them). Returns what
    /// the chunks that sample got: the device's greedy picks when every such request is plain
    /// greedy, else the logits for their samplers.
    fn run(&mut self, plan: &Plan) -> Result<Vec<Option<Picked>>, PioError> {
        let mut picked: Vec<Option<Picked>> = vec![None; plan.chunks.len()];
        let as_seq = |i: usize| {
            let c = &plan.chunks[i];
            PagedSeq {
                tokens: &c.tokens,
                start: c.start,
                blocks: &c.blocks,
            }
        };
        let argmax_ok = |idx: &[usize]| {
            idx.iter().all(|&i| {
                !plan.chunks[i].sample || self.scheduler.device_pick_ok(plan.chunks[i].id)
            })
        };
        let (decodes, chunks): (Vec<usize>, Vec<usize>) =
            (0..plan.chunks.len()).partition(|&i| plan.chunks[i].tokens.len() == 1);
        let groups = [decodes, chunks].into_iter().filter(|g| !g.is_empty());
        for group in groups {
            let seqs: Vec<PagedSeq<'_>> = group.iter().map(|&i| as_seq(i)).collect();
            let results: Vec<Picked> = if argmax_ok(&group) {
                self.model
                    .forward_paged_argmax(&seqs)?
                    .into_iter()
                    .map(Picked::Token)
                    .collect()
            } else {
                self.model
                    .forward_paged(&seqs)?
                    .into_iter()
                    .map(Picked::Logits)
                    .collect()
            };
            for (&i, r) in group.iter().zip(results) {
                picked[i] = plan.chunks[i].sample.then_some(r);
            }
        }
        Ok(picked)
    }
}
