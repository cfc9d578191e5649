//! Parity of `pio_runtime::tokenizer` with the Python `tokenizers` library.
//!
//! Fixtures: `tests/fixtures/tokenizer/*.json`, recorded by
//! `tests/reference/record_tokenizer_fixtures.py`.

use std::path::{Path, PathBuf};

use pio_runtime::tokenizer::{Tokenizer, TokenizerError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    generated_by: String,
    tokenizer: String,
    vocab_size_with_added: usize,
    token_ids: std::collections::BTreeMap<String, u32>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
    roundtrip: bool,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load_fixture(name: &str) -> (Fixture, Tokenizer) {
    let path = repo_root().join("tests/fixtures/tokenizer").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let fixture: Fixture = serde_json::from_str(&text).expect("fixture JSON");
    assert!(fixture.generated_by.contains("tokenizers"));
    let tok = Tokenizer::from_file(&repo_root().join(&fixture.tokenizer)).expect("tokenizer");
    (fixture, tok)
}

fn check_fixture(name: &str) {
    let (fixture, tok) = load_fixture(name);
    assert!(fixture.cases.len() >= 15, "{name}: too few cases");
    assert_eq!(tok.vocab_size(), fixture.vocab_size_with_added, "{name}");
    for (token, id) in &fixture.token_ids {
        assert_eq!(tok.token_id(token), Some(*id), "{name}: id of {token}");
    }
    for case in &fixture.cases {
        let ids = tok.encode(&case.text).unwrap();
        assert_eq!(ids, case.ids, "{name}: encode({:?})", case.text);
        let decoded = tok.decode(&case.ids).unwrap();
        assert_eq!(decoded, case.decoded, "{name}: decode of {:?}", case.text);
        if case.roundtrip {
            assert_eq!(decoded, case.text, "{name}: round trip of {:?}", case.text);
        }
    }
}

#[test]
fn qwen3_ids_match_python_tokenizers() {
    check_fixture("qwen3_ids.json");
}

#[test]
fn qwen3_tiny_ids_match_python_tokenizers() {
    check_fixture("qwen3_tiny_ids.json");
}

#[test]
fn qwen3_known_ids() {
    let (_, tok) = load_fixture("qwen3_ids.json");
    assert_eq!(tok.encode("Hello world").unwrap(), vec![9707, 1879]);
    assert_eq!(tok.token_id("<|im_end|>"), Some(151645));
    assert_eq!(tok.token_id("<|endoftext|>"), Some(151643));
    assert_eq!(tok.token_id("<|im_start|>"), Some(151644));
    assert_eq!(tok.token_id("no such token"), None);
    assert_eq!(tok.vocab_size(), 151_669);
    assert!(tok.encode("").unwrap().is_empty());
    // Ids past the vocabulary (padding rows of the 151,936-row embedding) decode to nothing.
    assert_eq!(tok.decode(&[9707, 151_900]).unwrap(), "Hello");
}

#[test]
fn tiny_tokenizer_ids_are_below_512() {
    let (fixture, tok) = load_fixture("qwen3_tiny_ids.json");
    assert_eq!(tok.vocab_size(), 512);
    for case in &fixture.cases {
        assert!(case.ids.iter().all(|&id| id < 512), "{:?}", case.text);
    }
    assert_eq!(tok.token_id("<|im_start|>"), Some(504));
    assert_eq!(tok.token_id("</tool_response>"), Some(511));
}

/// Pushes ids one by one; returns the chunks (None for pushes that completed nothing).
fn stream(tok: &Tokenizer, ids: &[u32]) -> (Vec<Option<String>>, Option<String>) {
    let mut decoder = tok.stream_decoder();
    let chunks = ids.iter().map(|&id| decoder.push(id).unwrap()).collect();
    let tail = decoder.finish().unwrap();
    (chunks, tail)
}

#[test]
fn stream_decoder_concatenation_equals_decode() {
    for name in ["qwen3_ids.json", "qwen3_tiny_ids.json"] {
        let (fixture, tok) = load_fixture(name);
        for case in &fixture.cases {
            let (chunks, tail) = stream(&tok, &case.ids);
            let mut text: String = chunks.iter().flatten().map(String::as_str).collect();
            text.push_str(tail.as_deref().unwrap_or(""));
            assert_eq!(text, case.decoded, "{name}: streamed {:?}", case.text);
            if !case.decoded.contains(char::REPLACEMENT_CHARACTER) {
                for chunk in chunks.iter().flatten() {
                    assert!(
                        !chunk.contains(char::REPLACEMENT_CHARACTER),
                        "{name}: chunk {chunk:?} of {:?}",
                        case.text
                    );
                }
                assert_eq!(tail, None, "{name}: {:?}", case.text);
            }
        }
    }
}

#[test]
fn stream_decoder_never_splits_an_emoji() {
    let (_, tok) = load_fixture("qwen3_tiny_ids.json");
    // The tiny vocabulary has no multi-byte merges: "🦀" is 4 byte tokens.
    let ids = tok.encode("🦀").unwrap();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let (chunks, tail) = stream(&tok, &ids);
    assert_eq!(chunks, vec![None, None, None, Some("🦀".to_string())]);
    assert_eq!(tail, None);

    let (_, tok) = load_fixture("qwen3_ids.json");
    let text = "Crab 🦀, robot 🤖, 你好, family 👨‍👩‍👧‍👦!";
    let ids = tok.encode(text).unwrap();
    let (chunks, tail) = stream(&tok, &ids);
    // Some emoji take several Qwen tokens, so some pushes complete nothing.
    assert!(chunks.iter().any(Option::is_none), "{ids:?}");
    let streamed: String = chunks.iter().flatten().map(String::as_str).collect();
    assert_eq!(streamed, text);
    assert!(chunks
        .iter()
        .flatten()
        .all(|c| !c.contains(char::REPLACEMENT_CHARACTER)));
    assert_eq!(tail, None);
}

#[test]
fn stream_decoder_finish_flushes_an_incomplete_character() {
    let (_, tok) = load_fixture("qwen3_tiny_ids.json");
    let ids = tok.encode("a🦀").unwrap();
    // Stop after "a" and two of the crab's four bytes.
    let (chunks, tail) = stream(&tok, &ids[..3]);
    assert_eq!(chunks, vec![Some("a".to_string()), None, None]);
    let tail = tail.expect("pending bytes");
    assert_eq!(format!("a{tail}"), tok.decode(&ids[..3]).unwrap());
    assert!(tail.contains(char::REPLACEMENT_CHARACTER));
}

#[test]
fn missing_tokenizer_file_error_names_the_path() {
    let path = repo_root().join("model-specs/tokenizers/no-such-model/tokenizer.json");
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::NotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no-such-model/tokenizer.json"), "{msg}");
}

#[test]
fn invalid_tokenizer_file_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "{ not json").unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::Invalid { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}
