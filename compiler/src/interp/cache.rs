//! The CPU executor's KV caches: where a step's keys and values are written and what the
//! attention then reads.
//!
//! - [`Contiguous`]: one sequence, its rows kept in order (the batch-1 path).
//! - [`PagedPool`]: a pool of fixed-size blocks per layer, shared by many sequences; each
//!   sequence names its blocks in a block table, as the GPU's paged cache does. A step writes
//!   each new row into the slot its position maps to (`blocks[pos / block_size]`, offset
//!   `pos % block_size`) and gives the attention every sequence's rows gathered in order,
//!   padded with zeros to the longest (a query at position p reads rows 0..=p of its own
//!   sequence only, so the padding is never read).

use super::{InterpError, Tensor};
use crate::ir::CacheKind;
use std::collections::HashMap;

/// Writes one step's rows and returns the cached sequences the attention reads.
pub(super) trait KvStore {
    /// `rows` are this step's keys or values `[batch, seq, kv_heads, d]`; the result has the
    /// node's shape `[batch, ctx, kv_heads, d]` (`shape`).
    fn write_and_view(
        &mut self,
        layer: usize,
        cache: CacheKind,
        rows: &Tensor,
        shape: Vec<usize>,
    ) -> Result<Tensor, InterpError>;
}

/// One sequence's cache, rows in position order.
#[derive(Default)]
pub(super) struct Contiguous {
    rows: HashMap<(usize, CacheKind), Vec<f32>>,
}

impl Contiguous {
    pub fn clear(&mut self) {
        self.rows.clear();
    }

    /// The store for a step of `seq` tokens starting at position `start`.
    pub fn at(&mut self, start: usize, seq: usize) -> ContiguousStep<'_> {
        ContiguousStep {
            cache: self,
            start,
            seq,
        }
    }
}

pub(super) struct ContiguousStep<'a> {
    cache: &'a mut Contiguous,
    start: usize,
    seq: usize,
}

impl KvStore for ContiguousStep<'_> {
    fn write_and_view(
        &mut self,
        layer: usize,
        cache: CacheKind,
        rows: &Tensor,
        shape: Vec<usize>,
    ) -> Result<Tensor, InterpError> {
        let buf = self.cache.rows.entry((layer, cache)).or_default();
        buf.truncate(self.start * rows.data.len() / self.seq);
        buf.extend_from_slice(&rows.data);
        Ok(Tensor::new(shape, buf.clone()))
    }
}

/// One sequence of a paged step: its new tokens start at position `start`, and its rows live
/// in `blocks` (block `i` holds positions `i * block_size..(i + 1) * block_size`).
#[derive(Clone, Copy, Debug)]
pub struct PagedSeq<'a> {
    pub tokens: &'a [u32],
    pub start: usize,
    pub blocks: &'a [u32],
}

impl PagedSeq<'_> {
    /// Positions cached once this step has run.
    pub fn end(&self) -> usize {
        self.start + self.tokens.len()
    }
}

/// A block pool per (layer, keys/values), allocated on first use.
pub(super) struct PagedPool {
    pub num_blocks: usize,
    pub block_size: usize,
    pools: HashMap<(usize, CacheKind), Vec<f32>>,
}

impl PagedPool {
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        PagedPool {
            num_blocks,
            block_size,
            pools: HashMap::new(),
        }
    }

    /// Checks a step's block tables against the pool before anything runs.
    pub fn check(&self, seqs: &[PagedSeq<'_>]) -> Result<(), InterpError> {
        for (i, s) in seqs.iter().enumerate() {
            let needed = s.end().div_ceil(self.block_size);
            if s.blocks.len() < needed {
                return Err(InterpError::Paging(format!(
                    "sequence {i} reaches position {} but its block table holds {} blocks of {} \
                     positions",
                    s.end(),
                    s.blocks.len(),
                    self.block_size
                )));
            }
            if let Some(&b) = s.blocks[..needed]
                .iter()
                .find(|&&b| b as usize >= self.num_blocks)
            {
                return Err(InterpError::Paging(format!(
                    "sequence {i} names block {b}, but the pool has {} blocks",
                    self.num_blocks
                )));
            }
        }
        Ok(())
    }

    pub fn step<'a>(&'a mut self, seqs: &'a [PagedSeq<'a>]) -> PagedStep<'a> {
        PagedStep { pool: self, seqs }
    }
}

pub(super) struct PagedStep<'a> {
    pool: &'a mut PagedPool,
    seqs: &'a [PagedSeq<'a>],
}

impl KvStore for PagedStep<'_> {
    fn write_and_view(
        &mut self,
        layer: usize,
        cache: CacheKind,
        rows: &Tensor,
        shape: Vec<usize>,
    ) -> Result<Tensor, InterpError> {
        let (bs, nb) = (self.pool.block_size, self.pool.num_blocks);
        let seq = self.seqs.first().map_or(0, |s| s.tokens.len());
        let width = rows.data.len() / (self.seqs.len() * seq).max(1);
        let pool = match self.pool.pools.entry((layer, cache)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let len = nb * bs * width;
                let mut v = Vec::new();
                v.try_reserve_exact(len).map_err(|_| {
                    InterpError::Paging(format!(
                        "cannot allocate the KV block pool of layer {layer}: {} bytes",
                        len as u64 * 4
                    ))
                })?;
                v.resize(len, 0.0);
                e.insert(v)
            }
        };
        let slot = |blocks: &[u32], pos: usize| (blocks[pos / bs] as usize * bs + pos % bs) * width;
        for (b, s) in self.seqs.iter().enumerate() {
            for t in 0..seq {
                let src = &rows.data[(b * seq + t) * width..][..width];
                let at = slot(s.blocks, s.start + t);
                pool[at..at + width].copy_from_slice(src);
            }
        }
        let ctx = shape[1];
        let mut out = vec![0f32; self.seqs.len() * ctx * width];
        for (b, s) in self.seqs.iter().enumerate() {
            for pos in 0..s.end().min(ctx) {
                let at = slot(s.blocks, pos);
                out[(b * ctx + pos) * width..][..width].copy_from_slice(&pool[at..at + width]);
            }
        }
        Ok(Tensor::new(shape, out))
    }
}
