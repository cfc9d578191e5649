//! The batching engine's decode attention over the paged KV pool: a block per kv head,
//! context split and token, every query head of its kv head at once
//! (`attention_paged_decode.cu`); the splits per token shrink as the batch grows
//! ([`Dim::Split`]), and the last split of a token combines their partials in arena scratch.

use super::attention::{Heads, STATIC_SHARED};
use super::kernels::{AttentionPagedDecode, CudaF32, PLACEHOLDER};
use super::options::{
    PAGED_ATTENTION_DECODE_WARPS, PAGED_ATTENTION_LOADS, PAGED_ATTENTION_MAX_SPLITS,
    PAGED_ATTENTION_MIN_SPAN, PAGED_ATTENTION_SCORE_BYTES,
};
use super::schedule::{launch, PArg, Phase, Val};
use super::{err, Codegen};
use crate::error::CompileError;
use crate::ir::NodeId;
use pio_artifact::{Dim, KernelFamily};

/// Query heads per kv head the kernel takes at most.
pub const MAX_GROUP: usize = 8;

/// How the paged decode attention reads a key row: `pieces` 16-byte loads per lane, so that
/// `d / (8 * pieces)` lanes (a power of two, at most 32) share a row; `unroll` rows per lane
/// in flight; `chunk` keys scored per round; `heads_per_block` of a kv head's query heads per
/// block (the group's others in as many blocks more, reading the same rows through L2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagedDecodeShape {
    pub pieces: usize,
    pub unroll: usize,
    pub chunk: usize,
    pub heads_per_block: usize,
}

/// The kernel's shape for `group` query heads per kv head of `d` dims, `hg` of them per block,
/// or None where it does not apply (the scalar paged attention takes those; an `hg` that does
/// not divide the group too).
pub fn paged_decode_shape(group: usize, d: usize, hg: usize) -> Option<PagedDecodeShape> {
    if group == 0 || group > MAX_GROUP || d == 0 || d % 8 != 0 {
        return None;
    }
    if hg == 0 || group % hg != 0 {
        return None;
    }
    // Two pieces per lane halve the shuffles of the dot products where the registers allow
    // (H200, Qwen3-4B, 128 requests: 131 us per layer with two, 148 with one); a lane's
    // registers grow with its pieces, not with the head dim. Rows of more than 32 x 16 bytes
    // take more pieces.
    let mut pieces = if hg <= 4 { (d / 64).clamp(1, 2) } else { 1 };
    pieces = pieces.max((d / 8).div_ceil(32));
    if (d / 8) % pieces != 0 || !(d / 8 / pieces).is_power_of_two() {
        return None;
    }
    let chunk = PAGED_ATTENTION_SCORE_BYTES / (4 * hg);
    // The scores (or the warps' P.V partials) and the split's P.V total.
    let shared = 4 * (hg * chunk).max(PAGED_ATTENTION_DECODE_WARPS * hg * d) + 4 * hg * d;
    (shared + 1024 <= STATIC_SHARED).then_some(PagedDecodeShape {
        pieces,
        unroll: (PAGED_ATTENTION_LOADS / pieces).max(1),
        chunk,
        heads_per_block: hg,
    })
}

/// The launch's splits per token, for `blocks` blocks per token and split and
/// `target_blocks` blocks aimed at in all: ceil(target / tokens) clamped to [1, max], where
/// target is `target_blocks` / `blocks`.
pub fn paged_decode_splits(blocks: usize, max_context: usize, target_blocks: usize) -> Dim {
    let target = target_blocks.div_ceil(blocks.max(1));
    let max = PAGED_ATTENTION_MAX_SPLITS.min(max_context.div_ceil(PAGED_ATTENTION_MIN_SPAN));
    Dim::Split {
        target: target as u32,
        max: max.max(1) as u32,
    }
}

/// Split partials a step of at most `max_tokens` tokens may leave: the largest tokens x
/// splits over the token counts that split at all.
fn partial_slots(splits: Dim, max_tokens: usize) -> usize {
    (1..=max_tokens as u32)
        .map(|t| (t, splits.eval(t)))
        .filter(|&(_, s)| s > 1)
        .map(|(t, s)| (t * s) as usize)
        .max()
        .unwrap_or(1)
}

