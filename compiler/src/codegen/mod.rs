//! Codegen: the optimized graph becomes an [`Artifact`]: memory regions (weights, KV cache,
//! inputs/outputs, a planned activation arena), kernel sources from the templates, and two
//! launch lists, one for a decode step (one token: fused GEMV kernels) and one for prefill (up
//! to `max_prefill` tokens: cuBLAS GEMMs plus the same element/head kernels).
//!
//! [`generate`] orchestrates; `layout` places the fixed regions, `phase` lowers the graph once
//! per phase, dispatching each op to its kernel selection (`attention`, `projection`,
//! `head_ops`, `elementwise`), and `schedule` keeps the values, buffers and pending steps and
//! plans the arena.

mod attention;
mod collective;
mod elementwise;
mod head_ops;
pub mod kernels;
mod layout;
mod listing;
mod options;
mod paged_attention;
mod phase;
mod prefill_attention;
mod projection;
pub mod rope;
mod row_gemm;
mod schedule;
mod trace;

pub use attention::{decode_attention_shape, DecodeAttentionShape};
pub use listing::listing;
pub use options::{
    paged_attention_min_blocks, CodegenOptions, GemvTuning, ATTENTION_SPANS, DEFAULT_BLOCK_SIZE,
    DEFAULT_CONTEXT_CAP, DEFAULT_PREFILL, MAX_ATTENTION_SPANS, MAX_PREFILL,
    PAGED_ATTENTION_HEADS_PER_BLOCK, PAGED_ATTENTION_MIN_BLOCKS, PAGED_ATTENTION_TARGET_BLOCKS,
};
pub use trace::{PhaseTrace, Trace, ValuePlace};

use crate::error::CompileError;
use crate::ir::{CacheKind, Dim as IrDim, Graph, NodeId, Op};
use crate::memory;
use kernels::{render, KernelSource};
use options::LOGITS_ROWS;
use phase::PagedStep;
use pio_artifact::{self as art, Artifact, DType, KernelFamily, Step};
use std::collections::{BTreeMap, HashMap, HashSet};

fn err(msg: impl Into<String>) -> CompileError {
    CompileError::Options(format!("codegen: {}", msg.into()))
}

/// Generates the artifact for an optimized graph. Everything codegen needs comes from the IR
/// (roles, shapes, dims); `model` and `reference_graph` are carried into the artifact as they
/// are.
pub fn generate(
    g: &Graph,
    opts: &CodegenOptions,
    model: art::ModelInfo,
    reference_graph: art::Attachment,
) -> Result<Artifact, CompileError> {
    generate_traced(g, opts, model, reference_graph).map(|(artifact, _)| artifact)
}

