//! Seeded mutations of text and bytes: byte flips/inserts/deletes, line deletes/duplicates/
//! swaps/re-indents, numbers replaced by interesting ones, YAML/JSON punctuation inserted,
//! words swapped for other words of the corpus, chunks repeated, two inputs spliced.

/// xorshift64*: small, seeded, good enough to pick mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Numbers that break code which trusts them.
pub const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "64",
    "65536",
    "1e12",
    "1000000000000",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "NaN",
    ".nan",
    "inf",
    ".inf",
    "-.inf",
    "1e308",
    "1e309",
    "-0.0",
    "0.5",
    "1e-320",
    "0x10",
    "1_000",
];

/// Punctuation and keywords of YAML, JSON and Jinja.
pub const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "-",
    ",",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "!tag ",
    "~",
    "null",
    "true",
    "false",
    "---\n",
    "...\n",
    "? ",
    "| ",
    "> ",
    "\t",
    "\n",
    "\r\n",
    "\\",
    "\\u0000",
    "\\ud800",
    "\u{feff}",
    "\u{0}",
    "%YAML 1.2\n",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "$",
    "$$",
    "(",
    ")",
    "*",
    "+",
    "/",
    "//",
    "%",
    "@",
    "=",
    "..",
    "e",
    "é",
    "\u{202e}",
    "{}",
    "[]",
    "\"\"",
    "[[[[[[[[",
    "]]]]]]]]",
    "{{{{{{{{",
    " ",
];

/// Mutation settings of a target: its words (for word swaps) and the largest input.
pub struct Mutator {
    pub words: Vec<Vec<u8>>,
    pub max_len: usize,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

impl Mutator {
    pub fn new(corpus: &[Vec<u8>], max_len: usize) -> Mutator {
        let mut words: Vec<Vec<u8>> = Vec::new();
        for input in corpus {
            for w in input.split(|&b| !is_word(b)) {
                if w.len() >= 2 && w.len() <= 40 && !words.iter().any(|x| x == w) {
                    words.push(w.to_vec());
                }
            }
        }
        Mutator { words, max_len }
    }

    /// 1 to `max` mutations of `input` (`other` is for splicing).
    pub fn mutate(&self, rng: &mut Rng, input: &[u8], other: &[u8], max: usize) -> Vec<u8> {
        let mut out = input.to_vec();
        let n = 1 + rng.below(max.max(1));
        for _ in 0..n {
            self.one(rng, &mut out, other);
        }
        out.truncate(self.max_len);
        out
    }

    fn one(&self, rng: &mut Rng, v: &mut Vec<u8>, other: &[u8]) {
        if v.is_empty() {
            v.extend_from_slice(rng.pick(TOKENS).as_bytes());
            return;
        }
        match rng.below(15) {
            0 => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            3 => {
                let i = rng.below(v.len());
                let n = 1 + rng.below(16.min(v.len() - i));
                v.drain(i..i + n);
            }
            4 => line_op(rng, v),
            5 | 6 => number(rng, v),
            7 | 8 => {
                let i = rng.below(v.len() + 1);
                let t = rng.pick(TOKENS).as_bytes();
                v.splice(i..i, t.iter().copied());
            }
            9 | 10 => self.word(rng, v),
            11 => {
                // Repeat a chunk many times (deep nesting, long lines, huge inputs).
                let i = rng.below(v.len());
                let n = 1 + rng.below(32.min(v.len() - i));
                let chunk = v[i..i + n].to_vec();
                let times = [2, 10, 100, 1000, 10000][rng.below(5)];
                let room = self.max_len.saturating_sub(v.len()) / n;
                let rep = chunk.repeat(times.min(room));
                v.splice(i..i, rep);
            }
            12 if !other.is_empty() => {
                let i = rng.below(v.len() + 1);
                let j = rng.below(other.len() + 1);
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            13 => {
                // Copy a line of the other input into this one.
                let lines: Vec<&[u8]> = other.split(|&b| b == b'\n').collect();
                let line = rng.pick(&lines).to_vec();
                let at = line_starts(v);
                let i = *rng.pick(&at);
                v.splice(i..i, line.into_iter().chain([b'\n']));
            }
            _ => {
                let i = rng.below(v.len());
                let end = (i + 1 + rng.below(64)).min(v.len());
                let chunk = v[i..end].to_vec();
                let j = rng.below(v.len() + 1);
                v.splice(j..j, chunk);
            }
        }
    }

    /// Replaces one word with another word of the corpus.
    fn word(&self, rng: &mut Rng, v: &mut Vec<u8>) {
        let spans = spans(v, is_word);
        if spans.is_empty() || self.words.is_empty() {
            return;
        }
        let (s, e) = *rng.pick(&spans);
        let w = rng.pick(&self.words).clone();
        v.splice(s..e, w);
    }
}

fn line_starts(v: &[u8]) -> Vec<usize> {
    let mut at = vec![0];
    at.extend(
        v.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    at
}

/// Deletes, duplicates, swaps or re-indents a line.
fn line_op(rng: &mut Rng, v: &mut Vec<u8>) {
    let text = std::mem::take(v);
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let i = rng.below(lines.len());
    match rng.below(5) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let j = rng.below(lines.len());
            lines.swap(i, j);
        }
        3 => {
            let n = [1, 2, 4][rng.below(3)];
            lines[i].splice(0..0, std::iter::repeat_n(b' ', n));
        }
        _ => {
            let n = lines[i].iter().take_while(|&&b| b == b' ').count();
            lines[i].drain(..n.min(2));
        }
    }
    *v = lines.join(&b'\n');
}

/// Replaces a number (or inserts one where there is none) with an interesting one.
fn number(rng: &mut Rng, v: &mut Vec<u8>) {
    let spans = spans(v, |b| {
        b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'-' || b == b'+'
    });
    let spans: Vec<(usize, usize)> = spans
        .into_iter()
        .filter(|&(s, e)| v[s..e].iter().any(u8::is_ascii_digit))
        .collect();
    let n = rng.pick(NUMBERS).as_bytes();
    if spans.is_empty() {
        let i = rng.below(v.len() + 1);
        v.splice(i..i, n.iter().copied());
        return;
    }
    let (s, e) = *rng.pick(&spans);
    v.splice(s..e, n.iter().copied());
}

/// Maximal runs of bytes for which `f` holds, as `(start, end)`.
fn spans(v: &[u8], f: impl Fn(u8) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in v.iter().enumerate() {
        match (f(b), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, v.len()));
    }
    out
}
