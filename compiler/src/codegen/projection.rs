//! The projection ops (Linear, NormLinear, LinearBias, NormLinearBias, LinearAdd,
//! NormLinearSwiGlu): in decode one fused GEMV kernel each; in prefill a cuBLAS GEMM, with an
//! RMSNorm launch before it and the residual or bias copy or the SwiGLU epilogue around it; in
//! the batching engine's decode-batch list, with `fused_row_gemm`, one fused tensor-core
//! kernel (`row_gemm.rs`).

use super::kernels::{CudaF32, Gemv, PLACEHOLDER};
use super::options::GEMV_L2_PREFETCH_BYTES;
use super::schedule::{launch, PArg, Pending, Phase, Place, Val};
use super::{feeds_logits_gather, feeds_output, fixed, row_width, Codegen};
use crate::error::CompileError;
use crate::ir::{NodeId, Op};
use pio_artifact::{Dim, KernelFamily};

/// What one projection reads and writes.
pub(super) struct Proj<'g> {
    pub(super) name: &'g str,
    pub(super) doc: &'static str,
    pub(super) x: Val,
    pub(super) w: Val,
    /// The weight's rows (SwiGLU: gate and up rows) and columns.
    pub(super) rows: usize,
    pub(super) k: usize,
    /// Elements per output row.
    pub(super) width: usize,
    /// RMSNorm of `x` first: its weight and eps.
    pub(super) norm: Option<(Val, f64)>,
    /// LinearAdd's residual, added to the product.
    pub(super) residual: Option<Val>,
    /// The bias row added to every token's product (LinearBias, NormLinearBias).
    pub(super) bias: Option<Val>,
    pub(super) swiglu: bool,
    pub(super) out: Val,
    /// The output is the logits: a graph output (in the io region), or a rank's part of them
    /// that an all-gather makes whole.
    pub(super) feeds_output: bool,
}

