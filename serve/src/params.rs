//! From a request's shared fields to engine requests: every value checked (a 400 naming the
//! field), the model's generation defaults where the request says nothing, seeds, stop ids,
//! and the context bound.

use crate::engine_thread::{OutputOptions, Submission};
use crate::errors::ApiError;
use crate::protocol::request::Generation;
use crate::state::ModelContext;
use pio_engine::RequestParams;
use pio_runtime::sampling::SamplingParams;

/// Most choices per prompt (`n`).
pub const MAX_N: usize = 64;
/// Most stop strings, and the longest.
pub const MAX_STOPS: usize = 64;
pub const MAX_STOP_BYTES: usize = 1024;

/// A request's generation settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct GenPlan {
    /// `max_tokens` as given, with the field it came from.
    pub max_tokens: Option<(usize, &'static str)>,
    /// Sampling with the model's defaults filled in (the seed is set per choice).
    pub sampling: SamplingParams,
    pub seed: Option<u64>,
    pub stop_token_ids: Vec<u32>,
    pub output: OutputOptions,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
}

fn bad(param: &str, requirement: &str, value: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("{param} {requirement} (got {value})"), param)
}

fn finite_in(
    param: &str,
    v: Option<f32>,
    ok: impl Fn(f32) -> bool,
    requirement: &str,
) -> Result<Option<f32>, ApiError> {
    match v {
        Some(x) if !(x.is_finite() && ok(x)) => Err(bad(param, requirement, x)),
        v => Ok(v),
    }
}

