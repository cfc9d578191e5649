//! What every handler shares: the engine's handle, the model's tokenizer and chat template
//! (copies, so that preparing a prompt never waits for the engine thread), settings, metrics.

use crate::config::ServeConfig;
use crate::engine_thread::EngineHandle;
use crate::logprobs::TokenText;
use crate::metrics::Metrics;
use pio_engine::GenerationDefaults;
use pio_runtime::chat::ChatTemplate;
use pio_runtime::tokenizer::Tokenizer;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The served model, as the HTTP side sees it.
#[derive(Debug)]
pub struct ModelContext {
    /// The name clients use (`model` in requests and responses).
    pub name: String,
    pub tokenizer: Tokenizer,
    /// The chat template, or why it cannot be used (chat requests then fail with it).
    pub chat: Result<ChatTemplate, String>,
    pub defaults: GenerationDefaults,
    /// Most positions a sequence holds (prompt and completion).
    pub max_seq_len: usize,
    pub vocab_size: usize,
    pub token_text: TokenText,
}

/// The router's state.
#[derive(Debug)]
pub struct AppState {
    pub engine: EngineHandle,
    pub model: ModelContext,
    pub metrics: Arc<Metrics>,
    pub config: ServeConfig,
    /// Set once shutdown starts: new requests get 503.
    pub draining: AtomicBool,
    /// When the server started (the model card's `created`).
    pub created: u64,
}

pub type Shared = Arc<AppState>;
