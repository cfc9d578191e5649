//! The batching engine's steps on the GPU: the artifact's paged launch list over a KV block pool
//! sized at [`CudaModel::enable_paged`], each step's tokens, positions, pool slots, sequence
//! indices and block tables written to the io region first. Decode batches are padded to a
//! bucket (a power of two) and replayed from that bucket's CUDA graph; the padding rows are
//! sequences of one token at position 0 in a scratch block past the pool's last, which no
//! sequence owns.

use super::{step_hook, CudaModel};
use crate::cuda::device::{drv, CudaError, DeviceBuffer, Gpu};
use crate::cuda::graph::bucket;
use crate::cuda::logit_rows::LogitRows;
use crate::cuda::observe::{StepHook, StepObserver};
use crate::cuda::profile::Phase;
use cudarc::driver::{result, sys};
use pio_artifact::Region;
use std::ffi::c_void;

/// Greedy picks of a paged step on the device: one argmax per logits row, so that a batch's
/// logits never travel to the host.
pub(crate) struct BatchArgmax {
    func: sys::CUfunction,
    /// i32 ids, one per row of the io region's logits.
    out: Option<DeviceBuffer>,
}

// SAFETY: a plain driver handle of a loaded module, valid in any thread once the GPU's context is
// current (every `CudaModel` entry point makes it so); the buffer is a device address. Not `Sync`.
unsafe impl Send for BatchArgmax {}

impl BatchArgmax {
    pub(crate) fn new(func: sys::CUfunction) -> Self {
        BatchArgmax { func, out: None }
    }

    /// The argmax of each of `rows` rows at `logits`, copied to the host (waits).
    fn run(
        &mut self,
        gpu: &Gpu,
        logits: u64,
        rows: usize,
        vocab: usize,
        max_rows: usize,
    ) -> Result<Vec<u32>, CudaError> {
        if self.out.is_none() {
            self.out = Some(gpu.alloc((max_rows.max(1) * 4) as u64, "the batch argmax ids")?);
        }
        let out = self.out.as_ref().expect("allocated above");
        let (mut l, mut v, mut o) = (logits, vocab as i32, out.ptr);
        let mut params: [*mut c_void; 3] = [
            &mut l as *mut u64 as _,
            &mut v as *mut i32 as _,
            &mut o as *mut u64 as _,
        ];
        // SAFETY: parameters match pio_argmax_rows; `rows` rows of logits lie in the io region
        // and `out` holds max_rows >= rows ids.
        drv("launch the batch argmax", unsafe {
            result::launch_kernel(
                self.func,
                (rows as u32, 1, 1),
                (1024, 1, 1),
                0,
                gpu.stream,
                &mut params,
            )
        })?;
        let mut raw = vec![0u8; rows * 4];
        gpu.download(&mut raw, out.ptr)?;
        Ok(raw
            .chunks(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u32)
            .collect())
    }
}

/// A paged step's inputs as little-endian i32 bytes, kept between steps so that a step
/// allocates nothing on the host.
#[derive(Default)]
pub(crate) struct PagedInputs {
    ids: Vec<u8>,
    positions: Vec<u8>,
    slots: Vec<u8>,
    seq_index: Vec<u8>,
    tables: Vec<u8>,
    /// Each sequence's last row (a chunk step's logits rows).
    ends: Vec<u32>,
}

impl PagedInputs {
    /// Empties the buffers; the block tables become `table_bytes` zero bytes (rows of the
    /// step's widest table, packed: only that prefix of each device row is written).
    fn clear(&mut self, table_bytes: usize) {
        self.ids.clear();
        self.positions.clear();
        self.slots.clear();
        self.seq_index.clear();
        self.ends.clear();
        self.tables.clear();
        self.tables.resize(table_bytes, 0);
    }
}

/// One sequence of a paged step: its new tokens at positions `start..`, its cache in `blocks`.
#[derive(Clone, Copy, Debug)]
pub struct PagedSeqRef<'a> {
    pub tokens: &'a [u32],
    pub start: usize,
    pub blocks: &'a [u32],
}

impl CudaModel {
    /// Bytes of the pool allocated now (0 before [`Self::enable_paged`]).
    pub fn paged_pool_allocated(&self) -> u64 {
        self.regions.pool_bytes()
    }

