//! Reading a `tokenizer_config.json`: which chat template it gives (a sibling
//! `chat_template.jinja` first, then the `chat_template` field or its `default` entry) and the
//! named special tokens that become template variables.

use std::path::Path;

use super::{ChatError, ChatTemplate};

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

impl ChatTemplate {
    /// The template of a tokenizer_config.json's text, or of `jinja` when a
    /// `chat_template.jinja` stands beside it.
    pub(super) fn from_config_text(
        text: &str,
        path: &Path,
        jinja: Option<(String, std::path::PathBuf)>,
    ) -> Result<Self, ChatError> {
        let config: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ChatError::Config {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let object = config.as_object().ok_or_else(|| ChatError::Config {
            path: path.to_path_buf(),
            message: "not a JSON object".to_string(),
        })?;
        let (source, origin) = match jinja {
            Some((source, jinja_path)) => (source, jinja_path),
            None => (
                template_from_config(object.get("chat_template")).ok_or_else(|| {
                    ChatError::MissingTemplate {
                        path: path.to_path_buf(),
                    }
                })?,
                path.to_path_buf(),
            ),
        };

        let mut template = Self::from_source(source).map_err(|e| e.in_file(&origin))?;
        template.origin = Some(origin);
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
