//! The model's side of the batching engine: a paged KV pool and batched steps over it, on the
//! CPU executor or the GPU's paged launch list.

use super::{Backend, Model};
use crate::error::PioError;
use pio_compiler::interp::PagedSeq;
use pio_runtime::cuda::executor::PagedSeqRef;

/// What a device's paged step takes at most (the GPU's are compiled into the artifact).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagedLimits {
    /// The pool's positions per block (every engine on this model must use it).
    pub block_size: usize,
    /// Sequences of one decode batch.
    pub max_seqs: usize,
    /// Tokens of one step (a prefill chunk).
    pub max_tokens: usize,
    /// Bytes of one block on the device.
    pub block_bytes: u64,
}

impl Model {
    /// The GPU's paged-step limits; None on the CPU (any block size and batch).
    pub fn paged_limits(&self) -> Option<PagedLimits> {
        match &self.backend {
            Backend::Cpu(_) => None,
            Backend::Cuda(c) => {
                let p = &c.model_ref().artifact.paged;
                Some(PagedLimits {
                    block_size: p.block_size,
                    max_seqs: p.max_seqs,
                    max_tokens: p.max_tokens,
                    block_bytes: p.block_bytes,
                })
            }
        }
    }

    /// Bytes one block of `block_size` positions takes on the model's device.
    pub fn kv_block_bytes(&self, block_size: usize) -> u64 {
        match self.paged_limits() {
            Some(l) => l.block_bytes,
            None => (block_size as u64)
                .saturating_mul(self.kv_values_per_position)
                .saturating_mul(4),
        }
    }

    /// Device memory free now, counting a paged pool already allocated (it is replaced by the
    /// next one); None on the CPU.
    pub fn gpu_free_bytes(&mut self) -> Option<u64> {
        match &mut self.backend {
            Backend::Cpu(_) => None,
            Backend::Cuda(c) => {
                let gpu = c.model().gpu();
                gpu.bind_to_thread().ok()?;
                let free = gpu.memory().0;
                Some(free + c.model().paged_pool_allocated())
            }
        }
    }

    /// Prepares the model for the batching engine: a paged KV pool of `num_blocks` blocks of
    /// `block_size` positions (on the GPU, the artifact's block size), its memory checked
    /// first.
    pub fn enable_paged_cache(
        &mut self,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<(), PioError> {
        if let Some(l) = self.paged_limits() {
            if l.block_size != block_size {
                return Err(PioError::Options(format!(
                    "the artifact's paged pool has blocks of {} positions, not {block_size} \
                     (pio-compile --block-size)",
                    l.block_size
                )));
            }
        }
        let bytes = self
            .kv_block_bytes(block_size)
            .saturating_mul(num_blocks as u64);
        let what = format!("a KV block pool of {num_blocks} blocks of {block_size} positions");
        match &mut self.backend {
            Backend::Cpu(c) => {
                pio_runtime::resources::check_host_memory(bytes, &format!("{what} (f32, CPU)"))?;
                c.enable_paged_cache(num_blocks, block_size)
            }
            Backend::Cuda(c) => {
                let gpu = c.model().gpu();
                gpu.bind_to_thread()?;
                // A pool allocated before is replaced: its memory counts as free. The GPU's pool
                // has a scratch block more (the padding rows of its decode buckets).
                let free = gpu.memory().0 + c.model().paged_pool_allocated();
                let bytes = c.model().paged_pool_bytes(num_blocks);
                if bytes > free {
                    return Err(pio_runtime::resources::NotEnough {
                        resource: "GPU memory".into(),
                        what: format!("{what} (fewer --kv-blocks, or a smaller --memory-fraction)"),
                        needed: bytes,
                        available: free,
                    }
                    .into());
                }
                Ok(c.each(|m| m.enable_paged(num_blocks))?)
            }
        }
    }

    /// Runs one batched step over the paged pool ([`Self::enable_paged_cache`]): a batch of
    /// single tokens (a decode step), or sequences of any lengths (prefill chunks: on the GPU
    /// one run of the chunk launch list for all of them); returns each sequence's last-token
    /// logits.
    pub fn forward_paged(&mut self, seqs: &[PagedSeq<'_>]) -> Result<Vec<Vec<f32>>, PioError> {
        match &mut self.backend {
            Backend::Cpu(c) => c.forward_paged(seqs),
            Backend::Cuda(c) => {
                let seqs = gpu_seqs(seqs);
                Ok(c.each(|m| m.step_paged(&seqs))?)
            }
        }
    }

    /// [`Self::forward_paged`] with each sequence's greedy pick (the argmax of its last-token
    /// logits, the lowest id among equal values): on a GPU only the ids leave the device.
    pub fn forward_paged_argmax(&mut self, seqs: &[PagedSeq<'_>]) -> Result<Vec<u32>, PioError> {
        match &mut self.backend {
            Backend::Cpu(c) => Ok(c
                .forward_paged(seqs)?
                .iter()
                .map(|l| crate::model::argmax(l))
                .collect()),
            Backend::Cuda(c) => {
                let seqs = gpu_seqs(seqs);
                Ok(c.each(|m| m.step_paged_argmax(&seqs))?)
            }
        }
    }
}

/// The executor's sequences as the GPU runtime's (the same three fields: the runtime does not
/// depend on the compiler).
fn gpu_seqs<'a>(seqs: &[PagedSeq<'a>]) -> Vec<PagedSeqRef<'a>> {
    seqs.iter()
        .map(|s| PagedSeqRef {
            tokens: s.tokens,
            start: s.start,
            blocks: s.blocks,
        })
        .collect()
}
