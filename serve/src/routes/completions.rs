//! `POST /v1/completions`, whole or streamed: one prompt or several (text or token ids), `n`
//! choices each (choice `i * n + j` is prompt `i`'s `j`-th).

use super::stream::{self, Chunker};
use super::{blocking, check_model, read_body, submit};
use crate::engine_thread::{Event, Finish, TokenInfo};
use crate::errors::ApiError;
use crate::logprobs::MAX_TOP_LOGPROBS;
use crate::params::GenPlan;
use crate::protocol::parse_body;
use crate::protocol::request::{CompletionRequest, Prompt};
use crate::protocol::response::{
    Completion, CompletionChoice, CompletionLogprobs, FinishReason, Usage,
};
use crate::state::Shared;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Instant;

/// Most prompts in one request.
pub const MAX_PROMPTS: usize = 64;

pub(super) async fn handle(State(st): State<Shared>, req: Request) -> Response {
    let arrived = Instant::now();
    match run(st, req, arrived).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(st: Shared, req: Request, arrived: Instant) -> Result<Response, ApiError> {
    let body = read_body(&st, req).await?;
    let mut r: CompletionRequest = parse_body(&body)?;
    check_model(&st, r.model.as_deref())?;
    let mut plan = GenPlan::new(r.take_generation(), None, &st.model)?;
    if r.echo == Some(true) {
        return Err(ApiError::unsupported("echo", "echo: true"));
    }
    if r.suffix.is_some() {
        return Err(ApiError::unsupported("suffix", "a suffix"));
    }
    if let Some(b) = r.best_of.filter(|&b| b != plan.n as i64) {
        return Err(ApiError::unsupported(
            "best_of",
            format!("best_of {b} other than n"),
        ));
    }
    plan.output.logprobs = match r.logprobs {
        None => None,
        Some(l) if (0..=MAX_TOP_LOGPROBS as i64).contains(&l) => Some(l as usize),
        Some(l) => {
            return Err(ApiError::bad_request(
                format!("logprobs must be between 0 and {MAX_TOP_LOGPROBS} (got {l})"),
                "logprobs",
            ))
        }
    };
    let texts_or_ids: Vec<Result<String, Vec<u32>>> = match r.prompt {
        Prompt::Text(t) => vec![Ok(t)],
        Prompt::Texts(v) => v.into_iter().map(Ok).collect(),
        Prompt::Ids(ids) => vec![Err(ids)],
        Prompt::IdLists(v) => v.into_iter().map(Err).collect(),
    };
    if texts_or_ids.is_empty() || texts_or_ids.len() > MAX_PROMPTS {
        return Err(ApiError::bad_request(
            format!("prompt must hold between 1 and {MAX_PROMPTS} prompts"),
            "prompt",
        ));
    }
    let st2 = st.clone();
    let prompts: Vec<Vec<u32>> =
        blocking(move || {
            texts_or_ids
                .into_iter()
                .map(|p| match p {
                    Ok(text) => st2.model.tokenizer.encode_prompt(&text).map_err(|e| {
                        ApiError::internal(format!("tokenizing the prompt failed: {e}"))
                    }),
                    Err(ids) => Ok(ids),
                })
                .collect()
        })
        .await?;
    let mut subs = Vec::new();
    let mut prompt_tokens = 0;
    for p in prompts {
        if let Some(&bad) = p.iter().find(|&&t| t as usize >= st.model.vocab_size) {
            return Err(ApiError::bad_request(
                format!(
                    "token id {bad} is outside the vocabulary of {}",
                    st.model.vocab_size
                ),
                "prompt",
            ));
        }
        if p.is_empty() {
            return Err(ApiError::bad_request(
                "the prompt is empty: at least one token is needed",
                "prompt",
            ));
        }
        prompt_tokens += p.len();
        let first = subs.len();
        subs.extend(plan.submissions(p, "prompt", first, &st.model)?);
    }
    let n = subs.len();
    let sub = submit(&st, subs, arrived).await?;
    let mut acc = Completions {
        st: st.clone(),
        id: format!("cmpl-{}", crate::ids::random_hex(24)),
        created: crate::ids::unix_now(),
        choices: (0..n).map(|_| ChoiceState::default()).collect(),
        prompt_tokens,
        include_usage: plan.include_usage,
        want_logprobs: plan.output.logprobs.is_some(),
    };
    if plan.stream {
        return Ok(stream::sse(sub, acc, Vec::new()));
    }
    let mut sub = sub;
    while !acc.done() {
        let Some((index, event)) = sub.events.recv().await else {
            return Err(ApiError::internal("the engine dropped the request"));
        };
        acc.event(index, event)?;
    }
    drop(sub);
    Ok(Json(acc.completion()).into_response())
}

#[derive(Default)]
struct ChoiceState {
    text: String,
    logprobs: CompletionLogprobs,
    finish: Option<FinishReason>,
    completion_tokens: usize,
}

struct Completions {
    st: Shared,
    id: String,
    created: u64,
    choices: Vec<ChoiceState>,
    prompt_tokens: usize,
    include_usage: bool,
    want_logprobs: bool,
}

/// The legacy logprobs of some tokens; `offset` is where their text starts in the choice.
fn legacy(st: &Shared, tokens: &[TokenInfo], mut offset: usize) -> CompletionLogprobs {
    let t = &st.model.token_text;
    let mut out = CompletionLogprobs::default();
    for tok in tokens {
        let Some(lp) = &tok.logprobs else { continue };
        let text = t.text(tok.id);
        out.text_offset.push(offset);
        offset += text.len();
        out.tokens.push(text);
        out.token_logprobs.push(lp.logprob);
        out.top_logprobs.push(
            lp.top
                .iter()
                .map(|&(alt, l)| (t.text(alt), serde_json::json!(l)))
                .collect(),
        );
    }
    out
}

impl Completions {
    fn usage(&self) -> Usage {
        Usage::new(
            self.prompt_tokens,
            self.choices.iter().map(|c| c.completion_tokens).sum(),
        )
    }

    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<Option<Usage>>) -> String {
        let c = Completion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.st.model.name.clone(),
            choices,
            usage,
        };
        serde_json::to_string(&c).unwrap_or_default()
    }

    fn event(&mut self, index: usize, event: Event) -> Result<Vec<String>, ApiError> {
        let st = self.st.clone();
        let want = self.want_logprobs;
        let Some(c) = self.choices.get_mut(index) else {
            return Ok(Vec::new());
        };
        let (text, logprobs, finish) = match event {
            Event::Delta { text, tokens } => {
                let offset = c
                    .logprobs
                    .text_offset
                    .last()
                    .map_or(0, |&o| o + c.logprobs.tokens.last().map_or(0, String::len));
                let lp = legacy(&st, &tokens, offset);
                (text, lp, None)
            }
            Event::Done {
                finish,
                completion_tokens,
            } => {
                c.completion_tokens = completion_tokens;
                let reason = match finish {
                    Finish::Stop => FinishReason::Stop,
                    Finish::Length => FinishReason::Length,
                    Finish::Failed(m) => return Err(ApiError::internal(m)),
                    Finish::Aborted => {
                        return Err(ApiError::unavailable(
                            "the request was aborted: the server is shutting down",
                        ))
                    }
                };
                (String::new(), CompletionLogprobs::default(), Some(reason))
            }
        };
        c.text.push_str(&text);
        c.logprobs.tokens.extend(logprobs.tokens.iter().cloned());
        c.logprobs
            .token_logprobs
            .extend(logprobs.token_logprobs.iter().copied());
        c.logprobs
            .top_logprobs
            .extend(logprobs.top_logprobs.iter().cloned());
        c.logprobs
            .text_offset
            .extend(logprobs.text_offset.iter().copied());
        c.finish = finish.or(c.finish);
        let has_lp = !logprobs.tokens.is_empty();
        if text.is_empty() && !has_lp && finish.is_none() {
            return Ok(Vec::new());
        }
        let usage = self.include_usage.then_some(None);
        Ok(vec![self.chunk(
            vec![CompletionChoice {
                index,
                text,
                logprobs: (want && (has_lp || finish.is_none())).then_some(logprobs),
                finish_reason: finish,
            }],
            usage,
        )])
    }

    fn completion(self) -> Completion {
        let usage = self.usage();
        let want = self.want_logprobs;
        Completion {
            id: self.id,
            object: "text_completion",
            created: self.created,
            model: self.st.model.name.clone(),
            choices: self
                .choices
                .into_iter()
                .enumerate()
                .map(|(index, c)| CompletionChoice {
                    index,
                    text: c.text,
                    logprobs: want.then_some(c.logprobs),
                    finish_reason: Some(c.finish.unwrap_or(FinishReason::Stop)),
                })
                .collect(),
            usage: Some(Some(usage)),
        }
    }
}

impl Chunker for Completions {
    fn event(&mut self, index: usize, event: Event) -> Result<Vec<String>, ApiError> {
        Completions::event(self, index, event)
    }

    fn done(&self) -> bool {
        self.choices.iter().all(|c| c.finish.is_some())
    }

    fn end(&mut self) -> Vec<String> {
        if !self.include_usage {
            return Vec::new();
        }
        vec![self.chunk(Vec::new(), Some(Some(self.usage())))]
    }
}
