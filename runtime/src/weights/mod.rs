//! Hugging Face weight directories.
//!
//! - [`WeightSpec`]: the tensors the compiled model expects (name, shape, init rule).
//! - [`check_config`]: cross-check `config.json` against the model spec.
//! - [`WeightDir`]: open `model.safetensors` or sharded checkpoints, validate every header
//!   before reading data (all problems in one error), read tensors as raw bytes or f32.
//! - [`random_tensor_bf16`] / [`random_tensor_f32`]: deterministic random weights of the real
//!   shapes, per `(seed, tensor name)`.
//! - [`write_hf_dir`] / [`write_random_hf_dir`]: write an HF-layout directory (single file or
//!   shards + index), never overwriting without `force`, never leaving half files.

pub mod config;
mod dir;
mod error;
mod random;
mod safetensors_file;
mod spec;
mod temporaries;
mod writer;

pub use config::check_config;
pub use dir::{WeightDir, INDEX_FILE_NAME, SINGLE_FILE_NAME};
pub use error::{ConfigMismatch, WeightProblem, WeightsError};
pub use random::{
    fnv1a64, random_tensor_bf16, random_tensor_f32, tensor_seed, validate_spec, RANDOM_CHUNK,
};
pub use spec::{DType, WeightInit, WeightSpec};
pub use temporaries::remove_temporaries;
pub use writer::{
    write_hf_dir, write_random_hf_dir, write_random_hf_dir_with_progress, TensorInfo, WriteOptions,
    WriteSummary, DEFAULT_SHARD_BYTES,
};
