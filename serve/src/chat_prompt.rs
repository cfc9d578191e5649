//! A chat request's prompt: its messages, tools and template arguments through the model's
//! chat template (as vLLM does: tool-call arguments given as JSON text are parsed into
//! objects first), then tokenized.

use crate::errors::ApiError;
use crate::protocol::request::{
    ChatMessage, ChatRequest, Content, Role, ToolChoice, ToolDef, ToolMode,
};
use crate::state::ModelContext;
use pio_runtime::chat::{ChatExtras, ChatOptions, Message, TemplateValue};

/// Most messages in a conversation and tools in a request.
pub const MAX_MESSAGES: usize = 4096;
pub const MAX_TOOLS: usize = 256;

/// What a chat request renders: checked, ready for the template.
#[derive(Clone, Debug)]
pub struct ChatPrompt {
    pub messages: Vec<Message>,
    pub opts: ChatOptions,
    pub extras: ChatExtras,
    /// Parse `<tool_call>` blocks of the output into tool calls.
    pub parse_tools: bool,
    /// Keep every parsed call (`parallel_tool_calls`, default true), else only the first.
    pub parallel_tool_calls: bool,
}

impl ChatPrompt {
    /// Checks the conversation, tools and template arguments of `r`.
    pub fn new(r: &mut ChatRequest) -> Result<ChatPrompt, ApiError> {
        if r.messages.is_empty() {
            return Err(ApiError::bad_request(
                "messages must hold at least one message",
                "messages",
            ));
        }
        if r.messages.len() > MAX_MESSAGES {
            return Err(ApiError::bad_request(
                format!("messages holds more than {MAX_MESSAGES} messages"),
                "messages",
            ));
        }
        let messages = r
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let tools = r.tools.take().unwrap_or_default();
        if tools.len() > MAX_TOOLS {
            return Err(ApiError::bad_request(
                format!("tools holds more than {MAX_TOOLS} tools"),
                "tools",
            ));
        }
        for (i, t) in tools.iter().enumerate() {
            check_tool(i, t)?;
        }
        let mode = match &r.tool_choice {
            None => ToolMode::Auto,
            Some(ToolChoice::Mode(m)) => *m,
            Some(ToolChoice::Named(n)) => {
                return Err(ApiError::unsupported(
                    "tool_choice",
                    format!(
                        "forcing the function `{}` (no constrained decoding; use \"auto\")",
                        n.function.name
                    ),
                ))
            }
        };
        if mode == ToolMode::Required {
            return Err(ApiError::unsupported(
                "tool_choice",
                "\"required\" (no constrained decoding; use \"auto\")",
            ));
        }
        let use_tools = !tools.is_empty() && mode == ToolMode::Auto;
        let mut variables = r.chat_template_kwargs.take().unwrap_or_default();
        for reserved in ["messages", "tools", "add_generation_prompt"] {
            if variables.contains_key(reserved) {
                return Err(ApiError::bad_request(
                    format!("chat_template_kwargs cannot set `{reserved}`"),
                    "chat_template_kwargs",
                ));
            }
        }
        let kw_thinking = match variables.remove("enable_thinking") {
            None => None,
            Some(v) => Some(bool_value(&v).ok_or_else(|| {
                ApiError::bad_request(
                    "chat_template_kwargs.enable_thinking must be true or false",
                    "chat_template_kwargs.enable_thinking",
                )
            })?),
        };
        let enable_thinking = kw_thinking.or(r.enable_thinking);
        Ok(ChatPrompt {
            messages,
            opts: ChatOptions {
                add_generation_prompt: r.add_generation_prompt.unwrap_or(true),
                enable_thinking,
            },
            extras: ChatExtras {
                tools: use_tools.then_some(tools),
                variables,
            },
            parse_tools: use_tools,
            parallel_tool_calls: r.parallel_tool_calls.unwrap_or(true),
        })
    }

