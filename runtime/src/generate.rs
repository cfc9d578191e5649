//! The generation loop, independent of where the model runs: prefill the prompt, then sample
//! one token per step until an end-of-sequence id, the token budget or the context bound.
//! [`Generation`] is a streaming iterator of [`TokenEvent`]s.

use crate::sampling::{Sampler, SamplingError, SamplingParams};
use crate::tokenizer::{StreamDecoder, Tokenizer, TokenizerError};
use std::time::{Duration, Instant};

/// A model that can run steps: the CPU executor or the CUDA executor.
pub trait Forward {
    /// Runs `tokens` at the positions following the cached ones and returns the logits of the
    /// last token (one per vocabulary id).
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BoxError>;
    /// Empties the KV cache.
    fn reset(&mut self);
    /// Tokens currently cached.
    fn cached_len(&self) -> usize;
    /// The most tokens the cache can hold.
    fn context_bound(&self) -> usize;

    /// Runs `tokens` and picks the next token. The default takes the last logits to the host
    /// and uses `sampler`; a GPU backend samples on the device instead.
    fn next_token(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        context: &[u32],
        generated: &[u32],
    ) -> Result<u32, BoxError> {
        let logits = self.forward_last(tokens)?;
        Ok(sampler.sample(&logits, context, generated)?)
    }
}

/// An error from a [`Forward`] implementation.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of generation.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt is empty: at least one token is needed")]
    EmptyPrompt,
    #[error("the prompt has {prompt} tokens but the model's context holds at most {bound}")]
    PromptTooLong { prompt: usize, bound: usize },
    #[error("model step failed: {0}")]
    Forward(BoxError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// When to stop and how to pick tokens.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Every id that ends generation (Qwen3: 151645 `<|im_end|>` and 151643 `<|endoftext|>`).
    pub eos_token_ids: Vec<u32>,
    pub sampling: SamplingParams,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-sequence token was produced (it is not part of the text).
    Eos(u32),
    /// `max_new_tokens` were produced.
    MaxTokens,
    /// The KV cache is full.
    ContextFull,
}

/// One generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenEvent {
    pub id: u32,
    /// Text completed by this token (may be empty while a multi-byte character is pending).
    pub text: String,
}

/// Timings and counts of a finished generation.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill: Duration,
    pub decode: Duration,
    pub stop: Option<StopReason>,
}

impl GenerationStats {
    /// Prompt tokens per second of the prefill.
    /// None when nothing was prefilled (or too fast to time).
    pub fn prefill_tokens_per_s(&self) -> Option<f64> {
        rate(self.prompt_tokens, self.prefill)
    }

    /// Generated tokens per second after the first (the first comes from the prefill).
    /// None when fewer than two tokens were generated.
    pub fn decode_tokens_per_s(&self) -> Option<f64> {
        rate(self.generated_tokens.saturating_sub(1), self.decode)
    }
}

/// Tokens per second, or None for no tokens or no measurable time.
fn rate(tokens: usize, time: std::time::Duration) -> Option<f64> {
    let secs = time.as_secs_f64();
    (tokens > 0 && secs > 0.0).then(|| tokens as f64 / secs)
}

/// A streaming generation: iterate to get tokens as they are produced.
pub struct Generation<'a, F: Forward + ?Sized> {
    model: &'a mut F,
    decoder: StreamDecoder<'a>,
    sampler: Sampler,
    opts: GenerateOptions,
    context: Vec<u32>,
    generated: Vec<u32>,
    pending: Option<Vec<u32>>,
    stats: GenerationStats,
    done: bool,
}

impl<'a, F: Forward + ?Sized> Generation<'a, F> {
    /// Starts a generation for `prompt` (token ids); the model's cache is reset first.
    pub fn new(
        model: &'a mut F,
        tokenizer: &'a Tokenizer,
        prompt: &[u32],
        opts: GenerateOptions,
    ) -> Result<Self, GenerateError> {
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let bound = model.context_bound();
        if prompt.len() > bound {
            return Err(GenerateError::PromptTooLong {
                prompt: prompt.len(),
                bound,
            });
        }
        let sampler = Sampler::new(opts.sampling.clone())?;
        model.reset();
        Ok(Generation {
            model,
            decoder: tokenizer.stream_decoder(),
            sampler,
            opts,
            context: prompt.to_vec(),
            generated: Vec::new(),
            pending: Some(prompt.to_vec()),
            stats: GenerationStats {
                prompt_tokens: prompt.len(),
                generated_tokens: 0,
                prefill: Duration::ZERO,
                decode: Duration::ZERO,
                stop: None,
            },
            done: false,
        })
    }

    /// Counts and timings so far (final once the iterator has returned `None`).
    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    /// The generated token ids so far (without the eos token).
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// Text still held by the streaming decoder (an incomplete character at the end).
    pub fn flush(&mut self) -> Result<String, GenerateError> {
        Ok(self.decoder.finish()?.unwrap_or_default())
    }

    fn next_token(&mut self) -> Result<Option<TokenEvent>, GenerateError> {
        if self.generated.len() >= self.opts.max_new_tokens {
            self.stats.stop = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        let Some(input) = self.pending.take() else {
            return Ok(None);
        };
        if self.model.cached_len() + input.len() > self.model.context_bound() {
            self.stats.stop = Some(StopReason::ContextFull);
            return Ok(None);
        }
        let started = Instant::now();
        let id = self
            .model
            .next_token(&input, &mut self.sampler, &self.context, &self.generated)
            .map_err(GenerateError::Forward)?;
        let spent = started.elapsed();
        if self.generated.is_empty() {
            self.stats.prefill += spent;
        } else {
            self.stats.decode += spent;
        }
        if self.opts.eos_token_ids.contains(&id) {
            self.stats.stop = Some(StopReason::Eos(id));
            return Ok(None);
        }
        self.context.push(id);
        self.generated.push(id);
        self.stats.generated_tokens += 1;
        self.pending = Some(vec![id]);
        let text = self.decoder.push(id)?.unwrap_or_default();
        Ok(Some(TokenEvent { id, text }))
    }
}

impl<F: Forward + ?Sized> Iterator for Generation<'_, F> {
    type Item = Result<TokenEvent, GenerateError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_token() {
            Ok(Some(ev)) => Some(Ok(ev)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
