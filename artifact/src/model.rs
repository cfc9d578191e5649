//! What the artifact says about the model beyond its graph: names, vocabulary, generation
//! defaults, and the files (tokenizer, chat template, reference graph) it carries with it.

use crate::types::DType;
use serde::{Deserialize, Serialize};

/// The model a compiled graph computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The variant's name, e.g. "Qwen3-0.6B".
    pub name: String,
    pub family: String,
    /// HF architecture, e.g. "Qwen3ForCausalLM".
    pub architecture: String,
    /// The variant spec it was compiled from (provenance only: nothing reads it at load).
    pub spec_file: String,
    /// Rows of the LM head (the logits' width).
    pub vocab_size: usize,
    /// The spec's bound on positions (max_position_embeddings); `Artifact::max_context` is
    /// what this compile's KV cache holds.
    pub context_bound: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// Sampling defaults when the checkpoint has no generation_config.json.
    pub sampling: SamplingDefaults,
    /// Whether the chat template takes `enable_thinking`.
    pub thinking: bool,
    /// The tokenizer used with random weights (a checkpoint's own tokenizer.json wins).
    pub tokenizer: Attachment,
    /// The tokenizer_config.json whose `chat_template` the model uses (same rule).
    pub tokenizer_config: Attachment,
    /// The config.json fields a checkpoint must agree with (and `pio init-weights` writes).
    pub hf_config: serde_json::Map<String, serde_json::Value>,
    /// The value transformers assumes for each of those fields a config.json may leave out
    /// (`head_dim` where it is `hidden_size / num_attention_heads`, `rope_scaling: null`): a
    /// checkpoint without the field agrees when the expected value is this one.
    #[serde(default)]
    pub hf_defaults: serde_json::Map<String, serde_json::Value>,
    /// Element type of the checkpoint's weights as the spec declares it.
    pub weights_dtype: DType,
}

/// Default sampling parameters (generation_config.json's fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingDefaults {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
}

/// A file the artifact folder carries, checked by size and hash when it is read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Path relative to the artifact folder.
    pub file: String,
    pub bytes: u64,
    /// FNV-1a (64 bits, hex) of the contents.
    pub hash: String,
    /// The contents (not in artifact.json: written to and read from `file`).
    #[serde(skip)]
    pub data: Vec<u8>,
}

impl Attachment {
    pub fn new(file: impl Into<String>, data: Vec<u8>) -> Attachment {
        Attachment {
            file: file.into(),
            bytes: data.len() as u64,
            hash: crate::hash_hex(&data),
            data,
        }
    }

    /// The contents as UTF-8 text.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.data)
    }
}
