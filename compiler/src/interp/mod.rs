//! The CPU reference executor: interprets the IR in f32 with plain, obvious loops. It is the
//! oracle that every fused kernel and the whole GPU path are checked against, and it makes pio
//! runnable on a machine without a GPU. Clarity beats speed here; only the matrix products go
//! through a well-kept crate (`matrixmultiply`).
//!
//! Two caches: [`CpuExecutor::step`] runs one sequence (`seq` new tokens at consecutive
//! positions after the cached ones); [`CpuExecutor::step_paged`] runs a batch of sequences over
//! a paged block pool, each with its own block table and start position, as the batching
//! engine drives the GPU (see [`cache`]).

mod cache;
mod kernels;
#[cfg(test)]
mod kernels_naive;
pub mod load;
mod ranks;
mod single;

pub use cache::PagedSeq;
use cache::{Contiguous, KvStore, PagedPool};
pub use load::{PartLoader, RankPart};
pub use ranks::{Collective, LocalCollective, Rank, RankGroup};
pub use single::eval_node;

use crate::ir::{Graph, InputRole, NodeId, Op, OutputRole};
use std::collections::HashMap;
use std::sync::Arc;

/// A dense f32 tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    /// Rows of the last axis.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        let n = self.shape.last().copied().unwrap_or(1).max(1);
        self.data.chunks(n)
    }
}

/// Errors of the CPU executor.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("weight '{name}' ({hf}): {message}")]
    Weight {
        name: String,
        hf: String,
        message: String,
    },
    #[error("token id {id} is out of range for a vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error(
        "context full: {cached} cached + {new} new tokens exceed the context bound of {bound}"
    )]
    ContextFull {
        cached: usize,
        new: usize,
        bound: usize,
    },
    #[error("a step needs at least one token")]
    EmptyStep,
    #[error("paged step: {0}")]
    Paging(String),
    #[error("the IR is not runnable: {0}")]
    Graph(String),
    #[error("tensor parallel: {0}")]
    Collective(String),
}

/// Supplies weights by checkpoint name, widened to f32, with the expected shape.
pub type WeightLoader<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>, String> + 'a;

/// Runs a graph on the CPU, one step at a time, keeping the KV cache between steps.
pub struct CpuExecutor {
    program: Program,
    /// The one sequence of [`Self::step`].
    cache: Contiguous,
    cached_len: usize,
    /// The block pool of [`Self::step_paged`], once enabled.
    pool: Option<PagedPool>,
    ctx_bound: usize,
    /// Which tensor-parallel rank this is (a sharded graph's executor).
    rank: Option<Rank>,
}

/// The graph in run order, with its weights.
struct Program {
    graph: Graph,
    order: Vec<NodeId>,
    /// For each node, the position in `order` of its last user (values are freed after it).
    last_use: HashMap<NodeId, usize>,
    weights: HashMap<NodeId, Arc<Tensor>>,
}

/// One step's inputs: `batch` sequences of `seq` new tokens each, row-major.
struct StepInputs<'a> {
    batch: usize,
    seq: usize,
    /// Cached positions after the step (the longest sequence's).
    ctx: usize,
    tokens: &'a [u32],
    positions: &'a [usize],
}

impl CpuExecutor {
    /// Prepares a graph: fused ops are rewritten into the primitive ops they stand for
    /// ([`crate::fusion::decompose`], so that the reference never shares a fused
    /// implementation with what it checks), then every weight is loaded through `load` (each
    /// stored tensor once).
    pub fn new(graph: Graph, load: &mut WeightLoader<'_>) -> Result<Self, InterpError> {
        if graph.is_sharded() {
            return Err(InterpError::Graph(format!(
                "the graph is one rank's part of a model over {} ranks: run it with RankGroup",
                graph.ranks
            )));
        }
        Self::build(graph, &mut |name, shape, _| load(name, shape), None)
    }

    /// [`Self::new`] for rank `rank.rank` of a sharded graph (the shard pass's output): `load`
    /// supplies each sharded weight's part for this rank (see [`load::slicing`] to cut parts
    /// out of whole tensors), every other weight whole.
    pub fn new_rank(
        graph: Graph,
        load: &mut PartLoader<'_>,
        rank: Rank,
    ) -> Result<Self, InterpError> {
        if graph.ranks.max(1) != rank.ranks || rank.rank >= rank.ranks {
            return Err(InterpError::Graph(format!(
                "rank {} of {} for a graph sharded over {} ranks",
                rank.rank, rank.ranks, graph.ranks
            )));
        }
        Self::build(graph, load, Some(rank))
    }

