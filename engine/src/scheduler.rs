//! Continuous batching with chunked prefill, preemption and prefix caching, independent of the
//! model: [`Scheduler::schedule`] says what the next step runs, [`Scheduler::complete`] takes
//! the step's logits, samples, and ends requests.
//!
//! Each step has a token budget. Running requests are served oldest first: a decoding one
//! takes 1 token, a prefilling one the next chunk of its prompt (so a long prompt never stalls
//! the others' decode for more than its chunk). When the pool has no block for a running
//! request, the newest running request is preempted: its blocks are released (its full blocks
//! stay in the prefix cache) and it waits at the front of the queue to be recomputed from its
//! prompt and the tokens it already generated, so nothing fails and nothing is lost. What is
//! left of the budget admits waiting requests in order, each starting after the longest
//! prefix of its prompt that the cache holds. A step that preempted admits nobody.

use crate::blocks::{BlockId, BlockPool, PoolUsage};
use crate::prefix_cache::BlockKey;
use crate::sequence::{FinishReason, RequestId, RequestOutput, RequestParams, Sequence};
use pio_runtime::sampling::{Sampler, SamplingError};
use std::collections::VecDeque;

/// Limits of the scheduler.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Most tokens (decode tokens plus prefill chunks) in one step.
    pub max_batch_tokens: usize,
    /// Most requests running at once.
    pub max_running: usize,
    /// Most positions one sequence may hold (the model's context, and at most the pool).
    pub max_seq_len: usize,
}

/// A request refused at admission.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AdmissionError {
    #[error("the prompt is empty: at least one token is needed")]
    EmptyPrompt,
    #[error(
        "the prompt has {prompt} tokens but a sequence holds at most {bound} (the context, or \
         the KV block pool if smaller)"
    )]
    PromptTooLong { prompt: usize, bound: usize },
    #[error("max_new_tokens must be at least 1")]
    NoTokens,
    #[error(transparent)]
    Sampling(#[from] SamplingError),
}

/// One request's part of a step: run `tokens` at positions `start..`, its cache in `blocks`.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub id: RequestId,
    pub start: usize,
    pub tokens: Vec<u32>,
    pub blocks: Vec<BlockId>,
    /// Whether this chunk ends the pending tokens, so its last logits pick the next token.
    pub sample: bool,
}

/// What the model gave a chunk that samples: its last-token logits (the request's sampler
/// picks), or the token already picked on the device (greedy requests only).
#[derive(Clone, Debug, PartialEq)]
pub enum Picked {
    Logits(Vec<f32>),
    Token(u32),
}

/// What one step runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub chunks: Vec<Chunk>,
    /// Requests preempted to make room (they will be recomputed).
    pub preempted: Vec<RequestId>,
}

/// Running totals, for stats and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SchedulerStats {
    pub running: usize,
    pub waiting: usize,
    pub blocks: PoolUsage,
    /// Prompt tokens of admitted requests (first admissions only).
    pub prompt_tokens: u64,
    /// Of those, tokens found in the prefix cache.
    pub prefix_hit_tokens: u64,
    pub preemptions: u64,
    pub generated_tokens: u64,
    /// Tokens run through the model (prefill chunks, recomputation and decode).
    pub computed_tokens: u64,
}

