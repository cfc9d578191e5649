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
//!   variables, `messages`, `add_generation_prompt`, `tools` and `documents` (none), and
//!   `enable_thinking` only when the caller sets it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};

const TEMPLATE_NAME: &str = "chat_template";

/// The named special tokens that transformers passes to chat templates (its
/// `SPECIAL_TOKENS_ATTRIBUTES`), when the config sets them.
const SPECIAL_TOKEN_KEYS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// Errors from loading or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
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
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

impl ChatError {
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
}

impl Message {
    /// A message with the given role and content, without reasoning.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            reasoning_content: None,
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

    fn to_value(&self) -> Value {
        let mut map: BTreeMap<&str, Value> = BTreeMap::new();
        map.insert("role", Value::from(self.role.as_str()));
        map.insert("content", Value::from(self.content.as_str()));
        if let Some(reasoning) = &self.reasoning_content {
            // transformers (5.x) also exposes the reasoning as `thinking`, for templates
            // (gpt-oss) that read that name.
            map.insert("reasoning_content", Value::from(reasoning.as_str()));
            map.insert("thinking", Value::from(reasoning.as_str()));
        }
        Value::from_iter(map)
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
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    special_tokens: BTreeMap<String, String>,
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
        let text = std::fs::read_to_string(path).map_err(|source| ChatError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let jinja_path = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("chat_template.jinja");
        let jinja = if jinja_path.is_file() {
            Some(
                std::fs::read_to_string(&jinja_path).map_err(|source| ChatError::Io {
                    path: jinja_path.clone(),
                    source,
                })?,
            )
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

    /// The template of a tokenizer_config.json's text, or of `jinja` when a
    /// `chat_template.jinja` stands beside it.
    fn from_config_text(text: &str, path: &Path, jinja: Option<String>) -> Result<Self, ChatError> {
        let config: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ChatError::Config {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let object = config.as_object().ok_or_else(|| ChatError::Config {
            path: path.to_path_buf(),
            message: "not a JSON object".to_string(),
        })?;
        let source = match jinja {
            Some(source) => source,
            None => template_from_config(object.get("chat_template")).ok_or_else(|| {
                ChatError::MissingTemplate {
                    path: path.to_path_buf(),
                }
            })?,
        };

        let mut template = Self::from_source(source)?;
        for key in SPECIAL_TOKEN_KEYS {
            let token = match object.get(key) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Object(o)) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .map(str::to_string),
                _ => None,
            };
            if let Some(token) = token {
                template.special_tokens.insert(key.to_string(), token);
            }
        }
        Ok(template)
    }

    /// Compiles a template from its Jinja source, with no special-token variables (add them
    /// with [`ChatTemplate::with_special_token`]).
    pub fn from_source(source: String) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| ChatError::from_minijinja(&e, true))?;
        Ok(Self {
            env,
            source,
            special_tokens: BTreeMap::new(),
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
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatError::from_minijinja(&e, false))?;

        let mut ctx: BTreeMap<String, Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        ctx.insert(
            "messages".to_string(),
            Value::from(messages.iter().map(Message::to_value).collect::<Vec<_>>()),
        );
        ctx.insert("tools".to_string(), Value::from(()));
        ctx.insert("documents".to_string(), Value::from(()));
        ctx.insert(
            "add_generation_prompt".to_string(),
            Value::from(opts.add_generation_prompt),
        );
        if let Some(thinking) = opts.enable_thinking {
            ctx.insert("enable_thinking".to_string(), Value::from(thinking));
        }

        template
            .render(Value::from_iter(ctx))
            .map_err(|e| ChatError::from_minijinja(&e, false))
    }
}

/// The template text of a config's `chat_template` field: a string, or the `default` entry
/// of a list of `{"name": ..., "template": ...}`.
fn template_from_config(field: Option<&serde_json::Value>) -> Option<String> {
    match field? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list.iter().find_map(|entry| {
            (entry.get("name")?.as_str()? == "default")
                .then(|| entry.get("template")?.as_str().map(str::to_string))
                .flatten()
        }),
        _ => None,
    }
}

