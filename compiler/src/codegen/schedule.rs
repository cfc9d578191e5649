//! The bookkeeping of one phase: where each value lives ([`Val`]), the arena buffers asked for,
//! the launches whose arena pointers are still symbolic ([`Pending`]), and at the end the
//! buffers' lifetimes over the steps, the memory plan and the resolution into artifact
//! [`Step`]s.

use super::err;
use super::kernels::HeadOp;
use super::trace::{PhaseTrace, ValuePlace};
use crate::error::CompileError;
use crate::ir::{Graph, NodeId};
use crate::memory::{self, BufReq};
use pio_artifact::{self as art, Arg, Dim, Region, Step};
use std::collections::HashMap;

/// Where a value lives: a fixed region offset or an arena buffer, and the elements per token
/// row of the buffer it is in (views of wider rows keep their base's stride).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Val {
    pub place: Place,
    pub offset: u64,
    pub stride: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Place {
    Region(Region),
    /// An arena buffer, by its index in [`Phase`]'s buffer list (offsets come from the plan).
    Buf(usize),
}

/// A step whose arena pointers are not resolved yet.
pub(super) enum Pending {
    Kernel {
        kernel: String,
        node: String,
        grid: [Dim; 3],
        block: [u32; 3],
        args: Vec<PArg>,
        /// Dynamic shared memory of a launch (bytes).
        shared: u32,
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
    /// A collective over the tensor-parallel ranks (`art::Collective`).
    Collective {
        node: String,
        op: art::CollectiveOp,
        input: Val,
        output: Val,
        row: u32,
        rows: Dim,
        scratch: Option<Val>,
        /// Gathers the logits of a marked GEMM (see `art::Collective::logits`).
        logits: bool,
    },
}

/// A kernel argument before planning.
#[derive(Clone, Copy)]
pub(super) enum PArg {
    Ptr(Val),
    Tokens,
    /// This rank's index (tensor parallel).
    Rank,
}

/// One phase's lowering state (decode: 1 token per step; prefill: up to `max_prefill`).
pub(super) struct Phase {
    /// Tokens per step: arena buffers hold this many rows.
    pub tokens: usize,
    /// A batching engine's step (KV writes and attention go through the paged pool), and which.
    pub paged: Option<super::phase::PagedStep>,
    /// Each node's index in the schedule order.
    position: HashMap<NodeId, usize>,
    /// The last node (by schedule index) that reads each value, through views.
    last_reader: HashMap<NodeId, usize>,
    vals: HashMap<NodeId, Val>,
    /// The arena buffers asked for so far: bytes, and a name for messages.
    bufs: Vec<(u64, String)>,
    pub steps: Vec<Pending>,
    /// The nodes each step computes (parallel to `steps`).
    owners: Vec<Vec<NodeId>>,
    /// The node being lowered: the owner of the steps pushed now.
    current: Option<NodeId>,
}

impl Phase {
    pub fn new(g: &Graph, order: &[NodeId], tokens: usize) -> Phase {
        let position: HashMap<NodeId, usize> =
            order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        // Walk backwards so that a view's own last reader is known before its source's.
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
        Phase {
            tokens,
            paged: None,
            position,
            last_reader,
            vals: HashMap::new(),
            bufs: Vec::new(),
            steps: Vec::new(),
            owners: Vec::new(),
            current: None,
        }
    }

    /// A decode step: one token, GEMV kernels (never a paged step).
    pub fn decode(&self) -> bool {
        self.tokens == 1 && self.paged.is_none()
    }

    /// A step of one token whose projections are GEMV kernels: the batch-1 decode and the
    /// paged list of one sequence's token.
    pub fn gemv(&self) -> bool {
        self.tokens == 1 && matches!(self.paged, None | Some(super::phase::PagedStep::Single))
    }

    /// A batching engine's step (either paged list).
    pub fn paged(&self) -> bool {
        self.paged.is_some()
    }

    /// Where an already lowered value lives (the schedule order lowers operands first).
    pub fn val(&self, id: NodeId) -> Val {
        self.vals[&id]
    }

    /// The values of a node's operands, in order.
    pub fn operands(&self, g: &Graph, id: NodeId) -> Vec<Val> {
        g.operands(id).iter().map(|&o| self.val(o)).collect()
    }

    pub fn set(&mut self, id: NodeId, val: Val) {
        self.vals.insert(id, val);
    }

    /// A new arena buffer of `bytes` (stride 0: scratch; callers of row values set theirs).
    pub fn buffer(&mut self, bytes: u64, name: String) -> Val {
        self.bufs.push((bytes, name));
        Val {
            place: Place::Buf(self.bufs.len() - 1),
            offset: 0,
            stride: 0,
        }
    }

    /// Whether `reader` is the last node that reads `value` (through views): no later step
    /// reads its bytes.
    pub fn last_read_by(&self, value: NodeId, reader: NodeId) -> bool {
        self.last_reader.get(&value) == Some(&self.position[&reader])
    }

