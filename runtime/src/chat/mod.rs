//! The model's own Jinja chat template, rendered with minijinja like HF `apply_chat_template`.
//!
//! [`ChatTemplate`] loads the `chat_template` of a `tokenizer_config.json` (or a sibling
//! `chat_template.jinja`, which HF gives priority) and renders a conversation into the prompt
//! text, byte for byte as Hugging Face transformers does (`runtime/tests/chat_parity.rs`
//! checks recorded transformers output for the Qwen3-0.6B and Qwen3-4B-Instruct-2507
//! templates). The environment is set up as transformers sets up Jinja2:
//!
//! - `trim_blocks` and `lstrip_blocks` on, trailing newline of the template dropped;
//! - Python string/list/dict methods (`startswith`, `split`, `strip`, `lstrip`, `rstrip`,
//!   `items`, ...) through `minijinja_contrib::pycompat`, plus reverse slicing and `namespace`,
//!   which minijinja has built in;
//! - `raise_exception(message)`, which fails rendering with the template's message;
//! - a `tojson` filter that writes what Python's `json.dumps(x, ensure_ascii=False)` writes
//!   (with its `indent`, `separators`, `sort_keys` and `ensure_ascii` arguments), not
//!   minijinja's HTML-safe variant;
//! - the config's named special tokens (`bos_token`, `eos_token`, `pad_token`, ...) as
//!   variables, `messages`, `add_generation_prompt`, `tools` (none unless given through
//!   [`ChatExtras`]) and `documents` (none), and `enable_thinking` only when the caller sets
//!   it; [`ChatExtras::variables`] adds any other keyword argument (vLLM's
//!   `chat_template_kwargs`).
//!
//! Layout: this module holds the types and [`ChatTemplate`]'s public API; `config` reads a
//! `tokenizer_config.json` (template selection, special tokens); `render` sets up the
//! minijinja environment, its Python-compatible functions and filters, and renders.

mod config;
mod render;
mod strftime;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind};

/// Errors from loading or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        /// (Part of the message, not a `source`: a printed chain says it once.)
        cause: std::io::Error,
    },
    /// `tokenizer_config.json` is not valid JSON (or not a JSON object).
    #[error("invalid tokenizer config {}: {message}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Neither the config nor a sibling `chat_template.jinja` has a chat template.
    #[error("no chat_template in {} (and no chat_template.jinja next to it)", path.display())]
    MissingTemplate {
        /// The config file.
        path: PathBuf,
    },
    /// The template does not compile.
    #[error("chat template syntax error{}: {message}", line_suffix(*line))]
    Syntax {
        /// The parser's message.
        message: String,
        /// 1-based line in the template, when known.
        line: Option<usize>,
    },
    /// Rendering failed: `raise_exception(...)` in the template (its message is kept as is),
    /// or an invalid operation.
    #[error("chat template error{}: {message}", line_suffix(*line))]
    Render {
        /// The template's own message (for `raise_exception`) or minijinja's.
        message: String,
        /// 1-based line in the template, when known.
        line: Option<usize>,
    },
    /// A syntax or render error of a template read from a file: names the file.
    #[error("{}: {cause}", path.display())]
    InFile {
        /// The file the template came from (tokenizer_config.json or chat_template.jinja).
        path: PathBuf,
        /// The template's error.
        /// (Part of the message, not a `source`: a printed chain says it once.)
        cause: Box<ChatError>,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

impl ChatError {
    /// The same error, naming the file the template came from.
    fn in_file(self, path: &Path) -> Self {
        ChatError::InFile {
            path: path.to_path_buf(),
            cause: Box::new(self),
        }
    }

    fn from_minijinja(err: &minijinja::Error, syntax: bool) -> Self {
        let message = err
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| err.kind().to_string());
        let line = err.line();
        if syntax || err.kind() == ErrorKind::SyntaxError {
            ChatError::Syntax { message, line }
        } else {
            ChatError::Render { message, line }
        }
    }
}

/// A JSON value handed to a template as it was written (object keys keep their order, as a
/// Python `dict` from `json.loads` does): tool definitions, tool calls, keyword arguments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TemplateValue(minijinja::Value);

impl TemplateValue {
    /// Parses JSON text, keeping the order of object keys.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        TemplateValue(minijinja::Value::from(s.into()))
    }

    /// A list of values.
    pub fn list(items: impl IntoIterator<Item = TemplateValue>) -> Self {
        TemplateValue(minijinja::Value::from_iter(items.into_iter().map(|v| v.0)))
    }

    /// An object with these keys, in this order.
    pub fn object(entries: impl IntoIterator<Item = (String, TemplateValue)>) -> Self {
        TemplateValue(minijinja::Value::from_iter(
            entries.into_iter().map(|(k, v)| (k, v.0)),
        ))
    }

    /// The text, when the value is a string.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_str()
    }

    pub(crate) fn value(&self) -> &minijinja::Value {
        &self.0
    }
}

