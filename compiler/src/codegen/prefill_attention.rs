//! The tensor-core prefill attention (`attention_mma.cu`, `attention_mma_split.cu`, their
//! pieces in `common/attention_mma.cuh`): a block per query head and 64 tokens; in the batching
//! engine's chunk steps the keys are also split over blocks where the step has few tokens (a
//! chunk after a prefix-cache hit: 64 tokens over thousands of cached keys would otherwise be
//! one block per head).

use super::attention::Heads;
use super::kernels::{AttentionMma, AttentionMmaSplit, CudaF32, PLACEHOLDER};
use super::schedule::{launch, PArg, Phase, Val};
use super::{Codegen, Paging};
use crate::error::CompileError;
use crate::ir::NodeId;
use pio_artifact::{Dim, KernelFamily};

/// Tokens per block and keys per shared-memory tile (BQ = BK in the kernels), and threads.
const TILE: u32 = 64;
const THREADS: u32 = 128;
/// The chunk steps' key splits: ceil(SPLIT_TARGET / tokens) of them, at most SPLIT_MAX (a
/// 64-token chunk gets 8, one of 512 tokens or more none).
const SPLIT_TARGET: u32 = 512;
const SPLIT_MAX: u32 = 16;

/// Dynamic shared memory of a launch holding `tiles` key or value tiles of TILE rows, each row
/// padded by 16 bytes (the kernels' LDS).
fn tile_bytes(d: usize, tiles: usize) -> u32 {
    (tiles * TILE as usize * (d + 8) * 2) as u32
}

/// The grid of the prefill attention kernels: query heads, token tiles (the last first), splits.
fn grid(h: &Heads, splits: Dim) -> [Dim; 3] {
    [Dim::Fixed(h.heads as u32), Dim::TokenTiles(TILE), splits]
}

impl Codegen<'_> {
    fn mma_template(&self, h: &Heads, v: &[Val], paging: Option<&Paging>) -> AttentionMma {
        AttentionMma {
            name: PLACEHOLDER,
            doc: "causal GQA attention (prefill, tensor cores)".into(),
            heads: h.heads,
            kv_heads: h.kv_heads,
            d: h.d,
            scale: CudaF32(h.scale as f32),
            q_stride: v[0].stride,
            ctx: self.max_context,
            tile: TILE,
            block_size: paging.map_or(0, |p| p.block_size),
            block_elems: paging.map_or(0, |p| p.block_elems),
            max_blocks: paging.map_or(0, |p| p.max_blocks),
            load_unroll: 0,
        }
    }

    /// A block per query head and 64 tokens walks every key its tokens see, in the batch-1
    /// prefill's contiguous cache (operands: q, k cache, v cache, positions).
    pub(super) fn prefill_attention_mma(
        &mut self,
        ph: &mut Phase,
        id: NodeId,
        h: &Heads,
        v: &[Val],
        out: Val,
    ) {
        let template = self.mma_template(h, v, None);
        let k = self.kernel(KernelFamily::AttentionMma, &template);
        let args = vec![
            PArg::Ptr(v[0]),
            PArg::Ptr(v[1]),
            PArg::Ptr(v[2]),
            PArg::Ptr(v[3]),
            PArg::Ptr(out),
            PArg::Tokens,
        ];
        let name = &self.g.node(id).name;
        ph.push(
            launch(k, name, grid(h, Dim::Fixed(1)), THREADS, args).with_shared(tile_bytes(h.d, 4)),
        );
    }

    /// The keys also split over blocks (a paged chunk step of one or more sequences, each one's
    /// rows contiguous; a 64-token window that holds the end of one and the start of the next
    /// does each in turn): three launches, each split's row statistics, then each split's P.V
    /// with every split's statistics combined, then the splits' sum; or, with
    /// `online_chunk_attention`, two: each split's one pass, then the splits rescaled and summed
    /// (see attention_mma_split.cu).
    pub(super) fn prefill_attention_split(
        &mut self,
        ph: &mut Phase,
        id: NodeId,
        h: &Heads,
        v: &[Val],
        out: Val,
    ) -> Result<(), CompileError> {
        let paging = self.paging_for(ph, id, v)?;
        let name = self.g.node(id).name.clone();
        let (state_rows, partial_rows) = split_rows(ph.tokens as u64);
        let heads = h.heads as u64;
        let state = ph.buffer(state_rows * heads * 8, format!("{name}.split_state"));
        let partial = ph.buffer(
            partial_rows * heads * h.d as u64 * 4,
            format!("{name}.split_partial"),
        );
        let base = self.mma_template(h, v, paging.as_ref());
        let one_pass = self.online_chunk_attention;
        let min_blocks = self.chunk_attention_min_blocks;
        let mut kernel = |phase: &'static str| {
            let split = AttentionMmaSplit {
                base: &base,
                phase,
                split_target: SPLIT_TARGET,
                split_max: SPLIT_MAX,
                min_blocks,
                // The one-pass kernel's tile loads one row at a time: 167 registers instead
                // of 218 (head_dim 128), 3 blocks per SM instead of 2.
                load_unroll: if phase == "online" { 1 } else { 0 },
            };
            self.kernel(KernelFamily::AttentionMma, &split)
        };
        let paged = paging_args(paging.as_ref());
        let reduce_grid = [SPLIT_ROWS, Dim::Fixed(h.heads as u32), Dim::Fixed(1)];
        let reduce_threads = h.d.min(128) as u32;
        // The P.V kernel's arguments, and the one-pass kernel's.
        let mut pv_args = vec![
            PArg::Ptr(v[0]),
            PArg::Ptr(v[1]),
            PArg::Ptr(v[2]),
            PArg::Ptr(v[3]),
            PArg::Ptr(state),
            PArg::Ptr(partial),
            PArg::Ptr(out),
            PArg::Tokens,
        ];
        pv_args.extend(paged.clone());
        let (pv, reduce, reduce_args) = if one_pass {
            let reduce_args = vec![
                PArg::Ptr(state),
                PArg::Ptr(partial),
                PArg::Ptr(out),
                PArg::Tokens,
            ];
            (kernel("online"), kernel("online_reduce"), reduce_args)
        } else {
            let stats = kernel("stats");
            let mut args = vec![
                PArg::Ptr(v[0]),
                PArg::Ptr(v[1]),
                PArg::Ptr(v[3]),
                PArg::Ptr(state),
                PArg::Tokens,
            ];
            args.extend(paged);
            ph.push(
                launch(stats, &name, grid(h, SPLITS), THREADS, args)
                    .with_shared(tile_bytes(h.d, 2)),
            );
            let reduce_args = vec![PArg::Ptr(partial), PArg::Ptr(out), PArg::Tokens];
            (kernel("pv"), kernel("reduce"), reduce_args)
        };
        ph.push(
            launch(pv, &name, grid(h, SPLITS), THREADS, pv_args).with_shared(tile_bytes(h.d, 4)),
        );
        ph.push(launch(
            reduce,
            &name,
            reduce_grid,
            reduce_threads,
            reduce_args,
        ));
        Ok(())
    }
}

