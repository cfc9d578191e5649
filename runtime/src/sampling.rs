//! Token sampling: greedy, temperature, top-k, top-p, min-p, repetition, presence and
//! frequency penalties, seeded for reproducibility.
//!
//! # Order of operations (HF transformers' `generate`)
//!
//! 1. NaN logits are treated as `-inf`, `+inf` as `f32::MAX`.
//! 2. Repetition penalty (HF `RepetitionPenaltyLogitsProcessor`): for every distinct token id in
//!    `prompt_and_generated`, a positive logit is divided by the penalty, a negative one
//!    multiplied by it.
//! 3. Presence penalty (OpenAI / vLLM): the penalty is subtracted once from the logit of every
//!    distinct token id in `generated`. Then the frequency penalty (OpenAI / vLLM): the penalty
//!    times the number of times a token id occurs in `generated` is subtracted from its logit
//!    (both are subtractions, so their order does not change the result).
//! 4. Temperature 0: greedy argmax of the penalised logits (ties go to the lowest id); the seed
//!    is not used and no random number is drawn.
//! 5. Otherwise the logits are divided by the temperature and turned into probabilities, then
//!    filtered in HF's warper order:
//!    - top-k: the `k` most probable (ties at the boundary go to the lower id; HF keeps all
//!      tied tokens);
//!    - top-p: the smallest most-probable set whose mass, renormalised over the top-k set, is
//!      >= `top_p` (never empty);
//!    - min-p: drop tokens whose probability is below `min_p` x the highest probability.
//!
//!    vLLM applies min-p before top-k/top-p. All three filters keep a prefix of the same order
//!    (descending probability), so the two orders give the same set except when min-p and
//!    top-p are both on, where top-p's mass is renormalised over different sets.
//! 6. One `f64` is drawn from the sampler's `ChaCha8Rng` and the token is picked from the kept
//!    set in proportion to its probability.
//!
//! # Cost per token (151,936 vocabulary)
//!
//! O(vocab) for sanitising, penalties and the (vectorised) argmax; top-k keeps a bounded heap
//! in one pass (`select_nth_unstable` for k > 4096); top-p finds its cut with a weighted
//! quickselect (expected O(n), sorting at most 64 elements); nothing sorts the vocabulary.
//! Without top-k every token needs an `exp`, which dominates (about 1.5 ms on a busy 2-core
//! machine, against about 0.2 ms with top-k 20). The kept set is walked in a deterministic but
//! unspecified order for the draw.

mod select;

use select::{argmax, desc, mass, nucleus, top_k_heap, Cand, TOP_K_HEAP_MAX};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Errors of [`crate::sampling`].
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum SamplingError {
    /// A parameter is out of its range (or NaN).
    #[error("invalid sampling parameter {name} = {value}: {requirement}")]
    InvalidParam {
        /// Parameter name, e.g. `top_p`.
        name: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// The valid range, in words.
        requirement: &'static str,
    },
    /// `sample` was given an empty logits slice.
    #[error("cannot sample from an empty logits vector")]
    EmptyLogits,
    /// Every logit is `-inf` or NaN: there is nothing to sample.
    #[error("cannot sample: all {vocab} logits are -inf or NaN")]
    NoFiniteLogits {
        /// Length of the logits vector.
        vocab: usize,
    },
    /// A context token id is not a valid index into the logits.
    #[error("token id {token} in the context is outside the vocabulary of {vocab} logits")]
    TokenOutOfRange {
        /// The offending id.
        token: u32,
        /// Length of the logits vector.
        vocab: usize,
    },
}

/// Sampling parameters. Neutral values switch a filter off: `top_k` 0, `top_p` 1, `min_p` 0,
/// `repetition_penalty` 1, `presence_penalty` 0, `frequency_penalty` 0. Temperature 0 means
/// greedy decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 = greedy argmax. Must be finite and >= 0.
    pub temperature: f32,
    /// Keep only the `top_k` most probable tokens; 0 = off.
    pub top_k: usize,
    /// Nucleus sampling mass in (0, 1]; 1 = off.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` x the top probability; in [0, 1), 0 = off.
    pub min_p: f32,
    /// HF repetition penalty (> 0, 1 = off) over every token id in the prompt and generation.
    pub repetition_penalty: f32,
    /// OpenAI/vLLM presence penalty (finite, 0 = off), subtracted once for every token id
    /// already generated.
    pub presence_penalty: f32,
    /// OpenAI/vLLM frequency penalty (finite, 0 = off): subtracted once for every occurrence
    /// of a token id among the tokens already generated.
    pub frequency_penalty: f32,
    /// Seed of the sampler's ChaCha8 generator.
    pub seed: u64,
}

