//! Codegen: the optimized graph becomes an [`Artifact`]: memory regions (weights, KV cache,
//! inputs/outputs, a planned activation arena), kernel sources from the templates, and two
//! launch lists, one for a decode step (one token: fused GEMV kernels) and one for prefill (up
//! to `max_prefill` tokens: cuBLAS GEMMs plus the same element/head kernels).

pub mod kernels;

use crate::error::CompileError;
use crate::ir::{Dim as IrDim, Graph, InputRole, NodeId, Op};
use crate::memory::{self, BufReq};
use kernels::*;
pub mod rope;
use pio_artifact::{self as art, Arg, Artifact, DType, Dim, KernelFamily, Region, Step};
use std::collections::{BTreeMap, HashMap};

/// Codegen settings.
#[derive(Clone, Debug)]
pub struct CodegenOptions {
    /// Most tokens in one prefill step.
    pub max_prefill: usize,
    /// KV-cache length; at most the spec's bound (default: the bound, capped at 32,768).
    pub max_context: Option<usize>,
    /// Launch shape of the decode GEMVs.
    pub gemv: GemvTuning,
    /// Spans per kv head of the decode attention, at most (a tuning knob).
    pub attention_spans: usize,
}

impl Default for CodegenOptions {
    fn default() -> Self {
        CodegenOptions {
            max_prefill: DEFAULT_PREFILL,
            max_context: None,
            gemv: GemvTuning::default(),
            attention_spans: ATTENTION_SPANS,
        }
    }
}

/// Launch shape of the decode GEMV kernels (a tuning knob: every setting computes the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemvTuning {
    /// Warps per block.
    pub warps: usize,
    /// Output rows per warp iteration for matrices of at least 2,048 rows (SwiGLU: always 1).
    pub tall_rows: usize,
    /// Most blocks per launch (warps loop over the remaining rows).
    pub max_blocks: usize,
    /// Most 16-byte loads per lane and row issued before their FMAs.
    pub max_unroll: usize,
}

impl Default for GemvTuning {
    fn default() -> Self {
        GemvTuning {
            warps: 8,
            tall_rows: 1,
            // Enough that every warp gets one row group for all but the LM head, which loops
            // (H100: 132 SMs).
            max_blocks: 32 * 132,
            max_unroll: 12,
        }
    }
}

impl GemvTuning {
    /// Reads `warps=8,rows=2,blocks=4224,unroll=10` (any subset; the rest stay default).
    pub fn parse(text: &str) -> Result<GemvTuning, String> {
        let mut t = GemvTuning::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("GEMV setting '{part}' is not key=value"))?;
            let v: usize = value.parse().ok().filter(|&v| v > 0).ok_or_else(|| {
                format!("GEMV setting '{key}': '{value}' is not a positive integer")
            })?;
            match key {
                "warps" if v <= 32 => t.warps = v,
                "rows" if v <= 4 => t.tall_rows = v,
                "blocks" => t.max_blocks = v,
                "unroll" if v <= 16 => t.max_unroll = v,
                "warps" | "rows" | "unroll" => {
                    return Err(format!("GEMV setting '{key}={v}' is out of range"))
                }
                _ => {
                    return Err(format!(
                        "unknown GEMV setting '{key}' (warps, rows, blocks, unroll)"
                    ))
                }
            }
        }
        Ok(t)
    }
}

/// The KV-cache length when none is asked for: the spec's bound, at most this.
pub const DEFAULT_CONTEXT_CAP: usize = 32_768;
/// Most tokens per prefill step when none is asked for.
pub const DEFAULT_PREFILL: usize = 512;
/// Blocks per kv head in the decode attention kernel's cluster (the portable cluster size).
const ATTENTION_CLUSTER: usize = 8;
/// Positions per block of the decode attention's shortest spans: a cluster spans 8 x 64 = 512
/// positions (128 was slower at 1,024).
const ATTENTION_SCORES_PER_BLOCK: usize = 64;
/// Spans (clusters) per kv head of the decode attention at most, by default: longer contexts
/// take longer spans. H100, tensor-core kernel, 0.6B / 4B decode tokens/s at 4,096 and 16,384
/// positions (two calls): 8 spans 807 / 244 and 561 / 205; 6 spans 803 / 245 and 551 / 201;
/// 5 spans 949-948 / 256 and 609-617 / 216-217; 4 spans 868-876 / 256 and 589-594 / 214-215.
pub const ATTENTION_SPANS: usize = 5;
/// The most spans per kv head a front end accepts for the decode attention.
pub const MAX_ATTENTION_SPANS: usize = 1024;
/// Rows of logits the io region holds for callers that want every prompt row's logits (parity
/// checks, `pio logits`): 128 x 151,936 bf16 = 39 MB, where `max_prefill` rows took 156 MB at
/// 512 and 622 MB at 2,048.
const LOGITS_ROWS: usize = 128;
/// Threads per block of the decode attention.
const ATTENTION_THREADS: usize = 128;
/// Key (and value) rows a warp of the decode attention loads per round (tensor-core paths).
const ATTENTION_ROWS_PER_WARP: usize = 32;
/// Rounds of rows a warp of the decode attention streams into L2 ahead of its loads.
const ATTENTION_PREFETCH_ROUNDS: usize = 1;
/// Static shared memory a kernel may use.
const STATIC_SHARED: usize = 48 << 10;

