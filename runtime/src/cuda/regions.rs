//! The artifact's four device regions (weights, KV cache, io, activation arena), each one
//! allocation of the size the memory plan gives; every buffer argument is a region and an
//! offset into it.

use super::device::{drv, CudaError, DeviceBuffer, Gpu};
use cudarc::driver::result;
use pio_artifact::{Io, Region, Regions, WeightEntry};

/// The four regions, allocated once at load, and the paged pool once the batching engine sizes
/// it.
pub(crate) struct DeviceRegions {
    /// In the order of [`index`]: weights, KV cache, io, arena.
    bufs: [DeviceBuffer; 4],
    pool: Option<DeviceBuffer>,
}

fn index(r: Region) -> usize {
    match r {
        Region::Weights => 0,
        Region::Kv => 1,
        Region::Io => 2,
        Region::Arena => 3,
        // Not one of the four: addr() handles it.
        Region::Pool => usize::MAX,
    }
}

impl DeviceRegions {
    /// Allocates every region (out of memory names the region).
    pub(crate) fn alloc(gpu: &Gpu, r: &Regions) -> Result<DeviceRegions, CudaError> {
        Ok(DeviceRegions {
            bufs: [
                gpu.alloc(r.weights, "the weights")?,
                gpu.alloc(r.kv, "the KV cache")?,
                gpu.alloc(r.io, "inputs and logits")?,
                gpu.alloc(r.arena, "the activation arena")?,
            ],
            pool: None,
        })
    }

    /// The device address `offset` bytes into `region` (into the pool's first block: 0 plus
    /// the offset before the pool exists; the runner rebases them).
    pub(crate) fn addr(&self, region: Region, offset: u64) -> u64 {
        match region {
            Region::Pool => self.pool_base() + offset,
            r => self.bufs[index(r)].ptr + offset,
        }
    }

    /// A region's size in bytes (the pool's: 0 before [`Self::alloc_pool`]).
    pub(crate) fn size(&self, region: Region) -> u64 {
        match region {
            Region::Pool => self.pool_bytes(),
            r => self.bufs[index(r)].bytes,
        }
    }

    /// The paged pool's base address (0 before [`Self::alloc_pool`]).
    pub(crate) fn pool_base(&self) -> u64 {
        self.pool.as_ref().map_or(0, |p| p.ptr)
    }

    pub(crate) fn pool_bytes(&self) -> u64 {
        self.pool.as_ref().map_or(0, |p| p.bytes)
    }

    /// Allocates (or replaces) the paged KV pool, zeroed; returns its base address.
    pub(crate) fn alloc_pool(&mut self, gpu: &Gpu, bytes: u64) -> Result<u64, CudaError> {
        self.pool = None;
        let pool = gpu.alloc(bytes, "the paged KV pool")?;
        // SAFETY: the allocation is pool.bytes long.
        drv("clear the paged KV pool", unsafe {
            result::memset_d8_async(pool.ptr, 0, pool.bytes as usize, gpu.stream)
        })?;
        let base = pool.ptr;
        self.pool = Some(pool);
        Ok(base)
    }

    /// Zeroes the KV region: it also holds the decode attention's span counts, which start at
    /// 0 (queued on the stream).
    pub(crate) fn clear_kv(&self, gpu: &Gpu) -> Result<(), CudaError> {
        let kv = &self.bufs[index(Region::Kv)];
        // SAFETY: the region is kv.bytes long.
        drv("clear the KV cache", unsafe {
            result::memset_d8_async(kv.ptr, 0, kv.bytes as usize, gpu.stream)
        })
    }

    /// Uploads every weight at its offset: `fill` writes one weight's bf16 bytes (parts
    /// concatenated) into a staging buffer; `progress` gets the bytes done and the total.
    pub(crate) fn upload_weights(
        &self,
        gpu: &Gpu,
        weights: &[WeightEntry],
        mut fill: impl FnMut(&WeightEntry, &mut [u8]) -> Result<(), String>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), CudaError> {
        let total: u64 = weights.iter().map(|w| w.bytes).sum();
        let mut done = 0u64;
        for w in weights {
            let mut host = vec![0u8; w.bytes as usize];
            fill(w, &mut host).map_err(|m| CudaError::Other(format!("weight {}: {m}", w.name)))?;
            gpu.upload(self.addr(Region::Weights, w.offset), &host)?;
            done += w.bytes;
            progress(done, total);
        }
        Ok(())
    }

    /// Queues the step's token ids and their positions (from `start` on) into the io region.
    pub(crate) fn write_inputs(
        &self,
        gpu: &Gpu,
        io: &Io,
        tokens: &[u32],
        start: usize,
    ) -> Result<(), CudaError> {
        let (ids_at, pos_at) = (
            self.addr(Region::Io, io.tokens),
            self.addr(Region::Io, io.positions),
        );
        if let [token] = tokens {
            // The per-token path: no host allocation.
            gpu.upload_async(ids_at, &(*token as i32).to_le_bytes())?;
            return gpu.upload_async(pos_at, &(start as i32).to_le_bytes());
        }
        let ids: Vec<u8> = tokens
            .iter()
            .flat_map(|&t| (t as i32).to_le_bytes())
            .collect();
        let pos: Vec<u8> = (start..start + tokens.len())
            .flat_map(|p| (p as i32).to_le_bytes())
            .collect();
        gpu.upload_async(ids_at, &ids)?;
        gpu.upload_async(pos_at, &pos)
    }

    /// The first `rows` rows of bf16 logits (`vocab` each) in the io region, as f32 (waits for
    /// the stream).
    pub(crate) fn read_logits(
        &self,
        gpu: &Gpu,
        io: &Io,
        rows: usize,
        vocab: usize,
    ) -> Result<Vec<Vec<f32>>, CudaError> {
        let mut raw = vec![0u8; rows * vocab * 2];
        gpu.download(&mut raw, self.addr(Region::Io, io.logits))?;
        Ok(raw
            .chunks(vocab * 2)
            .map(|row| {
                row.chunks(2)
                    .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                    .collect()
            })
            .collect())
    }
}
