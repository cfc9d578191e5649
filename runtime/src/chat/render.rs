//! The minijinja environment, set up as transformers sets up Jinja2 (with Python-compatible
//! methods, `raise_exception` and a `json.dumps`-exact `tojson` filter), and rendering a
//! conversation with it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};

use super::{ChatError, ChatExtras, ChatOptions, Message};

pub(super) const TEMPLATE_NAME: &str = "chat_template";

/// Largest chat template compiled (real ones are a few KB; the largest known, tens of KB).
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// Longest single tag (`{{ ... }}` or `{% ... %}`) compiled. minijinja's compile time grows
/// with the square of an expression's length (an 80 KB operator chain takes minutes); real
/// templates' longest tags are a few hundred bytes.
pub const MAX_TAG_BYTES: usize = 16 << 10;

/// The 1-based line of the first tag longer than [`MAX_TAG_BYTES`], if any.
fn overlong_tag(source: &str) -> Option<usize> {
    let b = source.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'{' && (b[i + 1] == b'{' || b[i + 1] == b'%') {
            let close: &[u8] = if b[i + 1] == b'{' { b"}}" } else { b"%}" };
            let len = b[i + 2..]
                .windows(2)
                .position(|w| w == close)
                .unwrap_or(b.len() - i);
            if len > MAX_TAG_BYTES {
                return Some(1 + b[..i].iter().filter(|&&c| c == b'\n').count());
            }
            i += 2 + len;
        } else {
            i += 1;
        }
    }
    None
}

/// Stack of the thread that compiles and renders templates. minijinja's parser recurses once
/// per operator of an expression: a hostile 80 KB `a % b % b % ...` overflows a normal thread's
/// stack (an abort, not an error). With templates bounded by [`MAX_TEMPLATE_BYTES`], this much
/// (reserved, only touched as used) holds the deepest one.
const TEMPLATE_STACK_BYTES: usize = 512 << 20;

/// Runs `f` (a compile or a render: the template engine is a third-party parser of a user's
/// file) on a thread with a large stack, turning a panic inside it into an error.
fn guarded<T: Send>(
    what: &str,
    f: impl FnOnce() -> Result<T, ChatError> + Send,
) -> Result<T, ChatError> {
    let failed = |message: String| ChatError::Render {
        message: format!("the template engine failed while {what}: {message}"),
        line: None,
    };
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("pio-chat-template".into())
            .stack_size(TEMPLATE_STACK_BYTES)
            .spawn_scoped(scope, f)
            .map_err(|e| failed(format!("cannot start its thread: {e}")))?;
        worker.join().unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(failed(why))
        })
    })
}

/// The environment transformers renders chat templates in, with `source` compiled as
/// [`TEMPLATE_NAME`].
pub(super) fn environment(source: String) -> Result<Environment<'static>, ChatError> {
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(ChatError::Syntax {
            message: format!(
                "the template is {} bytes, more than the {MAX_TEMPLATE_BYTES} a chat template may have",
                source.len()
            ),
            line: None,
        });
    }
    if let Some(line) = overlong_tag(&source) {
        return Err(ChatError::Syntax {
            message: format!(
                "a tag is longer than {MAX_TAG_BYTES} bytes, the most a chat template tag may have"
            ),
            line: Some(line),
        });
    }
    guarded("compiling the template", move || compile(source))
}

fn compile(source: String) -> Result<Environment<'static>, ChatError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", super::strftime::strftime_now);
    env.add_filter("tojson", tojson);
    env.add_template_owned(TEMPLATE_NAME, source)
        .map_err(|e| ChatError::from_minijinja(&e, true))?;
    Ok(env)
}

/// Renders `messages` with the template in `env` and the special-token variables.
pub(super) fn render(
    env: &Environment<'static>,
    special_tokens: &BTreeMap<String, String>,
    messages: &[Message],
    opts: &ChatOptions,
    extras: &ChatExtras,
) -> Result<String, ChatError> {
    let template = env
        .get_template(TEMPLATE_NAME)
        .map_err(|e| ChatError::from_minijinja(&e, false))?;

    let mut ctx: BTreeMap<String, Value> = special_tokens
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    for (name, value) in &extras.variables {
        ctx.insert(name.clone(), value.value().clone());
    }
    ctx.insert(
        "messages".to_string(),
        Value::from(messages.iter().map(Message::to_value).collect::<Vec<_>>()),
    );
    let tools = match &extras.tools {
        Some(tools) => Value::from_iter(tools.iter().map(|t| t.value().clone())),
        None => Value::from(()),
    };
    ctx.insert("tools".to_string(), tools);
    ctx.insert("documents".to_string(), Value::from(()));
    ctx.insert(
        "add_generation_prompt".to_string(),
        Value::from(opts.add_generation_prompt),
    );
    if let Some(thinking) = opts.enable_thinking {
        ctx.insert("enable_thinking".to_string(), Value::from(thinking));
    }

    let ctx = Value::from_iter(ctx);
    guarded("rendering", || {
        template
            .render(ctx)
            .map_err(|e| ChatError::from_minijinja(&e, false))
    })
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn overlong_tags_are_found_with_their_line() {
        assert_eq!(overlong_tag("{{ a }}\n{% if b %}x{% endif %}"), None);
        let long = format!("ok\n\n{{{{ x{} }}}}", " % y".repeat(MAX_TAG_BYTES / 4));
        assert_eq!(overlong_tag(&long), Some(3));
        let unterminated = format!("{{% if {}", "a".repeat(MAX_TAG_BYTES + 1));
        assert_eq!(overlong_tag(&unterminated), Some(1));
    }
}

impl Message {
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
        if let Some(calls) = &self.tool_calls {
            map.insert(
                "tool_calls",
                Value::from_iter(calls.iter().map(|c| c.value().clone())),
            );
        }
        if let Some(id) = &self.tool_call_id {
            map.insert("tool_call_id", Value::from(id.as_str()));
        }
        if let Some(name) = &self.name {
            map.insert("name", Value::from(name.as_str()));
        }
        Value::from_iter(map)
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
    use crate::chat::ChatTemplate;

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