/// How the decode attention kernel is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeAttentionShape {
    /// The tensor-core paths (d = 128, at most 8 query heads per kv head): q.k and P.V with
    /// `mma.sync`, key and value rows loaded straight into the fragments.
    pub vec: bool,
    /// Positions per block at most; their scores stay in shared memory.
    pub per_block: usize,
    /// Spans (clusters of blocks) per kv head at most.
    pub spans: usize,
}

/// The decode attention for `group` query heads per kv head of `d` dims and a KV cache of
/// `max_context` positions, with at most `spans` spans per kv head (more where the scores of
/// fewer would not fit the static shared memory); None when nothing fits.
pub fn decode_attention_shape(
    group: usize,
    d: usize,
    max_context: usize,
    spans: usize,
) -> Option<DecodeAttentionShape> {
    // Queries, scores, softmax state, partial sums, the spans' weights and (vector path) the
    // warps' sums, all f32.
    let shared = |vec: bool, per: usize, spans: usize| {
        4 * group * (2 * d + per + 4 + spans + if vec { ATTENTION_THREADS / 32 * d } else { 0 })
    };
    let fit = |vec: bool| {
        let mut spans = max_context
            .div_ceil(ATTENTION_CLUSTER * ATTENTION_SCORES_PER_BLOCK)
            .clamp(1, spans.max(1));
        loop {
            let per_block = max_context.div_ceil(ATTENTION_CLUSTER * spans).max(1);
            if shared(vec, per_block, spans) <= STATIC_SHARED {
                return Some(DecodeAttentionShape {
                    vec,
                    per_block,
                    spans,
                });
            }
            if per_block == 1 {
                return None;
            }
            spans *= 2;
        }
    };
    if d == 128 && group <= 8 {
        fit(true).or_else(|| fit(false))
    } else {
        fit(false)
    }
}

const WARPS: usize = 4;
/// What a decode GEMV's warps prefetch into L2 (H100: 50 MB) before their first rows, in all.
const GEMV_L2_PREFETCH_BYTES: usize = 16 << 20;
/// Tokens per block of the tensor-core prefill attention (BQ in attention_mma.cu), and its threads.
const PREFILL_ATTENTION_TOKENS: u32 = 64;
const PREFILL_ATTENTION_THREADS: u32 = 128;
/// Keys per query whose scores the prefill attention keeps in shared memory (16 KB).
const ATTENTION_SCORES_IN_SHARED: usize = 4096;
fn err(msg: impl Into<String>) -> CompileError {
    CompileError::Options(format!("codegen: {}", msg.into()))
}

/// Where a value lives: a fixed region offset or an arena buffer, and the elements per token
/// row of the buffer it is in (views of wider rows keep their base's stride).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Val {
    place: Place,
    offset: u64,
    stride: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    Region(Region),
    Buf(usize),
}

/// A step whose arena pointers are not resolved yet.
enum Pending {
    Kernel {
        kernel: String,
        node: String,
        grid: [Dim; 3],
        block: [u32; 3],
        args: Vec<PArg>,
        /// The per-head op's context (head_op kernels), for merging launches.
        head: Option<Box<HeadOp>>,
    },
    Gemm {
        node: String,
        n: u32,
        k: u32,
        a: Val,
        lda: u32,
        b: Val,
        c: Val,
        ldc: u32,
        beta: f32,
        /// Writes the step's logits (see `art::Gemm::logits`).
        logits: bool,
    },
}

enum PArg {
    Ptr(Val),
    Tokens,
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
    if opts.max_prefill == 0 || opts.max_prefill > 65_535 {
        return Err(err("max prefill must be between 1 and 65535 tokens"));
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
        io: art::Io {
            tokens: 0,
            positions: 0,
            logits: 0,
            logits_dtype: DType::BF16,
            logits_rows: 0,
        },
    };
    let (weights, weights_bytes) = cg.layout_weights(&order)?;
    let (kv_caches, kv_bytes) = cg.layout_kv(&order)?;
    let vocab = g.vocab_size().ok_or_else(|| {
        err("the graph has no logits output with a fixed last dim (the vocabulary)")
    })?;
    let align = |n: u64| n.div_ceil(memory::ALIGN) * memory::ALIGN;
    let mp = opts.max_prefill as u64;
    cg.io.positions = align(4 * mp);
    cg.io.logits = cg.io.positions + align(4 * mp);

    let (decode, decode_plan) = cg.phase(&order, 1)?;
    let (prefill, prefill_plan) = cg.phase(&order, opts.max_prefill)?;
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
    let io_bytes = cg.io.logits + align(2 * cg.io.logits_rows as u64 * vocab as u64);
    let arena = decode_plan.arena_bytes.max(prefill_plan.arena_bytes);
    let used: std::collections::HashSet<&str> = decode
        .iter()
        .chain(&prefill)
        .filter_map(|s| match s {
            Step::Kernel(l) => Some(l.kernel.as_str()),
            Step::Gemm(_) => None,
        })
        .collect();
    let kernels: Vec<art::Kernel> = cg
        .kernels
        .into_values()
        .filter(|k| used.contains(k.name.as_str()))
        .map(KernelSource::into_artifact)
        .collect();
    Ok(Artifact {
        format_version: art::FORMAT_VERSION,
        model,
        dtype: DType::BF16,
        max_batch: 1,
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
    })
}

