//! Watching a launch list one step at a time: an observer is called before and after every step
//! of a run (which then runs eagerly, each step waited for) and may read and write the regions'
//! device memory in between. The per-kernel checks (`tests/gpu/kernel_oracle.rs`) feed a node's
//! steps random inputs this way and read back what they computed; it is a diagnostic, never on
//! a serving path.

use super::device::{CudaError, Gpu};
use super::profile::Phase;
use super::regions::DeviceRegions;
use pio_artifact::Region;

/// Where in a run the observer is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepAt {
    pub phase: Phase,
    /// The step's index in its launch list.
    pub index: usize,
    /// After the step (it has finished), else before it (it has not been queued).
    pub after: bool,
    /// The run's token count (rows of its per-token values; padded rows included).
    pub tokens: u32,
}

/// Called around every step of an observed run.
pub trait StepObserver {
    /// An error stops the run and is returned from the observed call.
    fn step(&mut self, at: StepAt, memory: &DeviceMemory<'_>) -> Result<(), String>;
}

/// The regions' device memory, read and written synchronously (bounds checked).
pub struct DeviceMemory<'a> {
    pub(crate) gpu: &'a Gpu,
    pub(crate) regions: &'a DeviceRegions,
}

impl DeviceMemory<'_> {
    /// `bytes` bytes at `offset` into `region`.
    pub fn read(&self, region: Region, offset: u64, bytes: usize) -> Result<Vec<u8>, CudaError> {
        let at = self.checked(region, offset, bytes as u64)?;
        self.gpu.sync()?;
        let mut out = vec![0u8; bytes];
        self.gpu.download(&mut out, at)?;
        Ok(out)
    }

    /// Writes `data` at `offset` into `region`.
    pub fn write(&self, region: Region, offset: u64, data: &[u8]) -> Result<(), CudaError> {
        let at = self.checked(region, offset, data.len() as u64)?;
        self.gpu.sync()?;
        self.gpu.upload(at, data)
    }

    /// The region's size in bytes (the pool's as allocated).
    pub fn size(&self, region: Region) -> u64 {
        self.regions.size(region)
    }

    fn checked(&self, region: Region, offset: u64, bytes: u64) -> Result<u64, CudaError> {
        let size = self.size(region);
        match offset.checked_add(bytes) {
            Some(end) if end <= size => Ok(self.regions.addr(region, offset)),
            _ => Err(CudaError::Other(format!(
                "{bytes} bytes at offset {offset} of the {region:?} region run past its {size} bytes"
            ))),
        }
    }
}

/// What a run does around each step: nothing, time it, or call an observer.
pub(crate) enum StepHook<'a, 'o> {
    None,
    Profile(&'a mut super::profile::Profiler),
    Observe {
        observer: &'a mut (dyn StepObserver + 'o),
        regions: &'a DeviceRegions,
    },
}

impl StepHook<'_, '_> {
    /// Whether steps run eagerly, one at a time (no graph replay).
    pub(crate) fn eager(&self) -> bool {
        !matches!(self, StepHook::None)
    }

    /// Calls the observer, if any, at `at`.
    pub(crate) fn notify(&mut self, gpu: &Gpu, at: StepAt) -> Result<(), CudaError> {
        if let StepHook::Observe { observer, regions } = self {
            let memory = DeviceMemory { gpu, regions };
            gpu.sync()?;
            observer.step(at, &memory).map_err(|e| {
                CudaError::Other(format!(
                    "observer at step {} of the {:?} list ({}): {e}",
                    at.index,
                    at.phase,
                    if at.after { "after" } else { "before" }
                ))
            })?;
        }
        Ok(())
    }
}