/// The scheduler: waiting and running requests over one block pool.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    pool: BlockPool,
    waiting: VecDeque<Sequence>,
    /// Oldest arrival first.
    running: Vec<Sequence>,
    next_id: RequestId,
    aborted: Vec<RequestId>,
    stats: SchedulerStats,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, pool: BlockPool) -> Self {
        let capacity = pool.num_blocks() * pool.block_size();
        let cfg = SchedulerConfig {
            max_seq_len: cfg.max_seq_len.min(capacity),
            max_batch_tokens: cfg.max_batch_tokens.max(1),
            max_running: cfg.max_running.max(1),
        };
        Scheduler {
            cfg,
            pool,
            waiting: VecDeque::new(),
            running: Vec::new(),
            next_id: 0,
            aborted: Vec::new(),
            stats: SchedulerStats::default(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// Forgets the prefix cache (e.g. between benchmark runs).
    pub fn clear_prefix_cache(&mut self) {
        self.pool.clear_cache();
    }

    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            running: self.running.len(),
            waiting: self.waiting.len(),
            blocks: self.pool.usage(),
            ..self.stats
        }
    }

    /// Whether any request is waiting or running (or an abort is still to be reported).
    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty() || !self.aborted.is_empty()
    }

    /// Queues a request; refused when it can never run.
    pub fn add(
        &mut self,
        prompt: Vec<u32>,
        params: RequestParams,
    ) -> Result<RequestId, AdmissionError> {
        if prompt.is_empty() {
            return Err(AdmissionError::EmptyPrompt);
        }
        if prompt.len() > self.cfg.max_seq_len {
            return Err(AdmissionError::PromptTooLong {
                prompt: prompt.len(),
                bound: self.cfg.max_seq_len,
            });
        }
        if params.max_new_tokens == 0 {
            return Err(AdmissionError::NoTokens);
        }
        let sampler = Sampler::new(params.sampling.clone())?;
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Sequence {
            id,
            arrival: id,
            prompt_len: prompt.len(),
            tokens: prompt,
            computed: 0,
            blocks: Vec::new(),
            keys: Vec::new(),
            params,
            sampler,
            cached_prompt_tokens: None,
            preemptions: 0,
        });
        Ok(id)
    }

    /// Ends a request wherever it is; its blocks are released at once and the next
    /// [`Self::complete`] reports it as aborted. False if no such request is queued.
    pub fn abort(&mut self, id: RequestId) -> bool {
        let seq = if let Some(i) = self.running.iter().position(|s| s.id == id) {
            self.running.remove(i)
        } else if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            self.waiting.remove(i).expect("index from position")
        } else {
            return false;
        };
        self.release(seq);
        self.aborted.push(id);
        true
    }

    /// The tokens generated so far by a queued request.
    pub fn generated(&self, id: RequestId) -> Option<&[u32]> {
        self.running
            .iter()
            .chain(self.waiting.iter())
            .find(|s| s.id == id)
            .map(Sequence::generated)
    }

    /// Decides the next step (an empty plan when nothing is queued).
    pub fn schedule(&mut self) -> Plan {
        let mut plan = Plan::default();
        let mut budget = self.cfg.max_batch_tokens;
        let bs = self.pool.block_size();
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let n = self.running[i].pending().min(budget);
            let end = self.running[i].computed + n;
            let needed = end
                .div_ceil(bs)
                .saturating_sub(self.running[i].blocks.len());
            // Make room by preempting the newest; if that is this request, it waits itself.
            let mut preempted_self = false;
            while self.pool.available() < needed {
                let victim = self.running.pop().expect("request i is running");
                plan.preempted.push(victim.id);
                preempted_self = self.running.len() == i;
                self.preempt(victim);
                if preempted_self {
                    break;
                }
            }
            if preempted_self {
                break;
            }
            let s = &mut self.running[i];
            for _ in 0..needed {
                s.blocks
                    .push(self.pool.allocate().expect("available blocks were counted"));
            }
            plan.chunks.push(Chunk {
                id: s.id,
                start: s.computed,
                tokens: s.tokens[s.computed..end].to_vec(),
                blocks: s.blocks.clone(),
                sample: end == s.tokens.len(),
            });
            budget -= n;
            i += 1;
        }
        if plan.preempted.is_empty() {
            while budget > 0 && self.running.len() < self.cfg.max_running {
                match self.admit(budget) {
                    Some(chunk) => {
                        budget -= chunk.tokens.len();
                        plan.chunks.push(chunk);
                    }
                    None => break,
                }
            }
        }
        self.stats.computed_tokens += plan
            .chunks
            .iter()
            .map(|c| c.tokens.len() as u64)
            .sum::<u64>();
        plan
    }

    /// Admits the first waiting request if the pool has blocks for its first chunk.
    fn admit(&mut self, budget: usize) -> Option<Chunk> {
        let bs = self.pool.block_size();
        let s = self.waiting.front()?;
        // The cached prefix: full blocks of every token but the last (which must run to give
        // the logits of the next).
        let keys = BlockKey::chain_of(&s.tokens[..s.tokens.len() - 1], bs);
        let mut hits = 0;
        let mut evictable_hits = 0;
        for k in &keys {
            match self.pool.peek(k) {
                Some(unused) => {
                    hits += 1;
                    evictable_hits += usize::from(unused);
                }
                None => break,
            }
        }
        let computed = hits * bs;
        let n = (s.tokens.len() - computed).min(budget);
        let needed = (computed + n).div_ceil(bs) - hits;
        if needed + evictable_hits > self.pool.available() {
            return None;
        }
        let mut s = self.waiting.pop_front().expect("front exists");
        for k in keys.into_iter().take(hits) {
            let b = self.pool.lookup(&k).expect("peeked");
            s.blocks.push(b);
            s.keys.push(k);
        }
        for _ in 0..needed {
            s.blocks
                .push(self.pool.allocate().expect("available blocks were counted"));
        }
        s.computed = computed;
        if s.cached_prompt_tokens.is_none() {
            s.cached_prompt_tokens = Some(computed.min(s.prompt_len));
            self.stats.prompt_tokens += s.prompt_len as u64;
            self.stats.prefix_hit_tokens += computed.min(s.prompt_len) as u64;
        }
        let end = computed + n;
        let chunk = Chunk {
            id: s.id,
            start: computed,
            tokens: s.tokens[computed..end].to_vec(),
            blocks: s.blocks.clone(),
            sample: end == s.tokens.len(),
        };
        let at = self.running.partition_point(|r| r.arrival < s.arrival);
        self.running.insert(at, s);
        Some(chunk)
    }

    fn preempt(&mut self, mut s: Sequence) {
        self.stats.preemptions += 1;
        s.preemptions += 1;
        for b in s.blocks.drain(..).rev() {
            self.pool.release(b);
        }
        s.keys.clear();
        s.computed = 0;
        // Oldest preempted first.
        let at = self
            .waiting
            .partition_point(|w| w.preemptions > 0 && w.arrival < s.arrival);
        self.waiting.insert(at, s);
    }

    /// Releases a finished or aborted request's blocks, tail first (so that the LRU evicts a
    /// prefix's tail before its head).
    fn release(&mut self, mut s: Sequence) {
        for b in s.blocks.drain(..).rev() {
            self.pool.release(b);
        }
    }

    /// Whether a request's next token is the plain argmax of its logits (greedy, no penalty,
    /// no logits asked for), so that the device may pick it.
    pub fn device_pick_ok(&self, id: RequestId) -> bool {
        self.running.iter().find(|s| s.id == id).is_some_and(|s| {
            let p = &s.params.sampling;
            p.is_greedy()
                && p.repetition_penalty == 1.0
                && p.presence_penalty == 0.0
                && p.frequency_penalty == 0.0
                && !s.params.return_logits
        })
    }

    /// Takes a step's results: `picked[i]` is what the model gave `plan.chunks[i]` when that
    /// chunk samples (else ignored). Registers newly full blocks in the prefix cache, samples,
    /// and ends requests; returns one output per request that generated or ended. A request
    /// whose sampler fails (logits all NaN, say) ends alone with [`FinishReason::Failed`] and
    /// the error; the others go on.
    pub fn complete(&mut self, plan: &Plan, picked: &[Option<Picked>]) -> Vec<RequestOutput> {
        let bs = self.pool.block_size();
        let mut outputs: Vec<RequestOutput> = self
            .aborted
            .drain(..)
            .map(|id| RequestOutput {
                id,
                new_tokens: Vec::new(),
                text: String::new(),
                finish: Some(FinishReason::Aborted),
                logits: None,
                error: None,
            })
            .collect();
        for (chunk, picked) in plan.chunks.iter().zip(picked) {
            // An aborted request's chunk is dropped.
            let Some(i) = self.running.iter().position(|s| s.id == chunk.id) else {
                continue;
            };
            let s = &mut self.running[i];
            s.computed = chunk.start + chunk.tokens.len();
            while s.keys.len() < s.computed / bs {
                let k = s.keys.len();
                let key = BlockKey::new(s.keys.last(), &s.tokens[k * bs..(k + 1) * bs]);
                self.pool.register(s.blocks[k], key.clone());
                s.keys.push(key);
            }
            if !chunk.sample {
                continue;
            }
            let prompt_len = s.prompt_len;
            let (id, logits) = match picked {
                None => continue,
                Some(Picked::Token(t)) => (Ok(*t), None),
                Some(Picked::Logits(l)) => (
                    s.sampler.sample(l, &s.tokens, &s.tokens[prompt_len..]),
                    s.params.return_logits.then(|| l.clone()),
                ),
            };
            let mut out = RequestOutput {
                id: s.id,
                new_tokens: Vec::new(),
                text: String::new(),
                finish: None,
                logits,
                error: None,
            };
            match id {
                Err(e) => {
                    out.finish = Some(FinishReason::Failed);
                    out.error = Some(e.to_string());
                }
                Ok(id) => self.take_token(i, id, &mut out),
            }
            if out.finish.is_some() {
                let s = self.running.remove(i);
                self.release(s);
            }
            outputs.push(out);
        }
        outputs
    }

    /// Appends a sampled token to running request `i` (or ends it on a stop id), setting the
    /// output's token and finish reason.
    fn take_token(&mut self, i: usize, id: u32, out: &mut RequestOutput) {
        let s = &mut self.running[i];
        if s.params.stop_token_ids.contains(&id) {
            out.finish = Some(FinishReason::Stop(id));
            return;
        }
        s.tokens.push(id);
        out.new_tokens.push(id);
        self.stats.generated_tokens += 1;
        if s.generated().len() >= s.params.max_new_tokens {
            out.finish = Some(FinishReason::Length);
        } else if s.tokens.len() > self.cfg.max_seq_len {
            out.finish = Some(FinishReason::ContextFull);
        }
    }
}