struct Codegen<'a> {
    g: &'a Graph,
    kernels: BTreeMap<String, KernelSource>,
    weights: HashMap<NodeId, u64>,
    kv: HashMap<(usize, crate::ir::CacheKind), u64>,
    /// Offset in the KV region of each layer's attention span count, by its K cache's offset.
    attention_counts: HashMap<u64, u64>,
    max_context: usize,
    gemv: GemvTuning,
    attention_spans: usize,
    io: art::Io,
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

impl Codegen<'_> {
    fn layout_weights(
        &mut self,
        order: &[NodeId],
    ) -> Result<(Vec<art::WeightEntry>, u64), CompileError> {
        let mut entries = Vec::new();
        let mut off = 0u64;
        for &id in order {
            let n = self.g.node(id);
            let Op::Weight(b) = &n.op else { continue };
            let shape =
                n.ty.shape
                    .as_fixed()
                    .ok_or_else(|| err(format!("weight '{}' is not static", n.name)))?;
            let bytes = (shape.iter().product::<usize>() * n.ty.dtype.size()) as u64;
            let parts = if b.concat.is_empty() {
                vec![art::WeightPart {
                    hf_name: b.hf_name.clone(),
                    rows: shape[0],
                }]
            } else {
                b.concat
                    .iter()
                    .map(|(name, rows)| art::WeightPart {
                        hf_name: name.clone(),
                        rows: *rows,
                    })
                    .collect()
            };
            entries.push(art::WeightEntry {
                name: n.name.clone(),
                parts,
                tied: b.tied.clone(),
                shape,
                dtype: n.ty.dtype,
                offset: off,
                bytes,
                init: b.init,
            });
            self.weights.insert(id, off);
            off += bytes.div_ceil(memory::ALIGN) * memory::ALIGN;
        }
        Ok((entries, off))
    }

    fn layout_kv(&mut self, order: &[NodeId]) -> Result<(Vec<art::KvEntry>, u64), CompileError> {
        let mut entries = Vec::new();
        let mut off = 0u64;
        for &id in order {
            let n = self.g.node(id);
            if matches!(n.op, Op::KvAppend { .. }) {
                return Err(err(
                    "the graph still has kv_append: codegen needs the kv-cache pass",
                ));
            }
            let Some((layer, cache)) = n.op.writes_cache() else {
                continue;
            };
            let (kvh, d) = (fixed(self.g, id, 2)?, fixed(self.g, id, 3)?);
            // [batch, kv head, position, dim]: each kv head's rows are contiguous.
            let shape = vec![1, kvh, self.max_context, d];
            let bytes = (shape.iter().product::<usize>() * n.ty.dtype.size()) as u64;
            entries.push(art::KvEntry {
                layer,
                cache,
                shape,
                offset: off,
                bytes,
            });
            self.kv.insert((layer, cache), off);
            off += bytes.div_ceil(memory::ALIGN) * memory::ALIGN;
            if cache == crate::ir::CacheKind::K {
                // The decode attention's per-kv-head count of finished spans (it returns to 0
                // after every step; the region is zeroed at load), keyed by the K cache.
                self.attention_counts.insert(self.kv[&(layer, cache)], off);
                off += (kvh as u64 * 4).div_ceil(memory::ALIGN) * memory::ALIGN;
            }
        }
        Ok((entries, off))
    }

    fn kernel(&mut self, family: KernelFamily, t: &impl askama::Template) -> String {
        let k = render(family, t);
        let name = k.name.clone();
        self.kernels.entry(name.clone()).or_insert(k);
        name
    }

    /// Lowers the graph for steps of `tokens` tokens and plans its arena.
    fn phase(
        &mut self,
        order: &[NodeId],
        tokens: usize,
    ) -> Result<(Vec<Step>, memory::Plan), CompileError> {
        let g = self.g;
        let decode = tokens == 1;
        let position: HashMap<NodeId, usize> =
            order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        // The last node (in schedule order) that reads each value, through views.
        let mut last_reader: HashMap<NodeId, usize> = HashMap::new();
        for &id in order.iter().rev() {
            let mut latest = 0;
            for u in g.users(id) {
                let t = if g.node(u).op.is_view() {
                    last_reader.get(&u).copied().unwrap_or(position[&u])
                } else {
                    position[&u]
                };
                latest = latest.max(t);
            }
            last_reader.insert(id, latest);
        }
        let mut vals: HashMap<NodeId, Val> = HashMap::new();
        let mut bufs: Vec<(u64, String)> = Vec::new();
        let mut steps: Vec<Pending> = Vec::new();
        let new_buf = |bufs: &mut Vec<(u64, String)>, bytes: u64, name: String| {
            bufs.push((bytes, name));
            bufs.len() - 1
        };
        let t = tokens as u64;
        for &id in order {
            let node = g.node(id);
            let a = g.operands(id);
            let width = row_width(g, id);
            let name = node.name.clone();
            let feeds_output = g
                .users(id)
                .iter()
                .any(|&u| matches!(g.node(u).op, Op::Output(_)));
            // The value's own storage (for ops that make a new value).
            let out_val = |bufs: &mut Vec<(u64, String)>| -> Val {
                if feeds_output {
                    Val {
                        place: Place::Region(Region::Io),
                        offset: self.io.logits,
                        stride: width,
                    }
                } else {
                    let b = new_buf(bufs, t * width as u64 * 2, name.clone());
                    Val {
                        place: Place::Buf(b),
                        offset: 0,
                        stride: width,
                    }
                }
            };
            let v = |i: usize| vals[&a[i]];
            let val = match &node.op {
                Op::Input(role) => {
                    let offset = match role {
                        InputRole::TokenIds => self.io.tokens,
                        InputRole::Positions => self.io.positions,
                    };
                    Val {
                        place: Place::Region(Region::Io),
                        offset,
                        stride: 1,
                    }
                }
                Op::Weight(_) => Val {
                    place: Place::Region(Region::Weights),
                    offset: self.weights[&id],
                    stride: last(g, id),
                },
                Op::Reshape { .. } => v(0),
                Op::Slice { start, .. } => Val {
                    offset: v(0).offset + *start as u64 * 2,
                    ..v(0)
                },
                Op::Output(_) => {
                    if v(0).place != Place::Region(Region::Io) {
                        return Err(err(format!("output '{name}' is not in the io region")));
                    }
                    v(0)
                }
                Op::Embed => {
                    let out = out_val(&mut bufs);
                    let dim = last(g, id);
                    let k = self.kernel(
                        KernelFamily::Embed,
                        &Embed {
                            name: PLACEHOLDER,
                            doc: "embedding lookup".into(),
                            dim,
                            vec8: dim % 8 == 0,
                        },
                    );
                    steps.push(launch(
                        k,
                        &name,
                        [Dim::PerToken(1), Dim::Fixed(1), Dim::Fixed(1)],
                        128,
                        vec![PArg::Ptr(v(1)), PArg::Ptr(v(0)), PArg::Ptr(out)],
                    ));
                    out
                }
                Op::Linear
                | Op::NormLinear { .. }
                | Op::LinearAdd
                | Op::NormLinearSwiGlu { .. } => self.projection(
                    id,
                    &a,
                    &vals,
                    &mut bufs,
                    &mut steps,
                    decode,
                    tokens,
                    &last_reader,
                    &position,
                    feeds_output,
                )?,
                Op::RmsNorm { eps } if node.ty.shape.rank() == 4 => {
                    let out = out_val(&mut bufs);
                    self.head_op(id, v(0), Some((v(1), *eps)), None, None, out, &mut steps)?;
                    out
                }
                Op::RmsNorm { eps } => {
                    let out = out_val(&mut bufs);
                    let dim = last(g, id);
                    let k = self.rmsnorm_kernel(dim, *eps, v(0).stride);
                    steps.push(launch(
                        k,
                        &name,
                        per_token(),
                        256,
                        vec![PArg::Ptr(v(0)), PArg::Ptr(v(1)), PArg::Ptr(out)],
                    ));
                    out
                }
                Op::Rope { theta } => {
                    let out = out_val(&mut bufs);
                    self.head_op(id, v(0), None, Some((*theta, v(1))), None, out, &mut steps)?;
                    out
                }
                Op::NormRope { eps, theta } => {
                    let out = out_val(&mut bufs);
                    self.head_op(
                        id,
                        v(0),
                        Some((v(1), *eps)),
                        Some((*theta, v(2))),
                        None,
                        out,
                        &mut steps,
                    )?;
                    out
                }
                Op::KvWrite { layer, cache } => {
                    let out = Val {
                        place: Place::Region(Region::Kv),
                        offset: self.kv[&(*layer, *cache)],
                        stride: width,
                    };
                    self.head_op(id, v(0), None, None, Some(v(1)), out, &mut steps)?;
                    out
                }
                Op::NormRopeKvWrite {
                    eps,
                    theta,
                    layer,
                    cache,
                } => {
                    let out = Val {
                        place: Place::Region(Region::Kv),
                        offset: self.kv[&(*layer, *cache)],
                        stride: width,
                    };
                    self.head_op(
                        id,
                        v(0),
                        Some((v(1), *eps)),
                        Some((*theta, v(2))),
                        Some(v(2)),
                        out,
                        &mut steps,
                    )?;
                    out
                }
                Op::Attention { scale } => {
                    let out = out_val(&mut bufs);
                    let (heads, d) = (fixed(g, id, 2)?, fixed(g, id, 3)?);
                    let kv_heads = fixed(g, a[1], 2)?;
                    let prefill_ctx = Attention {
                        name: PLACEHOLDER,
                        doc: "causal GQA attention (prefill)".into(),
                        heads,
                        kv_heads,
                        d,
                        warps: WARPS,
                        scale: CudaF32(*scale as f32),
                        q_stride: v(0).stride,
                        sc_max: self.max_context.min(ATTENTION_SCORES_IN_SHARED),
                        ctx: self.max_context,
                    };
                    if decode {
                        let ctx = self.max_context;
                        let mut scratch = |bytes: usize, what: &str| Val {
                            place: Place::Buf(new_buf(
                                &mut bufs,
                                bytes as u64,
                                format!("{name}.{what}"),
                            )),
                            offset: 0,
                            stride: 0,
                        };
                        let group = heads / kv_heads;
                        let shape = decode_attention_shape(group, d, ctx, self.attention_spans)
                            .ok_or_else(|| {
                                err(format!(
                                    "'{name}': decode attention with {group} query heads per kv head of {d} dims does not fit in shared memory"
                                ))
                            })?;
                        let slots = ATTENTION_CLUSTER * shape.spans;
                        let span_out = scratch(heads * slots * d * 4, "span_out");
                        let span_state = scratch(heads * slots * 2 * 4, "span_state");
                        let count = Val {
                            place: Place::Region(Region::Kv),
                            offset: *self.attention_counts.get(&v(1).offset).ok_or_else(|| {
                                err(format!("'{name}': its keys are not a layer's K cache"))
                            })?,
                            stride: 0,
                        };
                        let k = self.kernel(
                            KernelFamily::AttentionCluster,
                            &AttentionCluster {
                                name: PLACEHOLDER,
                                doc: "decode attention, a cluster of blocks per kv head".into(),
                                heads,
                                kv_heads,
                                d,
                                scale: CudaF32(*scale as f32),
                                ctx,
                                cluster: ATTENTION_CLUSTER,
                                per_block: shape.per_block,
                                per_min: shape.per_block.min(ATTENTION_SCORES_PER_BLOCK),
                                spans: shape.spans,
                                vec: shape.vec,
                                threads: ATTENTION_THREADS,
                                rows_per_warp: ATTENTION_ROWS_PER_WARP,
                                prefetch_rounds: ATTENTION_PREFETCH_ROUNDS,
                            },
                        );
                        steps.push(launch(
                            k,
                            &name,
                            [
                                Dim::Fixed(kv_heads as u32),
                                Dim::Fixed(slots as u32),
                                Dim::Fixed(1),
                            ],
                            ATTENTION_THREADS as u32,
                            vec![
                                PArg::Ptr(v(0)),
                                PArg::Ptr(v(1)),
                                PArg::Ptr(v(2)),
                                PArg::Ptr(v(3)),
                                PArg::Ptr(span_out),
                                PArg::Ptr(span_state),
                                PArg::Ptr(count),
                                PArg::Ptr(out),
                            ],
                        ));
                    } else if d % 16 == 0 && d <= 128 {
                        // Tensor cores: a block per query head and 64 tokens.
                        let k = self.kernel(
                            KernelFamily::AttentionMma,
                            &AttentionMma {
                                name: PLACEHOLDER,
                                doc: "causal GQA attention (prefill, tensor cores)".into(),
                                heads,
                                kv_heads,
                                d,
                                scale: CudaF32(*scale as f32),
                                q_stride: v(0).stride,
                                ctx: self.max_context,
                            },
                        );
                        steps.push(launch(
                            k,
                            &name,
                            [
                                Dim::Fixed(heads as u32),
                                Dim::TokenTiles(PREFILL_ATTENTION_TOKENS),
                                Dim::Fixed(1),
                            ],
                            PREFILL_ATTENTION_THREADS,
                            vec![
                                PArg::Ptr(v(0)),
                                PArg::Ptr(v(1)),
                                PArg::Ptr(v(2)),
                                PArg::Ptr(v(3)),
                                PArg::Ptr(out),
                                PArg::Tokens,
                            ],
                        ));
                    } else {
                        let k = self.kernel(KernelFamily::Attention, &prefill_ctx);
                        steps.push(launch(
                            k,
                            &name,
                            [Dim::Fixed(heads as u32), Dim::PerToken(1), Dim::Fixed(1)],
                            (WARPS * 32) as u32,
                            vec![
                                PArg::Ptr(v(0)),
                                PArg::Ptr(v(1)),
                                PArg::Ptr(v(2)),
                                PArg::Ptr(v(3)),
                                PArg::Ptr(out),
                            ],
                        ));
                    }
                    out
                }
                Op::Silu | Op::Mul | Op::Add | Op::SiluMul => {
                    let out = out_val(&mut bufs);
                    let (expr, b) = match node.op {
                        Op::Silu => ("silu(x)", v(0)),
                        Op::Mul => ("x * y", v(1)),
                        Op::Add => ("x + y", v(1)),
                        _ => ("rbf(silu(x)) * y", v(1)),
                    };
                    let k = self.elementwise(width, v(0).stride, b.stride, expr);
                    steps.push(elementwise_launch(k, &name, width, v(0), b, out));
                    out
                }
                Op::MatMul | Op::KvAppend { .. } => {
                    return Err(err(format!(
                        "'{name}': {} has no kernel yet",
                        node.op.name()
                    )))
                }
            };
            vals.insert(id, val);
        }
        let steps = self.merge_head_ops(steps);
        // Lifetimes of arena buffers over the steps.
        let mut span: Vec<(usize, usize)> = vec![(usize::MAX, 0); bufs.len()];
        for (i, s) in steps.iter().enumerate() {
            let mut touch = |v: &Val| {
                if let Place::Buf(b) = v.place {
                    span[b].0 = span[b].0.min(i);
                    span[b].1 = span[b].1.max(i);
                }
            };
            match s {
                Pending::Kernel { args, .. } => args.iter().for_each(|a| {
                    if let PArg::Ptr(v) = a {
                        touch(v)
                    }
                }),
                Pending::Gemm { a, b, c, .. } => {
                    touch(a);
                    touch(b);
                    touch(c);
                }
            }
        }
        let reqs: Vec<BufReq> = bufs
            .iter()
            .zip(&span)
            .map(|((bytes, name), &(first, last))| BufReq {
                bytes: *bytes,
                first: first.min(last),
                last,
                inplace_of: None,
                name: name.clone(),
            })
            .collect();
        let plan = memory::plan(&reqs);
        memory::check(&reqs, &plan).map_err(err)?;
        let resolve = |v: &Val| match v.place {
            Place::Region(region) => Arg::Ptr {
                region,
                offset: v.offset,
            },
            Place::Buf(b) => Arg::Ptr {
                region: Region::Arena,
                offset: plan.offsets[b] + v.offset,
            },
        };
        let steps = steps
            .into_iter()
            .map(|s| match s {
                Pending::Kernel {
                    kernel,
                    node,
                    grid,
                    block,
                    args,
                    ..
                } => Step::Kernel(art::Launch {
                    kernel,
                    node,
                    grid,
                    block,
                    shared_bytes: 0,
                    args: args
                        .iter()
                        .map(|a| match a {
                            PArg::Ptr(v) => resolve(v),
                            PArg::Tokens => Arg::Tokens,
                        })
                        .collect(),
                }),
                Pending::Gemm {
                    node,
                    n,
                    k,
                    a,
                    lda,
                    b,
                    c,
                    ldc,
                    beta,
                    logits,
                } => Step::Gemm(art::Gemm {
                    node,
                    m: Dim::PerToken(1),
                    n,
                    k,
                    a: resolve(&a),
                    lda,
                    b: resolve(&b),
                    c: resolve(&c),
                    ldc,
                    beta,
                    logits,
                }),
            })
            .collect();
        Ok((steps, plan))
    }

    /// The four projection ops: fused GEMV kernels in decode, GEMMs (with norm and epilogue
    /// kernels around them) in prefill.
    #[allow(clippy::too_many_arguments)]
    fn projection(
        &mut self,
        id: NodeId,
        a: &[NodeId],
        vals: &HashMap<NodeId, Val>,
        bufs: &mut Vec<(u64, String)>,
        steps: &mut Vec<Pending>,
        decode: bool,
        tokens: usize,
        last_reader: &HashMap<NodeId, usize>,
        position: &HashMap<NodeId, usize>,
        feeds_output: bool,
    ) -> Result<Val, CompileError> {
        let g = self.g;
        let node = g.node(id);
        let name = node.name.clone();
        let (x, w) = match node.op {
            Op::Linear | Op::LinearAdd => (vals[&a[0]], a[1]),
            _ => (vals[&a[0]], a[2]),
        };
        let wv = vals[&w];
        let (rows, k) = (fixed(g, w, 0)?, fixed(g, w, 1)?);
        let width = row_width(g, id);
        let t = tokens as u64;
        let fresh = |bufs: &mut Vec<(u64, String)>, bytes: u64, what: &str| {
            bufs.push((bytes, format!("{name}{what}")));
            Val {
                place: Place::Buf(bufs.len() - 1),
                offset: 0,
                stride: 0,
            }
        };
        // LinearAdd writes in place over its residual when nothing reads the residual later
        // (both kernels are alias-safe: each output element is read then written by one thread).
        let residual = matches!(node.op, Op::LinearAdd).then(|| vals[&a[2]]);
        let out = if feeds_output {
            Val {
                place: Place::Region(Region::Io),
                offset: self.io.logits,
                stride: width,
            }
        } else if let (Some(r), true) = (residual, residual.is_some()) {
            let dies_here = last_reader.get(&a[2]) == Some(&position[&id]);
            if dies_here && matches!(r.place, Place::Buf(_)) && r.offset == 0 && r.stride == width {
                r
            } else {
                let b = fresh(bufs, t * width as u64 * 2, "");
                Val { stride: width, ..b }
            }
        } else {
            let b = fresh(bufs, t * width as u64 * 2, "");
            Val { stride: width, ..b }
        };
        let eps = match node.op {
            Op::NormLinear { eps } | Op::NormLinearSwiGlu { eps } => Some(eps),
            _ => None,
        };
        let norm_w = eps.map(|_| vals[&a[1]]);
        let swiglu = matches!(node.op, Op::NormLinearSwiGlu { .. });
        if decode {
            let n = if swiglu { rows / 2 } else { rows };
            let tune = self.gemv;
            let rows = if n >= 2048 && !swiglu {
                tune.tall_rows
            } else {
                1
            };
            let blocks = n.div_ceil(tune.warps * rows).min(tune.max_blocks);
            let single_pass = blocks * tune.warps * rows >= n;
            let unroll = k.div_ceil(256).clamp(1, tune.max_unroll);
            // Rows that warps start on, and the L2 share each may prefetch.
            let first_rows = n.min(blocks * tune.warps * rows) * if swiglu { 2 } else { 1 };
            let l2_prefetch = if k % 8 == 0 {
                (k * 2).min(GEMV_L2_PREFETCH_BYTES / first_rows / 16 * 16)
            } else {
                0
            };
            let kname = self.kernel(
                KernelFamily::Gemv,
                &Gemv {
                    name: PLACEHOLDER,
                    doc: node.op.name().into(),
                    k,
                    n,
                    warps: tune.warps,
                    eps: CudaF32(eps.unwrap_or(1e-6) as f32),
                    norm: eps.is_some(),
                    residual: residual.is_some(),
                    swiglu,
                    vec8: k % 8 == 0,
                    unroll,
                    rows,
                    prefetch: k % 8 == 0 && (k <= 1024 || (single_pass && k <= 256 * unroll)),
                    single_pass,
                    l2_prefetch: if l2_prefetch >= 512 { l2_prefetch } else { 0 },
                },
            );
            let blocks = blocks as u32;
            steps.push(launch(
                kname,
                &name,
                [Dim::Fixed(blocks), Dim::Fixed(1), Dim::Fixed(1)],
                (tune.warps * 32) as u32,
                vec![
                    PArg::Ptr(x),
                    PArg::Ptr(norm_w.unwrap_or(x)),
                    PArg::Ptr(wv),
                    PArg::Ptr(residual.unwrap_or(out)),
                    PArg::Ptr(out),
                ],
            ));
            return Ok(out);
        }
        // Prefill: normalize into a scratch buffer, GEMM, then the epilogue.
        let (a_val, lda) = match (eps, norm_w) {
            (Some(eps), Some(nw)) => {
                let s = fresh(bufs, t * k as u64 * 2, ".normed");
                let kn = self.rmsnorm_kernel(k, eps, x.stride);
                steps.push(launch(
                    kn,
                    &name,
                    per_token(),
                    256,
                    vec![PArg::Ptr(x), PArg::Ptr(nw), PArg::Ptr(s)],
                ));
                (s, k)
            }
            _ => (x, x.stride),
        };
        if let Some(r) = residual {
            if r != out {
                let kc = self.elementwise(width, r.stride, r.stride, "x");
                steps.push(elementwise_launch(kc, &name, width, r, r, out));
            }
        }
        let c = if swiglu {
            fresh(bufs, t * rows as u64 * 2, ".gate_up")
        } else {
            out
        };
        steps.push(Pending::Gemm {
            node: name.clone(),
            n: rows as u32,
            k: k as u32,
            a: a_val,
            lda: lda as u32,
            b: wv,
            c,
            ldc: rows as u32,
            beta: if residual.is_some() { 1.0 } else { 0.0 },
            // The logits' rows come from this GEMM alone (no residual copy, no epilogue).
            logits: feeds_output && residual.is_none() && !swiglu,
        });
        if swiglu {
            let half = rows / 2;
            let gate = Val { stride: rows, ..c };
            let up = Val {
                offset: c.offset + half as u64 * 2,
                stride: rows,
                ..c
            };
            let ke = self.elementwise(half, rows, rows, "rbf(silu(x)) * y");
            steps.push(elementwise_launch(ke, &name, half, gate, up, out));
        }
        Ok(out)
    }

    fn rmsnorm_kernel(&mut self, dim: usize, eps: f64, in_stride: usize) -> String {
        self.kernel(
            KernelFamily::RmsNorm,
            &RmsNorm {
                name: PLACEHOLDER,
                doc: "RMSNorm".into(),
                dim,
                eps: CudaF32(eps as f32),
                in_stride,
                threads: 256,
            },
        )
    }

    fn elementwise(
        &mut self,
        cols: usize,
        a_stride: usize,
        b_stride: usize,
        expr: &'static str,
    ) -> String {
        self.kernel(
            KernelFamily::Elementwise,
            &Elementwise {
                name: PLACEHOLDER,
                doc: format!("elementwise: {expr}"),
                cols,
                a_stride,
                b_stride,
                expr,
            },
        )
    }

    /// A per-head kernel: optional norm (weight, eps), optional rope (theta, positions),
    /// written to `out` or, with `cache_positions`, into the KV cache.
    #[allow(clippy::too_many_arguments)]
    fn head_op(
        &mut self,
        id: NodeId,
        x: Val,
        norm: Option<(Val, f64)>,
        rope: Option<(f64, Val)>,
        cache_positions: Option<Val>,
        out: Val,
        steps: &mut Vec<Pending>,
    ) -> Result<(), CompileError> {
        let g = self.g;
        let name = g.node(id).name.clone();
        let src = g.operands(id)[0];
        let (heads, d) = (fixed(g, src, 2)?, fixed(g, src, 3)?);
        // Positions are read only with rope or a cache write; otherwise any pointer will do.
        let positions = rope.map(|r| r.1).or(cache_positions).unwrap_or(x);
        let ctx = HeadOp {
            name: PLACEHOLDER,
            device_fn: false,
            doc: g.node(id).op.name().into(),
            heads,
            d,
            warps: WARPS,
            eps: CudaF32(norm.map_or(1e-6, |n| n.1) as f32),
            inv_freq: rope.map_or(Vec::new(), |r| {
                rope::inv_freq(r.0, d).into_iter().map(CudaF32).collect()
            }),
            in_stride: x.stride,
            norm: norm.is_some(),
            rope: rope.is_some(),
            to_cache: cache_positions.is_some(),
            ctx: self.max_context,
        };
        let k = self.kernel(KernelFamily::HeadOp, &ctx);
        let mut step = launch(
            k,
            &name,
            [
                Dim::PerToken(1),
                Dim::Fixed(heads.div_ceil(WARPS) as u32),
                Dim::Fixed(1),
            ],
            (WARPS * 32) as u32,
            vec![
                PArg::Ptr(x),
                PArg::Ptr(norm.map_or(x, |n| n.0)),
                PArg::Ptr(positions),
                PArg::Ptr(out),
            ],
        );
        if let Pending::Kernel { head, .. } = &mut step {
            *head = Some(Box::new(ctx));
        }
        steps.push(step);
        Ok(())
    }

    /// Merges runs of adjacent, independent per-head launches (a layer's Q, K and V head ops)
    /// into one launch of a `head_ops` kernel; returns the new list.
    fn merge_head_ops(&mut self, steps: Vec<Pending>) -> Vec<Pending> {
        let mut out: Vec<Pending> = Vec::with_capacity(steps.len());
        let mut run: Vec<Pending> = Vec::new();
        let flush = |this: &mut Self, run: &mut Vec<Pending>, out: &mut Vec<Pending>| {
            if run.len() < 2 {
                out.append(run);
                return;
            }
            let mut bodies = String::new();
            let (mut args, mut nodes, mut ys) = (Vec::new(), Vec::new(), Vec::new());
            for (i, p) in run.drain(..).enumerate() {
                let Pending::Kernel {
                    node,
                    grid,
                    args: a,
                    head: Some(h),
                    ..
                } = p
                else {
                    unreachable!("runs hold head ops only")
                };
                let name: &'static str = ["op0", "op1", "op2", "op3"][i];
                let body = HeadOp {
                    name,
                    device_fn: true,
                    ..(*h).clone()
                };
                bodies.push_str(&askama::Template::render(&body).expect("plain values render"));
                bodies.push('\n');
                args.extend(a);
                nodes.push(node);
                ys.push(match grid[1] {
                    Dim::Fixed(y) | Dim::PerToken(y) | Dim::TokenTiles(y) => y,
                });
            }
            let n = nodes.len();
            let k = this.kernel(
                KernelFamily::HeadOps,
                &HeadOps {
                    name: PLACEHOLDER,
                    doc: format!("{n} per-head ops in one launch"),
                    bodies,
                    n,
                },
            );
            let grid = [
                Dim::PerToken(1),
                Dim::Fixed(ys.into_iter().max().unwrap_or(1)),
                Dim::Fixed(n as u32),
            ];
            out.push(launch(k, &nodes.join("+"), grid, (WARPS * 32) as u32, args));
        };
        for step in steps {
            let mergeable = matches!(&step, Pending::Kernel { head: Some(_), .. });
            let independent = mergeable && {
                let Pending::Kernel { args, .. } = &step else {
                    unreachable!()
                };
                let reads: Vec<&PArg> = args[..3].iter().collect();
                run.iter().all(|p| match p {
                    Pending::Kernel { args: prev, .. } => {
                        !reads.iter().any(|r| same_ptr(r, &prev[3]))
                            && !prev[..3].iter().any(|r| same_ptr(r, &args[3]))
                    }
                    Pending::Gemm { .. } => false,
                })
            };
            if mergeable && independent && run.len() < 4 {
                run.push(step);
            } else {
                flush(self, &mut run, &mut out);
                if mergeable {
                    run.push(step);
                } else {
                    out.push(step);
                }
            }
        }
        flush(self, &mut run, &mut out);
        out
    }
}

