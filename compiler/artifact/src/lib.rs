//! The artifact: everything the runtime needs to run a compiled model, with no petgraph and no
//! askama. `pio-compile` writes it as `artifact.json` next to `kernels/*.cu`.
//!
//! Memory is four regions, each one device allocation: `weights` (every weight, concatenated
//! ones already joined), `kv` (one static buffer per layer and cache), `io` (token ids,
//! positions, logits) and `arena` (activations, planned). A buffer argument is a region and a
//! byte offset. Prefill launches are sized for `max_prefill` tokens; their grids and GEMM
//! shapes scale with the actual number of tokens (`Dim::PerToken`).

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of this format; the runtime refuses other versions.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub format_version: u32,
    pub model: String,
    pub spec_file: String,
    /// Activation dtype of the kernels ("bf16").
    pub dtype: String,
    pub max_batch: usize,
    /// Most tokens one prefill step takes (longer prompts are prefilled in chunks).
    pub max_prefill: usize,
    /// Most tokens the KV cache holds.
    pub max_context: usize,
    pub vocab_size: usize,
    pub eos_token_ids: Vec<u32>,
    pub regions: Regions,
    pub weights: Vec<WeightEntry>,
    pub kv_caches: Vec<KvEntry>,
    pub io: Io,
    pub kernels: Vec<Kernel>,
    pub decode: Vec<Step>,
    pub prefill: Vec<Step>,
    /// NVRTC options the kernels are written for (the runtime adds the GPU's own arch).
    pub nvrtc_options: Vec<String>,
    pub memory: MemoryReport,
}

/// Bytes of each region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regions {
    pub weights: u64,
    pub kv: u64,
    pub io: u64,
    pub arena: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Weights,
    Kv,
    Io,
    Arena,
}

/// A weight in the weights region; `parts` are the checkpoint tensors concatenated along the
/// first axis (one part for a plain weight).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightEntry {
    pub name: String,
    pub parts: Vec<WeightPart>,
    /// Checkpoint names that alias this tensor (tied embeddings).
    pub tied: Vec<String>,
    pub shape: Vec<usize>,
    pub dtype: String,
    pub offset: u64,
    pub bytes: u64,
    /// "normal:0.02" or "ones": how random weights are made.
    pub init: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightPart {
    pub hf_name: String,
    pub rows: usize,
}

/// One layer's K or V cache: `[max_batch, kv_heads, max_context, head_dim]` (each kv head's rows
/// contiguous).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    pub layer: usize,
    pub cache: String,
    pub shape: Vec<usize>,
    pub offset: u64,
    pub bytes: u64,
}

/// Where the step's inputs and outputs live in the io region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Io {
    /// i32 token ids, `max_prefill` of them.
    pub tokens: u64,
    /// i32 absolute positions, `max_prefill` of them.
    pub positions: u64,
    /// Logits, `[logits_rows, vocab]` in `dtype`.
    pub logits: u64,
    pub logits_dtype: String,
    /// Rows of logits the region holds. A prefill step whose logits GEMM is marked
    /// ([`Gemm::logits`]) writes the last row only, or every row when the caller asks for every
    /// row's logits (then a step takes at most this many tokens); otherwise `max_prefill`.
    pub logits_rows: usize,
}

/// One generated kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// The `extern "C"` name: family and a hash of the source.
    pub name: String,
    pub family: String,
    /// Path relative to the artifact folder.
    pub file: String,
    pub source_hash: String,
}

/// A grid or GEMM dimension: fixed, proportional to the step's token count, or its number of
/// tiles of so many tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Fixed(u32),
    PerToken(u32),
    TokenTiles(u32),
}

impl Dim {
    /// The value for a step of `tokens` tokens.
    pub fn eval(self, tokens: u32) -> u32 {
        match self {
            Dim::Fixed(n) => n,
            Dim::PerToken(n) => n * tokens,
            Dim::TokenTiles(n) => tokens.div_ceil(n.max(1)),
        }
    }
}

/// A kernel argument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arg {
    /// A device pointer: region base + byte offset.
    Ptr {
        region: Region,
        offset: u64,
    },
    /// The step's token count (prefill; 1 in decode).
    Tokens,
    I32(i32),
}

/// One step of a launch list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Kernel(Launch),
    /// Row-major `C[m, n] = A[m, k] · B[n, k]ᵀ + beta · C` (B is an HF `[out, in]` weight) in
    /// bf16 with f32 accumulation, through cuBLAS(Lt).
    Gemm(Gemm),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub kernel: String,
    /// The IR node this launch computes (for messages and profiles).
    pub node: String,
    pub grid: [Dim; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    pub node: String,
    pub m: Dim,
    pub n: u32,
    pub k: u32,
    pub a: Arg,
    pub lda: u32,
    pub b: Arg,
    pub c: Arg,
    pub ldc: u32,
    pub beta: f32,
    /// This GEMM writes the step's logits (at row 0 of the io region's logits): the executor
    /// computes the last of the step's rows only (from A's last row), unless the caller asks
    /// for every row's logits.
    pub logits: bool,
}

/// What the memory planner did, per phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    pub decode_activation_bytes_unplanned: u64,
    pub decode_arena_bytes: u64,
    pub prefill_activation_bytes_unplanned: u64,
    pub prefill_arena_bytes: u64,
    pub alignment: u64,
}

/// Errors reading an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: artifact format {found}, this pio reads format {expected}; recompile with this pio-compile")]
    Version {
        path: String,
        found: u32,
        expected: u32,
    },
}

impl Artifact {
    /// Reads `artifact.json`.
    pub fn read(path: &Path) -> Result<Artifact, ArtifactError> {
        let err = |message: String| ArtifactError::Read {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let a: Artifact = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if a.format_version != FORMAT_VERSION {
            return Err(ArtifactError::Version {
                path: path.display().to_string(),
                found: a.format_version,
                expected: FORMAT_VERSION,
            });
        }
        Ok(a)
    }
}
