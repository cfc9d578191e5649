//! A [`CudaModel`]'s logits and its GPU sampler: the last step's rows read back, or a token
//! drawn on the device from the last row (and left there as the next decode step's input).

use super::CudaModel;
use crate::cuda::device::CudaError;
use crate::sampling::SamplingParams;

impl CudaModel {
    /// The logits of the last step's rows, as f32 (from bf16, checked at load).
    pub fn logits(&self) -> Result<Vec<Vec<f32>>, CudaError> {
        self.gpu.bind_to_thread()?;
        let (io, v) = (&self.artifact.io, self.artifact.model.vocab_size);
        self.regions.read_logits(&self.gpu, io, self.logit_rows, v)
    }

    /// Samples the next token from the last row of logits on the GPU; the id also becomes the
    /// next decode step's input. `step` numbers the draw (for the RNG).
    pub fn sample(&mut self, p: &SamplingParams, step: u64) -> Result<u32, CudaError> {
        self.gpu.bind_to_thread()?;
        self.queue_sample(p, step)?;
        self.sampler.read_token(&self.gpu)
    }

    /// Queues the GPU sampler on the last row of logits, as [`Self::sample`] does, without
    /// waiting: the token lands in the next decode step's input (and the sampler's output), so
    /// decode steps and draws can follow each other on the device with no host round trip.
    pub fn enqueue_sample(&mut self, p: &SamplingParams, step: u64) -> Result<(), CudaError> {
        self.gpu.bind_to_thread()?;
        self.queue_sample(p, step)
    }

    fn queue_sample(&self, p: &SamplingParams, step: u64) -> Result<(), CudaError> {
        let v = self.artifact.model.vocab_size;
        let io = &self.artifact.io;
        let row = self.io_addr(io.logits) + ((self.logit_rows.max(1) - 1) * v * 2) as u64;
        self.sampler
            .enqueue(&self.gpu, p, step, row, self.io_addr(io.tokens))
    }
}