impl Codegen<'_> {
    /// A projection node (operands: x, weight; with a norm x, norm weight, weight; LinearAdd
    /// x, weight, residual).
    pub(super) fn projection(&mut self, ph: &mut Phase, id: NodeId) -> Result<Val, CompileError> {
        let g = self.g;
        let node = g.node(id);
        let a = g.operands(id);
        let w = match node.op {
            Op::Linear | Op::LinearAdd | Op::LinearBias => a[1],
            _ => a[2],
        };
        let bias = match node.op {
            Op::LinearBias => Some(ph.val(a[2])),
            Op::NormLinearBias { .. } => Some(ph.val(a[3])),
            _ => None,
        };
        let (rows, k) = (fixed(g, w, 0)?, fixed(g, w, 1)?);
        let width = row_width(g, id);
        let feeds_output = feeds_output(g, id) || feeds_logits_gather(g, id);
        let residual = matches!(node.op, Op::LinearAdd).then(|| ph.val(a[2]));
        // LinearAdd writes in place over its residual when nothing reads the residual later and
        // the residual is a whole arena buffer (not a view into wider rows). The output then
        // *is* the residual's buffer, so the planner sees one buffer whose lifetime runs on to
        // the output's readers and needs no in-place support of its own. It is alias-safe: the
        // GEMV's thread for an element reads the residual element and then writes it, and the
        // prefill GEMM accumulates into C with beta = 1 (no residual copy is made).
        let in_place = residual.filter(|r| {
            !feeds_output
                && ph.last_read_by(a[2], id)
                && matches!(r.place, Place::Buf(_))
                && r.offset == 0
                && r.stride == width
        });
        let out = match in_place {
            Some(r) => r,
            None => self.out_val(ph, id),
        };
        let norm = match node.op {
            Op::NormLinear { eps } | Op::NormLinearSwiGlu { eps } | Op::NormLinearBias { eps } => {
                Some((ph.val(a[1]), eps))
            }
            _ => None,
        };
        let p = Proj {
            name: &node.name,
            doc: node.op.name(),
            x: ph.val(a[0]),
            w: ph.val(w),
            rows,
            k,
            width,
            norm,
            residual,
            bias,
            swiglu: matches!(node.op, Op::NormLinearSwiGlu { .. }),
            out,
            feeds_output,
        };
        if ph.gemv() {
            self.decode_gemv(ph, &p);
        } else if self.row_gemm_applies(ph, &p) {
            self.decode_row_gemm(ph, &p);
        } else {
            self.prefill_gemm(ph, &p);
        }
        Ok(out)
    }

    /// One fused GEMV launch: the norm, the product, the residual add or SwiGLU.
    fn decode_gemv(&mut self, ph: &mut Phase, p: &Proj) {
        let k = p.k;
        let n = if p.swiglu { p.rows / 2 } else { p.rows };
        let tune = self.gemv;
        let rows = if n >= 2048 && !p.swiglu {
            tune.tall_rows
        } else {
            1
        };
        let blocks = n.div_ceil(tune.warps * rows).min(tune.max_blocks);
        let single_pass = blocks * tune.warps * rows >= n;
        let unroll = k.div_ceil(256).clamp(1, tune.max_unroll);
        // Rows that warps start on, and the L2 share each may prefetch.
        let first_rows = n.min(blocks * tune.warps * rows) * if p.swiglu { 2 } else { 1 };
        let l2_prefetch = if k % 8 == 0 {
            (k * 2).min(GEMV_L2_PREFETCH_BYTES / first_rows / 16 * 16)
        } else {
            0
        };
        let kname = self.kernel(
            KernelFamily::Gemv,
            &Gemv {
                name: PLACEHOLDER,
                doc: p.doc.into(),
                k,
                n,
                warps: tune.warps,
                eps: CudaF32(p.norm.map_or(1e-6, |n| n.1) as f32),
                norm: p.norm.is_some(),
                residual: p.residual.is_some(),
                bias: p.bias.is_some(),
                swiglu: p.swiglu,
                vec8: k % 8 == 0,
                unroll,
                rows,
                prefetch: k % 8 == 0 && (k <= 1024 || (single_pass && k <= 256 * unroll)),
                single_pass,
                l2_prefetch: if l2_prefetch >= 512 { l2_prefetch } else { 0 },
            },
        );
        ph.push(launch(
            kname,
            p.name,
            [Dim::Fixed(blocks as u32), Dim::Fixed(1), Dim::Fixed(1)],
            (tune.warps * 32) as u32,
            vec![
                PArg::Ptr(p.x),
                PArg::Ptr(p.norm.map_or(p.x, |n| n.0)),
                PArg::Ptr(p.w),
                PArg::Ptr(p.residual.or(p.bias).unwrap_or(p.out)),
                PArg::Ptr(p.out),
            ],
        ));
    }

    /// Normalize into a scratch buffer, copy the residual (or the bias, into every token's row)
    /// into the output unless it is in place, GEMM (beta 1 over it), then SwiGLU from a gate/up
    /// scratch buffer.
    fn prefill_gemm(&mut self, ph: &mut Phase, p: &Proj) {
        let t = ph.tokens as u64;
        let (rows, k, out) = (p.rows, p.k, p.out);
        let (a, lda) = match p.norm {
            Some((nw, eps)) => {
                let s = ph.buffer(t * k as u64 * 2, format!("{}.normed", p.name));
                self.rmsnorm_rows(ph, p.name, k, eps, p.x, nw, s);
                (s, k)
            }
            None => (p.x, p.x.stride),
        };
        if let Some(r) = p.residual {
            if r != out {
                let kc = self.elementwise(p.width, r.stride, r.stride, "x");
                ph.push(self.elementwise_launch(kc, p.name, p.width, r, r, out));
            }
        }
        if let Some(b) = p.bias {
            // The same bias row for every token: a row stride of 0.
            let b = Val { stride: 0, ..b };
            let kc = self.elementwise(p.width, 0, 0, "x");
            ph.push(self.elementwise_launch(kc, p.name, p.width, b, b, out));
        }
        let c = if p.swiglu {
            ph.buffer(t * rows as u64 * 2, format!("{}.gate_up", p.name))
        } else {
            out
        };
        ph.push(Pending::Gemm {
            node: p.name.to_string(),
            n: rows as u32,
            k: k as u32,
            a,
            lda: lda as u32,
            b: p.w,
            c,
            ldc: rows as u32,
            beta: if p.residual.is_some() || p.bias.is_some() {
                1.0
            } else {
                0.0
            },
            // The logits' rows come from this GEMM alone (no residual or bias copy, no
            // epilogue).
            logits: p.feeds_output && p.residual.is_none() && p.bias.is_none() && !p.swiglu,
        });
        if p.swiglu {
            let half = rows / 2;
            let gate = Val { stride: rows, ..c };
            let up = Val {
                offset: c.offset + half as u64 * 2,
                stride: rows,
                ..c
            };
            let ke = self.elementwise(half, rows, rows, "rbf(silu(x)) * y");
            ph.push(self.elementwise_launch(ke, p.name, half, gate, up, out));
        }
    }
}
