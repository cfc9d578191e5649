//! Log-probabilities of generated tokens, computed on the host from a step's logits, and the
//! text and bytes of single tokens (for logprob entries).

use pio_runtime::tokenizer::Tokenizer;
use std::collections::HashMap;

/// Largest `top_logprobs` (chat) / `logprobs` (completions) taken.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One token's log-probability and the most likely alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Logprobs {
    pub logprob: f32,
    /// `(id, logprob)`, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// Log-softmax of the model's raw logits (before penalties and temperature, as vLLM reports
/// by default) at `token`, with the `top` most likely ids. NaN logits count as `-inf`.
pub fn compute(logits: &[f32], token: u32, top: usize) -> Logprobs {
    let clean = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l };
    let max = logits
        .iter()
        .map(|&l| clean(l))
        .fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .map(|&l| ((clean(l) - max) as f64).exp())
        .sum();
    let lse = max as f64 + sum.ln();
    let lp = |l: f32| (clean(l) as f64 - lse) as f32;
    let logprob = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&l| lp(l));
    // The `top` best in one pass: a small sorted list (top <= 20).
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            let l = clean(l);
            if best.len() == top && l <= best[top - 1].1 {
                continue;
            }
            let at = best.partition_point(|&(_, b)| b >= l);
            best.insert(at, (i as u32, l));
            best.truncate(top);
        }
    }
    Logprobs {
        logprob,
        top: best.into_iter().map(|(i, l)| (i, lp(l))).collect(),
    }
}

/// Text and bytes of single tokens: the byte-level vocabulary string mapped back to bytes
/// (so a token holding half a character gives its real bytes), else the decoded text.
#[derive(Clone, Debug)]
pub struct TokenText {
    tokenizer: Tokenizer,
    unbyte: HashMap<char, u8>,
}

impl TokenText {
    pub fn new(tokenizer: Tokenizer) -> Self {
        TokenText {
            tokenizer,
            unbyte: byte_level_inverse(),
        }
    }

    /// The token's bytes.
    pub fn bytes(&self, id: u32) -> Vec<u8> {
        if let Some(piece) = self.tokenizer.id_to_token(id) {
            let mapped: Option<Vec<u8>> = piece
                .chars()
                .map(|c| self.unbyte.get(&c).copied())
                .collect();
            if let Some(b) = mapped {
                return b;
            }
        }
        self.tokenizer
            .decode(&[id])
            .map(String::into_bytes)
            .unwrap_or_default()
    }

    /// The token as text (invalid UTF-8 replaced).
    pub fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(&self.bytes(id)).into_owned()
    }
}

/// GPT-2's byte-level alphabet, reversed: the character standing for each byte.
fn byte_level_inverse() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .filter_map(|(b, c)| char::from_u32(c).map(|c| (c, b as u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0, f32::NAN];
        let l = compute(&logits, 1, 2);
        let z: f64 = [1.0f64, 2.0, 3.0].iter().map(|x| x.exp()).sum();
        assert!((l.logprob as f64 - (2.0 - z.ln())).abs() < 1e-6);
        assert_eq!(l.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!((l.top[1].1 - l.logprob).abs() < 1e-7);
        let total: f64 = (0..3)
            .map(|i| (compute(&logits, i, 0).logprob as f64).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(compute(&logits, 3, 0).logprob.is_infinite());
    }

    #[test]
    fn byte_level_alphabet_covers_every_byte() {
        let inv = byte_level_inverse();
        assert_eq!(inv.len(), 256);
        assert_eq!(inv[&'Ġ'], b' ');
        assert_eq!(inv[&'a'], b'a');
    }
}
