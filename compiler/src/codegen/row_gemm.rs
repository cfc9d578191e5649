//! The batching engine's decode-batch projections as one fused tensor-core kernel each
//! (`row_gemm.cu`, `CodegenOptions::fused_row_gemm`): the RMSNorm, the product and the
//! residual add, bias or SwiGLU of a projection in one launch, where the decode list otherwise
//! has an RMSNorm launch, a bias or residual copy, a cuBLAS GEMM and an elementwise launch.

use super::kernels::{CudaF32, RowGemm, PLACEHOLDER};
use super::phase::PagedStep;
use super::projection::Proj;
use super::schedule::{launch, PArg, Phase};
use super::Codegen;
use pio_artifact::{Dim, KernelFamily};

/// Output columns of a block (SwiGLU: gate rows; each comes with its up row), threads, k per
/// fragment load, rows per pass and shared bytes per row: `row_gemm.cu`'s `COLS`,
/// `WARPS * 32`, `CHUNK`, `PASS_ROWS` and `ROW_BYTES`.
const COLS: usize = 64;
const THREADS: u32 = 128;
const CHUNK: usize = 32;
const PASS_ROWS: usize = 128;
const ROW_BYTES: usize = 256;
/// Blocks the launch aims at (about two per SM of an H100 or H200), and the most blocks of a
/// cluster (the portable cluster size).
const TARGET_BLOCKS: usize = 256;
const MAX_SPLITS: usize = 8;

/// The blocks of a cluster that split k: the fewest that give the grid [`TARGET_BLOCKS`]
/// blocks, with at least two chunks of k each, else the most allowed.
pub(super) fn splits_for(tiles: usize, k: usize) -> usize {
    let chunks = k / CHUNK;
    let options: Vec<usize> = [1, 2, 4, MAX_SPLITS]
        .into_iter()
        .filter(|&s| s == 1 || chunks >= 2 * s)
        .collect();
    options
        .iter()
        .copied()
        .find(|&s| tiles * s >= TARGET_BLOCKS)
        .unwrap_or_else(|| *options.last().unwrap_or(&1))
}

impl Codegen<'_> {
    /// Whether `p` in this phase runs as one fused row GEMM: the option is on, the phase is the
    /// decode-batch list, and the shapes and addresses suit the kernel's 16-byte loads and
    /// paired stores (the logits keep cuBLAS: the executor picks their rows).
    pub(super) fn row_gemm_applies(&self, ph: &Phase, p: &Proj) -> bool {
        let aligned = |v: &super::schedule::Val| v.offset % 16 == 0;
        self.fused_row_gemm
            && ph.paged == Some(PagedStep::Batch)
            && !p.feeds_output
            && p.k % CHUNK == 0
            && p.x.stride % 8 == 0
            && aligned(&p.x)
            && aligned(&p.w)
            && p.norm.is_none_or(|(nw, _)| aligned(&nw))
            && p.out.stride % 2 == 0
            && p.out.offset % 4 == 0
            && self.out_cols(p) % 2 == 0
    }

    /// Output columns of `p` (SwiGLU: half the weight's rows).
    fn out_cols(&self, p: &Proj) -> usize {
        if p.swiglu {
            p.rows / 2
        } else {
            p.rows
        }
    }

    /// One fused launch: grid (column tiles, the cluster's k splits), the step's rows in passes.
    pub(super) fn decode_row_gemm(&mut self, ph: &mut Phase, p: &Proj) {
        let n = self.out_cols(p);
        let tile = if p.swiglu { COLS / 2 } else { COLS };
        let tiles = n.div_ceil(tile);
        let splits = splits_for(tiles, p.k);
        // The residual, or the bias row (the same row for every token: a stride of 0).
        let residual = match (p.residual, p.bias) {
            (Some(r), _) => r,
            (None, Some(b)) => super::schedule::Val { stride: 0, ..b },
            (None, None) => p.out,
        };
        let kname = self.kernel(
            KernelFamily::RowGemm,
            &RowGemm {
                name: PLACEHOLDER,
                doc: format!("{} (fused row GEMM, k split {splits} ways)", p.doc),
                k: p.k,
                n,
                x_stride: p.x.stride,
                residual_stride: residual.stride,
                out_stride: p.out.stride,
                eps: CudaF32(p.norm.map_or(1e-6, |n| n.1) as f32),
                splits,
                norm: p.norm.is_some(),
                residual: p.residual.is_some(),
                bias: p.bias.is_some(),
                swiglu: p.swiglu,
            },
        );
        let rows = PASS_ROWS.min(ph.tokens.div_ceil(8) * 8);
        ph.push(
            launch(
                kname,
                p.name,
                [
                    Dim::Fixed(tiles as u32),
                    Dim::Fixed(splits as u32),
                    Dim::Fixed(1),
                ],
                THREADS,
                vec![
                    PArg::Ptr(p.x),
                    PArg::Ptr(p.norm.map_or(p.x, |n| n.0)),
                    PArg::Ptr(p.w),
                    PArg::Ptr(residual),
                    PArg::Ptr(p.out),
                    PArg::Tokens,
                ],
            )
            .with_shared((rows * ROW_BYTES) as u32),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::splits_for;

    #[test]
    fn splits_fill_the_card_with_the_fewest_blocks_per_tile() {
        // Qwen3-0.6B's decode projections: q/k/v (4096 columns of 1024), o (1024 of 2048),
        // gate/up (3072 SwiGLU columns of 1024, 32 per block), down (1024 of 3072).
        let tiles = |n: usize, per: usize| n.div_ceil(per);
        assert_eq!(splits_for(tiles(4096, 64), 1024), 4);
        assert_eq!(splits_for(tiles(1024, 64), 2048), 8);
        assert_eq!(splits_for(tiles(3072, 32), 1024), 4);
        assert_eq!(splits_for(tiles(1024, 64), 3072), 8);
        assert_eq!(splits_for(400, 1024), 1, "enough tiles: no split");
        assert_eq!(splits_for(16, 64), 1, "two chunks of k: too few to split");
        assert_eq!(splits_for(16, 128), 2, "four chunks: two blocks of two");
    }
}