    /// Renders and tokenizes (blocking: run it off the async threads).
    pub fn tokenize(&self, ctx: &ModelContext) -> Result<Vec<u32>, ApiError> {
        let template = ctx.chat.as_ref().map_err(|e| {
            ApiError::internal(format!("the model's chat template cannot be used: {e}"))
        })?;
        let text = template
            .render_with(&self.messages, &self.opts, &self.extras)
            .map_err(|e| {
                ApiError::bad_request(
                    format!("the chat template refused the conversation: {e}"),
                    "messages",
                )
            })?;
        ctx.tokenizer
            .encode(&text)
            .map_err(|e| ApiError::internal(format!("tokenizing the prompt failed: {e}")))
    }
}

fn bool_value(v: &TemplateValue) -> Option<bool> {
    match serde_json::to_value(v).ok()? {
        serde_json::Value::Bool(b) => Some(b),
        _ => None,
    }
}

fn check_tool(i: usize, t: &TemplateValue) -> Result<(), ApiError> {
    let v = serde_json::to_value(t)
        .map_err(|e| ApiError::bad_request(format!("tools[{i}]: {e}"), format!("tools[{i}]")))?;
    let def: ToolDef = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = format!("tools[{i}].{}", e.path());
        ApiError::bad_request(format!("invalid value for `{path}`: {}", e.inner()), path)
    })?;
    if def.kind != "function" {
        return Err(ApiError::unsupported(
            &format!("tools[{i}].type"),
            format!("tool type `{}` (only \"function\")", def.kind),
        ));
    }
    if def.function.name.is_empty() {
        return Err(ApiError::bad_request(
            "a function needs a name",
            format!("tools[{i}].function.name"),
        ));
    }
    Ok(())
}

fn content_text(i: usize, c: &Option<Content>) -> Result<String, ApiError> {
    match c {
        None => Ok(String::new()),
        Some(Content::Text(s)) => Ok(s.clone()),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let param = format!("messages[{i}].content[{j}]");
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => text.push_str(t),
                    ("text", None) => {
                        return Err(ApiError::bad_request(
                            "a text part needs `text`",
                            format!("{param}.text"),
                        ))
                    }
                    (other, _) => {
                        return Err(ApiError::unsupported(
                            &format!("{param}.type"),
                            format!("content of type `{other}` (text only)"),
                        ))
                    }
                }
            }
            Ok(text)
        }
    }
}

fn message(i: usize, m: &ChatMessage) -> Result<Message, ApiError> {
    let role = match m.role {
        Role::System | Role::Developer => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut out = Message::new(role, content_text(i, &m.content)?);
    out.reasoning_content = m.reasoning_content.clone();
    out.name = m.name.clone();
    out.tool_call_id = m.tool_call_id.clone();
    if m.role != Role::Assistant && m.tool_calls.is_some() {
        return Err(ApiError::bad_request(
            "only assistant messages have tool_calls",
            format!("messages[{i}].tool_calls"),
        ));
    }
    if let Some(calls) = &m.tool_calls {
        let calls = calls
            .iter()
            .map(|c| {
                let arguments = match &c.function.arguments {
                    None => TemplateValue::object([]),
                    // JSON text, as OpenAI sends it: parsed into an object for the template.
                    Some(a) => match a.as_str() {
                        Some(text) => TemplateValue::from_json(text)
                            .unwrap_or_else(|_| TemplateValue::string(text)),
                        None => a.clone(),
                    },
                };
                let mut fields = Vec::new();
                if let Some(id) = &c.id {
                    fields.push(("id".to_string(), TemplateValue::string(id.clone())));
                }
                fields.push((
                    "type".to_string(),
                    TemplateValue::string(c.kind.clone().unwrap_or_else(|| "function".into())),
                ));
                fields.push((
                    "function".to_string(),
                    TemplateValue::object([
                        (
                            "name".to_string(),
                            TemplateValue::string(c.function.name.clone()),
                        ),
                        ("arguments".to_string(), arguments),
                    ]),
                ));
                TemplateValue::object(fields)
            })
            .collect();
        out.tool_calls = Some(calls);
    }
    Ok(out)
}