impl Codegen<'_> {
    /// Pushes the paged decode attention of node `name` (operands q, k pool, v pool,
    /// positions).
    pub(super) fn paged_decode_attention(
        &mut self,
        ph: &mut Phase,
        id: NodeId,
        h: &Heads,
        shape: PagedDecodeShape,
        v: &[Val],
        out: Val,
    ) -> Result<(), CompileError> {
        let name = &self.g.node(id).name;
        let paging = self
            .paging_for(ph, id, v)?
            .ok_or_else(|| err(format!("'{name}': a paged step without a pool layout")))?;
        let (heads, d) = (h.heads, h.d);
        // Blocks per token and split: each kv head's group in parts of heads_per_block.
        let units = heads / shape.heads_per_block;
        let splits =
            paged_decode_splits(units, self.max_context, self.paged_attention_target_blocks);
        let slots = partial_slots(splits, ph.tokens);
        let part_out = ph.buffer((slots * heads * d * 4) as u64, format!("{name}.split_out"));
        let part_state = ph.buffer(
            (slots * heads * 2 * 4) as u64,
            format!("{name}.split_state"),
        );
        let k = self.kernel(
            KernelFamily::AttentionPaged,
            &AttentionPagedDecode {
                name: PLACEHOLDER,
                doc:
                    "decode attention over the paged KV pool, a block per kv head, split and token"
                        .into(),
                heads,
                kv_heads: h.kv_heads,
                d,
                scale: CudaF32(h.scale as f32),
                q_stride: v[0].stride,
                block_size: paging.block_size,
                block_elems: paging.block_elems,
                max_blocks: paging.max_blocks,
                chunk: shape.chunk,
                min_span: PAGED_ATTENTION_MIN_SPAN,
                warps: PAGED_ATTENTION_DECODE_WARPS,
                pieces: shape.pieces,
                unroll: shape.unroll,
                heads_per_block: shape.heads_per_block,
                min_blocks: self.paged_attention_min_blocks.unwrap_or_else(|| {
                    super::options::paged_attention_min_blocks(shape.heads_per_block, shape.pieces)
                }),
            },
        );
        ph.push(launch(
            k,
            name,
            [Dim::Fixed(units as u32), splits, Dim::PerToken(1)],
            (PAGED_ATTENTION_DECODE_WARPS * 32) as u32,
            vec![
                PArg::Ptr(v[0]),
                PArg::Ptr(v[1]),
                PArg::Ptr(v[2]),
                PArg::Ptr(v[3]),
                PArg::Ptr(paging.seq_index),
                PArg::Ptr(paging.block_tables),
                PArg::Ptr(part_out),
                PArg::Ptr(part_state),
                PArg::Ptr(paging.split_counts),
                PArg::Ptr(out),
            ],
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::options::PAGED_ATTENTION_TARGET_BLOCKS as TARGET;
    use super::*;

    #[test]
    fn qwen3_head_shapes_take_the_kernel_and_odd_ones_do_not() {
        // 0.6B (16:8 heads), 4B / 8B (32:8), 32B (64:8), tiny (head dim 32).
        let s = paged_decode_shape(2, 128, 2).unwrap();
        assert_eq!(
            (s.pieces, s.unroll, s.chunk, s.heads_per_block),
            (2, 4, 2048, 2)
        );
        let s = paged_decode_shape(4, 128, 4).unwrap();
        assert_eq!((s.pieces, s.unroll, s.chunk), (2, 4, 1024));
        // A 4-head group in blocks of 2: the chunk and pieces of a 2-head group.
        let s = paged_decode_shape(4, 128, 2).unwrap();
        assert_eq!((s.pieces, s.chunk, s.heads_per_block), (2, 2048, 2));
        assert_eq!(paged_decode_shape(4, 128, 3), None, "3 does not divide 4");
        assert_eq!(paged_decode_shape(4, 128, 0), None);
        let s = paged_decode_shape(8, 128, 8).unwrap();
        assert_eq!((s.pieces, s.unroll, s.chunk), (1, 8, 512));
        assert_eq!(paged_decode_shape(8, 128, 4).unwrap().pieces, 2);
        assert!(paged_decode_shape(2, 32, 2).is_some());
        assert_eq!(paged_decode_shape(2, 512, 2).unwrap().pieces, 2);
        assert_eq!(paged_decode_shape(2, 1024, 2).unwrap().pieces, 4);
        assert_eq!(
            paged_decode_shape(8, 1024, 8),
            None,
            "its partial sums exceed the shared memory"
        );
        // Head dim 10 (no 16-byte rows), 24 lanes a row (not a power of two), 9 heads a group.
        assert_eq!(paged_decode_shape(2, 10, 2), None);
        assert_eq!(paged_decode_shape(4, 192, 4), None);
        assert_eq!(paged_decode_shape(9, 128, 9), None);
    }

    #[test]
    fn register_heavy_shapes_are_bounded_to_four_blocks_per_sm() {
        use super::super::options::paged_attention_min_blocks as min_blocks;
        let at = |group| {
            let s = paged_decode_shape(group, 128, group).unwrap();
            min_blocks(s.heads_per_block, s.pieces)
        };
        // 0.6B (2 heads x 2 pieces): the compiler's choice; 4B (4 x 2) and 8 x 1: four.
        assert_eq!((at(2), at(4), at(8)), (0, 4, 4));
        assert_eq!(at(1), 0);
    }

    #[test]
    fn splits_shrink_as_the_batch_grows_and_scratch_covers_every_batch() {
        let splits = paged_decode_splits(8, 32_768, TARGET);
        let per = |t| splits.eval(t);
        assert_eq!(
            (per(1), per(2), per(16), per(66), per(67), per(128)),
            (32, 32, 5, 1, 1, 1)
        );
        // A short context caps the splits at its 64-key spans.
        assert_eq!(paged_decode_splits(8, 100, TARGET).eval(1), 2);
        let slots = partial_slots(splits, 512);
        for t in 1..=512 {
            let s = per(t);
            assert!(s == 1 || t * s <= slots as u32, "{t} tokens x {s} splits");
        }
        assert_eq!(partial_slots(paged_decode_splits(8, 64, TARGET), 512), 1);
    }

    #[test]
    fn a_larger_target_splits_big_batches_too() {
        // Four times the default: 128 tokens of a 0.6B (8 kv-head blocks) take 3 splits.
        let splits = paged_decode_splits(8, 32_768, 4 * TARGET);
        assert_eq!(
            (splits.eval(1), splits.eval(128), splits.eval(512)),
            (32, 3, 1)
        );
        let slots = partial_slots(splits, 512);
        assert!(slots >= 128 * 3, "{slots}");
        // A target below one block per unit never splits.
        assert_eq!(paged_decode_splits(8, 32_768, 1).eval(1), 1);
    }
}
