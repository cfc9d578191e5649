//! The GPU sampler (`sample.cu`): picks the next token from a row of bf16 logits on the device,
//! so a decode step needs no copy of the vocabulary to the host. It keeps its own buffers: the
//! per-block candidates, the seen-token flags and generated-token counts (for the penalties),
//! and the sampled id.

use super::device::{drv, CudaError, DeviceBuffer, Gpu};
use crate::sampling::SamplingParams;
use cudarc::driver::{result, sys};
use std::ffi::c_void;

/// The most candidates the GPU sampler keeps (its top-k limit).
pub const GPU_MAX_TOP_K: usize = 64;

/// Whether the GPU sampler draws exactly from `p`: greedy, or top-k between 1 and 64 (without
/// top-k the whole vocabulary is a candidate, which the host sampler handles), and no frequency
/// penalty (the GPU sampler does not count occurrences).
pub fn gpu_sampling_supported(p: &SamplingParams) -> bool {
    p.frequency_penalty == 0.0 && (p.temperature == 0.0 || (1..=GPU_MAX_TOP_K).contains(&p.top_k))
}

/// Vocabulary entries per block of the first kernel (`SLICE` in sample.cu).
const SLICE: usize = 2048;
/// The most candidates the final kernel merges (`MAXC` in sample.cu).
const MAX_CANDIDATES: usize = 4864;

/// The sampler's two kernels and its buffers.
pub(crate) struct GpuSampler {
    partial: sys::CUfunction,
    finish: sys::CUfunction,
    vocab: usize,
    cand_v: DeviceBuffer,
    cand_i: DeviceBuffer,
    seen: DeviceBuffer,
    gen_count: DeviceBuffer,
    out_token: DeviceBuffer,
}

// SAFETY: the functions are plain driver handles of loaded modules, valid in any thread once the
// GPU's context is current (every `CudaModel` entry point makes it so); the buffers are device
// addresses. The sampler is not `Sync`: its owner uses it from one thread at a time.
unsafe impl Send for GpuSampler {}

impl GpuSampler {
    /// Allocates the buffers for a vocabulary of `vocab` (too large a vocabulary is an error).
    pub(crate) fn new(
        gpu: &Gpu,
        partial: sys::CUfunction,
        finish: sys::CUfunction,
        vocab: usize,
    ) -> Result<GpuSampler, CudaError> {
        let blocks = vocab.div_ceil(SLICE);
        let s = GpuSampler {
            partial,
            finish,
            vocab,
            cand_v: gpu.alloc((blocks * GPU_MAX_TOP_K * 4) as u64, "sampling")?,
            cand_i: gpu.alloc((blocks * GPU_MAX_TOP_K * 4) as u64, "sampling")?,
            seen: gpu.alloc(vocab as u64, "sampling")?,
            gen_count: gpu.alloc(vocab as u64 * 4, "sampling")?,
            out_token: gpu.alloc(4, "sampling")?,
        };
        if blocks * GPU_MAX_TOP_K > MAX_CANDIDATES {
            return Err(CudaError::Other(format!(
                "vocabulary of {vocab} is too large for the GPU sampler"
            )));
        }
        Ok(s)
    }

    /// Device memory of the buffers.
    pub(crate) fn bytes(&self) -> u64 {
        self.cand_v.bytes
            + self.cand_i.bytes
            + self.seen.bytes
            + self.gen_count.bytes
            + self.out_token.bytes
    }

    /// Clears the seen flags and generated counts (a new sequence); queued, no sync.
    pub(crate) fn reset(&self, gpu: &Gpu) -> Result<(), CudaError> {
        let v = self.vocab;
        // SAFETY: both buffers are v (resp. 4v) bytes long.
        unsafe {
            drv(
                "clear",
                result::memset_d8_async(self.seen.ptr, 0, v, gpu.stream),
            )?;
            drv(
                "clear",
                result::memset_d8_async(self.gen_count.ptr, 0, v * 4, gpu.stream),
            )
        }
    }