impl GenPlan {
    /// Checks `g`; `max_tokens` is the value of `max_completion_tokens` (chat) when given,
    /// which wins over `max_tokens`.
    pub fn new(
        mut g: Generation,
        max_completion_tokens: Option<i64>,
        ctx: &ModelContext,
    ) -> Result<GenPlan, ApiError> {
        let max_tokens = match (max_completion_tokens, g.max_tokens.take()) {
            (Some(m), _) => Some((m, "max_completion_tokens")),
            (None, Some(m)) => Some((m, "max_tokens")),
            (None, None) => None,
        };
        let max_tokens = match max_tokens {
            Some((m, field)) if m < 1 => return Err(bad(field, "must be at least 1", m)),
            Some((m, field)) => Some((usize::try_from(m).unwrap_or(usize::MAX), field)),
            None => None,
        };
        let d = &ctx.defaults.sampling;
        let temperature = finite_in("temperature", g.temperature, |t| t >= 0.0, "must be >= 0")?;
        let top_p = finite_in(
            "top_p",
            g.top_p,
            |p| p > 0.0 && p <= 1.0,
            "must be in (0, 1]",
        )?;
        let min_p = finite_in(
            "min_p",
            g.min_p,
            |p| (0.0..1.0).contains(&p),
            "must be in [0, 1)",
        )?;
        let pen = |x: f32| (-2.0..=2.0).contains(&x);
        let presence = finite_in(
            "presence_penalty",
            g.presence_penalty,
            pen,
            "must be in [-2, 2]",
        )?;
        let frequency = finite_in(
            "frequency_penalty",
            g.frequency_penalty,
            pen,
            "must be in [-2, 2]",
        )?;
        let repetition = finite_in(
            "repetition_penalty",
            g.repetition_penalty,
            |r| r > 0.0,
            "must be > 0",
        )?;
        let top_k = match g.top_k {
            None => d.top_k,
            Some(-1) | Some(0) => 0,
            Some(k) if k < -1 => {
                return Err(bad("top_k", "must be -1 or 0 (off) or at least 1", k))
            }
            Some(k) => usize::try_from(k).unwrap_or(usize::MAX),
        };
        let sampling = SamplingParams {
            temperature: temperature.unwrap_or(d.temperature),
            top_k,
            top_p: top_p.unwrap_or(d.top_p),
            min_p: min_p.unwrap_or(d.min_p),
            repetition_penalty: repetition.unwrap_or(d.repetition_penalty),
            presence_penalty: presence.unwrap_or(d.presence_penalty),
            frequency_penalty: frequency.unwrap_or(d.frequency_penalty),
            seed: 0,
        };
        sampling
            .validate()
            .map_err(|e| ApiError::bad_request(e.to_string(), ""))?;
        let n = match g.n {
            None => 1,
            Some(n) if n < 1 || n as u64 > MAX_N as u64 => {
                return Err(bad("n", &format!("must be between 1 and {MAX_N}"), n))
            }
            Some(n) => n as usize,
        };
        let stop = g.stop.take().map(|s| s.into_vec()).unwrap_or_default();
        if stop.len() > MAX_STOPS {
            return Err(bad(
                "stop",
                &format!("takes at most {MAX_STOPS} strings"),
                stop.len(),
            ));
        }
        if let Some(s) = stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(bad(
                "stop",
                &format!("strings are at most {MAX_STOP_BYTES} bytes"),
                s.len(),
            ));
        }
        let mut stop_token_ids = if g.ignore_eos == Some(true) {
            Vec::new()
        } else {
            ctx.defaults.eos_token_ids.clone()
        };
        for &t in g.stop_token_ids.iter().flatten() {
            if t as usize >= ctx.vocab_size {
                return Err(bad(
                    "stop_token_ids",
                    &format!("must be below the vocabulary size {}", ctx.vocab_size),
                    t,
                ));
            }
            if !stop_token_ids.contains(&t) {
                stop_token_ids.push(t);
            }
        }
        if g.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(ApiError::unsupported(
                "logit_bias",
                "a non-empty logit_bias",
            ));
        }
        if let Some(m) = g.min_tokens.filter(|&m| m > 0) {
            return Err(ApiError::unsupported(
                "min_tokens",
                format!("min_tokens {m}"),
            ));
        }
        if let Some(f) = &g.response_format {
            if f.get("type").and_then(|t| t.as_str()) != Some("text") {
                return Err(ApiError::unsupported(
                    "response_format",
                    format!("response_format {f} (only {{\"type\": \"text\"}})"),
                ));
            }
        }
        let stream = g.stream.unwrap_or(false);
        let include_usage = g
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        if g.stream_options.is_some() && !stream {
            return Err(ApiError::bad_request(
                "stream_options is only allowed when stream is true",
                "stream_options",
            ));
        }
        Ok(GenPlan {
            max_tokens,
            sampling,
            seed: g.seed.map(|s| s as u64),
            stop_token_ids,
            output: OutputOptions {
                skip_special_tokens: g.skip_special_tokens.unwrap_or(true),
                stop,
                include_stop: g.include_stop_str_in_output.unwrap_or(false),
                logprobs: None,
            },
            n,
            stream,
            include_usage,
        })
    }

    /// The `n` engine requests of one prompt; `first` is the index of its first choice
    /// (choices of later prompts follow). Refused when the prompt, or the prompt with
    /// `max_tokens`, does not fit the context.
    pub fn submissions(
        &self,
        prompt: Vec<u32>,
        prompt_param: &str,
        first: usize,
        ctx: &ModelContext,
    ) -> Result<Vec<Submission>, ApiError> {
        let bound = ctx.max_seq_len;
        if prompt.len() >= bound {
            return Err(ApiError::context_length(
                format!(
                    "This model's maximum context length is {bound} tokens. However, your \
                     prompt has {} tokens (at least one must be left for the completion).",
                    prompt.len()
                ),
                prompt_param,
            ));
        }
        let room = bound - prompt.len();
        let max_new_tokens = match self.max_tokens {
            Some((m, field)) if m > room => {
                return Err(ApiError::context_length(
                    format!(
                        "This model's maximum context length is {bound} tokens. However, you \
                         requested {} tokens ({} in the prompt, {m} in the completion).",
                        prompt.len().saturating_add(m),
                        prompt.len()
                    ),
                    field,
                ))
            }
            Some((m, _)) => m,
            None => room,
        };
        let wants_logits = self.output.logprobs.is_some();
        Ok((0..self.n)
            .map(|i| {
                let seed = match self.seed {
                    Some(s) => s.wrapping_add((first + i) as u64),
                    None => crate::ids::random_u64(),
                };
                Submission {
                    prompt: prompt.clone(),
                    params: RequestParams {
                        max_new_tokens,
                        sampling: SamplingParams {
                            seed,
                            ..self.sampling.clone()
                        },
                        stop_token_ids: self.stop_token_ids.clone(),
                        return_logits: wants_logits,
                    },
                    output: self.output.clone(),
                }
            })
            .collect())
    }
}
