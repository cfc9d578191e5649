//! HF `tokenizer.json` tokenizers (Qwen3's byte-level BPE) and a streaming detokenizer.
//!
//! [`Tokenizer`] wraps the `tokenizers` crate, which implements exactly what the Python
//! `tokenizers` library does, so ids match Hugging Face's byte for byte (the parity tests in
//! `runtime/tests/tokenizer_parity.rs` check this against recorded Python output).
//!
//! Qwen3 has no BOS token and its post-processor adds nothing, so [`Tokenizer::encode`] never
//! adds tokens of its own. Added tokens written in the text (`<|im_start|>`, `<|im_end|>`,
//! `<think>`, ...) are matched as single tokens, as HF does for a rendered chat prompt.
//!
//! [`StreamDecoder`] turns generated ids into text one id at a time without ever cutting a
//! multi-byte UTF-8 character (an emoji or a CJK character is often spread over several
//! byte-level tokens).

mod byte_stream;

use byte_stream::{complete_len, ByteTable};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Errors from loading a tokenizer, encoding or decoding.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer file does not exist.
    #[error("tokenizer file not found: {}", path.display())]
    NotFound {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// The tokenizer file exists but could not be read.
    #[error("cannot read tokenizer file {}: {cause}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        /// (Part of the message, not a `source`: a printed chain says it once.)
        cause: std::io::Error,
    },
    /// The file is not a valid HF `tokenizer.json` (bad JSON, unknown model type, ...).
    #[error("invalid tokenizer file {}: {message}", path.display())]
    Invalid {
        /// The file that failed to parse.
        path: PathBuf,
        /// What the `tokenizers` library reported.
        message: String,
    },
    /// Encoding text failed.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// Decoding ids failed.
    #[error("decoding failed: {0}")]
    Decode(String),
}

/// A Hugging Face tokenizer loaded from a `tokenizer.json` file.
///
/// Cloning is cheap enough for setup code (it copies the vocabulary); share one instance
/// behind a reference or an `Arc` in hot paths.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Every id's bytes, built at the first streamed id, where the decoder is byte-level
    /// (`None` inside: decode through `inner`).
    byte_table: OnceLock<Option<Arc<ByteTable>>>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads a tokenizer from an HF `tokenizer.json` file.
    ///
    /// Errors name the path: [`TokenizerError::NotFound`] when the file is missing,
    /// [`TokenizerError::Io`] when it cannot be read, [`TokenizerError::Invalid`] when its
    /// content is not a valid tokenizer.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let limit = pio_artifact::read::MAX_TOKENIZER_BYTES;
        let bytes = pio_artifact::read::read_bounded(path, limit).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                TokenizerError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                TokenizerError::Io {
                    path: path.to_path_buf(),
                    cause: source,
                }
            }
        })?;
        Self::parse(&bytes, path)
    }

    /// Parses tokenizer.json bytes. The `tokenizers` crate is a third-party parser of a user's
    /// file: a panic inside it on a malformed file is caught and reported as that file being
    /// invalid, not as a crash of pio.
    fn parse(bytes: &[u8], path: &Path) -> Result<Self, TokenizerError> {
        let invalid = |message: String| TokenizerError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let parsed = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes))
            .map_err(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the tokenizer library panicked".into());
                invalid(format!("malformed tokenizer ({why})"))
            })?;
        let inner = parsed.map_err(|e| invalid(e.to_string()))?;
        Ok(Self::from_inner(inner))
    }

    /// A tokenizer from tokenizer.json's bytes (an artifact carries them); `label` names them
    /// in messages.
    pub fn from_bytes(bytes: &[u8], label: &str) -> Result<Self, TokenizerError> {
        Self::parse(bytes, Path::new(label))
    }

    /// Wraps an already built `tokenizers::Tokenizer`.
    pub fn from_inner(inner: tokenizers::Tokenizer) -> Self {
        Self {
            inner,
            byte_table: OnceLock::new(),
        }
    }

    /// Builds what streaming detokenization needs now (every id's bytes, for a byte-level
    /// decoder: about 0.1 s for Qwen3's 151,669 tokens) rather than at the first streamed id.
    pub fn prepare_streaming(&self) {
        self.byte_table();
    }

    /// The ids' bytes for streaming, where the decoder is byte-level (built once).
    fn byte_table(&self) -> Option<&ByteTable> {
        self.byte_table
            .get_or_init(|| ByteTable::of(&self.inner).map(Arc::new))
            .as_deref()
    }

    /// The wrapped `tokenizers::Tokenizer`, for anything this type does not expose.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes `text` into token ids.
    ///
    /// Same as HF's `tokenizer.encode(text, add_special_tokens=False)`: no BOS/EOS is added
    /// (Qwen3 has no BOS anyway), and added tokens written in the text, like `<|im_start|>`,
    /// are recognized as single tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes a plain-text prompt as HF's `tokenizer(text)` does: with the special tokens the
    /// tokenizer's own post-processor adds (Llama 3's puts `<|begin_of_text|>` first; Qwen's
    /// adds none). A chat prompt, whose template writes those tokens itself, is encoded with
    /// [`Self::encode`], as `apply_chat_template` does.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes token ids into text, keeping special tokens (`skip_special_tokens=False`).
    ///
    /// Bytes that do not form valid UTF-8 (e.g. half of an emoji) become U+FFFD, as in HF.
    /// Ids outside the vocabulary (for example the padding rows of a 151,936-row embedding,
    /// beyond Qwen3's 151,669 tokens) decode to nothing, as in HF.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// The id of a token given by its exact vocabulary string (e.g. `"<|im_end|>"`), if any.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary string of an id (byte-level form, e.g. `"Ġworld"`), if the id exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of tokens, added tokens included (151,669 for Qwen3; the model's embedding
    /// table may be larger, 151,936, because of padding).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// A new [`StreamDecoder`] over this tokenizer.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }
}

