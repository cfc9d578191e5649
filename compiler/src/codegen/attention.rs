//! Attention kernel selection: in decode a cluster of blocks per kv head, the KV cache split
//! into spans ([`decode_attention_shape`]); in the batching engine's decode batches a block
//! per kv head, split and token over the paged pool (`paged_attention.rs`); in prefill the
//! tensor-core kernels where the head dim allows it (`prefill_attention.rs`), else the scalar
//! one.

use super::kernels::{Attention, AttentionCluster, CudaF32, PLACEHOLDER};
use super::options::{
    ATTENTION_CLUSTER, ATTENTION_PREFETCH_ROUNDS, ATTENTION_ROWS_PER_WARP,
    ATTENTION_SCORES_PER_BLOCK, ATTENTION_THREADS, PAGED_ATTENTION_HEADS_PER_BLOCK,
    PAGED_SINGLE_ATTENTION_HEADS_PER_BLOCK, WARPS,
};
use super::paged_attention::paged_decode_shape;
use super::phase::PagedStep;
use super::schedule::{launch, PArg, Phase, Place, Val};
use super::{err, fixed, Codegen, Paging};
use crate::error::CompileError;
use crate::ir::NodeId;
use pio_artifact::{Dim, KernelFamily, Region};

/// Static shared memory a kernel may use.
pub(super) const STATIC_SHARED: usize = 48 << 10;
/// Warps of a paged attention block (one query head and token): the keys are split over
/// them, so more warps mean fewer sequential keys per warp (the kernel is latency-bound: 4
/// warps took 145 us per layer at 550 positions on an H200, whatever the batch).
const PAGED_ATTENTION_WARPS: usize = 16;
/// Keys per query whose scores the prefill attention keeps in shared memory (16 KB).
const ATTENTION_SCORES_IN_SHARED: usize = 4096;

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

/// An attention node's shape (query heads, kv heads, head dim) and scale.
pub(super) struct Heads {
    pub(super) heads: usize,
    pub(super) kv_heads: usize,
    pub(super) d: usize,
    pub(super) scale: f64,
}