    /// The node whose steps are pushed from now on.
    pub fn lowering(&mut self, id: NodeId) {
        self.current = Some(id);
    }

    pub fn push(&mut self, step: Pending) {
        self.steps.push(step);
        self.owners.push(self.current.into_iter().collect());
    }

    /// The steps with the nodes each computes, taken out (to be rewritten and put back).
    pub fn take_steps(&mut self) -> Vec<(Pending, Vec<NodeId>)> {
        let owners = std::mem::take(&mut self.owners);
        std::mem::take(&mut self.steps)
            .into_iter()
            .zip(owners)
            .collect()
    }

    pub fn put_steps(&mut self, steps: Vec<(Pending, Vec<NodeId>)>) {
        (self.steps, self.owners) = steps.into_iter().unzip();
    }

    /// Plans the arena over the buffers' lifetimes (first to last step that names them),
    /// checks the plan and resolves every pointer.
    pub fn finish(self) -> Result<(Vec<Step>, memory::Plan, PhaseTrace), CompileError> {
        let span = lifetimes(&self.steps, self.bufs.len());
        let reqs: Vec<BufReq> = self
            .bufs
            .iter()
            .zip(&span)
            .map(|((bytes, name), &(first, last))| BufReq {
                bytes: *bytes,
                first: first.min(last),
                last,
                name: name.clone(),
            })
            .collect();
        let plan = memory::plan(&reqs);
        memory::check(&reqs, &plan).map_err(err)?;
        let steps = self.steps.into_iter().map(|s| resolve(s, &plan)).collect();
        let place = |v: &Val| match v.place {
            Place::Region(region) => ValuePlace {
                region,
                offset: v.offset,
                stride: v.stride,
            },
            Place::Buf(b) => ValuePlace {
                region: Region::Arena,
                offset: plan.offsets[b] + v.offset,
                stride: v.stride,
            },
        };
        let trace = PhaseTrace {
            step_nodes: self.owners,
            values: self.vals.iter().map(|(&id, v)| (id, place(v))).collect(),
        };
        Ok((steps, plan, trace))
    }
}

/// The first and last step index that names each of `n` buffers.
fn lifetimes(steps: &[Pending], n: usize) -> Vec<(usize, usize)> {
    let mut span: Vec<(usize, usize)> = vec![(usize::MAX, 0); n];
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
            Pending::Collective {
                input,
                output,
                scratch,
                ..
            } => {
                touch(input);
                touch(output);
                scratch.iter().for_each(touch);
            }
        }
    }
    span
}

/// A pending step with its arena pointers placed by `plan`.
fn resolve(step: Pending, plan: &memory::Plan) -> Step {
    let ptr = |v: &Val| match v.place {
        Place::Region(region) => Arg::Ptr {
            region,
            offset: v.offset,
        },
        Place::Buf(b) => Arg::Ptr {
            region: Region::Arena,
            offset: plan.offsets[b] + v.offset,
        },
    };
    match step {
        Pending::Kernel {
            kernel,
            node,
            grid,
            block,
            args,
            shared,
            ..
        } => Step::Kernel(art::Launch {
            kernel,
            node,
            grid,
            block,
            shared_bytes: shared,
            args: args
                .iter()
                .map(|a| match a {
                    PArg::Ptr(v) => ptr(v),
                    PArg::Tokens => Arg::Tokens,
                    PArg::Rank => Arg::Rank,
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
            a: ptr(&a),
            lda,
            b: ptr(&b),
            c: ptr(&c),
            ldc,
            beta,
            logits,
        }),
        Pending::Collective {
            node,
            op,
            input,
            output,
            row,
            rows,
            scratch,
            logits,
        } => Step::Collective(art::Collective {
            node,
            op,
            input: ptr(&input),
            output: ptr(&output),
            row,
            rows,
            scratch: scratch.as_ref().map(ptr),
            logits,
        }),
    }
}

/// One block per token.
pub(super) fn per_token() -> [Dim; 3] {
    [Dim::PerToken(1), Dim::Fixed(1), Dim::Fixed(1)]
}

/// A kernel launch of `threads` threads per block (not a per-head op).
pub(super) fn launch(
    kernel: String,
    node: &str,
    grid: [Dim; 3],
    threads: u32,
    args: Vec<PArg>,
) -> Pending {
    Pending::Kernel {
        kernel,
        node: node.to_string(),
        grid,
        block: [threads, 1, 1],
        args,
        shared: 0,
        head: None,
    }
}

impl Pending {
    /// The launch with `bytes` of dynamic shared memory.
    pub(super) fn with_shared(mut self, bytes: u32) -> Pending {
        if let Pending::Kernel { shared, .. } = &mut self {
            *shared = bytes;
        }
        self
    }
}
