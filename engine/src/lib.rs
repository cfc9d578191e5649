//! pio's engine: a compiled model with its weights on a device, ready to generate.
//!
//! A [`Model`] is an artifact (what `pio-compile` writes, or what [`Model::load`] compiles from
//! a spec on the spot) plus its weights on a device: the CUDA backend runs the artifact's launch
//! lists; the CPU backend runs its reference graph (the lowered IR, before any pass) with the
//! f32 reference executor. This is the only crate that uses both [`pio_compiler`] and
//! [`pio_runtime`]; the `pio` command-line tools are a thin layer over it.
//!
//! ```
//! use pio_engine::{Device, LoadOptions, Model, WeightsSource};
//! use pio_engine::runtime::chat::{ChatOptions, Message};
//!
//! let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../model-specs/qwen3-tiny.yaml");
//! let mut model = Model::load_with(
//!     spec.as_ref(),
//!     &WeightsSource::Random { seed: 0 },
//!     Device::Cpu,
//!     &LoadOptions::default(),
//! )?;
//! let text = model.chat_template()?.render(
//!     &[Message::user("Why is the sky blue?")],
//!     &ChatOptions { add_generation_prompt: true, enable_thinking: None },
//! )?;
//! let prompt = model.tokenizer().encode(&text)?;
//! let opts = model.generate_options(8, None);
//! let mut generated = 0;
//! for token in model.generate(&prompt, opts)? {
//!     token?;
//!     generated += 1;
//! }
//! assert!(generated <= 8);
//! # Ok::<(), pio_engine::PioError>(())
//! ```

pub mod blocks;
pub mod cpu;
pub mod cuda;
pub mod engine;
pub mod error;
pub mod footprint;
pub mod generation_config;
pub mod init_weights;
pub mod model;
pub mod options;
pub mod prefix_cache;
pub mod scheduler;
pub mod sequence;
pub mod weights;

pub use engine::{Engine, EngineConfig};
pub use error::PioError;
pub use generation_config::GenerationDefaults;
pub use model::{argmax, LoadTimings, Model, PagedLimits};
pub use options::{Device, LoadOptions, WeightsSource};
pub use pio_artifact as artifact;
pub use pio_compiler as compiler;
pub use pio_compiler::spec::from_config::SpecSource;
pub use pio_runtime as runtime;
pub use sequence::{FinishReason, RequestId, RequestOutput, RequestParams};

/// A model moves to the thread that drives it (an engine or server thread): checked at
/// compile time.
#[allow(dead_code)]
fn model_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Model>();
}