impl Codegen<'_> {
    /// Causal GQA attention (operands: q, k cache, v cache, positions).
    pub(super) fn attention(
        &mut self,
        ph: &mut Phase,
        id: NodeId,
        scale: f64,
        v: &[Val],
    ) -> Result<Val, CompileError> {
        let g = self.g;
        let out = self.out_val(ph, id);
        let h = Heads {
            heads: fixed(g, id, 2)?,
            d: fixed(g, id, 3)?,
            kv_heads: fixed(g, g.operands(id)[1], 2)?,
            scale,
        };
        let mma = h.d % 16 == 0 && h.d <= 128;
        let group = h.heads / h.kv_heads.max(1);
        let heads_per_block = match self.paged_attention_heads {
            Some(n) if n == 0 || group % n != 0 => {
                return Err(err(format!(
                    "'{}': {n} query heads per block of the paged decode attention do not \
                     divide its group of {group} query heads per kv head",
                    g.node(id).name
                )))
            }
            Some(n) => n,
            None => (1..=PAGED_ATTENTION_HEADS_PER_BLOCK.min(group))
                .rev()
                .find(|n| group % n == 0)
                .unwrap_or(1),
        };
        // A lone sequence's token has too few blocks to fill the GPU with whole groups.
        let heads_per_block = match ph.paged {
            Some(PagedStep::Single) => PAGED_SINGLE_ATTENTION_HEADS_PER_BLOCK,
            _ => heads_per_block,
        };
        let paged_decode = match ph.paged {
            Some(PagedStep::Batch | PagedStep::Single) => {
                paged_decode_shape(group, h.d, heads_per_block).filter(|_| {
                    // 16-byte query loads.
                    v[0].offset % 16 == 0 && v[0].stride % 8 == 0
                })
            }
            _ => None,
        };
        if ph.decode() {
            self.decode_attention(ph, id, &h, v, out)?;
        } else if let Some(shape) = paged_decode {
            self.paged_decode_attention(ph, id, &h, shape, v, out)?;
        } else if mma && ph.paged == Some(PagedStep::Chunk) {
            self.prefill_attention_split(ph, id, &h, v, out)?;
        } else if mma && ph.paged.is_none() {
            self.prefill_attention_mma(ph, id, &h, v, out);
        } else {
            self.scalar_attention(ph, id, &h, v, out)?;
        }
        Ok(out)
    }

    /// A cluster of blocks per kv head and span; the spans' partial results meet in arena
    /// scratch, and the last span of a kv head (the counter in the KV region) combines them.
    fn decode_attention(
        &mut self,
        ph: &mut Phase,
        id: NodeId,
        h: &Heads,
        v: &[Val],
        out: Val,
    ) -> Result<(), CompileError> {
        let g = self.g;
        let name = &g.node(id).name;
        let ctx = self.max_context;
        let (heads, d) = (h.heads, h.d);
        let group = heads / h.kv_heads;
        let shape = decode_attention_shape(group, d, ctx, self.attention_spans).ok_or_else(|| {
            err(format!(
                "'{name}': decode attention with {group} query heads per kv head of {d} dims does not fit in shared memory"
            ))
        })?;
        let slots = ATTENTION_CLUSTER * shape.spans;
        let span_out = ph.buffer((heads * slots * d * 4) as u64, format!("{name}.span_out"));
        let span_state = ph.buffer((heads * slots * 2 * 4) as u64, format!("{name}.span_state"));
        let count = Val {
            place: Place::Region(Region::Kv),
            offset: *self
                .attention_counts
                .get(&v[1].offset)
                .ok_or_else(|| err(format!("'{name}': its keys are not a layer's K cache")))?,
            stride: 0,
        };
        let k = self.kernel(
            KernelFamily::AttentionCluster,
            &AttentionCluster {
                name: PLACEHOLDER,
                doc: "decode attention, a cluster of blocks per kv head".into(),
                heads,
                kv_heads: h.kv_heads,
                d,
                scale: CudaF32(h.scale as f32),
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
        ph.push(launch(
            k,
            name,
            [
                Dim::Fixed(h.kv_heads as u32),
                Dim::Fixed(slots as u32),
                Dim::Fixed(1),
            ],
            ATTENTION_THREADS as u32,
            vec![
                PArg::Ptr(v[0]),
                PArg::Ptr(v[1]),
                PArg::Ptr(v[2]),
                PArg::Ptr(v[3]),
                PArg::Ptr(span_out),
                PArg::Ptr(span_state),
                PArg::Ptr(count),
                PArg::Ptr(out),
            ],
        ));
        Ok(())
    }

    /// The scalar kernel (head dims the tensor-core kernel does not take, and the batching
    /// engine's batch steps where the paged decode kernel does not fit): a block per query head
    /// and token; in a paged step each token reads its own sequence's rows through its block
    /// table.
    fn scalar_attention(
        &mut self,
        ph: &mut Phase,
        id: NodeId,
        h: &Heads,
        v: &[Val],
        out: Val,
    ) -> Result<(), CompileError> {
        let g = self.g;
        let paging = self.paging_for(ph, id, v)?;
        // Paged batch steps split the keys over more warps (see PAGED_ATTENTION_WARPS).
        let warps = if paging.is_some() {
            PAGED_ATTENTION_WARPS
        } else {
            WARPS
        };
        let (family, doc) = match paging {
            Some(_) => (
                KernelFamily::AttentionPaged,
                "causal GQA attention over the paged KV pool",
            ),
            None => (KernelFamily::Attention, "causal GQA attention (prefill)"),
        };
        let k = self.kernel(
            family,
            &Attention {
                name: PLACEHOLDER,
                doc: doc.into(),
                heads: h.heads,
                kv_heads: h.kv_heads,
                d: h.d,
                warps,
                scale: CudaF32(h.scale as f32),
                q_stride: v[0].stride,
                sc_max: self.max_context.min(ATTENTION_SCORES_IN_SHARED),
                ctx: self.max_context,
                block_size: paging.as_ref().map_or(0, |p| p.block_size),
                block_elems: paging.as_ref().map_or(0, |p| p.block_elems),
                max_blocks: paging.as_ref().map_or(0, |p| p.max_blocks),
            },
        );
        let mut args = vec![
            PArg::Ptr(v[0]),
            PArg::Ptr(v[1]),
            PArg::Ptr(v[2]),
            PArg::Ptr(v[3]),
        ];
        if let Some(p) = &paging {
            args.extend([PArg::Ptr(p.seq_index), PArg::Ptr(p.block_tables)]);
        }
        args.push(PArg::Ptr(out));
        ph.push(launch(
            k,
            &g.node(id).name,
            [Dim::Fixed(h.heads as u32), Dim::PerToken(1), Dim::Fixed(1)],
            (warps * 32) as u32,
            args,
        ));
        Ok(())
    }

    /// The pool layout of a paged step (None outside one), with its keys and values checked to
    /// be the pool's.
    pub(super) fn paging_for(
        &self,
        ph: &Phase,
        id: NodeId,
        v: &[Val],
    ) -> Result<Option<Paging>, CompileError> {
        if !ph.paged() {
            return Ok(None);
        }
        let name = &self.g.node(id).name;
        let p = self
            .paging
            .clone()
            .ok_or_else(|| err(format!("'{name}': a paged step without a pool layout")))?;
        if v[1].place != Place::Region(Region::Pool) || v[2].place != Place::Region(Region::Pool) {
            return Err(err(format!(
                "'{name}': its keys and values are not the paged pool's"
            )));
        }
        Ok(Some(p))
    }
}
