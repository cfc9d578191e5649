//! The GPU: driver presence, context, stream, and device memory with clear errors.

use cudarc::driver::{result, sys};
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

mod timer;
pub use timer::GpuTimer;

/// Errors of the CUDA runtime.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver found (libcuda); use --device cpu")]
    NoDriver,
    #[error("no CUDA GPU found; use --device cpu")]
    NoGpu,
    #[error("CUDA {what}: {message}")]
    Driver { what: String, message: String },
    #[error("out of GPU memory: {what} needs {asked} bytes, {free} of {total} bytes are free")]
    OutOfMemory {
        what: String,
        asked: u64,
        free: u64,
        total: u64,
    },
    #[error("cuBLAS {what}: {message}")]
    Cublas { what: String, message: String },
    #[error(transparent)]
    Nvrtc(#[from] super::nvrtc::NvrtcError),
    #[error(
        "this artifact is one rank's part of a model split over {ranks} GPUs (pio-compile --tp \
         {ranks}): each rank needs its own GPU and communicator (the engine's tensor-parallel \
         load opens them), not a single-GPU load"
    )]
    TensorParallel { ranks: usize },
    #[error("{0}")]
    Other(String),
}

pub(crate) fn drv<T>(what: &str, r: Result<T, result::DriverError>) -> Result<T, CudaError> {
    r.map_err(|e| CudaError::Driver {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// The release in the text of /proc/driver/nvidia/version: the first version number after
/// "Kernel Module" ("... Open Kernel Module for x86_64  580.159.04  Release Build ...").
pub fn driver_release_from(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    let is_release = |w: &str| {
        w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.') && !w.starts_with('.')
    };
    let mut words = line.split_whitespace();
    words.find(|&w| w == "Module")?;
    words.find(|&w| is_release(w)).map(str::to_string)
}

/// Whether a CUDA driver library can be loaded (never panics).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { sys::is_culib_present() }
}

/// Per-thread stack the context reserves up front.
const STACK_BYTES: usize = 256;

/// The most per-thread stack (local memory) any function loaded in this process needs, at
/// least [`STACK_BYTES`]. Every `Gpu` of one device shares its primary context, whose
/// stack limit must cover them all: an eager launch raises a low limit by itself, but a CUDA
/// graph replays under the limit as it is and fails ("unspecified launch failure") where a
/// kernel needs more, as a second model's `Gpu::open` once lowered it under the first's graphs.
static STACK_NEEDED: AtomicUsize = AtomicUsize::new(STACK_BYTES);

/// Sets the current context's per-thread stack limit.
fn set_stack_limit(bytes: usize) -> Result<(), CudaError> {
    // SAFETY: a plain setting of the current context.
    drv("stack limit", unsafe {
        sys::cuCtxSetLimit(sys::CUlimit::CU_LIMIT_STACK_SIZE, bytes).result()
    })
}

/// A GPU this process runs on: its primary context and one stream (device 0 unless a
/// tensor-parallel load opens one per rank).
///
/// The context is current on the thread that opened the GPU; another thread that takes the
/// `Gpu` (or a model holding it) over calls [`Gpu::bind_to_thread`] before using it
/// (`CudaModel`'s entry points do).
pub struct Gpu {
    pub name: String,
    pub arch: String,
    /// Compute capability major version (9 on Hopper).
    pub major: i32,
    pub total_memory: u64,
    /// Shared memory one block may use when a function opts in (bytes).
    pub max_shared_optin: u32,
    /// The device's index among the process's GPUs.
    pub ordinal: usize,
    /// The device's primary context, retained for the process.
    pub(crate) ctx: sys::CUcontext,
    pub(crate) stream: sys::CUstream,
    /// The stack limit this `Gpu` last set on its context (each device's context has its own).
    stack_limit: std::cell::Cell<usize>,
}

// SAFETY: the context and stream are plain driver handles, valid in any thread of the process
// once the context is current there (`bind_to_thread`); the primary context stays retained and
// the stream is never destroyed, so they outlive any move. `Gpu` is not `Sync`: one thread at a
// time uses it.
unsafe impl Send for Gpu {}

impl Gpu {
    /// Opens GPU 0. Absent driver or GPU are errors, never panics.
    pub fn open() -> Result<Gpu, CudaError> {
        Self::open_ordinal(0)
    }

    /// GPUs the driver sees (0 without a driver).
    pub fn count() -> Result<usize, CudaError> {
        if !driver_present() {
            return Err(CudaError::NoDriver);
        }
        drv("init", result::init())?;
        Ok(drv("device count", result::device::get_count())?.max(0) as usize)
    }

    /// Opens GPU `ordinal` and makes its context current on the calling thread.
    pub fn open_ordinal(ordinal: usize) -> Result<Gpu, CudaError> {
        let count = Self::count()?;
        if count < 1 {
            return Err(CudaError::NoGpu);
        }
        if ordinal >= count {
            return Err(CudaError::Other(format!(
                "GPU {ordinal} was asked for, but the driver sees {count} GPU(s) (0..{count})"
            )));
        }
        let dev = drv(
            &format!("device {ordinal}"),
            result::device::get(ordinal as i32),
        )?;
        // SAFETY: dev is a valid device; the primary context stays retained for the process.
        let ctx = drv("context", unsafe { result::primary_ctx::retain(dev) })?;
        // SAFETY: the context was just retained.
        drv("set context", unsafe { result::ctx::set_current(ctx) })?;
        // The driver reserves its default stack (1 KiB) for every thread the GPU can hold,
        // about 270 MB on an H100; most of pio's kernels use none. Never below what a function
        // loaded already needs (see STACK_NEEDED): `load_function` raises it.
        let stack = STACK_NEEDED.load(Ordering::SeqCst);
        set_stack_limit(stack)?;
        let name = drv("device name", result::device::get_name(dev))?;
        // SAFETY (the three queries): dev is a valid device.
        let major = drv("capability", unsafe {
            result::device::get_attribute(
                dev,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
            )
        })?;
        let minor = drv("capability", unsafe {
            result::device::get_attribute(
                dev,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
            )
        })?;
        let total_memory = drv("memory", unsafe { result::device::total_mem(dev) })? as u64;
        // SAFETY: dev is a valid device.
        let max_shared_optin = drv("shared memory per block", unsafe {
            result::device::get_attribute(
                dev,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
        })?
        .max(0) as u32;
        let stream = drv(
            "stream",
            result::stream::create(result::stream::StreamKind::NonBlocking),
        )?;
        Ok(Gpu {
            name,
            ordinal,
            arch: format!("sm_{major}{minor}"),
            major,
            total_memory,
            max_shared_optin,
            ctx,
            stream,
            stack_limit: std::cell::Cell::new(stack),
        })
    }

    /// Makes the GPU's context current on the calling thread (cheap: a thread-local store in
    /// the driver), so that a model moved to another thread keeps working.
    pub fn bind_to_thread(&self) -> Result<(), CudaError> {
        // SAFETY: the primary context is retained for the process, so the handle is valid.
        drv("set context", unsafe { result::ctx::set_current(self.ctx) })
    }

    /// The NVIDIA driver's release, e.g. "580.159.04" (Linux: from /proc/driver/nvidia/version).
    pub fn driver_release(&self) -> Option<String> {
        let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
        driver_release_from(&text)
    }

    /// The driver's CUDA version, e.g. "13.0".
    pub fn driver_version(&self) -> Option<String> {
        let mut v = 0i32;
        // SAFETY: one valid out-pointer.
        unsafe { sys::cuDriverGetVersion(&mut v) }.result().ok()?;
        Some(format!("{}.{}", v / 1000, (v % 1000) / 10))
    }

    /// Free and total device memory.
    pub fn memory(&self) -> (u64, u64) {
        result::mem_get_info()
            .map(|(f, t)| (f as u64, t as u64))
            .unwrap_or((0, self.total_memory))
    }

    /// Allocates `bytes` (at least 1) for `what`; out of memory names both sizes.
    pub fn alloc(&self, bytes: u64, what: &str) -> Result<DeviceBuffer, CudaError> {
        let (free, total) = self.memory();
        // SAFETY: a plain allocation in the current context.
        match unsafe { result::malloc_sync(bytes.max(1) as usize) } {
            Ok(ptr) => Ok(DeviceBuffer { ptr, bytes }),
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                Err(CudaError::OutOfMemory {
                    what: what.to_string(),
                    asked: bytes,
                    free,
                    total,
                })
            }
            Err(e) => Err(CudaError::Driver {
                what: format!("allocating {bytes} bytes for {what}"),
                message: e.to_string(),
            }),
        }
    }

    /// Copies host bytes to device memory (synchronously on the stream).
    pub fn upload(&self, dst: u64, src: &[u8]) -> Result<(), CudaError> {
        // SAFETY: callers pass a destination inside one of their allocations.
        drv("copy to device", unsafe {
            result::memcpy_htod_async(dst, src, self.stream)
        })?;
        self.sync()
    }

    /// Queues a copy of host bytes to device memory on the stream (the host buffer is
    /// staged by the driver before this returns, so it may be dropped).
    pub fn upload_async(&self, dst: u64, src: &[u8]) -> Result<(), CudaError> {
        // SAFETY: callers pass a destination inside one of their allocations; pageable source
        // memory is copied out by the driver before the call returns.
        drv("copy to device", unsafe {
            result::memcpy_htod_async(dst, src, self.gpu_stream())
        })
    }

    /// Queues a copy of `rows` host rows of `width` bytes each (packed in `src`) to device rows
    /// `pitch` bytes apart from `dst`: the used prefix of each row of a strided table, in one
    /// call (staged by the driver before it returns, as [`Self::upload_async`]).
    pub fn upload_rows_async(
        &self,
        dst: u64,
        pitch: usize,
        src: &[u8],
        width: usize,
        rows: usize,
    ) -> Result<(), CudaError> {
        if width > pitch || src.len() < width * rows {
            return Err(CudaError::Other(format!(
                "copy of {rows} rows of {width} bytes: a pitch of {pitch} bytes and {} source \
                 bytes cannot hold them",
                src.len()
            )));
        }
        if width == 0 || rows == 0 {
            return Ok(());
        }
        let copy = sys::CUDA_MEMCPY2D {
            srcXInBytes: 0,
            srcY: 0,
            srcMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_HOST,
            srcHost: src.as_ptr() as *const std::ffi::c_void,
            srcDevice: 0,
            srcArray: std::ptr::null_mut(),
            srcPitch: width,
            dstXInBytes: 0,
            dstY: 0,
            dstMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_DEVICE,
            dstHost: std::ptr::null_mut(),
            dstDevice: dst,
            dstArray: std::ptr::null_mut(),
            dstPitch: pitch,
            WidthInBytes: width,
            Height: rows,
        };
        // SAFETY: the source holds rows x width bytes (checked above); callers pass a
        // destination of rows x pitch bytes inside one of their allocations.
        drv("copy rows to device", unsafe {
            sys::cuMemcpy2DAsync_v2(&copy, self.stream).result()
        })
    }

    fn gpu_stream(&self) -> sys::CUstream {
        self.stream
    }

    /// Copies device bytes to the host (synchronously).
    pub fn download(&self, dst: &mut [u8], src: u64) -> Result<(), CudaError> {
        // SAFETY: callers pass a source inside one of their allocations.
        drv("copy to host", unsafe {
            result::memcpy_dtoh_async(dst, src, self.stream)
        })?;
        self.sync()
    }

    /// Queues a device-to-device copy of all of `src` into `dst` (which must be as large).
    pub fn copy_async(&self, dst: &DeviceBuffer, src: &DeviceBuffer) -> Result<(), CudaError> {
        if dst.bytes < src.bytes {
            return Err(CudaError::Other(format!(
                "device copy of {} bytes into a buffer of {}",
                src.bytes, dst.bytes
            )));
        }
        // SAFETY: both are live allocations and dst holds src's bytes.
        drv("copy on the device", unsafe {
            result::memcpy_dtod_async(dst.ptr, src.ptr, src.bytes as usize, self.stream)
        })
    }

    pub fn sync(&self) -> Result<(), CudaError> {
        // SAFETY: the stream is valid for the Gpu's life.
        drv("synchronize", unsafe {
            result::stream::synchronize(self.stream)
        })
    }

    /// Lets `f` (kernel `name`) launch with `bytes` of dynamic shared memory, past the 48 KB
    /// every function may use; an error naming the bytes needed and available where the GPU
    /// has too little.
    pub(crate) fn allow_dynamic_shared(
        &self,
        f: sys::CUfunction,
        name: &str,
        bytes: u32,
    ) -> Result<(), CudaError> {
        let fixed = func_attribute(
            f,
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
            &format!("kernel {name}: static shared memory"),
        )?;
        let needed = u64::from(bytes) + fixed as u64;
        if needed > u64::from(self.max_shared_optin) {
            return Err(CudaError::Other(format!(
                "kernel {name} needs {needed} bytes of shared memory per block; {} has {}",
                self.name, self.max_shared_optin
            )));
        }
        // SAFETY: a valid function handle; the value was checked against the device's limit.
        drv(&format!("kernel {name}: dynamic shared memory"), unsafe {
            sys::cuFuncSetAttribute(
                f,
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
            .result()
        })
    }

    /// Loads a CUBIN and returns the named function.
    pub fn load_function(&self, image: &[u8], name: &str) -> Result<sys::CUfunction, CudaError> {
        // SAFETY: the image is a CUBIN or NUL-terminated PTX produced by NVRTC; the module is
        // kept for the process.
        let module = drv(&format!("loading kernel {name}"), unsafe {
            result::module::load_data(image.as_ptr() as *const c_void)
        })?;
        let cname =
            std::ffi::CString::new(name).map_err(|_| CudaError::Other("bad kernel name".into()))?;
        // SAFETY: the module was just loaded and stays loaded.
        let f = drv(&format!("kernel {name}"), unsafe {
            result::module::get_function(module, cname)
        })?;
        // Its stack, covered by the context's limit before any graph replays it.
        let local = func_attribute(
            f,
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES,
            &format!("kernel {name}: local memory"),
        )?;
        // Never below what any function of the process needs: another `Gpu` of this device
        // may have loaded one. Each device's context is raised by its own `Gpu`s' loads.
        let needed = STACK_NEEDED.fetch_max(local, Ordering::SeqCst).max(local);
        if needed > self.stack_limit.get() {
            set_stack_limit(needed)?;
            self.stack_limit.set(needed);
        }
        Ok(f)
    }
}

/// A function's attribute (bytes of memory it uses), `what` naming it in errors.
fn func_attribute(
    f: sys::CUfunction,
    attribute: sys::CUfunction_attribute,
    what: &str,
) -> Result<usize, CudaError> {
    let mut value = 0i32;
    // SAFETY: a valid function handle and an out-pointer to a live integer.
    drv(what, unsafe {
        sys::cuFuncGetAttribute(&mut value, attribute, f).result()
    })?;
    Ok(value.max(0) as usize)
}

/// Device memory freed on drop.
pub struct DeviceBuffer {
    pub ptr: u64,
    pub bytes: u64,
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: ptr came from malloc_sync and is freed once.
        let _ = unsafe { result::free_sync(self.ptr) };
    }
}
