//! pio: load a Qwen3-family model described by a YAML spec and generate text.
//!
//! The command-line tools `pio` and `pio-compile` are thin layers over this library and over
//! [`pio_compiler`] (specs, IR, passes, the CPU reference executor) and [`pio_runtime`]
//! (weights, tokenizer, chat templates, sampling, the generation loop).
//!
//! ```no_run
//! use pio::{Device, Model, WeightsSource};
//! use pio::runtime::chat::{ChatOptions, Message};
//!
//! let mut model = Model::load(
//!     "model-specs/qwen3-0.6b.yaml".as_ref(),
//!     &WeightsSource::Dir("/models/Qwen3-0.6B".into()),
//!     Device::Auto,
//! )?;
//! let text = model.chat_template().render(
//!     &[Message::user("Why is the sky blue?")],
//!     &ChatOptions { add_generation_prompt: true, enable_thinking: Some(false) },
//! )?;
//! let prompt = model.tokenizer().encode(&text)?;
//! let opts = model.generate_options(256, None);
//! for token in model.generate(&prompt, opts)? {
//!     print!("{}", token?.text);
//! }
//! # Ok::<(), pio::PioError>(())
//! ```

pub mod cuda_backend;
pub mod error;
pub mod generation_config;
pub mod init_weights;
pub mod model;
pub mod npy;

pub use error::PioError;
pub use model::{Device, GenerationDefaults, LoadOptions, Model, WeightsSource};
pub use pio_compiler as compiler;
pub use pio_runtime as runtime;
pub mod bench;
