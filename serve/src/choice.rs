//! One chat choice's output on its way to the client: reasoning split off
//! ([`crate::reasoning`]), then tool calls parsed out of the content ([`crate::tools`]).

use crate::reasoning::ReasoningParser;
use crate::tools::{Piece, ToolCall, ToolParser};

/// A piece of a choice's output, ready to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub reasoning: String,
    pub content: String,
    pub calls: Vec<ToolCall>,
}

/// The parsers of one choice.
#[derive(Debug)]
pub struct ChoiceParser {
    reasoning: ReasoningParser,
    tools: Option<ToolParser>,
    parallel: bool,
    calls: usize,
}

impl ChoiceParser {
    /// `tools`: parse tool calls; `parallel`: keep every call, else only the first.
    pub fn new(tools: bool, parallel: bool) -> Self {
        ChoiceParser {
            reasoning: ReasoningParser::default(),
            tools: tools.then(ToolParser::default),
            parallel,
            calls: 0,
        }
    }

    /// Tool calls given so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    pub fn push(&mut self, text: &str) -> Parts {
        let split = self.reasoning.push(text);
        self.content(split.reasoning, split.content, false)
    }

    pub fn finish(&mut self) -> Parts {
        let split = self.reasoning.finish();
        self.content(split.reasoning, split.content, true)
    }

    fn content(&mut self, reasoning: String, content: String, end: bool) -> Parts {
        let mut parts = Parts {
            reasoning,
            ..Parts::default()
        };
        let Some(tools) = &mut self.tools else {
            parts.content = content;
            return parts;
        };
        let mut pieces = tools.push(&content);
        if end {
            pieces.extend(tools.finish());
        }
        for p in pieces {
            match p {
                Piece::Content(c) => parts.content.push_str(&c),
                Piece::Call(call) => {
                    if self.parallel || self.calls == 0 {
                        self.calls += 1;
                        parts.calls.push(call);
                    }
                }
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_then_tool_calls() {
        let text = "<think>\nneed weather\n</think>\n\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"c\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"t\", \"arguments\": {}}\n</tool_call>";
        for parallel in [true, false] {
            let mut p = ChoiceParser::new(true, parallel);
            let mut all = Parts::default();
            for ch in text.chars() {
                let part = p.push(&ch.to_string());
                all.reasoning.push_str(&part.reasoning);
                all.content.push_str(&part.content);
                all.calls.extend(part.calls);
            }
            let part = p.finish();
            all.reasoning.push_str(&part.reasoning);
            all.content.push_str(&part.content);
            all.calls.extend(part.calls);
            assert_eq!(all.reasoning, "need weather\n");
            assert_eq!(all.content, "");
            let names: Vec<&str> = all.calls.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, if parallel { vec!["w", "t"] } else { vec!["w"] });
            assert_eq!(all.calls[0].arguments, "{\"c\": 1}");
        }
    }

    #[test]
    fn without_tools_calls_stay_text() {
        let mut p = ChoiceParser::new(false, true);
        let part = p.push("<tool_call>{\"name\": \"w\"}</tool_call>");
        assert_eq!(part.content, "<tool_call>{\"name\": \"w\"}</tool_call>");
        assert!(part.calls.is_empty());
    }
}
