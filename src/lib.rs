//! pio: load a Qwen3-family model described by a YAML spec and generate text.
//!
//! The command-line tools `pio` and `pio-compile` are thin layers over this library and over
//! [`pio_compiler`] (specs, IR, passes) and [`pio_runtime`] (weights, tokenizer, sampling).

pub use pio_compiler as compiler;
pub use pio_runtime as runtime;
