//! The batching engine's steps on the GPU: the artifact's paged launch list over a KV block pool
//! sized at [`CudaModel::enable_paged`], each step's tokens, positions, pool slots, sequence
//! indices and block tables written to the io region first.

use super::CudaModel;
use crate::cuda::device::CudaError;
use crate::cuda::profile::Phase;
use pio_artifact::Region;

/// One sequence of a paged step: its new tokens at positions `start..`, its cache in `blocks`.
#[derive(Clone, Copy, Debug)]
pub struct PagedSeqRef<'a> {
    pub tokens: &'a [u32],
    pub start: usize,
    pub blocks: &'a [u32],
}

impl CudaModel {
    /// Bytes a pool of `num_blocks` blocks takes.
    pub fn paged_pool_bytes(&self, num_blocks: usize) -> u64 {
        self.artifact
            .paged
            .block_bytes
            .saturating_mul(num_blocks as u64)
    }

    /// Allocates the paged KV pool: `num_blocks` blocks of the artifact's block size.
    pub fn enable_paged(&mut self, num_blocks: usize) -> Result<(), CudaError> {
        self.gpu.bind_to_thread()?;
        if num_blocks == 0 {
            return Err(CudaError::Other(
                "a paged pool needs at least one block".into(),
            ));
        }
        let bytes = self.paged_pool_bytes(num_blocks);
        let base = self.regions.alloc_pool(&self.gpu, bytes)?;
        self.runner.rebase_pool(base);
        self.pool_blocks = num_blocks;
        self.gpu.sync()
    }

    /// Runs one paged step and returns each sequence's last-token logits (f32, in order).
    /// Either every sequence brings one token (a decode batch, up to `max_seqs`) or there is
    /// one sequence (a prefill chunk of up to `max_tokens`).
    pub fn step_paged(&mut self, seqs: &[PagedSeqRef<'_>]) -> Result<Vec<Vec<f32>>, CudaError> {
        self.gpu.bind_to_thread()?;
        let p = &self.artifact.paged;
        let bad = |m: String| Err(CudaError::Other(format!("paged step: {m}")));
        if self.pool_blocks == 0 {
            return bad("no pool: call enable_paged first".into());
        }
        let total: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        let decode = seqs.iter().all(|s| s.tokens.len() == 1);
        if seqs.is_empty() || total == 0 || seqs.iter().any(|s| s.tokens.is_empty()) {
            return bad("every sequence needs at least one token".into());
        }
        if !decode && seqs.len() != 1 {
            return bad(format!(
                "{} sequences with more than one token each: run prefill chunks one at a time",
                seqs.len()
            ));
        }
        if seqs.len() > p.max_seqs || total > p.max_tokens {
            return bad(format!(
                "{} sequences / {total} tokens exceed the artifact's {} / {}",
                seqs.len(),
                p.max_seqs,
                p.max_tokens
            ));
        }
        let vocab = self.artifact.model.vocab_size;
        let bs = p.block_size;
        let mut ids = Vec::with_capacity(total * 4);
        let mut positions = Vec::with_capacity(total * 4);
        let mut slots = Vec::with_capacity(total * 4);
        let mut seq_index = Vec::with_capacity(total * 4);
        let mut tables = vec![0u8; seqs.len() * p.max_blocks_per_seq * 4];
        for (i, s) in seqs.iter().enumerate() {
            let end = s.start + s.tokens.len();
            if end > self.artifact.max_context {
                return bad(format!(
                    "sequence {i} reaches position {end}, past the context of {}",
                    self.artifact.max_context
                ));
            }
            let needed = end.div_ceil(bs);
            if s.blocks.len() < needed || s.blocks.len() > p.max_blocks_per_seq {
                return bad(format!(
                    "sequence {i} has {} blocks for {end} positions (needs {needed}, at most {})",
                    s.blocks.len(),
                    p.max_blocks_per_seq
                ));
            }
            if let Some(b) = s.blocks.iter().find(|&&b| b as usize >= self.pool_blocks) {
                return bad(format!(
                    "sequence {i} names block {b} of a pool of {}",
                    self.pool_blocks
                ));
            }
            if let Some(t) = s.tokens.iter().find(|&&t| t as usize >= vocab) {
                return bad(format!(
                    "token id {t} is out of range for a vocabulary of {vocab}"
                ));
            }
            for (j, &t) in s.tokens.iter().enumerate() {
                let pos = s.start + j;
                let slot = s.blocks[pos / bs] as usize * bs + pos % bs;
                ids.extend((t as i32).to_le_bytes());
                positions.extend((pos as i32).to_le_bytes());
                slots.extend((slot as i32).to_le_bytes());
                seq_index.extend((i as i32).to_le_bytes());
            }
            let row = &mut tables[i * p.max_blocks_per_seq * 4..];
            for (k, &b) in s.blocks.iter().enumerate() {
                row[k * 4..k * 4 + 4].copy_from_slice(&(b as i32).to_le_bytes());
            }
        }
        let io = &self.artifact.io;
        let at = |off| self.regions.addr(Region::Io, off);
        self.gpu.upload_async(at(io.tokens), &ids)?;
        self.gpu.upload_async(at(io.positions), &positions)?;
        self.gpu.upload_async(at(p.slots), &slots)?;
        self.gpu.upload_async(at(p.seq_index), &seq_index)?;
        self.gpu.upload_async(at(p.block_tables), &tables)?;
        // A decode batch needs every row's logits; a chunk its last row only (or every row when
        // the logits are not a marked GEMM).
        let all_rows = decode;
        self.runner.run(
            &self.gpu,
            Phase::Paged,
            total as u32,
            all_rows,
            self.profiler.as_mut(),
        )?;
        let rows = if all_rows || !self.logits_gemm {
            total
        } else {
            1
        };
        let mut logits = self.regions.read_logits(&self.gpu, io, rows, vocab)?;
        // The batch-1 path's logits rows are stale now.
        self.logit_rows = 0;
        Ok(if decode {
            logits
        } else {
            vec![logits.pop().unwrap_or_default()]
        })
    }
}
