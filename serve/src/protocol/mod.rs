//! OpenAI's wire format: request bodies ([`request`]), responses and stream chunks
//! ([`response`]), and parsing a body into a request with errors that name the field.

pub mod request;
pub mod response;

use crate::errors::ApiError;
use serde::de::DeserializeOwned;

/// Parses a JSON body. Syntax errors, a body that is not an object, a missing field and a
/// field of the wrong type are 400s; the message and `param` name the field.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would take a JSON array as a struct's fields in order: only objects are bodies.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ApiError::bad_request(
                "the body is empty: expected a JSON object",
                "",
            ))
        }
        Some(_) if serde_json::from_slice::<serde_json::Value>(bytes).is_ok() => {
            return Err(ApiError::bad_request("the body must be a JSON object", ""))
        }
        Some(_) => {}
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match parsed {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            return Err(field_error(&path, e.into_inner()));
        }
    };
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}"), ""))?;
    Ok(value)
}

fn field_error(path: &str, e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            return ApiError::bad_request(format!("invalid JSON body: {e}"), "")
        }
        Category::Data => {}
    }
    let msg = e.to_string();
    if path == "." {
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            return ApiError::bad_request(format!("missing required field `{field}`"), field);
        }
        return ApiError::bad_request(format!("the body must be a JSON object: {msg}"), "");
    }
    let detail = match untagged_expectation(&msg) {
        Some(expected) => format!("expected {expected}"),
        None => msg,
    };
    ApiError::bad_request(format!("invalid value for `{path}`: {detail}"), path)
}

/// What an untagged enum takes, in words (serde's own message names only the Rust type).
fn untagged_expectation(msg: &str) -> Option<&'static str> {
    let name = msg.strip_prefix("data did not match any variant of untagged enum ")?;
    let name = name.split_whitespace().next().unwrap_or(name);
    Some(match name {
        "Stop" => "a string or an array of strings",
        "Prompt" => "a string, an array of strings, an array of token ids or an array of arrays of token ids",
        "Content" => "a string or an array of content parts",
        "ToolChoice" => "\"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        _ => "another type",
    })
}

#[cfg(test)]
mod tests {
    use super::request::{ChatRequest, CompletionRequest, Prompt};
    use super::*;

    #[test]
    fn wrong_types_name_the_field() {
        let e =
            parse_body::<ChatRequest>(br#"{"messages": [], "temperature": "hot"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"), "{e:?}");
        let e = parse_body::<ChatRequest>(br#"{"messages": [{"role": "user", "content": 5}]}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"), "{e:?}");
        assert!(
            e.message.contains("a string or an array of content parts"),
            "{e:?}"
        );
        let e = parse_body::<ChatRequest>(br#"{"messages": [{"role": "robot"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"), "{e:?}");
        let e = parse_body::<ChatRequest>(br#"{"model": "x"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"), "{e:?}");
        let e = parse_body::<ChatRequest>(br#"{"messages": [], "#).unwrap_err();
        assert!(e.message.starts_with("invalid JSON"), "{e:?}");
        let e = parse_body::<ChatRequest>(br#"[1]"#).unwrap_err();
        assert!(e.message.contains("JSON object"), "{e:?}");
        let e = parse_body::<ChatRequest>(br#"{"messages": []} x"#).unwrap_err();
        assert!(e.message.starts_with("invalid JSON"), "{e:?}");
    }

    #[test]
    fn unknown_fields_are_ignored_and_shared_fields_are_taken() {
        let mut r: ChatRequest = parse_body(
            br#"{"messages": [], "frobnicate": {"x": 1}, "max_tokens": 3, "stop": "a"}"#,
        )
        .unwrap();
        let g = r.take_generation();
        assert_eq!(g.max_tokens, Some(3));
        assert_eq!(g.stop.map(|s| s.into_vec()), Some(vec!["a".to_string()]));
        let c: CompletionRequest = parse_body(br#"{"prompt": [1, 2, 3]}"#).unwrap();
        assert_eq!(c.prompt, Prompt::Ids(vec![1, 2, 3]));
        let e = parse_body::<CompletionRequest>(br#"{"prompt": [-1]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"), "{e:?}");
        let e =
            parse_body::<CompletionRequest>(br#"{"prompt": "x", "max_tokens": 1.5}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"), "{e:?}");
    }
}
