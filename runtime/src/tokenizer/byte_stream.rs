//! Streaming detokenization for byte-level tokenizers (Qwen's, Llama 3's) without decoding.
//!
//! With a `ByteLevel` decoder, HF's `decode(ids)` maps each id to its token string (an added
//! token first, then the model's vocabulary; unknown ids give nothing), each string to bytes
//! (through the GPT-2 byte-to-character table, or its own UTF-8 bytes when a character is not in
//! that table) and the concatenation to text with `String::from_utf8_lossy`. So a stream can keep
//! the bytes not yet emitted and append each new id's bytes: [`ByteTable`] holds every id's
//! bytes, [`complete_len`] says how many pending bytes can be emitted without cutting a
//! character that later bytes may complete. That is a table lookup per token instead of two
//! tokenizer decodes of a window of ids (about 2-5 us per token on a CPU core, which a batch of
//! 128 streams pays 128 times per step).

use tokenizers::DecoderWrapper;

/// Every id's bytes, as the tokenizer's byte-level decoder gives them.
#[derive(Debug)]
pub(crate) struct ByteTable {
    /// Id `i`'s bytes are `bytes[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    bytes: Vec<u8>,
}

impl ByteTable {
    /// The table of `inner`, or `None` where its decoder is not a plain `ByteLevel` one (those
    /// decode through the tokenizer).
    pub(crate) fn of(inner: &tokenizers::Tokenizer) -> Option<ByteTable> {
        if !matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return None;
        }
        let max_id = inner.get_vocab(true).values().copied().max()?;
        let byte_of = char_to_byte();
        let mut table = ByteTable {
            offsets: Vec::with_capacity(max_id as usize + 2),
            bytes: Vec::new(),
        };
        table.offsets.push(0);
        for id in 0..=max_id {
            if let Some(token) = inner.id_to_token(id) {
                let start = table.bytes.len();
                for c in token.chars() {
                    match byte_of.get(c as usize).copied().flatten() {
                        Some(b) => table.bytes.push(b),
                        // A character outside the byte table: the token's own UTF-8 bytes.
                        None => {
                            table.bytes.truncate(start);
                            table.bytes.extend_from_slice(token.as_bytes());
                            break;
                        }
                    }
                }
            }
            table.offsets.push(u32::try_from(table.bytes.len()).ok()?);
        }
        Some(table)
    }

    /// Id `id`'s bytes (none for an id outside the vocabulary, as `decode` skips it).
    pub(crate) fn bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a as usize..b as usize],
            _ => &[],
        }
    }
}

/// The GPT-2 byte-level alphabet read backwards: for each character below U+0200, the byte it
/// stands for. Printable bytes ('!'..='~', 0xA1..=0xAC, 0xAE..=0xFF) are themselves; the other 68
/// are U+0100 onwards, in byte order.
fn char_to_byte() -> Vec<Option<u8>> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = vec![None; 0x200];
    let mut next = 0x100;
    for b in 0..=255u8 {
        if printable(b) {
            table[b as usize] = Some(b);
        } else {
            table[next] = Some(b);
            next += 1;
        }
    }
    table
}

/// How many of `bytes` can be emitted now: all of them, unless they end inside a UTF-8 sequence
/// that the next bytes may still complete (a lead byte followed by fewer continuation bytes
/// than it needs, valid so far); those stay pending. Emitting up to a lead byte never changes
/// the lossy decoding of the whole (a lead byte always ends the invalid run before it).
pub(crate) fn complete_len(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for k in 1..=n.min(4) {
        let lead = bytes[n - k];
        if lead & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let need = match lead {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return n, // ASCII, or a byte that never starts a character
        };
        if k >= need {
            return n;
        }
        if k >= 2 {
            let second = bytes[n - k + 1];
            let valid = match lead {
                0xE0 => (0xA0..=0xBF).contains(&second),
                0xED => (0x80..=0x9F).contains(&second),
                0xF0 => (0x90..=0xBF).contains(&second),
                0xF4 => (0x80..=0x8F).contains(&second),
                _ => true,
            };
            if !valid {
                return n;
            }
        }
        return n - k;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lossy text of `bytes` emitted in pieces, as a stream does after every byte.
    fn streamed(bytes: &[u8]) -> String {
        let (mut out, mut pending) = (String::new(), Vec::new());
        for &b in bytes {
            pending.push(b);
            let end = complete_len(&pending);
            out.push_str(&String::from_utf8_lossy(&pending[..end]));
            pending.drain(..end);
        }
        out + &String::from_utf8_lossy(&pending)
    }

    #[test]
    fn an_incomplete_character_waits_and_an_invalid_byte_does_not() {
        let crab = "🦀".as_bytes();
        for k in 1..4 {
            assert_eq!(complete_len(&crab[..k]), 0, "{k} of the crab's bytes");
        }
        assert_eq!(complete_len(crab), 4);
        assert_eq!(complete_len(b"ab\xE2\x82"), 2);
        assert_eq!(complete_len(b"\xC0"), 1, "never a lead byte");
        assert_eq!(complete_len(b"\xE0\x80"), 2, "E0 80 can never be completed");
        assert_eq!(complete_len(b"\xED\xA0"), 2, "a surrogate");
        assert_eq!(complete_len(b"\xF4\x90"), 2, "past U+10FFFF");
        assert_eq!(complete_len(b"\x80\x80\x80\x80\x80"), 5);
        assert_eq!(complete_len(b""), 0);
    }

    #[test]
    fn bytes_emitted_as_they_complete_decode_as_the_whole() {
        // Every sequence of up to 3 bytes drawn from an alphabet of leads, continuations of
        // every range, ASCII and bytes that are never valid, and longer pseudo-random ones.
        let alphabet = [
            0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE2, 0xED, 0xEF,
            0xF0, 0xF3, 0xF4, 0xF5, 0xFF,
        ];
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for &a in &alphabet {
            for &b in &alphabet {
                for &c in &alphabet {
                    cases.push(vec![a, b, c]);
                }
            }
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            let len = (x % 24) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            cases.push(v);
        }
        for v in cases {
            assert_eq!(streamed(&v), String::from_utf8_lossy(&v), "{v:02x?}");
        }
    }

    #[test]
    fn the_alphabet_covers_every_byte_once() {
        let t = char_to_byte();
        let mut seen = [false; 256];
        for b in t.iter().flatten() {
            assert!(!seen[*b as usize], "byte {b:#x} twice");
            seen[*b as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(t['Ġ' as usize], Some(b' '));
        assert_eq!(t['Ċ' as usize], Some(b'\n'));
    }
}
