//! pio runtime: everything that turns a compiled model into text.
//!
//! - [`weights`]: HF-format weight directories (safetensors, sharded or not), validation,
//!   random weights of the real shapes, and writing HF-layout directories.
//! - [`tokenizer`]: HF `tokenizer.json` through the `tokenizers` crate, streaming detokenizer.
//! - [`chat`]: the model's own Jinja chat template rendered with minijinja.
//! - [`sampling`]: greedy / temperature / top-k / top-p / min-p / penalties, seeded.

pub mod chat;
pub mod cuda;
pub mod generate;
pub mod resources;
pub mod sampling;
pub mod tokenizer;
pub mod weights;
