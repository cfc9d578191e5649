//! One request's state inside the scheduler: its tokens, how many of them the KV cache holds,
//! its blocks, its sampler and when it stops.

use crate::blocks::BlockId;
use crate::prefix_cache::BlockKey;
use pio_runtime::sampling::{Sampler, SamplingParams};

/// A request's handle, unique within an engine.
pub type RequestId = u64;

/// How one request generates.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestParams {
    /// Most tokens to generate (at least 1).
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Ids that end the request (not part of its output): the model's eos ids and any others.
    pub stop_token_ids: Vec<u32>,
    /// Return the logits each token was sampled from ([`RequestOutput::logits`]).
    pub return_logits: bool,
}

/// Why a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop id was generated (it is not part of the output).
    Stop(u32),
    /// `max_new_tokens` were generated.
    Length,
    /// The sequence reached the most positions a sequence can hold.
    ContextFull,
    /// [`crate::Engine::abort`] (or the scheduler's owner) ended it.
    Aborted,
    /// Its next token could not be picked (the sampler's error is in
    /// [`RequestOutput::error`]); the other requests go on.
    Failed,
}

/// What one step did for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestOutput {
    pub id: RequestId,
    /// Tokens generated this step (zero or one; never a stop id).
    pub new_tokens: Vec<u32>,
    /// Text those tokens completed (filled by the engine; empty from a bare scheduler).
    pub text: String,
    /// Set on the request's last output.
    pub finish: Option<FinishReason>,
    /// The logits this step's token was sampled from, when the request asked for them.
    pub logits: Option<Vec<f32>>,
    /// Why the request failed ([`FinishReason::Failed`]).
    pub error: Option<String>,
}

/// A request the scheduler holds.
#[derive(Debug)]
pub(crate) struct Sequence {
    pub id: RequestId,
    /// Admission order: the newest running sequence is preempted first.
    pub arrival: u64,
    /// Prompt, then every generated token.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Tokens whose keys and values are in the cache (positions `0..computed`).
    pub computed: usize,
    pub blocks: Vec<BlockId>,
    /// Keys of the leading full blocks, registered in (or found in) the prefix cache.
    pub keys: Vec<BlockKey>,
    pub params: RequestParams,
    pub sampler: Sampler,
    /// Prompt tokens taken from the prefix cache at first admission.
    pub cached_prompt_tokens: Option<usize>,
    pub preemptions: u32,
}

impl Sequence {
    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// Tokens still to run through the model (the prompt's rest, or the last sampled token).
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }
}
