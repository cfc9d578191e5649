//! Qwen3's tool calls: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` in the
//! content becomes an OpenAI tool call (vLLM's `hermes` parser), incrementally: content before
//! and between calls streams as it comes, each call is given whole once its closing tag
//! arrives, and a call that is not valid JSON stays text.

use crate::reasoning::partial_tag;
use serde_json::value::RawValue;

pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";

/// One parsed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// `call_` and 24 hex digits, unique within the server's run.
    pub id: String,
    pub name: String,
    /// The arguments as JSON text (what OpenAI's `function.arguments` holds).
    pub arguments: String,
}

/// A piece of parsed output, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Content(String),
    Call(ToolCall),
}

/// The incremental parser.
#[derive(Debug)]
pub struct ToolParser {
    /// Inside `<tool_call>`: the text since the tag.
    in_call: bool,
    held: String,
    /// Trailing whitespace of the content not yet given (dropped before and after calls).
    pending_space: String,
    calls: usize,
    ids: fn() -> String,
}

impl Default for ToolParser {
    fn default() -> Self {
        Self::with_ids(new_call_id)
    }
}

/// A fresh call id.
pub fn new_call_id() -> String {
    format!("call_{}", crate::ids::random_hex(24))
}

impl ToolParser {
    /// A parser with its own id generator (tests use a fixed one).
    pub fn with_ids(ids: fn() -> String) -> Self {
        ToolParser {
            in_call: false,
            held: String::new(),
            pending_space: String::new(),
            calls: 0,
            ids,
        }
    }

    /// Calls parsed so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Adds content text; returns the pieces now complete.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.held.push_str(text);
        let mut out = Vec::new();
        loop {
            if self.in_call {
                let Some(at) = self.held.find(CALL_CLOSE) else {
                    return out;
                };
                let body = self.held[..at].to_string();
                self.held.drain(..at + CALL_CLOSE.len());
                self.in_call = false;
                match self.parse_call(&body) {
                    Some(call) => {
                        self.pending_space.clear();
                        self.calls += 1;
                        out.push(Piece::Call(call));
                    }
                    None => self.content(format!("{CALL_OPEN}{body}{CALL_CLOSE}"), &mut out),
                }
            } else if let Some(at) = self.held.find(CALL_OPEN) {
                let before = self.held[..at].to_string();
                self.held.drain(..at + CALL_OPEN.len());
                self.content(before, &mut out);
                self.in_call = true;
            } else {
                let keep = partial_tag(&self.held, CALL_OPEN);
                let cut = self.held.len() - keep;
                let text: String = self.held.drain(..cut).collect();
                self.content(text, &mut out);
                return out;
            }
        }
    }

    /// The end of the output: an unclosed call stays text; whitespace after the last call is
    /// dropped.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        let held = std::mem::take(&mut self.held);
        let text = if self.in_call {
            format!("{CALL_OPEN}{held}")
        } else {
            held
        };
        self.in_call = false;
        self.content(text, &mut out);
        if self.calls == 0 && !self.pending_space.is_empty() {
            out.push(Piece::Content(std::mem::take(&mut self.pending_space)));
        }
        out
    }

    /// Content text; trailing whitespace is held until something other than a call follows
    /// it (so that the split of the text never matters).
    fn content(&mut self, text: String, out: &mut Vec<Piece>) {
        let body = text.trim_end();
        if body.is_empty() {
            self.pending_space.push_str(&text);
            return;
        }
        let mut all = std::mem::take(&mut self.pending_space);
        all.push_str(body);
        self.pending_space.push_str(&text[body.len()..]);
        match out.last_mut() {
            Some(Piece::Content(c)) => c.push_str(&all),
            _ => out.push(Piece::Content(all)),
        }
    }

    /// `{"name": ..., "arguments": ...}`; the arguments' JSON text is kept as the model wrote
    /// it (key order and all), a string argument is taken as that JSON text.
    fn parse_call(&self, body: &str) -> Option<ToolCall> {
        #[derive(serde::Deserialize)]
        struct Call<'a> {
            name: String,
            #[serde(borrow, default)]
            arguments: Option<&'a RawValue>,
            #[serde(borrow, default)]
            parameters: Option<&'a RawValue>,
        }
        let c: Call<'_> = serde_json::from_str(body.trim()).ok()?;
        let raw = c.arguments.or(c.parameters).map(RawValue::get);
        let arguments = match raw {
            None | Some("null") => "{}".to_string(),
            Some(text) => match serde_json::from_str::<String>(text) {
                Ok(s) => s,
                Err(_) => text.to_string(),
            },
        };
        Some(ToolCall {
            id: (self.ids)(),
            name: c.name,
            arguments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> String {
        "call_x".into()
    }

    fn parse(pieces: &[&str]) -> Vec<Piece> {
        let mut p = ToolParser::with_ids(fixed);
        let mut out: Vec<Piece> = Vec::new();
        for piece in pieces {
            out.extend(p.push(piece));
        }
        out.extend(p.finish());
        // Merge adjacent content, as a client concatenates deltas.
        let mut merged: Vec<Piece> = Vec::new();
        for piece in out {
            match (merged.last_mut(), piece) {
                (Some(Piece::Content(a)), Piece::Content(b)) => a.push_str(&b),
                (_, piece) => merged.push(piece),
            }
        }
        merged
    }

    fn call(name: &str, args: &str) -> Piece {
        Piece::Call(ToolCall {
            id: "call_x".into(),
            name: name.into(),
            arguments: args.into(),
        })
    }

    const TWO_CALLS: &str = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n";

    #[test]
    fn calls_parse_in_every_split() {
        let want = vec![
            Piece::Content("Let me check.".into()),
            call("get_weather", "{\"city\": \"Paris\"}"),
            call("get_time", "{}"),
        ];
        let t = TWO_CALLS;
        for a in 0..=t.len() {
            for b in (a..=t.len()).step_by(3) {
                assert_eq!(parse(&[&t[..a], &t[a..b], &t[b..]]), want, "{a} {b}");
            }
        }
        // One character at a time.
        let chars: Vec<String> = t.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(parse(&refs), want);
    }

    #[test]
    fn invalid_or_unclosed_calls_stay_text() {
        let bad = "<tool_call>{not json}</tool_call> after";
        assert_eq!(parse(&[bad]), vec![Piece::Content(bad.into())]);
        let unclosed = "x <tool_call>{\"name\": \"f\"";
        assert_eq!(parse(&[unclosed]), vec![Piece::Content(unclosed.into())]);
        let no_name = "<tool_call>{\"arguments\": {}}</tool_call>";
        assert_eq!(parse(&[no_name]), vec![Piece::Content(no_name.into())]);
    }

    #[test]
    fn string_arguments_and_plain_text() {
        assert_eq!(
            parse(&["<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>"]),
            vec![call("f", "{\"a\": 1}")]
        );
        assert_eq!(
            parse(&["just ", "text <tool"]),
            vec![Piece::Content("just text <tool".into())]
        );
        assert_eq!(parse(&["  \n"]), vec![Piece::Content("  \n".into())]);
    }

    #[test]
    fn ids_are_unique() {
        let a = new_call_id();
        let b = new_call_id();
        assert_ne!(a, b);
        assert!(a.starts_with("call_") && a.len() == 29, "{a}");
    }
}
