//! The artifact: everything the runtime needs to run a compiled model, typed and
//! self-contained, with no petgraph and no askama. `pio-compile` writes it with
//! [`Artifact::write_dir`] as `artifact.json` next to `kernels/*.cu`, the tokenizer files and the
//! reference graph; [`Artifact::load_dir`] reads it back and checks it. The runtime re-derives
//! nothing: if it had to scan a launch list or split a name to learn something, a field here
//! would be missing.
//!
//! Memory is four regions, each one device allocation: `weights` (every weight, concatenated
//! ones already joined), `kv` (one static buffer per layer and cache), `io` (token ids,
//! positions, logits) and `arena` (activations, planned). A buffer argument is a region and a
//! byte offset. Prefill launches are sized for `max_prefill` tokens; their grids and GEMM
//! shapes scale with the actual number of tokens (`Dim::PerToken`).

mod check;
mod dir;
pub mod hf_config;
mod model;
pub mod read;
mod rope;
pub mod shard;
mod steps;
mod types;

pub use dir::{ArtifactError, ARTIFACT_FILE};
pub use model::{Attachment, ModelInfo, SamplingDefaults};
pub use rope::{lift_rope_parameters, same_scaling, Rope, RopeScaling, Yarn, ROPE_TYPES};
pub use shard::{Shard, ShardAxis, ShardError};
pub use steps::{Arg, Collective, CollectiveOp, Dim, Gemm, Launch, Step};
pub use types::{CacheKind, DType, Init, KernelFamily, Phase, Region};

use serde::{Deserialize, Serialize};

/// Version of this format; the runtime refuses other versions.
pub const FORMAT_VERSION: u32 = 10;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub format_version: u32,
    pub model: ModelInfo,
    /// Activation dtype of the kernels.
    pub dtype: DType,
    /// Sequences one step takes.
    pub max_batch: usize,
    /// Tensor parallel: this artifact is every rank's part of a model split over `ranks` ranks
    /// (each rank loads its slice of each split [`WeightPart`], `Arg::Rank` is its
    /// index, the lists hold [`Step::Collective`]s); None for a whole model.
    pub tensor_parallel: Option<TensorParallel>,
    /// Most tokens one prefill step takes (longer prompts are prefilled in chunks).
    pub max_prefill: usize,
    /// Most tokens the KV cache holds.
    pub max_context: usize,
    pub regions: Regions,
    pub weights: Vec<WeightEntry>,
    pub kv_caches: Vec<KvEntry>,
    pub io: Io,
    pub kernels: Vec<Kernel>,
    pub decode: Vec<Step>,
    pub prefill: Vec<Step>,
    /// The batching engine's launch list over the paged KV pool.
    pub paged: Paged,
    /// NVRTC options the kernels are written for (the runtime adds the GPU's own arch).
    pub nvrtc_options: Vec<String>,
    pub memory: MemoryReport,
    /// The lowered graph before any pass, as the compiler's IR JSON: what the CPU reference
    /// executor runs (the oracle of every fused kernel).
    pub reference_graph: Attachment,
}

impl Artifact {
    /// The launch list of a phase.
    pub fn steps(&self, phase: Phase) -> &[Step] {
        match phase {
            Phase::Decode => &self.decode,
            Phase::Prefill => &self.prefill,
            Phase::Paged => &self.paged.steps,
            Phase::PagedChunk => &self.paged.chunk_steps,
            Phase::PagedSingle => &self.paged.single_steps,
        }
    }

    /// The checks [`Artifact::load_dir`] makes of what it reads: every launch names one of the
    /// artifact's kernels, every pointer lies inside its region, the layout fits its regions.
    pub fn check(&self) -> Result<(), String> {
        check::check(self)
    }

    /// The kernel a launch names.
    pub fn kernel(&self, name: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.name == name)
    }

    /// Whether the prefill's logits come from a marked GEMM ([`Gemm::logits`]), which can
    /// compute the last row alone.
    pub fn prefill_logits_gemm(&self) -> bool {
        self.prefill
            .iter()
            .any(|s| matches!(s, Step::Gemm(g) if g.logits))
    }
}

