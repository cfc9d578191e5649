//! The per-head ops (head RMSNorm, RoPE, their fusion, the KV-cache writes): one `head_op`
//! launch each, then runs of adjacent independent ones (a layer's Q, K and V) merge into one
//! `head_ops` launch.

use super::kernels::{CudaF32, HeadOp, HeadOps, PLACEHOLDER};
use super::options::WARPS;
use super::schedule::{launch, PArg, Pending, Phase, Place, Val};
use super::{err, fixed, row_width, Codegen};
use crate::error::CompileError;
use crate::ir::{NodeId, Op, Rope};
use crate::rope;
use pio_artifact::{Dim, KernelFamily, Region};

/// Most per-head ops one merged launch runs (the template's `op0`..`op3`).
const MAX_MERGED: usize = 4;

/// Consecutive elements of a head of `d` each lane of its warp takes in one 4-, 8- or 16-byte
/// access (RoPE's pairs then sit in lanes l and l ^ 16), or 0 where `d` is not 64, 128 or 256
/// (the strided path alone).
fn per_lane(d: usize) -> usize {
    match d {
        64 | 128 | 256 => d / 32,
        _ => 0,
    }
}

impl Codegen<'_> {
    /// A per-head op (operands: x, then its norm weight, positions or cache positions): its
    /// output is a new value or, for the cache writes, the layer's cache.
    pub(super) fn per_head(
        &mut self,
        ph: &mut Phase,
        id: NodeId,
        v: &[Val],
    ) -> Result<Val, CompileError> {
        let g = self.g;
        let node = g.node(id);
        let pool = self.paging.as_ref().filter(|_| ph.paged());
        let cache = |layer, cache| match pool {
            Some(p) => Val {
                place: Place::Region(Region::Pool),
                offset: p.offsets[&(layer, cache)],
                stride: row_width(g, id),
            },
            None => Val {
                place: Place::Region(Region::Kv),
                offset: self.kv[&(layer, cache)],
                stride: row_width(g, id),
            },
        };
        let (out, norm, rope, cache_positions) = match node.op {
            Op::RmsNorm { eps } => (self.out_val(ph, id), Some((v[1], eps)), None, None),
            Op::Rope { rope } => (self.out_val(ph, id), None, Some((rope, v[1])), None),
            Op::NormRope { eps, rope } => (
                self.out_val(ph, id),
                Some((v[1], eps)),
                Some((rope, v[2])),
                None,
            ),
            Op::KvWrite { layer, cache: c } => (cache(layer, c), None, None, Some(v[1])),
            Op::NormRopeKvWrite {
                eps,
                rope,
                layer,
                cache: c,
            } => (
                cache(layer, c),
                Some((v[1], eps)),
                Some((rope, v[2])),
                Some(v[2]),
            ),
            Op::RopeKvWrite {
                rope,
                layer,
                cache: c,
            } => (cache(layer, c), None, Some((rope, v[1])), Some(v[1])),
            _ => {
                return Err(err(format!(
                    "'{}': {} is not a per-head op",
                    node.name,
                    node.op.name()
                )))
            }
        };
        self.head_op(ph, id, v[0], norm, rope, cache_positions, out)?;
        Ok(out)
    }

    /// A per-head kernel: optional norm (weight, eps), optional rope (its parameters, positions),
    /// written to `out` or, with `cache_positions`, into the KV cache.
    #[allow(clippy::too_many_arguments)]
    fn head_op(
        &mut self,
        ph: &mut Phase,
        id: NodeId,
        x: Val,
        norm: Option<(Val, f64)>,
        rope: Option<(Rope, Val)>,
        cache_positions: Option<Val>,
        out: Val,
    ) -> Result<(), CompileError> {
        let g = self.g;
        let name = &g.node(id).name;
        let src = g.operands(id)[0];
        let (heads, d) = (fixed(g, src, 2)?, fixed(g, src, 3)?);
        // Positions are read only with rope or a cache write; otherwise any pointer will do.
        let positions = rope.map(|r| r.1).or(cache_positions).unwrap_or(x);
        // A paged cache write goes to each token's pool slot.
        let paging = self
            .paging
            .as_ref()
            .filter(|_| ph.paged() && cache_positions.is_some());
        let slots = paging.map_or(positions, |p| p.slots);
        let ctx = HeadOp {
            name: PLACEHOLDER,
            device_fn: false,
            doc: g.node(id).op.name().into(),
            heads,
            d,
            warps: WARPS,
            eps: CudaF32(norm.map_or(1e-6, |n| n.1) as f32),
            inv_freq: rope.map_or(Vec::new(), |r| {
                rope::inv_freq_f32(&r.0, d)
                    .into_iter()
                    .map(CudaF32)
                    .collect()
            }),
            // cos and sin times YaRN's attention factor (left out where it is 1: the same
            // kernel source as plain RoPE).
            attention_factor: rope
                .map(|r| rope::attention_factor_f32(&r.0))
                .filter(|&f| f != 1.0)
                .map(CudaF32),
            in_stride: x.stride,
            norm: norm.is_some(),
            rope: rope.is_some(),
            to_cache: cache_positions.is_some(),
            ctx: self.max_context,
            block_size: paging.map_or(0, |p| p.block_size),
            block_elems: paging.map_or(0, |p| p.block_elems),
            per_lane: if self.wide_row_access { per_lane(d) } else { 0 },
        };
        let k = self.kernel(KernelFamily::HeadOp, &ctx);
        let mut step = launch(
            k,
            name,
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
                PArg::Ptr(slots),
            ],
        );
        if let Pending::Kernel { head, .. } = &mut step {
            *head = Some(Box::new(ctx));
        }
        ph.push(step);
        Ok(())
    }

    /// Merges runs of adjacent, independent per-head launches (a layer's Q, K and V head ops)
    /// into one launch of a `head_ops` kernel each, in the phase's steps.
    pub(super) fn merge_head_ops(&mut self, ph: &mut Phase) {
        let steps = ph.take_steps();
        let mut out: Vec<(Pending, Vec<NodeId>)> = Vec::with_capacity(steps.len());
        let mut run: Vec<(Pending, Vec<NodeId>)> = Vec::new();
        for (step, owners) in steps {
            let mergeable = matches!(&step, Pending::Kernel { head: Some(_), .. });
            if mergeable && run.len() < MAX_MERGED && independent(&run, &step) {
                run.push((step, owners));
            } else {
                self.flush(&mut run, &mut out);
                if mergeable {
                    run.push((step, owners));
                } else {
                    out.push((step, owners));
                }
            }
        }
        self.flush(&mut run, &mut out);
        ph.put_steps(out);
    }

    /// Moves a run of head ops to `out`: one merged launch for two or more, else as it is.
    fn flush(
        &mut self,
        run: &mut Vec<(Pending, Vec<NodeId>)>,
        out: &mut Vec<(Pending, Vec<NodeId>)>,
    ) {
        if run.len() < 2 {
            out.append(run);
            return;
        }
        let mut bodies = String::new();
        let (mut args, mut nodes, mut ys) = (Vec::new(), Vec::new(), Vec::new());
        let mut owners = Vec::new();
        for (i, (p, o)) in run.drain(..).enumerate() {
            owners.extend(o);
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
                Dim::Split { max, .. } | Dim::SplitTokens { max, .. } => max,
            });
        }
        let n = nodes.len();
        let k = self.kernel(
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
        let step = launch(k, &nodes.join("+"), grid, (WARPS * 32) as u32, args);
        out.push((step, owners));
    }
}

/// Whether a head op may join `run`: it reads nothing the run writes and writes nothing the
/// run reads (args: x, weight, positions, out, slots).
fn independent(run: &[(Pending, Vec<NodeId>)], step: &Pending) -> bool {
    let Pending::Kernel { args, .. } = step else {
        return false;
    };
    run.iter().all(|(p, _)| match p {
        Pending::Kernel { args: prev, .. } => {
            !reads(args).iter().any(|r| same_ptr(r, &prev[3]))
                && !reads(prev).iter().any(|r| same_ptr(r, &args[3]))
        }
        Pending::Gemm { .. } | Pending::Collective { .. } => false,
    })
}

/// A head op's read arguments (x, weight, positions, slots).
fn reads(a: &[PArg]) -> [&PArg; 4] {
    [&a[0], &a[1], &a[2], &a[4]]
}

fn same_ptr(a: &PArg, b: &PArg) -> bool {
    matches!((a, b), (PArg::Ptr(x), PArg::Ptr(y)) if x.place == y.place && x.offset == y.offset)
}