/// Incremental detokenizer for streaming generated text.
///
/// Push ids one at a time; each push returns the text that became complete. With a byte-level
/// decoder (Qwen's, Llama 3's) it appends the id's bytes, looked up in a table of every id's
/// bytes, and emits every complete character (`byte_stream.rs`: `decode` is then the lossy
/// UTF-8 of the ids' bytes). With any other decoder it uses the prefix-offset technique (as in
/// HF text-generation-inference and `tokenizers`' `DecodeStream`): it decodes a short window of
/// recent ids twice, without and with the new ones, and emits the difference only once it does
/// not end in an incomplete UTF-8 sequence (U+FFFD). So a character split over several byte-level tokens is emitted whole, once its
/// last byte arrives, and the concatenation of everything returned by [`push`] and
/// [`finish`] equals `decode` of all the ids.
///
/// [`push`]: StreamDecoder::push
/// [`finish`]: StreamDecoder::finish
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    state: DecodeState,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder with no ids pushed yet.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            state: DecodeState::default(),
        }
    }

    /// Adds one generated id and returns the newly completed text, or `None` while the bytes
    /// seen so far end inside a multi-byte character (or the id adds no text).
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.state.push(self.tokenizer, id)
    }

    /// Returns whatever text is still pending (an incomplete UTF-8 tail decodes to U+FFFD,
    /// as `decode` would give) and resets the decoder. Call once when generation ends.
    pub fn finish(&mut self) -> Result<Option<String>, TokenizerError> {
        self.state.finish(self.tokenizer)
    }
}

/// The state of a [`StreamDecoder`] without the borrow of its tokenizer, for owners that keep
/// many streams next to one tokenizer (the batching engine keeps one per request).
#[derive(Clone, Debug, Default)]
pub struct DecodeState {
    /// Ids from `prefix_offset` on (older ones are dropped once emitted).
    ids: Vec<u32>,
    /// Start, within `ids`, of the already emitted ids that give the new text its context.
    prefix_offset: usize,
    /// End, within `ids`, of the ids whose text has been emitted.
    read_offset: usize,
    /// With a byte-level tokenizer (which keeps no ids here): the bytes not yet emitted, an
    /// incomplete UTF-8 character at most.
    pending: Vec<u8>,
}

impl DecodeState {
    /// [`StreamDecoder::push`] with the tokenizer given (the same one at every call).
    pub fn push(
        &mut self,
        tokenizer: &Tokenizer,
        id: u32,
    ) -> Result<Option<String>, TokenizerError> {
        match tokenizer.byte_table() {
            Some(table) => Ok(self.push_bytes(table.bytes(id))),
            None => self.push_window(tokenizer, id),
        }
    }

    /// A byte-level tokenizer's push: the id's bytes appended, every complete character
    /// emitted.
    fn push_bytes(&mut self, bytes: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(bytes);
        let end = complete_len(&self.pending);
        if end == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        self.pending.drain(..end);
        Some(text)
    }

    /// Any other tokenizer's push: a window of recent ids decoded without and with the new one.
    fn push_window(
        &mut self,
        tokenizer: &Tokenizer,
        id: u32,
    ) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..])?;
        if full.len() <= prefix.len() || full.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let new_text = match full.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.to_string(),
            // Cannot happen with byte-level decoding (the emitted prefix is complete UTF-8),
            // but stay correct for other decoders: emit from the first differing char.
            None => {
                let common = full
                    .char_indices()
                    .zip(prefix.chars())
                    .find(|((_, a), b)| a != b)
                    .map_or(prefix.len().min(full.len()), |((i, _), _)| i);
                full[common..].to_string()
            }
        };
        // The ids just emitted become the context for the next push; older ids are dropped.
        let emitted_end = self.ids.len();
        self.ids.drain(..self.read_offset);
        self.prefix_offset = 0;
        self.read_offset = emitted_end - self.read_offset;
        Ok(Some(new_text))
    }

    /// [`StreamDecoder::finish`] with the tokenizer given.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<Option<String>, TokenizerError> {
        if !self.pending.is_empty() {
            let rest = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            return Ok(Some(rest));
        }
        let result = if self.read_offset < self.ids.len() {
            let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset])?;
            let full = tokenizer.decode(&self.ids[self.prefix_offset..])?;
            let rest = full
                .strip_prefix(prefix.as_str())
                .unwrap_or(full.as_str())
                .to_string();
            (!rest.is_empty()).then_some(rest)
        } else {
            None
        };
        self.ids.clear();
        self.prefix_offset = 0;
        self.read_offset = 0;
        Ok(result)
    }
}
