//! `POST /v1/chat/completions`, whole or streamed.

use super::stream::{self, Chunker};
use super::{blocking, chat_logprob, check_model, read_body, submit};
use crate::chat_prompt::ChatPrompt;
use crate::choice::{ChoiceParser, Parts};
use crate::engine_thread::{Event, Finish};
use crate::errors::ApiError;
use crate::logprobs::MAX_TOP_LOGPROBS;
use crate::params::GenPlan;
use crate::protocol::parse_body;
use crate::protocol::request::ChatRequest;
use crate::protocol::response::{
    AssistantMessage, ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion, ChatDelta,
    ChatLogprobs, FinishReason, FunctionCallOut, ToolCallDelta, ToolCallOut, Usage,
};
use crate::state::Shared;
use crate::tools::ToolCall;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Instant;

pub(super) async fn handle(State(st): State<Shared>, req: Request) -> Response {
    let arrived = Instant::now();
    match run(st, req, arrived).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(st: Shared, req: Request, arrived: Instant) -> Result<Response, ApiError> {
    let body = read_body(&st, req).await?;
    let mut r: ChatRequest = parse_body(&body)?;
    check_model(&st, r.model.as_deref())?;
    let mut plan = GenPlan::new(r.take_generation(), r.max_completion_tokens, &st.model)?;
    let top = match (r.logprobs, r.top_logprobs) {
        (_, Some(t)) if !(0..=MAX_TOP_LOGPROBS as i64).contains(&t) => {
            return Err(ApiError::bad_request(
                format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS} (got {t})"),
                "top_logprobs",
            ))
        }
        (Some(true), t) => Some(t.unwrap_or(0) as usize),
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "top_logprobs needs logprobs: true",
                "top_logprobs",
            ))
        }
        _ => None,
    };
    plan.output.logprobs = top;
    let prompt = ChatPrompt::new(&mut r)?;
    let (parse_tools, parallel) = (prompt.parse_tools, prompt.parallel_tool_calls);
    let st2 = st.clone();
    let ids = blocking(move || prompt.tokenize(&st2.model)).await?;
    let prompt_tokens = ids.len();
    let subs = plan.submissions(ids, "messages", 0, &st.model)?;
    let n = subs.len();
    let sub = submit(&st, subs, arrived).await?;
    let meta = Meta {
        id: format!("chatcmpl-{}", crate::ids::random_hex(24)),
        created: crate::ids::unix_now(),
        model: st.model.name.clone(),
    };
    let choices = (0..n)
        .map(|_| ChoiceState::new(ChoiceParser::new(parse_tools, parallel)))
        .collect();
    let mut acc = Chat {
        st: st.clone(),
        meta,
        choices,
        prompt_tokens,
        include_usage: plan.include_usage,
        want_logprobs: top.is_some(),
    };
    if plan.stream {
        let first = (0..n).map(|i| acc.role_chunk(i)).collect();
        return Ok(stream::sse(sub, acc, first));
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

struct Meta {
    id: String,
    created: u64,
    model: String,
}

/// One choice: its parsers and, for a whole response, what it produced.
struct ChoiceState {
    parser: ChoiceParser,
    content: String,
    reasoning: String,
    calls: Vec<ToolCall>,
    logprobs: ChatLogprobs,
    finish: Option<FinishReason>,
    completion_tokens: usize,
}

impl ChoiceState {
    fn new(parser: ChoiceParser) -> Self {
        ChoiceState {
            parser,
            content: String::new(),
            reasoning: String::new(),
            calls: Vec::new(),
            logprobs: ChatLogprobs::default(),
            finish: None,
            completion_tokens: 0,
        }
    }
}

/// A chat request's choices, as a whole response or as chunks.
struct Chat {
    st: Shared,
    meta: Meta,
    choices: Vec<ChoiceState>,
    prompt_tokens: usize,
    include_usage: bool,
    want_logprobs: bool,
}

fn tool_out(c: &ToolCall) -> ToolCallOut {
    ToolCallOut {
        id: c.id.clone(),
        kind: "function",
        function: FunctionCallOut {
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        },
    }
}

fn finish_reason(f: &Finish, calls: usize) -> Result<FinishReason, ApiError> {
    match f {
        Finish::Stop if calls > 0 => Ok(FinishReason::ToolCalls),
        Finish::Stop => Ok(FinishReason::Stop),
        Finish::Length => Ok(FinishReason::Length),
        Finish::Failed(m) => Err(ApiError::internal(m.clone())),
        Finish::Aborted => Err(ApiError::unavailable(
            "the request was aborted: the server is shutting down",
        )),
    }
}

impl Chat {
    fn usage(&self) -> Usage {
        Usage::new(
            self.prompt_tokens,
            self.choices.iter().map(|c| c.completion_tokens).sum(),
        )
    }

    fn chunk(&self, choices: Vec<ChatChunkChoice>) -> String {
        let c = ChatChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices,
            usage: self.include_usage.then_some(None),
        };
        serde_json::to_string(&c).unwrap_or_default()
    }

    fn role_chunk(&self, index: usize) -> String {
        self.chunk(vec![ChatChunkChoice {
            index,
            delta: ChatDelta {
                role: Some("assistant"),
                content: Some(String::new()),
                ..ChatDelta::default()
            },
            logprobs: None,
            finish_reason: None,
        }])
    }

    /// Takes one event; returns the stream chunks it makes (a whole response keeps them in
    /// its choices too).
    fn event(&mut self, index: usize, event: Event) -> Result<Vec<String>, ApiError> {
        let st = self.st.clone();
        let want_logprobs = self.want_logprobs;
        let Some(c) = self.choices.get_mut(index) else {
            return Ok(Vec::new());
        };
        let (parts, logprobs, finish) = match event {
            Event::Delta { text, tokens } => {
                let lp: Vec<_> = tokens
                    .iter()
                    .filter_map(|t| t.logprobs.as_ref().map(|l| chat_logprob(&st, t.id, l)))
                    .collect();
                (c.parser.push(&text), lp, None)
            }
            Event::Done {
                finish,
                completion_tokens,
            } => {
                c.completion_tokens = completion_tokens;
                let parts = c.parser.finish();
                let reason = finish_reason(&finish, c.parser.calls())?;
                (parts, Vec::new(), Some(reason))
            }
        };
        c.content.push_str(&parts.content);
        c.reasoning.push_str(&parts.reasoning);
        let first_call = c.calls.len();
        c.calls.extend(parts.calls.iter().cloned());
        c.logprobs.content.extend(logprobs.iter().cloned());
        c.finish = finish.or(c.finish);
        let mut chunks = Vec::new();
        let Parts {
            reasoning,
            content,
            calls,
        } = parts;
        let delta = ChatDelta {
            role: None,
            content: (!content.is_empty()).then_some(content),
            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls: calls
                .iter()
                .enumerate()
                .map(|(k, call)| ToolCallDelta {
                    index: first_call + k,
                    id: call.id.clone(),
                    kind: "function",
                    function: FunctionCallOut {
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                    },
                })
                .collect(),
        };
        if !delta.is_empty() || !logprobs.is_empty() {
            chunks.push(self.chunk(vec![ChatChunkChoice {
                index,
                delta,
                logprobs: (want_logprobs && !logprobs.is_empty())
                    .then_some(ChatLogprobs { content: logprobs }),
                finish_reason: None,
            }]));
        }
        if let Some(reason) = finish {
            chunks.push(self.chunk(vec![ChatChunkChoice {
                index,
                delta: ChatDelta::default(),
                logprobs: None,
                finish_reason: Some(reason),
            }]));
        }
        Ok(chunks)
    }

    fn completion(self) -> ChatCompletion {
        let usage = self.usage();
        let want = self.want_logprobs;
        ChatCompletion {
            id: self.meta.id,
            object: "chat.completion",
            created: self.meta.created,
            model: self.meta.model,
            choices: self
                .choices
                .into_iter()
                .enumerate()
                .map(|(index, c)| ChatChoice {
                    index,
                    message: AssistantMessage {
                        role: "assistant",
                        content: if c.content.is_empty() && !c.calls.is_empty() {
                            None
                        } else {
                            Some(c.content)
                        },
                        reasoning_content: (!c.reasoning.is_empty()).then_some(c.reasoning),
                        tool_calls: c.calls.iter().map(tool_out).collect(),
                    },
                    logprobs: want.then_some(c.logprobs),
                    finish_reason: c.finish.unwrap_or(FinishReason::Stop),
                })
                .collect(),
            usage,
        }
    }
}

impl Chunker for Chat {
    fn event(&mut self, index: usize, event: Event) -> Result<Vec<String>, ApiError> {
        Chat::event(self, index, event)
    }

    fn done(&self) -> bool {
        self.choices.iter().all(|c| c.finish.is_some())
    }

    fn end(&mut self) -> Vec<String> {
        if !self.include_usage {
            return Vec::new();
        }
        let c = ChatChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices: Vec::new(),
            usage: Some(Some(self.usage())),
        };
        vec![serde_json::to_string(&c).unwrap_or_default()]
    }
}
