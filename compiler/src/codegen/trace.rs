//! What codegen knows of each launch list beyond the artifact: which of the optimized graph's
//! nodes each step computes, and where every value lives while it is live. A per-kernel check
//! (`tests/gpu/kernel_oracle.rs`) uses it to feed one node's steps random inputs on the GPU and
//! compare their result with the CPU executor's op. It is not part of the artifact: the
//! runtime never needs it.

use crate::ir::NodeId;
use pio_artifact::Region;
use std::collections::HashMap;

/// Where a value's bytes are during the steps that write and read it.
///
/// Row values are `stride`-element rows (one per token; a slice's rows start `offset` into its
/// base's). A KV-cache write's value is its layer's cache: `offset` is the cache's start in the
/// [`Region::Kv`] region (laid out `[kv_heads, max_context, head_dim]`) or its offset within a
/// block of the [`Region::Pool`] (`[kv_heads, block_size, head_dim]` per block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValuePlace {
    pub region: Region,
    pub offset: u64,
    pub stride: usize,
}

/// One launch list's trace.
#[derive(Clone, Debug, Default)]
pub struct PhaseTrace {
    /// For each step of the list, the nodes it computes (several for a merged launch; a node
    /// computed by several steps is named by each of them, in order).
    pub step_nodes: Vec<Vec<NodeId>>,
    /// Every lowered node's value (views included), arena offsets resolved by the memory plan.
    pub values: HashMap<NodeId, ValuePlace>,
}

impl PhaseTrace {
    /// The steps that compute `id`, in order.
    pub fn steps_of(&self, id: NodeId) -> Vec<usize> {
        self.step_nodes
            .iter()
            .enumerate()
            .filter(|(_, nodes)| nodes.contains(&id))
            .map(|(i, _)| i)
            .collect()
    }
}

/// The traces of an artifact's five launch lists.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub decode: PhaseTrace,
    pub prefill: PhaseTrace,
    /// `Artifact::paged.steps` (decode batches).
    pub paged: PhaseTrace,
    /// `Artifact::paged.chunk_steps`.
    pub chunk: PhaseTrace,
    /// `Artifact::paged.single_steps`.
    pub single: PhaseTrace,
}