/// `raise_exception(message)`: fails rendering with the template's message.
fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// Python `json.dumps(value, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, as transformers' `tojson` filter.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let ensure_ascii: bool = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys: bool = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let indent_value: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;

    let indent = match indent_value {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => {
            if let Some(s) = v.as_str() {
                Some(s.to_string())
            } else if let Some(n) = v.as_i64() {
                Some(" ".repeat(n.max(0) as usize))
            } else {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ));
            }
        }
    };
    let (item_sep, key_sep) = match separators {
        Some(seps) if seps.len() == 2 => (seps[0].clone(), seps[1].clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair of strings",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let opts = JsonOpts {
        ensure_ascii,
        sort_keys,
        indent,
        item_sep,
        key_sep,
    };
    let mut out = String::new();
    write_json(&mut out, value, &opts, 0)?;
    Ok(Value::from(out))
}

struct JsonOpts {
    ensure_ascii: bool,
    sort_keys: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
}

fn write_json(
    out: &mut String,
    value: &Value,
    opts: &JsonOpts,
    level: usize,
) -> Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = value.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Ok(f) = f64::try_from(value.clone()) {
                out.push_str(&python_float_repr(f));
            } else {
                out.push_str(&value.to_string());
            }
        }
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default(), opts),
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                let key_text = match key.kind() {
                    ValueKind::String => key.as_str().unwrap_or_default().to_string(),
                    ValueKind::None => "null".to_string(),
                    ValueKind::Bool => (if key.is_true() { "true" } else { "false" }).to_string(),
                    _ => key.to_string(),
                };
                entries.push((key_text, item));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                write_separator(out, opts, level + 1, i > 0);
                write_json_string(out, key, opts);
                out.push_str(&opts.key_sep);
                write_json(out, item, opts, level + 1)?;
            }
            write_closing(out, opts, level);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                write_separator(out, opts, level + 1, i > 0);
                write_json(out, item, opts, level + 1)?;
            }
            write_closing(out, opts, level);
            out.push(']');
        }
        _ => write_json_string(out, &value.to_string(), opts),
    }
    Ok(())
}

fn write_separator(out: &mut String, opts: &JsonOpts, level: usize, not_first: bool) {
    if not_first {
        out.push_str(&opts.item_sep);
    }
    if let Some(indent) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

fn write_closing(out: &mut String, opts: &JsonOpts, level: usize) {
    if let Some(indent) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

fn write_json_string(out: &mut String, s: &str, opts: &JsonOpts) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if opts.ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)` (what `json.dumps` writes): shortest round-trip digits, positional
/// for exponents -4..16, otherwise `d.ddde+XX`.
fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp >= 0 {
            let int_len = exp + 1;
            if n <= int_len {
                format!("{digits}{}.0", "0".repeat((int_len - n) as usize))
            } else {
                format!(
                    "{}.{}",
                    &digits[..int_len as usize],
                    &digits[int_len as usize..]
                )
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        };
        format!("{sign}{body}")
    } else {
        let mantissa = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (-1.25e-7, "-1.25e-07"),
            (2.71, "2.71"),
            (100.0, "100.0"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::from_source(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ 'é<&>\"\n' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}"
                .to_string(),
        )
        .unwrap();
        let tmpl = t.env.get_template(TEMPLATE_NAME).unwrap();
        let x: serde_json::Value = serde_json::json!({"a": [1, 2.5, true, null], "b": {}, "c": []});
        let out = tmpl.render(minijinja::context! { x => x }).unwrap();
        assert_eq!(
            out,
            "{\"a\": [1, 2.5, true, null], \"b\": {}, \"c\": []}|{\n  \"a\": [\n    1,\n    2.5,\n    true,\n    null\n  ],\n  \"b\": {},\n  \"c\": []\n}|\"é<&>\\\"\\n\"|\"\\u00e9\""
        );
    }
}
