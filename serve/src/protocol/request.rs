//! The request bodies of `/v1/chat/completions` and `/v1/completions`, as OpenAI (and vLLM's
//! extensions) define them. Unknown fields are ignored; a known field of the wrong type is a
//! 400 naming the field ([`super::parse_body`]).

use pio_runtime::chat::TemplateValue;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `stop`: one string or a list.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct StreamOptions {
    /// Send a last chunk with the usage of the whole request (and `usage: null` before).
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The fields both endpoints share (how much to generate, sampling, stopping, streaming),
/// listed once: `generation_fields!(m! { ... })` calls `m!` with its own input followed by
/// `fields { ... }`.
macro_rules! generation_fields {
    ($callback:ident ! { $($input:tt)* }) => {
        $callback! { $($input)* fields {
            max_tokens: Option<i64>,
            temperature: Option<f32>,
            top_p: Option<f32>,
            top_k: Option<i64>,
            min_p: Option<f32>,
            presence_penalty: Option<f32>,
            frequency_penalty: Option<f32>,
            repetition_penalty: Option<f32>,
            seed: Option<i64>,
            stop: Option<Stop>,
            stop_token_ids: Option<Vec<u32>>,
            n: Option<i64>,
            stream: Option<bool>,
            stream_options: Option<StreamOptions>,
            /// vLLM: do not stop on the model's eos ids.
            ignore_eos: Option<bool>,
            /// vLLM: leave special tokens out of the text (default true).
            skip_special_tokens: Option<bool>,
            /// vLLM: keep a matched stop string at the end of the text.
            include_stop_str_in_output: Option<bool>,
            /// Refused when it would change anything (non-empty).
            logit_bias: Option<BTreeMap<String, f32>>,
            /// vLLM: refused when above 0.
            min_tokens: Option<i64>,
            /// Only `{"type": "text"}` is taken.
            response_format: Option<serde_json::Value>,
            /// OpenAI's end-user id: taken and ignored (metadata).
            user: Option<String>,
        } }
    };
}

/// [`Generation`] itself, from the shared field list.
macro_rules! generation_struct {
    (fields { $($(#[$gmeta:meta])* $g:ident: $gty:ty,)* }) => {
        /// The fields both endpoints share: how much to generate, sampling, stopping, streaming.
        #[derive(Clone, Debug, Default, Deserialize, PartialEq)]
        pub struct Generation {
            $($(#[$gmeta])* pub $g: $gty,)*
        }
    };
}

generation_fields!(generation_struct! {});

/// A request struct with the shared fields written into it (not `#[serde(flatten)]`, which
/// would lose the field name of a type error), taken out as a [`Generation`].
macro_rules! with_generation {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }
     fields { $($(#[$gmeta:meta])* $g:ident: $gty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            $($(#[$gmeta])* pub $g: $gty,)*
        }

        impl $name {
            /// Takes the shared fields out.
            pub fn take_generation(&mut self) -> Generation {
                Generation {
                    $($g: std::mem::take(&mut self.$g),)*
                }
            }
        }
    };
}

/// A chat message's role.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    /// OpenAI's newer name for a system message.
    Developer,
    User,
    Assistant,
    Tool,
}

/// Message content: text or a list of parts (only text parts are taken).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// A tool call of an earlier assistant turn.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ToolCallIn {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub function: FunctionCallIn,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FunctionCallIn {
    pub name: String,
    /// JSON text (OpenAI) or a JSON object (some clients).
    pub arguments: Option<TemplateValue>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: Option<Content>,
    pub reasoning_content: Option<String>,
    pub tool_calls: Option<Vec<ToolCallIn>>,
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

/// `tool_choice`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(ToolMode),
    Named(NamedTool),
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolMode {
    None,
    Auto,
    Required,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct NamedTool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: NamedFunction,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct NamedFunction {
    pub name: String,
}

/// A tool definition, checked (the template gets the object as written).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ToolDef {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FunctionDef {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<serde_json::Value>,
}

generation_fields!(with_generation! {
/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    /// OpenAI's newer name for `max_tokens` (wins when both are given).
    pub max_completion_tokens: Option<i64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    pub tools: Option<Vec<TemplateValue>>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    /// vLLM: keyword arguments of the chat template (`enable_thinking`, ...).
    pub chat_template_kwargs: Option<BTreeMap<String, TemplateValue>>,
    /// Qwen3's switch, also accepted at the top level.
    pub enable_thinking: Option<bool>,
    /// vLLM: open the assistant's turn (default true).
    pub add_generation_prompt: Option<bool>,
}
});

/// `prompt`: text, texts, token ids or lists of token ids.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
    Texts(Vec<String>),
    IdLists(Vec<Vec<u32>>),
}

generation_fields!(with_generation! {
/// `POST /v1/completions`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Prompt,
    /// Top log-probabilities per token (0 = the chosen token's only).
    pub logprobs: Option<i64>,
    /// Refused when true.
    pub echo: Option<bool>,
    /// Refused when given.
    pub suffix: Option<String>,
    /// Refused unless equal to `n`.
    pub best_of: Option<i64>,
}
});
