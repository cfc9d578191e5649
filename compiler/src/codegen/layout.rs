//! The fixed regions' layouts: weights (in schedule order), the KV cache (with each layer's
//! decode-attention span counters) and the io region's offsets. Every entry starts on
//! [`memory::ALIGN`].

use super::paged_attention::MAX_GROUP;
use super::{err, fixed, Codegen};
use crate::error::CompileError;
use crate::ir::{CacheKind, NodeId, Op};
use crate::memory;
use pio_artifact::{self as art, DType};

fn align(n: u64) -> u64 {
    n.div_ceil(memory::ALIGN) * memory::ALIGN
}

impl Codegen<'_> {
    /// Places every weight; records each one's offset for the launches.
    pub(super) fn layout_weights(
        &mut self,
        order: &[NodeId],
    ) -> Result<(Vec<art::WeightEntry>, u64), CompileError> {
        let mut entries = Vec::new();
        let mut off = 0u64;
        for &id in order {
            let n = self.g.node(id);
            let Op::Weight(b) = &n.op else { continue };
            let shape =
                n.ty.shape
                    .as_fixed()
                    .ok_or_else(|| err(format!("weight '{}' is not static", n.name)))?;
            let bytes = (shape.iter().product::<usize>() * n.ty.dtype.size()) as u64;
            let sharded = self.g.is_sharded();
            let parts = if b.concat.is_empty() {
                vec![art::WeightPart {
                    hf_name: b.hf_name.clone(),
                    rows: shape[0],
                    shard: b.shard.filter(|_| sharded),
                }]
            } else {
                b.concat
                    .iter()
                    .map(|p| art::WeightPart {
                        hf_name: p.hf_name.clone(),
                        rows: p.rows,
                        shard: p.shard.filter(|_| sharded),
                    })
                    .collect()
            };
            entries.push(art::WeightEntry {
                name: n.name.clone(),
                parts,
                tied: b.tied.clone(),
                shape,
                dtype: n.ty.dtype,
                offset: off,
                bytes,
                init: b.init,
            });
            self.weights.insert(id, off);
            off += align(bytes);
        }
        Ok((entries, off))
    }

    /// Places each layer's K and V cache ([batch, kv head, position, dim] for `max_context`
    /// positions), and after each K cache its layer's span counters.
    pub(super) fn layout_kv(
        &mut self,
        order: &[NodeId],
    ) -> Result<(Vec<art::KvEntry>, u64), CompileError> {
        let mut entries = Vec::new();
        let mut off = 0u64;
        for &id in order {
            let n = self.g.node(id);
            if matches!(n.op, Op::KvAppend { .. }) {
                return Err(err(
                    "the graph still has kv_append: codegen needs the kv-cache pass",
                ));
            }
            let Some((layer, cache)) = n.op.writes_cache() else {
                continue;
            };
            let (kvh, d) = (fixed(self.g, id, 2)?, fixed(self.g, id, 3)?);
            // [batch, kv head, position, dim]: each kv head's rows are contiguous.
            let shape = vec![1, kvh, self.max_context, d];
            let bytes = (shape.iter().product::<usize>() * n.ty.dtype.size()) as u64;
            entries.push(art::KvEntry {
                layer,
                cache,
                shape,
                offset: off,
                bytes,
            });
            self.kv.insert((layer, cache), off);
            off += align(bytes);
            if cache == CacheKind::K {
                // The decode attention's per-kv-head count of finished spans (it returns to 0
                // after every step; the region is zeroed at load), keyed by the K cache.
                self.attention_counts.insert(self.kv[&(layer, cache)], off);
                off += align(kvh as u64 * 4);
            }
        }
        Ok((entries, off))
    }
}

/// The io region's offsets for steps of up to `max_prefill` tokens: token ids, positions (i32
/// each), then the logits; `logits_rows` is set once the prefill launches are known.
pub(super) fn io_offsets(max_prefill: usize) -> art::Io {
    let mp = max_prefill as u64;
    let positions = align(4 * mp);
    art::Io {
        tokens: 0,
        positions,
        logits: positions + align(4 * mp),
        logits_dtype: DType::BF16,
        logits_rows: 0,
    }
}

/// Bytes of the io region: the offsets of [`io_offsets`] and `io.logits_rows` rows of `vocab`
/// bf16 logits.
pub(super) fn io_bytes(io: &art::Io, vocab: usize) -> u64 {
    io.logits + align(2 * io.logits_rows as u64 * vocab as u64)
}

/// The paged pool's block layout (every layer's keys and values of `block_size` positions per
/// block, in the order of the static caches) and its io buffers after `io_end`; returns the
/// layout (steps still empty) and the io region's new end.
pub(super) fn paged_layout(
    kv: &[art::KvEntry],
    block_size: usize,
    max_context: usize,
    max_tokens: usize,
    max_seqs: usize,
    io_end: u64,
) -> (art::Paged, u64) {
    let mut pool = Vec::new();
    let mut off = 0u64;
    for e in kv {
        // Static caches are [batch, kv heads, positions, dim].
        let (kv_heads, head_dim) = (e.shape[1], e.shape[3]);
        pool.push(art::KvPoolEntry {
            layer: e.layer,
            cache: e.cache,
            kv_heads,
            head_dim,
            offset: off,
        });
        off += ((kv_heads * block_size * head_dim * 2) as u64).div_ceil(16) * 16;
    }
    let max_blocks_per_seq = max_context.div_ceil(block_size);
    let slots = align(io_end);
    let seq_index = slots + align(4 * max_tokens as u64);
    let block_tables = seq_index + align(4 * max_tokens as u64);
    let split_counts = block_tables + align(4 * (max_seqs * max_blocks_per_seq) as u64);
    let max_kv_heads = kv.iter().map(|e| e.shape[1]).max().unwrap_or(1);
    // One count per token and block of a token's split (a kv head's group in up to
    // MAX_GROUP parts).
    let split_counts_bytes = 4 * (max_tokens * max_kv_heads * MAX_GROUP) as u64;
    let end = split_counts + align(split_counts_bytes);
    (
        art::Paged {
            block_size,
            max_seqs,
            max_tokens,
            max_blocks_per_seq,
            block_bytes: off,
            pool,
            slots,
            seq_index,
            block_tables,
            split_counts,
            split_counts_bytes,
            steps: Vec::new(),
            chunk_steps: Vec::new(),
            single_steps: Vec::new(),
        },
        end,
    )
}