/// The key splits of a step of `tokens` tokens.
const SPLITS: Dim = Dim::Split {
    target: SPLIT_TARGET,
    max: SPLIT_MAX,
};

/// The reduce's blocks per head: a block per token where the step splits, none where it does
/// not (the P.V kernel wrote the output; the runtime skips the launch).
const SPLIT_ROWS: Dim = Dim::SplitTokens {
    target: SPLIT_TARGET,
    max: SPLIT_MAX,
};

/// Rows (token and split pairs) of the split statistics and of the f32 partials that steps of
/// up to `max_tokens` tokens write: splits * tokens, at most `max_tokens` with one split (the
/// partials are not written then), under 2 * SPLIT_TARGET with more (tokens < SPLIT_TARGET).
fn split_rows(max_tokens: u64) -> (u64, u64) {
    let partial = 2 * SPLIT_TARGET as u64;
    (partial.max(max_tokens), partial)
}

/// A paged step's extra arguments: the sequence's index and the block tables.
fn paging_args(paging: Option<&Paging>) -> Vec<PArg> {
    paging.map_or_else(Vec::new, |p| {
        vec![PArg::Ptr(p.seq_index), PArg::Ptr(p.block_tables)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_scratch_holds_every_step_size() {
        for max_tokens in [1u32, 64, 511, 512, 2048] {
            let (state, partial) = split_rows(max_tokens as u64);
            for tokens in 1..=max_tokens {
                let splits = SPLITS.eval(tokens);
                let rows = (splits * tokens) as u64;
                assert!(
                    rows <= state,
                    "{tokens} tokens: {rows} state rows > {state}"
                );
                if splits > 1 {
                    assert!(
                        rows <= partial,
                        "{tokens} tokens: {rows} partial rows > {partial}"
                    );
                }
            }
        }
        // The reduce runs only where there is something to reduce.
        for tokens in [1u32, 64, 511, 512, 2048] {
            let reduce_blocks = SPLIT_ROWS.eval(tokens);
            assert_eq!(
                reduce_blocks > 0,
                SPLITS.eval(tokens) > 1,
                "{tokens} tokens"
            );
        }
        // A short chunk gets enough blocks to fill the GPU; a long one walks its keys whole.
        assert_eq!(
            (SPLITS.eval(1), SPLITS.eval(64), SPLITS.eval(512)),
            (16, 8, 1)
        );
    }
}
