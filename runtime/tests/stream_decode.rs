//! Streaming detokenization: whatever the path (the byte table of a byte-level tokenizer, or
//! the window of ids decoded twice for any other), the text a stream returns, concatenated,
//! is `decode` of all its ids, and no push cuts a character.

use pio_runtime::tokenizer::{DecodeState, Tokenizer};
use std::path::{Path, PathBuf};

fn tokenizer_json(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model-specs/tokenizers")
        .join(name)
        .join("tokenizer.json")
}

fn load(name: &str) -> Tokenizer {
    Tokenizer::from_file(&tokenizer_json(name)).expect("tokenizer")
}

/// The same tokenizer with its `ByteLevel` decoder inside a `Sequence`: it decodes the same
/// text but is not a plain byte-level decoder, so streams take the window path.
fn load_windowed(name: &str) -> Tokenizer {
    let text = std::fs::read_to_string(tokenizer_json(name)).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let decoder = json["decoder"].take();
    assert_eq!(decoder["type"], "ByteLevel");
    json["decoder"] = serde_json::json!({"type": "Sequence", "decoders": [decoder]});
    Tokenizer::from_bytes(json.to_string().as_bytes(), "windowed").unwrap()
}

/// Pushes every id; returns the pushes' texts and the finish's.
fn stream(tok: &Tokenizer, ids: &[u32]) -> (Vec<Option<String>>, Option<String>) {
    let mut state = DecodeState::default();
    let chunks = ids.iter().map(|&id| state.push(tok, id).unwrap()).collect();
    (chunks, state.finish(tok).unwrap())
}

fn joined((chunks, tail): &(Vec<Option<String>>, Option<String>)) -> String {
    let mut text: String = chunks.iter().flatten().map(String::as_str).collect();
    text.push_str(tail.as_deref().unwrap_or(""));
    text
}

/// Pseudo-random id sequences: half single-byte tokens (ids below 256 are the byte alphabet
/// in these vocabularies, so characters split across ids and invalid UTF-8 are common), half
/// any id, some past the vocabulary (decode skips them) and the added tokens.
fn random_sequences(tok: &Tokenizer, count: usize) -> Vec<Vec<u32>> {
    let top = tok.vocab_size() as u64 + 300;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|_| {
            let len = 1 + (next() % 40) as usize;
            (0..len)
                .map(|_| {
                    let r = next();
                    if r % 2 == 0 {
                        (r >> 8) as u32 % 256
                    } else {
                        ((r >> 8) % top) as u32
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_id_of_qwen3_streams_as_it_decodes() {
    let tok = load("qwen3");
    // Qwen3's embedding has 151,936 rows; ids past its 151,669 tokens decode to nothing.
    for id in 0..151_936u32 {
        let want = tok.decode(&[id]).unwrap();
        assert_eq!(joined(&stream(&tok, &[id])), want, "id {id}");
    }
}

#[test]
fn random_streams_concatenate_to_decode_on_both_paths() {
    for name in ["qwen3", "qwen3-tiny", "llama3-standin", "llama3-tiny"] {
        for (path, tok) in [("bytes", load(name)), ("window", load_windowed(name))] {
            for ids in random_sequences(&tok, 400) {
                let want = tok.decode(&ids).unwrap();
                let got = stream(&tok, &ids);
                assert_eq!(joined(&got), want, "{name} ({path} path): {ids:?}");
                if !want.contains(char::REPLACEMENT_CHARACTER) {
                    assert_eq!(got.1, None, "{name} ({path} path): {ids:?}");
                }
            }
        }
    }
}

#[test]
fn both_paths_hold_a_split_character_until_it_is_complete() {
    for (path, tok) in [
        ("bytes", load("qwen3-tiny")),
        ("window", load_windowed("qwen3-tiny")),
    ] {
        // The tiny vocabulary has no multi-byte merges: "é🦀" is 2 + 4 byte tokens.
        let ids = tok.encode("é🦀!").unwrap();
        assert_eq!(ids.len(), 7, "{ids:?}");
        let (chunks, tail) = stream(&tok, &ids);
        let want: Vec<Option<String>> = [None, Some("é"), None, None, None, Some("🦀"), Some("!")]
            .into_iter()
            .map(|c| c.map(String::from))
            .collect();
        assert_eq!(chunks, want, "{path} path");
        assert_eq!(tail, None, "{path} path");
    }
}
