//! Row-wise kernels: the embedding lookup, RMSNorm over token rows and the elementwise ops
//! (also the projections' prefill prologue and epilogues).

use super::kernels::{CudaF32, Elementwise, Embed, RmsNorm, PLACEHOLDER};
use super::schedule::{launch, per_token, PArg, Pending, Phase, Val};
use super::{last, row_width, Codegen};
use crate::ir::{NodeId, Op};
use pio_artifact::{Dim, KernelFamily};

impl Codegen<'_> {
    /// Embedding rows gathered by token id (operands: table, ids).
    pub(super) fn embed(&mut self, ph: &mut Phase, id: NodeId, v: &[Val]) -> Val {
        let g = self.g;
        let out = self.out_val(ph, id);
        let dim = last(g, id);
        let k = self.kernel(
            KernelFamily::Embed,
            &Embed {
                name: PLACEHOLDER,
                doc: "embedding lookup".into(),
                dim,
                vec8: dim % 8 == 0,
                shard_rows: 0,
            },
        );
        ph.push(launch(
            k,
            &g.node(id).name,
            [Dim::PerToken(1), Dim::Fixed(1), Dim::Fixed(1)],
            128,
            vec![PArg::Ptr(v[1]), PArg::Ptr(v[0]), PArg::Ptr(out)],
        ));
        out
    }

    /// RMSNorm of token rows (operands: x, weight).
    pub(super) fn rmsnorm(&mut self, ph: &mut Phase, id: NodeId, eps: f64, v: &[Val]) -> Val {
        let g = self.g;
        let out = self.out_val(ph, id);
        self.rmsnorm_rows(ph, &g.node(id).name, last(g, id), eps, v[0], v[1], out);
        out
    }

    /// Pushes one RMSNorm launch (a block per token) of rows of `dim` elements.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rmsnorm_rows(
        &mut self,
        ph: &mut Phase,
        node: &str,
        dim: usize,
        eps: f64,
        x: Val,
        weight: Val,
        out: Val,
    ) {
        let (vec, threads) = self.rmsnorm_shape(dim, x.stride);
        let k = self.kernel(
            KernelFamily::RmsNorm,
            &RmsNorm {
                name: PLACEHOLDER,
                doc: "RMSNorm".into(),
                dim,
                eps: CudaF32(eps as f32),
                in_stride: x.stride,
                threads,
                vec,
            },
        );
        ph.push(launch(
            k,
            node,
            per_token(),
            threads as u32,
            vec![PArg::Ptr(x), PArg::Ptr(weight), PArg::Ptr(out)],
        ));
    }

    /// Columns per thread and threads per block of the RMSNorm of rows of `dim` read with
    /// `stride`: with wide row access, 8 in 16-byte pieces where rows allow, with a thread per
    /// piece up to 256 (whole warps); else 1, with 256 threads.
    fn rmsnorm_shape(&self, dim: usize, stride: usize) -> (usize, usize) {
        if self.rows_in_16_bytes(&[dim, stride]) {
            (8, (dim / 8).next_multiple_of(32).clamp(32, 256))
        } else {
            (1, 256)
        }
    }

    /// Silu, Mul, Add and SiluMul over token rows.
    pub(super) fn elementwise_op(&mut self, ph: &mut Phase, id: NodeId, v: &[Val]) -> Val {
        let g = self.g;
        let out = self.out_val(ph, id);
        let node = g.node(id);
        let (expr, b) = match node.op {
            Op::Silu => ("silu(x)", v[0]),
            Op::Mul => ("x * y", v[1]),
            Op::Add => ("x + y", v[1]),
            // The bias row read again for every token (a row stride of 0).
            Op::BiasAdd => ("x + y", Val { stride: 0, ..v[1] }),
            _ => ("rbf(silu(x)) * y", v[1]),
        };
        let width = row_width(g, id);
        let k = self.elementwise(width, v[0].stride, b.stride, expr);
        ph.push(self.elementwise_launch(k, &node.name, width, v[0], b, out));
        out
    }

    /// The kernel of `expr` over rows of `cols` elements (operands `x` and `y`).
    pub(super) fn elementwise(
        &mut self,
        cols: usize,
        a_stride: usize,
        b_stride: usize,
        expr: &'static str,
    ) -> String {
        let vec = self.elementwise_vec(cols, a_stride, b_stride);
        self.kernel(
            KernelFamily::Elementwise,
            &Elementwise {
                name: PLACEHOLDER,
                doc: format!("elementwise: {expr}"),
                cols,
                a_stride,
                b_stride,
                expr,
                vec,
            },
        )
    }

    /// Columns per thread of the elementwise kernel over rows of `cols` read with these
    /// strides: with wide row access, 8 in 16-byte pieces where every row start and piece can be
    /// 16-byte aligned; else 1.
    fn elementwise_vec(&self, cols: usize, a_stride: usize, b_stride: usize) -> usize {
        if self.rows_in_16_bytes(&[cols, a_stride, b_stride]) {
            8
        } else {
            1
        }
    }

    /// Wide row access applies to rows of these widths and strides (in bf16 elements): all
    /// multiples of 8, so every row start and every 8-column piece can be 16-byte aligned.
    fn rows_in_16_bytes(&self, widths: &[usize]) -> bool {
        self.wide_row_access && widths.iter().all(|w| w % 8 == 0)
    }

    /// An elementwise launch: blocks of 256 threads, each of one column or 8 (see
    /// [`Self::elementwise_vec`]), per token.
    pub(super) fn elementwise_launch(
        &self,
        kernel: String,
        node: &str,
        cols: usize,
        a: Val,
        b: Val,
        out: Val,
    ) -> Pending {
        let per_thread = self.elementwise_vec(cols, a.stride, b.stride);
        let blocks = cols.div_ceil(256 * per_thread).max(1) as u32;
        launch(
            kernel,
            node,
            [Dim::PerToken(blocks), Dim::Fixed(1), Dim::Fixed(1)],
            256,
            vec![PArg::Ptr(a), PArg::Ptr(b), PArg::Ptr(out), PArg::Tokens],
        )
    }
}