/// [`generate`], with the launch lists' [`Trace`] (which nodes each step computes, where each
/// value lives).
pub fn generate_traced(
    g: &Graph,
    opts: &CodegenOptions,
    model: art::ModelInfo,
    reference_graph: art::Attachment,
) -> Result<(Artifact, Trace), CompileError> {
    let order = g
        .topo_order()
        .map_err(|c| err(format!("cycle through {}", c.join(", "))))?;
    let bound = g
        .context_bound()
        .ok_or_else(|| err("the graph declares no context dim ('ctx' under dims)"))?;
    let max_context = opts.max_context.unwrap_or(bound.min(DEFAULT_CONTEXT_CAP));
    if max_context == 0 || max_context > bound {
        return Err(err(format!(
            "max context {max_context} must be between 1 and the spec's bound {bound}"
        )));
    }
    if g.batch_bound() != 1 {
        return Err(err("only max_batch 1 is supported so far"));
    }
    if opts.max_prefill == 0 || opts.max_prefill > MAX_PREFILL {
        return Err(err(format!(
            "max prefill must be between 1 and {MAX_PREFILL} tokens"
        )));
    }
    let mut cg = Codegen {
        g,
        kernels: BTreeMap::new(),
        weights: HashMap::new(),
        kv: HashMap::new(),
        attention_counts: HashMap::new(),
        max_context,
        gemv: opts.gemv,
        attention_spans: opts.attention_spans,
        paged_attention_heads: opts.paged_attention_heads,
        paged_attention_min_blocks: opts.paged_attention_min_blocks,
        paged_attention_target_blocks: opts
            .paged_attention_target_blocks
            .unwrap_or(PAGED_ATTENTION_TARGET_BLOCKS),
        wide_row_access: opts.wide_row_access,
        online_chunk_attention: opts.online_chunk_attention,
        chunk_attention_min_blocks: opts.chunk_attention_min_blocks,
        fused_row_gemm: opts.fused_row_gemm,
        io: layout::io_offsets(opts.max_prefill),
        paging: None,
    };
    if opts.block_size == 0 || opts.block_size > 1024 {
        return Err(err(format!(
            "block size {} must be between 1 and 1024 positions",
            opts.block_size
        )));
    }
    let (weights, weights_bytes) = cg.layout_weights(&order)?;
    let (kv_caches, kv_bytes) = cg.layout_kv(&order)?;
    let vocab = g.vocab_size().ok_or_else(|| {
        err("the graph has no logits output with a fixed last dim (the vocabulary)")
    })?;

    let (decode, decode_plan, decode_trace) = cg.phase(&order, 1, None)?;
    let (prefill, prefill_plan, prefill_trace) = cg.phase(&order, opts.max_prefill, None)?;
    // Generation needs the last row's logits only: a marked logits GEMM computes just that, and
    // the region keeps LOGITS_ROWS rows for callers that want every row (their prefill steps
    // take that many tokens at most). Logits written some other way take every prefill row.
    let marked = prefill
        .iter()
        .any(|s| matches!(s, Step::Gemm(g) if g.logits));
    cg.io.logits_rows = if marked {
        LOGITS_ROWS.min(opts.max_prefill)
    } else {
        opts.max_prefill
    };
    let io_end = layout::io_bytes(&cg.io, vocab);
    // The batching engine's step: up to max_prefill tokens of up to logits_rows sequences.
    let max_seqs = cg.io.logits_rows.min(opts.max_prefill).max(1);
    let (mut paged, io_bytes) = layout::paged_layout(
        &kv_caches,
        opts.block_size,
        max_context,
        opts.max_prefill,
        max_seqs,
        io_end,
    );
    cg.paging = Some(paging_of(&paged));
    let (paged_steps, paged_plan, paged_trace) =
        cg.phase(&order, opts.max_prefill, Some(PagedStep::Batch))?;
    let (chunk_steps, chunk_plan, chunk_trace) =
        cg.phase(&order, opts.max_prefill, Some(PagedStep::Chunk))?;
    let (single_steps, single_plan, single_trace) = cg.phase(&order, 1, Some(PagedStep::Single))?;
    paged.steps = paged_steps;
    paged.chunk_steps = chunk_steps;
    paged.single_steps = single_steps;
    let arena = decode_plan
        .arena_bytes
        .max(prefill_plan.arena_bytes)
        .max(paged_plan.arena_bytes)
        .max(chunk_plan.arena_bytes)
        .max(single_plan.arena_bytes);
    // Kernels rendered for launches that a merge replaced are left out.
    let used: HashSet<&str> = decode
        .iter()
        .chain(&prefill)
        .chain(&paged.steps)
        .chain(&paged.chunk_steps)
        .chain(&paged.single_steps)
        .filter_map(|s| match s {
            Step::Kernel(l) => Some(l.kernel.as_str()),
            Step::Gemm(_) | Step::Collective(_) => None,
        })
        .collect();
    let kernels: Vec<art::Kernel> = cg
        .kernels
        .into_values()
        .filter(|k| used.contains(k.name.as_str()))
        .map(KernelSource::into_artifact)
        .collect();
    let trace = Trace {
        decode: decode_trace,
        prefill: prefill_trace,
        paged: paged_trace,
        chunk: chunk_trace,
        single: single_trace,
    };
    let artifact = Artifact {
        format_version: art::FORMAT_VERSION,
        model,
        dtype: DType::BF16,
        max_batch: 1,
        tensor_parallel: g
            .is_sharded()
            .then_some(art::TensorParallel { ranks: g.ranks }),
        max_prefill: opts.max_prefill,
        max_context,
        regions: art::Regions {
            weights: weights_bytes,
            kv: kv_bytes,
            io: io_bytes,
            arena,
        },
        weights,
        kv_caches,
        io: cg.io,
        kernels,
        decode,
        prefill,
        paged,
        nvrtc_options: vec![
            "--std=c++17".into(),
            "--use_fast_math".into(),
            "-default-device".into(),
        ],
        memory: art::MemoryReport {
            decode_activation_bytes_unplanned: decode_plan.unplanned_bytes,
            decode_arena_bytes: decode_plan.arena_bytes,
            prefill_activation_bytes_unplanned: prefill_plan.unplanned_bytes,
            prefill_arena_bytes: prefill_plan.arena_bytes,
            alignment: memory::ALIGN,
        },
        reference_graph,
    };
    Ok((artifact, trace))
}