impl SamplingParams {
    /// Greedy decoding: temperature 0, every filter and penalty off, seed 0.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }

    /// True when decoding is greedy (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every parameter's range; the error names the parameter and its value.
    pub fn validate(&self) -> Result<(), SamplingError> {
        fn check(
            name: &'static str,
            value: f32,
            ok: bool,
            requirement: &'static str,
        ) -> Result<(), SamplingError> {
            if ok && !value.is_nan() {
                Ok(())
            } else {
                Err(SamplingError::InvalidParam {
                    name,
                    value: value.to_string(),
                    requirement,
                })
            }
        }
        let t = self.temperature;
        check(
            "temperature",
            t,
            t.is_finite() && t >= 0.0,
            "must be finite and >= 0 (0 = greedy)",
        )?;
        let p = self.top_p;
        check(
            "top_p",
            p,
            p > 0.0 && p <= 1.0,
            "must be in (0, 1] (1 = off)",
        )?;
        let m = self.min_p;
        check(
            "min_p",
            m,
            (0.0..1.0).contains(&m),
            "must be in [0, 1) (0 = off)",
        )?;
        let r = self.repetition_penalty;
        check(
            "repetition_penalty",
            r,
            r.is_finite() && r > 0.0,
            "must be finite and > 0 (1 = off)",
        )?;
        let pp = self.presence_penalty;
        check(
            "presence_penalty",
            pp,
            pp.is_finite(),
            "must be finite (0 = off)",
        )?;
        let fp = self.frequency_penalty;
        check(
            "frequency_penalty",
            fp,
            fp.is_finite(),
            "must be finite (0 = off)",
        )?;
        Ok(())
    }
}

impl Default for SamplingParams {
    /// Same as [`SamplingParams::greedy`].
    fn default() -> Self {
        Self::greedy()
    }
}

/// A seeded sampler. Reusing one `Sampler` across the steps of a generation gives a
/// reproducible sequence for a given seed; its buffers are reused between calls.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Penalised logits.
    logits: Vec<f32>,
    /// Candidate tokens.
    cand: Vec<Cand>,
    /// Per-id stamp for deduplicating context ids without clearing a vocab-sized buffer.
    seen: Vec<u32>,
    epoch: u32,
}