    /// Bytes a pool of `num_blocks` blocks takes on the device: one block more, the scratch
    /// block the padding rows of a decode bucket write to.
    pub fn paged_pool_bytes(&self, num_blocks: usize) -> u64 {
        self.artifact
            .paged
            .block_bytes
            .saturating_mul(num_blocks as u64 + 1)
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
        // The graphs hold the old pool's addresses.
        self.gpu.sync()?;
        self.paged_graphs.destroy();
        let base = self.regions.alloc_pool(&self.gpu, bytes)?;
        self.runner.rebase_pool(base);
        // The decode attention's split counts start at 0 (each launch leaves them so).
        let counts = self
            .regions
            .addr(Region::Io, self.artifact.paged.split_counts);
        // SAFETY: the artifact's checks put the counts inside the io region.
        drv("clear the paged attention's split counts", unsafe {
            result::memset_d8_async(
                counts,
                0,
                self.artifact.paged.split_counts_bytes as usize,
                self.gpu.stream,
            )
        })?;
        self.pool_blocks = num_blocks;
        self.gpu.sync()?;
        self.tune_paged_gemms()
    }

    /// Tunes the paged lists' GEMMs for every decode bucket and every row class of a chunk, so
    /// that no step pays for it later (see `gemm.rs`). Reports how long that took on stderr.
    fn tune_paged_gemms(&mut self) -> Result<(), CudaError> {
        let started = std::time::Instant::now();
        let p = &self.artifact.paged;
        let (max_seqs, max_tokens) = (p.max_seqs.max(1), p.max_tokens.max(1));
        let mut tuned = 0;
        let mut rows = 1;
        loop {
            let padded = bucket(rows, max_seqs);
            tuned += self
                .runner
                .tune(&self.gpu, Phase::Paged, padded as u32, LogitRows::All)?;
            if padded >= max_seqs {
                break;
            }
            rows *= 2;
        }
        tuned += self
            .runner
            .tune(&self.gpu, Phase::PagedSingle, 1, LogitRows::All)?;
        let mut rows = 2;
        while rows <= max_tokens {
            tuned +=
                self.runner
                    .tune(&self.gpu, Phase::PagedChunk, rows as u32, LogitRows::Last)?;
            rows *= 2;
        }
        if tuned > 0 {
            // Tuning wrote the io region's logits rows.
            self.logit_rows = 0;
            let (all, lt_wins, rows_wins) = self.runner.tuned();
            eprintln!(
                "tuned {tuned} GEMM shape classes in {:.2} s; cuBLASLt won {lt_wins} and pio's \
                 few-rows kernel {rows_wins} of {all} so far (PIO_GEMM_TUNE=0 turns tuning off)",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// Runs one paged step and returns each sequence's last-token logits (f32, in order).
    /// Either every sequence brings one token (a decode batch, up to `max_seqs`, from a CUDA
    /// graph) or the step is a chunk step: sequences of any number of tokens, up to `max_tokens`
    /// in all (prefill chunks, several sequences' in one run of the launch list).
    pub fn step_paged(&mut self, seqs: &[PagedSeqRef<'_>]) -> Result<Vec<Vec<f32>>, CudaError> {
        let rows = self.run_paged(seqs, None)?;
        let vocab = self.artifact.model.vocab_size;
        let read = rows.last().map_or(0, |&r| r + 1);
        let mut logits = self
            .regions
            .read_logits(&self.gpu, &self.artifact.io, read, vocab)?;
        // The rows ascend and differ: each is taken once.
        Ok(rows
            .iter()
            .map(|&r| std::mem::take(&mut logits[r]))
            .collect())
    }

    /// [`Self::step_paged`] with each sequence's greedy pick instead of its logits (the argmax on
    /// the device: only the ids travel).
    pub fn step_paged_argmax(&mut self, seqs: &[PagedSeqRef<'_>]) -> Result<Vec<u32>, CudaError> {
        let rows = self.run_paged(seqs, None)?;
        let vocab = self.artifact.model.vocab_size;
        let io = &self.artifact.io;
        let logits = self.regions.addr(Region::Io, io.logits);
        let read = rows.last().map_or(0, |&r| r + 1);
        let ids = self
            .argmax
            .run(&self.gpu, logits, read, vocab, io.logits_rows)?;
        Ok(rows.iter().map(|&r| ids[r]).collect())
    }

    /// [`Self::step_paged`] run eagerly with `observer` called before and after every step (a
    /// diagnostic for per-kernel checks). The logits stay in the io region.
    pub fn step_paged_observed(
        &mut self,
        seqs: &[PagedSeqRef<'_>],
        observer: &mut dyn StepObserver,
    ) -> Result<(), CudaError> {
        self.run_paged(seqs, Some(observer)).map(|_| ())
    }

    /// Writes a paged step's inputs and runs it; returns each sequence's row of the io region's
    /// logits (ascending): a decode batch's rows 0.., a chunk step's too where its logits come
    /// from a marked GEMM (which computes each sequence's last row alone), else each
    /// sequence's last token's row.
    fn run_paged(
        &mut self,
        seqs: &[PagedSeqRef<'_>],
        observer: Option<&mut (dyn StepObserver + '_)>,
    ) -> Result<Vec<usize>, CudaError> {
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
        // A decode batch runs as its bucket's sequences (padding included); a chunk as it is.
        let padded = if decode {
            bucket(seqs.len(), p.max_seqs)
        } else {
            seqs.len()
        };
        // The host staging buffers of earlier steps, refilled (no allocation once warm).
        // Each row of the block tables is written up to the step's widest table only (the
        // kernels read a sequence's entries below its length): rows of `width` entries.
        let width = seqs
            .iter()
            .map(|s| s.blocks.len())
            .max()
            .unwrap_or(1)
            .clamp(1, p.max_blocks_per_seq);
        let mut st = std::mem::take(&mut self.paged_inputs);
        st.clear(padded * width * 4);
        let PagedInputs {
            ids,
            positions,
            slots,
            seq_index,
            tables,
            ends,
        } = &mut st;
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
            ends.push((ids.len() / 4 - 1) as u32);
            let row = &mut tables[i * width * 4..];
            for (k, &b) in s.blocks.iter().enumerate() {
                row[k * 4..k * 4 + 4].copy_from_slice(&(b as i32).to_le_bytes());
            }
        }
        // Padding up to the bucket: one token each at position 0 of the scratch block.
        let scratch = self.pool_blocks as i32;
        for i in seqs.len()..padded {
            ids.extend(0i32.to_le_bytes());
            positions.extend(0i32.to_le_bytes());
            slots.extend((scratch * bs as i32).to_le_bytes());
            seq_index.extend((i as i32).to_le_bytes());
            tables[i * width * 4..][..4].copy_from_slice(&scratch.to_le_bytes());
        }
        let profiled = self.profiler_range.begin(|| {
            let kind = if decode { "decode" } else { "chunks" };
            format!("{kind} of {} sequences, {total} tokens", seqs.len())
        })?;
        let io = &self.artifact.io;
        let at = |off| self.regions.addr(Region::Io, off);
        self.gpu.upload_async(at(io.tokens), ids)?;
        self.gpu.upload_async(at(io.positions), positions)?;
        self.gpu.upload_async(at(p.slots), slots)?;
        self.gpu.upload_async(at(p.seq_index), seq_index)?;
        let pitch = p.max_blocks_per_seq * 4;
        self.gpu
            .upload_rows_async(at(p.block_tables), pitch, tables, width * 4, padded)?;
        let (runner, gpu) = (&mut self.runner, &self.gpu);
        // A chunk step's logits: each sequence's last row.
        let chunk_rows = LogitRows::Ends(&st.ends);
        // Before a graph captures the step's GEMMs (tuned already after enable_paged, except
        // for a row class it did not cover).
        if decode && padded == 1 && self.paged_single {
            runner.tune(gpu, Phase::PagedSingle, 1, LogitRows::All)?;
        } else if decode {
            runner.tune(gpu, Phase::Paged, padded as u32, LogitRows::All)?;
        } else {
            runner.tune(gpu, Phase::PagedChunk, total as u32, chunk_rows)?;
        }
        let hook = step_hook(&mut self.profiler, &self.regions, observer);
        if decode {
            // Every row's logits; the bucket's graph (eager while profiling or observed, so
            // that every launch is seen). A lone sequence runs the list of GEMV kernels.
            let rows = padded as u32;
            let phase = if rows == 1 && self.paged_single {
                Phase::PagedSingle
            } else {
                Phase::Paged
            };
            if hook.eager() {
                runner.run(gpu, phase, rows, LogitRows::All, hook)?;
            } else {
                self.paged_graphs
                    .launch(gpu, phase, rows, self.use_graph, || {
                        runner.run(gpu, phase, rows, LogitRows::All, StepHook::None)
                    })?;
            }
        } else {
            // Chunks have a list of their own (tensor-core attention); each sequence's last
            // row's logits only (every row when the logits are not a marked GEMM).
            runner.run(gpu, Phase::PagedChunk, total as u32, chunk_rows, hook)?;
        }
        self.profiler_range.end(profiled)?;
        // The batch-1 path's logits rows are stale now.
        self.logit_rows = 0;
        let rows = if decode || self.logits_gemm {
            (0..seqs.len()).collect()
        } else {
            st.ends.iter().map(|&e| e as usize).collect()
        };
        self.paged_inputs = st;
        Ok(rows)
    }
}