/// What both phases share: the graph, the fixed regions' layouts and the kernels rendered so
/// far (by name, so that identical kernels are emitted once).
struct Codegen<'a> {
    g: &'a Graph,
    kernels: BTreeMap<String, KernelSource>,
    weights: HashMap<NodeId, u64>,
    kv: HashMap<(usize, CacheKind), u64>,
    /// Offset in the KV region of each layer's attention span count, by its K cache's offset.
    attention_counts: HashMap<u64, u64>,
    max_context: usize,
    gemv: GemvTuning,
    attention_spans: usize,
    /// Query heads per block of the paged decode attention asked for (None: the default).
    paged_attention_heads: Option<usize>,
    /// Blocks per SM the paged decode attention's registers must allow (0: any).
    paged_attention_min_blocks: Option<usize>,
    /// Blocks per kv head the paged decode attention's splits aim at.
    paged_attention_target_blocks: usize,
    /// Elementwise and per-head kernels in wide pieces (CodegenOptions::wide_row_access).
    wide_row_access: bool,
    /// The chunk steps' attention in one pass (CodegenOptions::online_chunk_attention).
    online_chunk_attention: bool,
    /// The chunk attention kernels' launch bound (CodegenOptions::chunk_attention_min_blocks).
    chunk_attention_min_blocks: usize,
    /// The decode-batch projections as fused row GEMMs (CodegenOptions::fused_row_gemm).
    fused_row_gemm: bool,
    io: art::Io,
    /// The paged pool's layout, set for the paged phase.
    paging: Option<Paging>,
}

/// What the paged phase's kernels need of the pool and its io buffers.
#[derive(Clone, Debug)]
struct Paging {
    block_size: usize,
    /// bf16 elements of one block.
    block_elems: usize,
    max_blocks: usize,
    /// Byte offset within a block of each layer's keys or values.
    offsets: HashMap<(usize, CacheKind), u64>,
    slots: schedule::Val,
    seq_index: schedule::Val,
    block_tables: schedule::Val,
    /// The decode attention's per-(token, kv head) split counts.
    split_counts: schedule::Val,
}

fn paging_of(p: &art::Paged) -> Paging {
    let io = |offset| schedule::Val {
        place: schedule::Place::Region(art::Region::Io),
        offset,
        stride: 1,
    };
    Paging {
        block_size: p.block_size,
        block_elems: (p.block_bytes / 2) as usize,
        max_blocks: p.max_blocks_per_seq,
        offsets: p
            .pool
            .iter()
            .map(|e| ((e.layer, e.cache), e.offset))
            .collect(),
        slots: io(p.slots),
        seq_index: io(p.seq_index),
        block_tables: io(p.block_tables),
        split_counts: io(p.split_counts),
    }
}

impl Codegen<'_> {
    /// Renders a kernel (once per distinct source) and returns its name.
    fn kernel(&mut self, family: KernelFamily, t: &impl askama::Template) -> String {
        let k = render(family, t);
        let name = k.name.clone();
        self.kernels.entry(name.clone()).or_insert(k);
        name
    }
}

/// Elements per token row of a value (all fixed dims; the symbolic ones are batch/seq).
fn row_width(g: &Graph, id: NodeId) -> usize {
    g.node(id).ty.shape.fixed_product()
}

fn fixed(g: &Graph, id: NodeId, axis: usize) -> Result<usize, CompileError> {
    match g.node(id).ty.shape.0.get(axis) {
        Some(IrDim::Fixed(n)) => Ok(*n),
        other => Err(err(format!(
            "'{}': expected a fixed dim at axis {axis}, found {:?}",
            g.node(id).name,
            other
        ))),
    }
}

fn last(g: &Graph, id: NodeId) -> usize {
    g.node(id).ty.shape.fixed_product_last()
}

/// Whether a graph output reads the value (then it is written straight into the io region).
fn feeds_output(g: &Graph, id: NodeId) -> bool {
    g.users(id)
        .iter()
        .any(|&u| matches!(g.node(u).op, Op::Output(_)))
}

/// Whether the value is a tensor-parallel rank's part of the logits: its only reader an
/// `all_gather` that a graph output reads. Like the logits themselves, only the step's last
/// row is computed (and gathered) unless every row is asked for, so it needs at most
/// [`LOGITS_ROWS`] rows.
fn feeds_logits_gather(g: &Graph, id: NodeId) -> bool {
    matches!(g.users(id).as_slice(), [u]
        if matches!(g.node(*u).op, Op::AllGather { .. }) && feeds_output(g, *u))
}