/// What a conversation is rendered with besides its messages and [`ChatOptions`]: the
/// `tools` argument of HF `apply_chat_template` and other keyword arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatExtras {
    /// The tool (function) definitions, OpenAI-style objects; `None` renders `tools` as none.
    pub tools: Option<Vec<TemplateValue>>,
    /// More template variables (e.g. vLLM's `chat_template_kwargs`). They cannot replace
    /// `messages`, `tools` or `add_generation_prompt`; [`ChatOptions::enable_thinking`], when
    /// set, wins over an `enable_thinking` given here.
    pub variables: BTreeMap<String, TemplateValue>,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// `"system"`, `"user"`, `"assistant"` or `"tool"`.
    pub role: String,
    /// The message text. For an assistant turn it may contain a `<think>...</think>` block,
    /// which Qwen3's template moves into the reasoning part (and drops for old turns).
    pub content: String,
    /// The assistant's reasoning, when kept apart from `content` (OpenAI-style
    /// `reasoning_content`). `None` leaves the field out, as HF does for a missing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// An assistant turn's tool calls (OpenAI-style objects:
    /// `{"id", "type": "function", "function": {"name", "arguments"}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<TemplateValue>>,
    /// A `tool` message's call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A `tool` (or other) message's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A message with the given role and content, without reasoning.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            reasoning_content: None,
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }

    /// The same message with `reasoning_content` set.
    #[must_use]
    pub fn with_reasoning(mut self, reasoning: impl Into<String>) -> Self {
        self.reasoning_content = Some(reasoning.into());
        self
    }
}

/// Rendering options, the keyword arguments of HF `apply_chat_template`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatOptions {
    /// Append the header that opens the assistant's turn (`<|im_start|>assistant\n`).
    pub add_generation_prompt: bool,
    /// Qwen3 hybrid-thinking switch. `None` leaves the variable undefined (HF without the
    /// argument: the model may think); `Some(false)` makes Qwen3's template write an empty
    /// `<think>\n\n</think>\n\n` block. Templates without the switch ignore it.
    pub enable_thinking: Option<bool>,
}

/// A compiled chat template plus the special-token variables it is rendered with.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    special_tokens: BTreeMap<String, String>,
    /// The file the template was read from, named in its errors.
    origin: Option<PathBuf>,
}

impl ChatTemplate {
    /// Loads the chat template of a `tokenizer_config.json`.
    ///
    /// As in transformers, a `chat_template.jinja` in the same directory takes priority over
    /// the config's `chat_template` field. When the field is a list of named templates, the
    /// one named `default` is used. The config's named special tokens (`bos_token`,
    /// `eos_token`, `pad_token`, ...; strings or `{"content": ...}` objects, `null` skipped)
    /// become template variables.
    pub fn from_tokenizer_config(path: &Path) -> Result<Self, ChatError> {
        let limit = pio_artifact::read::MAX_TOKENIZER_BYTES;
        let text =
            pio_artifact::read::read_bounded_text(path, limit).map_err(|source| ChatError::Io {
                path: path.to_path_buf(),
                cause: source,
            })?;
        let jinja_path = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("chat_template.jinja");
        let jinja = if jinja_path.is_file() {
            let text =
                pio_artifact::read::read_bounded_text(&jinja_path, limit).map_err(|source| {
                    ChatError::Io {
                        path: jinja_path.clone(),
                        cause: source,
                    }
                })?;
            Some((text, jinja_path))
        } else {
            None
        };
        Self::from_config_text(&text, path, jinja)
    }

    /// [`Self::from_tokenizer_config`] from a tokenizer_config.json already read (an artifact
    /// carries one); `label` names it in messages.
    pub fn from_tokenizer_config_bytes(bytes: &[u8], label: &str) -> Result<Self, ChatError> {
        let path = Path::new(label);
        let text = std::str::from_utf8(bytes).map_err(|e| ChatError::Config {
            path: path.to_path_buf(),
            message: format!("not UTF-8: {e}"),
        })?;
        Self::from_config_text(text, path, None)
    }

    /// Compiles a template from its Jinja source, with no special-token variables (add them
    /// with [`ChatTemplate::with_special_token`]).
    pub fn from_source(source: String) -> Result<Self, ChatError> {
        let env = render::environment(source.clone())?;
        Ok(Self {
            env,
            source,
            special_tokens: BTreeMap::new(),
            origin: None,
        })
    }

    /// The same template with one more special-token variable (e.g. `"eos_token"`,
    /// `"<|im_end|>"`), replacing any earlier value of that name.
    #[must_use]
    pub fn with_special_token(mut self, name: impl Into<String>, token: impl Into<String>) -> Self {
        self.special_tokens.insert(name.into(), token.into());
        self
    }

    /// The special-token variables the template is rendered with (name to token).
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special_tokens
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation into prompt text, as HF
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...,
    /// [enable_thinking=...])` does.
    ///
    /// Errors raised by the template (`raise_exception`) become [`ChatError::Render`] with the
    /// template's own message and line.
    pub fn render(&self, messages: &[Message], opts: &ChatOptions) -> Result<String, ChatError> {
        self.render_with(messages, opts, &ChatExtras::default())
    }

    /// [`Self::render`] with tools and more template variables, as HF
    /// `apply_chat_template(messages, tools=..., **kwargs)`.
    pub fn render_with(
        &self,
        messages: &[Message],
        opts: &ChatOptions,
        extras: &ChatExtras,
    ) -> Result<String, ChatError> {
        render::render(&self.env, &self.special_tokens, messages, opts, extras).map_err(|e| {
            match &self.origin {
                Some(path) => e.in_file(path),
                None => e,
            }
        })
    }
}