    fn build(
        mut graph: Graph,
        load: &mut PartLoader<'_>,
        rank: Option<Rank>,
    ) -> Result<Self, InterpError> {
        crate::fusion::decompose(&mut graph);
        let order = graph
            .topo_order()
            .map_err(|c| InterpError::Graph(format!("cycle through {}", c.join(", "))))?;
        let mut last_use = HashMap::new();
        for (i, &id) in order.iter().enumerate() {
            for a in graph.operands(id) {
                last_use.insert(a, i);
            }
        }
        let weights = load::weights(&graph, &order, load, rank.as_ref())?;
        let ctx_bound = graph.context_bound().unwrap_or(usize::MAX);
        Ok(CpuExecutor {
            program: Program {
                graph,
                order,
                last_use,
                weights,
            },
            cache: Contiguous::default(),
            cached_len: 0,
            pool: None,
            ctx_bound,
            rank,
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.program.graph
    }

    /// Tokens in the KV cache.
    pub fn cached_len(&self) -> usize {
        self.cached_len
    }

    /// The context bound (the `ctx` dim's upper bound, or what [`Self::set_context_bound`] set).
    pub fn context_bound(&self) -> usize {
        self.ctx_bound
    }

    /// Bounds the KV cache at `n` tokens (at most the graph's own bound), as a compiled
    /// artifact's `max_context` bounds the GPU's.
    pub fn set_context_bound(&mut self, n: usize) -> Result<(), InterpError> {
        let graph_bound = self.program.graph.context_bound().unwrap_or(usize::MAX);
        if n == 0 || n > graph_bound {
            return Err(InterpError::Graph(format!(
                "context {n} must be between 1 and the graph's bound {graph_bound}"
            )));
        }
        self.ctx_bound = n;
        Ok(())
    }

    /// Forgets the KV cache (a new sequence starts at position 0).
    pub fn reset(&mut self) {
        self.cache.clear();
        self.cached_len = 0;
    }

    /// Runs one step on `tokens` at positions `cached_len..cached_len + tokens.len()` and
    /// returns every graph output by role (logits are `[1, seq, vocab]`).
    pub fn step(&mut self, tokens: &[u32]) -> Result<HashMap<OutputRole, Tensor>, InterpError> {
        let seq = tokens.len();
        if seq == 0 {
            return Err(InterpError::EmptyStep);
        }
        if self.cached_len + seq > self.ctx_bound {
            return Err(InterpError::ContextFull {
                cached: self.cached_len,
                new: seq,
                bound: self.ctx_bound,
            });
        }
        let start = self.cached_len;
        let ctx = start + seq;
        let positions: Vec<usize> = (start..ctx).collect();
        let inputs = StepInputs {
            batch: 1,
            seq,
            ctx,
            tokens,
            positions: &positions,
        };
        let outputs = self
            .program
            .run(&inputs, &mut self.cache.at(start, seq), self.rank.as_ref());
        let outputs = abort_on_error(outputs, self.rank.as_ref())?;
        self.cached_len = ctx;
        Ok(outputs)
    }

    /// Gives the executor a paged KV cache of `num_blocks` blocks of `block_size` positions
    /// (allocated per layer on first use) for [`Self::step_paged`]; any earlier pool is dropped.
    pub fn enable_paged_cache(
        &mut self,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<(), InterpError> {
        if num_blocks == 0 || block_size == 0 {
            return Err(InterpError::Paging(format!(
                "a pool of {num_blocks} blocks of {block_size} positions holds nothing"
            )));
        }
        self.pool = Some(PagedPool::new(num_blocks, block_size));
        Ok(())
    }

    /// Runs one step for a batch of sequences over the paged cache: sequence `b`'s tokens sit
    /// at positions `start..start + len` and its keys and values are written to and read from
    /// its block table. Every sequence brings the same number of tokens. Returns the outputs by
    /// role (logits are `[batch, seq, vocab]`, in the order of `seqs`).
    pub fn step_paged(
        &mut self,
        seqs: &[PagedSeq<'_>],
    ) -> Result<HashMap<OutputRole, Tensor>, InterpError> {
        let pool = self.pool.as_mut().ok_or_else(|| {
            InterpError::Paging("no paged cache: call enable_paged_cache first".into())
        })?;
        let seq = seqs.first().map_or(0, |s| s.tokens.len());
        if seq == 0 {
            return Err(InterpError::EmptyStep);
        }
        if let Some(s) = seqs.iter().find(|s| s.tokens.len() != seq) {
            return Err(InterpError::Paging(format!(
                "every sequence of a step brings the same number of tokens: {seq} and {}",
                s.tokens.len()
            )));
        }
        if let Some(s) = seqs.iter().find(|s| s.end() > self.ctx_bound) {
            return Err(InterpError::ContextFull {
                cached: s.start,
                new: seq,
                bound: self.ctx_bound,
            });
        }
        pool.check(seqs)?;
        let tokens: Vec<u32> = seqs.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let positions: Vec<usize> = seqs.iter().flat_map(|s| s.start..s.end()).collect();
        let inputs = StepInputs {
            batch: seqs.len(),
            seq,
            ctx: seqs.iter().map(PagedSeq::end).max().unwrap_or(0),
            tokens: &tokens,
            positions: &positions,
        };
        let outputs = self
            .program
            .run(&inputs, &mut pool.step(seqs), self.rank.as_ref());
        abort_on_error(outputs, self.rank.as_ref())
    }
}

impl Program {
    /// Runs the graph once on `inputs`, the cache ops going through `kv`.
    fn run(
        &self,
        inputs: &StepInputs<'_>,
        kv: &mut dyn KvStore,
        rank: Option<&Rank>,
    ) -> Result<HashMap<OutputRole, Tensor>, InterpError> {
        let ranked = |what: &str| {
            rank.ok_or_else(|| {
                InterpError::Graph(format!(
                    "{what} in a graph run without tensor-parallel ranks"
                ))
            })
        };
        let StepInputs {
            batch,
            seq,
            ctx,
            tokens,
            positions,
        } = *inputs;
        let dims = |s: &str| match s {
            "batch" => batch,
            "seq" => seq,
            _ => ctx,
        };
        let mut values: HashMap<NodeId, Arc<Tensor>> = HashMap::new();
        let mut outputs = HashMap::new();
        for (i, &id) in self.order.iter().enumerate() {
            let node = self.graph.node(id);
            let args: Vec<Arc<Tensor>> = self
                .graph
                .operands(id)
                .iter()
                .map(|a| values[a].clone())
                .collect();
            let out_shape = node.ty.shape.concrete(&dims);
            let value: Tensor = match &node.op {
                Op::Input(InputRole::TokenIds) => {
                    Tensor::new(out_shape, tokens.iter().map(|&t| t as f32).collect())
                }
                Op::Input(InputRole::Positions) => {
                    Tensor::new(out_shape, positions.iter().map(|&p| p as f32).collect())
                }
                Op::Weight(_) => {
                    values.insert(id, self.weights[&id].clone());
                    continue;
                }
                Op::Embed => {
                    let (table, ids) = (&args[0], &args[1]);
                    let vocab = table.shape[0];
                    if let Some(&bad) = ids.data.iter().find(|&&t| t as usize >= vocab) {
                        return Err(InterpError::TokenOutOfRange {
                            id: bad as u32,
                            vocab,
                        });
                    }
                    kernels::embed(table, &ids.data, out_shape)
                }
                Op::EmbedShard { .. } => {
                    let r = ranked("embed_shard")?;
                    let (table, ids) = (&args[0], &args[1]);
                    let rows = table.shape[0];
                    let vocab = rows * r.ranks;
                    if let Some(&bad) = ids.data.iter().find(|&&t| t as usize >= vocab) {
                        return Err(InterpError::TokenOutOfRange {
                            id: bad as u32,
                            vocab,
                        });
                    }
                    kernels::embed_rows(table, &ids.data, r.rank * rows, out_shape)
                }
                Op::AllReduce { .. } => {
                    let r = ranked("all_reduce")?;
                    r.collective.all_reduce(r.rank, &args[0])?
                }
                Op::AllGather { .. } => {
                    let r = ranked("all_gather")?;
                    r.collective.all_gather(r.rank, &args[0])?
                }
                Op::Linear => kernels::linear(&args[0], &args[1], out_shape),
                Op::MatMul => kernels::matmul(&args[0], &args[1], out_shape),
                Op::RmsNorm { eps } => kernels::rmsnorm(&args[0], &args[1], *eps),
                Op::Rope { rope } => kernels::rope(&args[0], &args[1].data, rope),
                Op::KvAppend { layer, cache } | Op::KvWrite { layer, cache } => {
                    kv.write_and_view(*layer, *cache, &args[0], out_shape)?
                }
                Op::Slice { start, len } => kernels::slice(&args[0], *start, *len, out_shape),
                // The executor decomposed every fused op into its primitives (new()): the
                // fused ops' meaning is decompose()'s alone, the oracle the GPU kernels meet.
                Op::NormRopeKvWrite { .. }
                | Op::RopeKvWrite { .. }
                | Op::LinearBias
                | Op::NormLinearBias { .. }
                | Op::NormRope { .. }
                | Op::NormLinear { .. }
                | Op::NormLinearSwiGlu { .. }
                | Op::LinearAdd
                | Op::SiluMul => {
                    return Err(InterpError::Graph(format!(
                        "{}: a fused op reached the executor undecomposed",
                        node.name
                    )))
                }
                Op::Attention { scale } => {
                    kernels::attention(&args[0], &args[1], &args[2], &args[3].data, *scale)
                }
                Op::Silu => kernels::map(&args[0], silu),
                Op::Mul => kernels::zip(&args[0], &args[1], |a, b| a * b),
                Op::Add => kernels::zip(&args[0], &args[1], |a, b| a + b),
                Op::BiasAdd => kernels::bias_add(&args[0], &args[1]),
                Op::Reshape { .. } => Tensor::new(out_shape, args[0].data.clone()),
                Op::Output(role) => {
                    outputs.insert(*role, (*args[0]).clone());
                    continue;
                }
            };
            values.insert(id, Arc::new(value));
            // Free operands whose last user this was.
            for a in self.graph.operands(id) {
                if self.last_use.get(&a) == Some(&i) {
                    values.remove(&a);
                }
            }
        }
        Ok(outputs)
    }
}

/// A rank that fails mid-step tells the others, so that none waits in a collective forever.
fn abort_on_error<T>(
    result: Result<T, InterpError>,
    rank: Option<&Rank>,
) -> Result<T, InterpError> {
    if let (Err(_), Some(r)) = (&result, rank) {
        r.collective.abort();
    }
    result
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}