/// The batching engine's step: up to `max_tokens` tokens of up to `max_seqs` sequences (a
/// batch of decode tokens, or prefill chunks of one or more sequences), their keys and values
/// in a pool of blocks of `block_size` positions that the runtime sizes at load. A block holds
/// every layer's keys and values for its positions (`block_bytes`; [`KvPoolEntry`] gives each
/// layer's offset within a block, `[kv_heads, block_size, head_dim]` each). Per step the io region
/// holds each token's pool slot (`block * block_size + position % block_size`), its
/// sequence's index, and each sequence's block table (`max_blocks_per_seq` i32 each); the
/// decode attention's split counts (`split_counts_bytes`, u32 each) are zeroed once when the
/// pool is allocated and return to 0 after every launch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paged {
    pub block_size: usize,
    pub max_seqs: usize,
    pub max_tokens: usize,
    pub max_blocks_per_seq: usize,
    pub block_bytes: u64,
    pub pool: Vec<KvPoolEntry>,
    /// io offsets: i32 slots and sequence indices (`max_tokens` each), block tables.
    pub slots: u64,
    pub seq_index: u64,
    pub block_tables: u64,
    /// io offset and bytes of the decode attention's per-(token, kv head) count of finished
    /// context splits.
    pub split_counts: u64,
    pub split_counts_bytes: u64,
    /// A batch of sequences (decode: a token each).
    pub steps: Vec<Step>,
    /// Prefill chunks of one or more sequences, each one's rows contiguous (their attention on
    /// tensor cores where the head dim allows).
    pub chunk_steps: Vec<Step>,
    /// One sequence's decode token: the batch-1 decode list's GEMV kernels with the paged
    /// attention and cache writes (a batch of one runs this instead of `steps`).
    pub single_steps: Vec<Step>,
}

/// Where one layer's keys or values sit within a pool block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvPoolEntry {
    pub layer: usize,
    pub cache: CacheKind,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub offset: u64,
}

/// Bytes of each region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regions {
    pub weights: u64,
    pub kv: u64,
    pub io: u64,
    pub arena: u64,
}

impl Regions {
    pub fn size(&self, r: Region) -> u64 {
        match r {
            Region::Weights => self.weights,
            Region::Kv => self.kv,
            Region::Io => self.io,
            Region::Arena => self.arena,
            // Sized at load; the check bounds pool offsets by one block.
            Region::Pool => 0,
        }
    }
}

/// A weight in the weights region; `parts` are the checkpoint tensors concatenated along the
/// first axis (one part for a plain weight; in a tensor-parallel artifact, each part the rank's
/// slice of its tensor, as the part's `shard` says).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightEntry {
    /// The IR node's name.
    pub name: String,
    pub parts: Vec<WeightPart>,
    /// Checkpoint names that alias this tensor (tied embeddings).
    pub tied: Vec<String>,
    pub shape: Vec<usize>,
    /// Element type on the device.
    pub dtype: DType,
    pub offset: u64,
    pub bytes: u64,
    /// How random weights are made.
    pub init: Init,
}

/// A tensor-parallel artifact's rank layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorParallel {
    pub ranks: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightPart {
    pub hf_name: String,
    /// Rows of the part in this weight (a rank's slice of them where `shard` splits rows).
    pub rows: usize,
    /// Tensor parallel: how the checkpoint tensor splits over the ranks (the entry's `shape`
    /// holds one rank's slice of it); None: every rank holds it whole.
    pub shard: Option<Shard>,
}

impl WeightEntry {
    /// The checkpoint tensor of part `p` (one of `self.parts`): its rows and the entry's other
    /// axes, the split axis widened to the whole tensor's extent over `ranks` ranks.
    pub fn part_shape(&self, p: &WeightPart, ranks: usize) -> Vec<usize> {
        let mut shape = vec![p.rows];
        shape.extend(self.shape.iter().skip(1));
        if let Some(sh) = p.shard.filter(|_| ranks > 1) {
            if let Some(extent) = shape.get_mut(sh.axis.index()) {
                *extent = shard::global_extent(*extent, sh.groups, ranks);
            }
        }
        shape
    }
}

/// One layer's K or V cache: `[max_batch, kv_heads, max_context, head_dim]` (each kv head's rows
/// contiguous).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    pub layer: usize,
    pub cache: CacheKind,
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
    /// Logits, `[logits_rows, vocab]` in `logits_dtype`.
    pub logits: u64,
    pub logits_dtype: DType,
    /// Rows of logits the region holds. A prefill step whose logits GEMM is marked
    /// ([`Gemm::logits`]) writes the last row only, or every row when the caller asks for every
    /// row's logits (then a step takes at most this many tokens); otherwise `max_prefill`.
    pub logits_rows: usize,
}

/// One generated kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// The `extern "C"` name: family and a hash of the template's output.
    pub name: String,
    pub family: KernelFamily,
    /// Path relative to the artifact folder.
    pub file: String,
    /// FNV-1a (64 bits, hex) of `source`.
    pub source_hash: String,
    /// The CUDA source (not in artifact.json: written to and read from `file`).
    #[serde(skip)]
    pub source: String,
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

/// FNV-1a, 64 bits: a stable hash (std's hasher may change between Rust versions).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

/// `1.19 GB`-style sizes (decimal units, as model cards use), for messages and reports.
pub fn bytes_human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// [`fnv1a`] as 16 hex digits.
pub fn hash_hex(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a(bytes))
}