fn same_ptr(a: &PArg, b: &PArg) -> bool {
    matches!((a, b), (PArg::Ptr(x), PArg::Ptr(y)) if x.place == y.place && x.offset == y.offset)
}

/// A readable launch list: one line per step.
pub fn listing(steps: &[Step]) -> String {
    use std::fmt::Write;
    let dim = |d: &Dim| match d {
        Dim::Fixed(n) => n.to_string(),
        Dim::PerToken(1) => "T".into(),
        Dim::PerToken(n) => format!("{n}T"),
        Dim::TokenTiles(n) => format!("T/{n}"),
    };
    let arg = |a: &Arg| match a {
        Arg::Ptr { region, offset } => format!("{region:?}+{offset}").to_lowercase(),
        Arg::Tokens => "T".into(),
        Arg::I32(v) => v.to_string(),
    };
    let mut out = String::new();
    for (i, s) in steps.iter().enumerate() {
        let _ = match s {
            Step::Kernel(l) => writeln!(
                out,
                "{i:>4} {:<32} grid=({},{},{}) block={} smem={} args=[{}]  # {}",
                l.kernel,
                dim(&l.grid[0]),
                dim(&l.grid[1]),
                dim(&l.grid[2]),
                l.block[0],
                l.shared_bytes,
                l.args.iter().map(arg).collect::<Vec<_>>().join(", "),
                l.node
            ),
            Step::Gemm(gm) => writeln!(
                out,
                "{i:>4} {:<32} m={} n={} k={} a={} lda={} b={} c={} ldc={} beta={}  # {}",
                "cublas_gemm_bf16",
                dim(&gm.m),
                gm.n,
                gm.k,
                arg(&gm.a),
                gm.lda,
                arg(&gm.b),
                arg(&gm.c),
                gm.ldc,
                gm.beta,
                gm.node
            ),
        };
    }
    out
}

fn per_token() -> [Dim; 3] {
    [Dim::PerToken(1), Dim::Fixed(1), Dim::Fixed(1)]
}

fn launch(kernel: String, node: &str, grid: [Dim; 3], threads: u32, args: Vec<PArg>) -> Pending {
    Pending::Kernel {
        kernel,
        node: node.to_string(),
        grid,
        block: [threads, 1, 1],
        args,
        head: None,
    }
}

fn elementwise_launch(
    kernel: String,
    node: &str,
    cols: usize,
    a: Val,
    b: Val,
    out: Val,
) -> Pending {
    let blocks = cols.div_ceil(256).max(1) as u32;
    launch(
        kernel,
        node,
        [Dim::PerToken(blocks), Dim::Fixed(1), Dim::Fixed(1)],
        256,
        vec![PArg::Ptr(a), PArg::Ptr(b), PArg::Ptr(out), PArg::Tokens],
    )
}