    /// Marks tokens as seen (the prompt, for the repetition penalty); out-of-vocabulary ids are
    /// skipped.
    pub(crate) fn mark_seen(&self, gpu: &Gpu, tokens: &[u32]) -> Result<(), CudaError> {
        let mut host = vec![0u8; self.vocab];
        gpu.download(&mut host, self.seen.ptr)?;
        for &t in tokens {
            if let Some(x) = host.get_mut(t as usize) {
                *x = 1;
            }
        }
        gpu.upload(self.seen.ptr, &host)
    }

    /// Queues both kernels on `row` (a row of `vocab` bf16 logits) without waiting; the token
    /// lands in the sampler's output and at `next_input` (the next step's token id). `step`
    /// numbers the draw for the RNG.
    pub(crate) fn enqueue(
        &self,
        gpu: &Gpu,
        p: &SamplingParams,
        step: u64,
        row: u64,
        next_input: u64,
    ) -> Result<(), CudaError> {
        let v = self.vocab;
        let k = if p.temperature == 0.0 {
            1
        } else {
            p.top_k.clamp(1, GPU_MAX_TOP_K)
        };
        let blocks = v.div_ceil(SLICE);
        let (mut logits, mut vocab, mut kk) = (row, v as i32, k as i32);
        let (mut seen, mut gen) = (self.seen.ptr, self.gen_count.ptr);
        let (mut rep, mut pres) = (p.repetition_penalty, p.presence_penalty);
        let (mut cv, mut ci) = (self.cand_v.ptr, self.cand_i.ptr);
        let mut params: [*mut c_void; 9] = [
            &mut logits as *mut u64 as _,
            &mut vocab as *mut i32 as _,
            &mut kk as *mut i32 as _,
            &mut seen as *mut u64 as _,
            &mut gen as *mut u64 as _,
            &mut rep as *mut f32 as _,
            &mut pres as *mut f32 as _,
            &mut cv as *mut u64 as _,
            &mut ci as *mut u64 as _,
        ];
        // SAFETY: parameters match pio_topk_partial's signature; buffers are sized in `new`.
        drv("sampling", unsafe {
            result::launch_kernel(
                self.partial,
                (blocks as u32, 1, 1),
                (256, 1, 1),
                0,
                gpu.stream,
                &mut params,
            )
        })?;
        let mut n_cand = (blocks * k) as i32;
        let (mut temp, mut top_p, mut min_p) = (p.temperature, p.top_p, p.min_p);
        let (mut seed, mut stepv) = (p.seed, step);
        let mut out = self.out_token.ptr;
        let mut next = next_input;
        let mut params: [*mut c_void; 13] = [
            &mut cv as *mut u64 as _,
            &mut ci as *mut u64 as _,
            &mut n_cand as *mut i32 as _,
            &mut kk as *mut i32 as _,
            &mut temp as *mut f32 as _,
            &mut top_p as *mut f32 as _,
            &mut min_p as *mut f32 as _,
            &mut seed as *mut u64 as _,
            &mut stepv as *mut u64 as _,
            &mut out as *mut u64 as _,
            &mut next as *mut u64 as _,
            &mut seen as *mut u64 as _,
            &mut gen as *mut u64 as _,
        ];
        // SAFETY: parameters match pio_sample_final's signature.
        drv("sampling", unsafe {
            result::launch_kernel(
                self.finish,
                (1, 1, 1),
                (1024, 1, 1),
                0,
                gpu.stream,
                &mut params,
            )
        })
    }

    /// Waits for the last draw and returns its token id (-1, no finite logit, is an error).
    pub(crate) fn read_token(&self, gpu: &Gpu) -> Result<u32, CudaError> {
        let mut id = [0u8; 4];
        gpu.download(&mut id, self.out_token.ptr)?;
        let id = i32::from_le_bytes(id);
        u32::try_from(id)
            .map_err(|_| CudaError::Other("the GPU sampler found no finite logit".into()))
    }
}