impl Sampler {
    /// A sampler for `params` (validated), its generator seeded with `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Sampler, SamplingError> {
        params.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Ok(Sampler {
            params,
            rng,
            logits: Vec::new(),
            cand: Vec::new(),
            seen: Vec::new(),
            epoch: 0,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Next epoch of the dedup stamps, resizing/clearing the buffer when needed.
    fn next_epoch(&mut self, vocab: usize) -> u32 {
        if self.seen.len() != vocab || self.epoch == u32::MAX {
            self.seen.clear();
            self.seen.resize(vocab, 0);
            self.epoch = 0;
        }
        self.epoch += 1;
        self.epoch
    }

    /// Copies `logits` into the work buffer, sanitises them and applies the penalties; returns
    /// the (lowest) argmax and its value.
    fn prepare(
        &mut self,
        logits: &[f32],
        prompt_and_generated: &[u32],
        generated: &[u32],
    ) -> Result<(usize, f32), SamplingError> {
        let vocab = logits.len();
        if vocab == 0 {
            return Err(SamplingError::EmptyLogits);
        }
        if let Some(&token) = prompt_and_generated
            .iter()
            .chain(generated)
            .find(|&&t| t as usize >= vocab)
        {
            return Err(SamplingError::TokenOutOfRange { token, vocab });
        }
        self.logits.clear();
        // NaN -> -inf, +inf -> f32::MAX (branch-free so it vectorises).
        self.logits.extend(logits.iter().map(|&l| {
            let l = if l.is_nan() { f32::NEG_INFINITY } else { l };
            if l > f32::MAX {
                f32::MAX
            } else {
                l
            }
        }));
        let rep = self.params.repetition_penalty;
        if rep != 1.0 {
            let e = self.next_epoch(vocab);
            for &t in prompt_and_generated {
                let t = t as usize;
                if self.seen[t] != e {
                    self.seen[t] = e;
                    let l = self.logits[t];
                    self.logits[t] = if l < 0.0 { l * rep } else { l / rep };
                }
            }
        }
        let pres = self.params.presence_penalty;
        if pres != 0.0 {
            let e = self.next_epoch(vocab);
            for &t in generated {
                let t = t as usize;
                if self.seen[t] != e {
                    self.seen[t] = e;
                    self.logits[t] -= pres;
                }
            }
        }
        let freq = self.params.frequency_penalty;
        if freq != 0.0 {
            // Once per occurrence: count x penalty in all.
            for &t in generated {
                self.logits[t as usize] -= freq;
            }
        }
        let (best, max) = argmax(&self.logits);
        if max == f32::NEG_INFINITY {
            return Err(SamplingError::NoFiniteLogits { vocab });
        }
        Ok((best, max))
    }

    /// Runs steps 1-5 of the module docs and leaves the kept tokens in `self.cand`; returns
    /// their total unnormalised mass, or `Err(token)` for greedy decoding.
    fn filter(
        &mut self,
        logits: &[f32],
        prompt_and_generated: &[u32],
        generated: &[u32],
    ) -> Result<Result<f64, u32>, SamplingError> {
        let (best, max) = self.prepare(logits, prompt_and_generated, generated)?;
        let temp = self.params.temperature;
        if temp == 0.0 {
            return Ok(Err(best as u32));
        }
        let vocab = self.logits.len();
        let cand = &mut self.cand;
        cand.clear();
        let k = self.params.top_k;
        if k > 0 && k <= TOP_K_HEAP_MAX && k < vocab {
            top_k_heap(&self.logits, k, cand);
        } else {
            let finite = self
                .logits
                .iter()
                .enumerate()
                .filter(|(_, &l)| l > f32::NEG_INFINITY);
            cand.extend(finite.map(|(i, &logit)| Cand {
                logit,
                w: 0.0,
                id: i as u32,
            }));
            if k > 0 && k < cand.len() {
                cand.select_nth_unstable_by(k - 1, desc);
                cand.truncate(k);
            }
        }
        for c in cand.iter_mut() {
            c.w = ((c.logit - max) / temp).exp();
        }
        let min_p = self.params.min_p;
        let top_p = self.params.top_p;
        // top-p's mass is renormalised over the top-k set, before min-p.
        let total = if top_p < 1.0 { mass(cand) } else { 0.0 };
        if min_p > 0.0 {
            // p_i >= min_p * p_max  <=>  w_i >= min_p (the argmax has w = 1). The kept set is a
            // prefix of the `desc` order, so applying it before top-p's cut (whose mass was
            // taken above) gives HF's top-p-then-min-p result.
            cand.retain(|c| c.w >= min_p);
        }
        if top_p < 1.0 {
            let r = nucleus(cand, top_p as f64 * total);
            cand.truncate(r);
        }
        if cand.is_empty() {
            // Unreachable in exact arithmetic (the argmax, w = 1, always survives); be safe.
            cand.push(Cand {
                logit: max,
                w: 1.0,
                id: best as u32,
            });
        }
        debug_assert!(vocab >= cand.len());
        Ok(Ok(mass(cand)))
    }

    /// The distribution `sample` draws from: the kept token ids with their renormalised
    /// probabilities (for temperature 0, the argmax with probability 1). Draws no random
    /// number. Useful for tests and log-probabilities.
    pub fn distribution(
        &mut self,
        logits: &[f32],
        prompt_and_generated: &[u32],
        generated: &[u32],
    ) -> Result<Vec<(u32, f32)>, SamplingError> {
        match self.filter(logits, prompt_and_generated, generated)? {
            Err(id) => Ok(vec![(id, 1.0)]),
            Ok(kept) => {
                let mut d: Vec<(u32, f32)> = self
                    .cand
                    .iter()
                    .map(|c| (c.id, (c.w as f64 / kept) as f32))
                    .collect();
                d.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                Ok(d)
            }
        }
    }

    /// Picks the next token from `logits` (one per vocabulary id).
    ///
    /// `prompt_and_generated` is the whole context (for the repetition penalty), `generated`
    /// the tokens generated so far (for the presence and frequency penalties). See the module
    /// docs for the order of operations. Errors if `logits` is empty, every logit is
    /// `-inf`/NaN, or a context id is out of range; never panics on NaN.
    pub fn sample(
        &mut self,
        logits: &[f32],
        prompt_and_generated: &[u32],
        generated: &[u32],
    ) -> Result<u32, SamplingError> {
        let kept = match self.filter(logits, prompt_and_generated, generated)? {
            Err(id) => return Ok(id),
            Ok(kept) => kept,
        };
        let u = self.rng.random::<f64>() * kept;
        let mut acc = 0.0f64;
        for c in &self.cand {
            acc += c.w as f64;
            if u < acc {
                return Ok(c.id);
            }
        }
        Ok(self.cand.last().expect("kept set is never empty").id)
    }
}
