//! Qwen3's reasoning: a `<think>...</think>` block at the start of the output becomes
//! `reasoning_content`, the rest `content` (vLLM's `qwen3` reasoning parser), incrementally.

/// Length of the longest suffix of `text` that is a proper prefix of `tag` (text that may yet
/// become the tag, so is held back).
pub(crate) fn partial_tag(text: &str, tag: &str) -> usize {
    let max = tag.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: the output may still open with `<think>`.
    Start,
    /// Just after `<think>`: leading newlines are dropped.
    ThinkStart,
    Thinking,
    /// After `</think>`: leading newlines are dropped.
    AfterThink,
    Content,
}

/// Splits streamed text into reasoning and content.
#[derive(Clone, Debug)]
pub struct ReasoningParser {
    state: State,
    held: String,
}

/// Text of one push, split.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub reasoning: String,
    pub content: String,
}

impl Default for ReasoningParser {
    fn default() -> Self {
        ReasoningParser {
            state: State::Start,
            held: String::new(),
        }
    }
}

impl ReasoningParser {
    /// Adds text and returns what is now known to be reasoning or content.
    pub fn push(&mut self, text: &str) -> Split {
        self.held.push_str(text);
        let mut out = Split::default();
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.held.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(THINK_OPEN) {
                        self.held = rest.to_string();
                        self.state = State::ThinkStart;
                    } else if trimmed.is_empty() || THINK_OPEN.starts_with(trimmed) {
                        return out;
                    } else {
                        self.state = State::Content;
                    }
                }
                State::ThinkStart => {
                    let rest = self.held.trim_start_matches('\n');
                    if rest.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = rest.to_string();
                    self.state = State::Thinking;
                }
                State::Thinking => {
                    if let Some(at) = self.held.find(THINK_CLOSE) {
                        out.reasoning.push_str(&self.held[..at]);
                        self.held = self.held[at + THINK_CLOSE.len()..].to_string();
                        self.state = State::AfterThink;
                    } else {
                        let keep = partial_tag(&self.held, THINK_CLOSE);
                        let cut = self.held.len() - keep;
                        out.reasoning.push_str(&self.held[..cut]);
                        self.held.drain(..cut);
                        return out;
                    }
                }
                State::AfterThink => {
                    let rest = self.held.trim_start_matches('\n');
                    if rest.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = rest.to_string();
                    self.state = State::Content;
                }
                State::Content => {
                    out.content.push_str(&self.held);
                    self.held.clear();
                    return out;
                }
            }
        }
    }

    /// The end of the output: what was held back (an unclosed `<think>` block stays
    /// reasoning, as it streamed).
    pub fn finish(&mut self) -> Split {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::ThinkStart | State::Thinking => Split {
                reasoning: held,
                content: String::new(),
            },
            State::AfterThink => Split::default(),
            State::Start | State::Content => Split {
                reasoning: String::new(),
                content: held,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(pieces: &[&str]) -> Split {
        let mut p = ReasoningParser::default();
        let mut all = Split::default();
        for piece in pieces {
            let s = p.push(piece);
            all.reasoning.push_str(&s.reasoning);
            all.content.push_str(&s.content);
        }
        let s = p.finish();
        all.reasoning.push_str(&s.reasoning);
        all.content.push_str(&s.content);
        all
    }

    #[test]
    fn think_block_becomes_reasoning_in_any_split() {
        let text = "<think>\nLet me see.\n</think>\n\nThe answer is 4.";
        for cut_a in 0..=text.len() {
            for cut_b in cut_a..=text.len() {
                if !text.is_char_boundary(cut_a) || !text.is_char_boundary(cut_b) {
                    continue;
                }
                let s = split_all(&[&text[..cut_a], &text[cut_a..cut_b], &text[cut_b..]]);
                assert_eq!(s.reasoning, "Let me see.\n", "{cut_a} {cut_b}");
                assert_eq!(s.content, "The answer is 4.", "{cut_a} {cut_b}");
            }
        }
    }

    #[test]
    fn no_think_block_is_all_content() {
        let s = split_all(&["Hello", " <think>x</think>"]);
        assert_eq!(s.reasoning, "");
        assert_eq!(s.content, "Hello <think>x</think>");
        let s = split_all(&["<thi"]);
        assert_eq!(s.content, "<thi");
        let s = split_all(&["<think>cut off by len"]);
        assert_eq!(
            (s.reasoning.as_str(), s.content.as_str()),
            ("cut off by len", "")
        );
    }

    #[test]
    fn partial_tags_are_found() {
        assert_eq!(partial_tag("abc</th", THINK_CLOSE), 4);
        assert_eq!(partial_tag("abc<", THINK_CLOSE), 1);
        assert_eq!(partial_tag("abc", THINK_CLOSE), 0);
        assert_eq!(partial_tag("é", THINK_CLOSE), 0);
    }
}
