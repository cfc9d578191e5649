//! Stop strings over streamed text: matched across token (and chunk) boundaries, never part of
//! the output (unless asked for), holding back only a tail that could still begin one.

/// Matches stop strings in text pushed piece by piece.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Keep the stop string in the output (vLLM's `include_stop_str_in_output`).
    include: bool,
    /// Text held back: a suffix that is a prefix of some stop string.
    held: String,
    stopped: bool,
}

/// What one push gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopOutput {
    /// Text safe to emit now.
    pub text: String,
    /// The stop string that ended the output, when one did (the text ends before it).
    pub matched: Option<String>,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>, include: bool) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            include,
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether there are stop strings at all.
    pub fn is_active(&self) -> bool {
        !self.stops.is_empty()
    }

    /// Adds text; returns what can be emitted and whether a stop string matched. After a
    /// match every later push gives nothing.
    pub fn push(&mut self, text: &str) -> StopOutput {
        if self.stopped {
            return StopOutput::default();
        }
        if self.stops.is_empty() {
            return StopOutput {
                text: text.to_string(),
                matched: None,
            };
        }
        self.held.push_str(text);
        // The earliest match wins; at the same position, the longest stop string.
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by(|a, b| a.0.cmp(&b.0).then(b.1.len().cmp(&a.1.len())));
        if let Some((at, stop)) = found {
            let end = if self.include { at + stop.len() } else { at };
            let out = StopOutput {
                text: self.held[..end].to_string(),
                matched: Some(stop.clone()),
            };
            self.held.clear();
            self.stopped = true;
            return out;
        }
        let keep = self.held_tail();
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopOutput {
            text,
            matched: None,
        }
    }

    /// The text still held back (generation ended without a match).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a stop string (on a
    /// character boundary).
    fn held_tail(&self) -> usize {
        let h = self.held.as_str();
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut best = 0;
        for (start, _) in h.char_indices().rev() {
            let tail = &h[start..];
            if tail.len() >= longest {
                break;
            }
            if self.stops.iter().any(|s| s.starts_with(tail)) {
                best = tail.len();
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], include: bool, pieces: &[&str]) -> (String, Option<String>) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect(), include);
        let mut out = String::new();
        for p in pieces {
            let o = m.push(p);
            out.push_str(&o.text);
            if o.matched.is_some() {
                return (out, o.matched);
            }
        }
        out.push_str(&m.finish());
        (out, None)
    }

    #[test]
    fn matches_across_pieces_and_excludes_the_stop() {
        let (t, m) = run(&["STOP"], false, &["hello S", "T", "OP world"]);
        assert_eq!((t.as_str(), m.as_deref()), ("hello ", Some("STOP")));
        let (t, m) = run(&["STOP"], true, &["hello S", "T", "OP world"]);
        assert_eq!((t.as_str(), m.as_deref()), ("hello STOP", Some("STOP")));
    }

    #[test]
    fn holds_back_only_a_possible_prefix() {
        let mut m = StopMatcher::new(vec!["abc".into()], false);
        assert_eq!(m.push("xxab").text, "xx");
        assert_eq!(m.push("x").text, "abx");
        assert_eq!(m.push("a").text, "");
        assert_eq!(m.finish(), "a");
    }

    #[test]
    fn earliest_match_wins_and_multibyte_is_safe() {
        let (t, m) = run(&["é!", "b"], false, &["aé", "!b"]);
        assert_eq!((t.as_str(), m.as_deref()), ("a", Some("é!")));
        let (t, m) = run(&["zz"], false, &["ééé", "z", "y"]);
        assert_eq!((t.as_str(), m), ("éééxy".replace('x', "z").as_str(), None));
    }

    #[test]
    fn no_stops_passes_through() {
        let (t, m) = run(&[], false, &["a", "b"]);
        assert_eq!((t.as_str(), m), ("ab", None));
        let (t, _) = run(&[""], false, &["a", "b"]);
        assert_eq!(t, "ab");
    }
}
