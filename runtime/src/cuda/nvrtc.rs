//! NVRTC: compiles the artifact's kernels to CUBIN for the GPU's own architecture, in
//! parallel, with a disk cache keyed by the source hash, the architecture, the NVRTC version and
//! the options (a second start compiles nothing).

use cudarc::nvrtc::{result, sys};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Errors of run-time compilation.
#[derive(Debug, thiserror::Error)]
pub enum NvrtcError {
    #[error("NVRTC (libnvrtc) was not found on this machine; CUDA needs the CUDA toolkit's NVRTC library")]
    Missing,
    #[error("kernel {kernel} failed to compile with NVRTC ({code}); source: {source_path}\n{log}")]
    Compile {
        kernel: String,
        code: String,
        log: String,
        source_path: String,
    },
    #[error("NVRTC: {0}")]
    Api(String),
    #[error("kernel cache {path}: {message}")]
    Cache { path: PathBuf, message: String },
}

/// Whether libnvrtc can be loaded.
pub fn available() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { sys::is_culib_present() }
}

/// The NVRTC version (major, minor).
pub fn version() -> Result<(i32, i32), NvrtcError> {
    if !available() {
        return Err(NvrtcError::Missing);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| NvrtcError::Api(e.to_string()))?;
    Ok((major, minor))
}

/// One compiled kernel.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub name: String,
    /// What the driver loads: CUBIN for a real architecture (`sm_XY`), NUL-terminated PTX for a
    /// virtual one (`compute_XY`, compiled for the GPU by the driver at load).
    pub image: Vec<u8>,
    /// NVRTC's log (ptxas resource usage when `--ptxas-options=-v` is given).
    pub log: String,
    /// Whether it came from the disk cache.
    pub cached: bool,
}

/// Whether the options target a virtual architecture (`compute_XY`): NVRTC makes PTX then.
fn targets_ptx(options: &[String]) -> bool {
    options
        .iter()
        .any(|o| o.starts_with("--gpu-architecture=compute_"))
}

/// Compiles `source` to CUBIN, or to PTX for a virtual architecture. `source_path` is named in
/// errors (where the source was saved).
pub fn compile_image(
    name: &str,
    source: &str,
    options: &[String],
    source_path: &Path,
) -> Result<(Vec<u8>, String), NvrtcError> {
    if !available() {
        return Err(NvrtcError::Missing);
    }
    let api = |e: result::NvrtcError| NvrtcError::Api(e.to_string());
    let src = CString::new(source).map_err(|_| NvrtcError::Api("NUL byte in source".into()))?;
    let file = CString::new(format!("{name}.cu")).expect("kernel names have no NUL");
    let prog = result::create_program(&src, Some(&file)).map_err(api)?;
    // SAFETY: prog was created above and is destroyed once, below.
    let compiled = unsafe { result::compile_program(prog, options) };
    let log = unsafe { result::get_program_log(prog) }
        .map(|l| c_chars_to_string(&l))
        .unwrap_or_default();
    let out = match compiled {
        Err(e) => Err(NvrtcError::Compile {
            kernel: name.to_string(),
            code: e.to_string(),
            log: log.clone(),
            source_path: source_path.display().to_string(),
        }),
        Ok(()) => {
            // PTX for a virtual architecture, else CUBIN: the same two calls either way.
            type SizeFn = unsafe fn(sys::nvrtcProgram, *mut usize) -> sys::nvrtcResult;
            type GetFn = unsafe fn(sys::nvrtcProgram, *mut std::ffi::c_char) -> sys::nvrtcResult;
            let (size_of, get): (SizeFn, GetFn) = if targets_ptx(options) {
                (sys::nvrtcGetPTXSize, sys::nvrtcGetPTX)
            } else {
                (sys::nvrtcGetCUBINSize, sys::nvrtcGetCUBIN)
            };
            let mut size = 0usize;
            // SAFETY: prog compiled successfully; the buffer has the size NVRTC reports (PTX
            // includes its NUL).
            unsafe { size_of(prog, &mut size) }.result().map_err(api)?;
            let mut image = vec![0u8; size];
            unsafe { get(prog, image.as_mut_ptr().cast()) }
                .result()
                .map_err(api)?;
            Ok((image, log))
        }
    };
    // SAFETY: created above, not destroyed before.
    let _ = unsafe { result::destroy_program(prog) };
    out
}

fn c_chars_to_string(v: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = v
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// The options for an architecture: `--gpu-architecture=sm_XY` (or `compute_XY`) plus the
/// artifact's options (ptxas options only where ptxas runs: not for PTX).
pub fn options_for(arch: &str, base: &[String]) -> Vec<String> {
    let mut o = vec![format!("--gpu-architecture={arch}")];
    let ptx = arch.starts_with("compute_");
    o.extend(
        base.iter()
            .filter(|b| !(ptx && b.starts_with("--ptxas-options")))
            .cloned(),
    );
    o
}

/// The number of `sm_90` or `compute_80` (90, 80).
pub fn arch_number(arch: &str) -> Option<u32> {
    let n = arch
        .strip_prefix("sm_")
        .or_else(|| arch.strip_prefix("compute_"))?;
    n.parse().ok().filter(|&n| (10..1000).contains(&n))
}

/// What the kernels are compiled for on a GPU of architecture `gpu_arch` (`sm_90`): the GPU's
/// own, or `requested` (from `PIO_NVRTC_ARCH`, a developer knob): the GPU's own `sm_XY`, or
/// `compute_XY` no newer than the GPU, as PTX that the driver compiles at load. That runs the
/// code paths of older GPUs (no clusters, no PDL before sm_90) on this one.
pub fn target_arch(gpu_arch: &str, requested: Option<&str>) -> Result<String, String> {
    let Some(req) = requested else {
        return Ok(gpu_arch.to_string());
    };
    let (gpu, want) = (arch_number(gpu_arch), arch_number(req));
    match (gpu, want) {
        (Some(g), Some(w)) if req.starts_with("compute_") && w <= g => Ok(req.to_string()),
        _ if req == gpu_arch => Ok(req.to_string()),
        _ => Err(format!(
            "PIO_NVRTC_ARCH '{req}': expected {gpu_arch} or compute_XY no newer than it"
        )),
    }
}

/// [`target_arch`] for this GPU with `PIO_NVRTC_ARCH` as the request: what the runtime compiles
/// for.
pub fn target_arch_from_env(gpu_arch: &str) -> Result<String, String> {
    target_arch(gpu_arch, std::env::var("PIO_NVRTC_ARCH").ok().as_deref())
}

/// A folder of compiled kernels, keyed by everything that changes the CUBIN (or PTX).
pub struct KernelCache {
    dir: PathBuf,
}

impl KernelCache {
    /// `$PIO_CACHE_DIR`, else `$XDG_CACHE_HOME/pio/kernels`, else `~/.cache/pio/kernels`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("PIO_CACHE_DIR") {
            return PathBuf::from(d);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("pio").join("kernels")
    }

    pub fn new(dir: PathBuf) -> Self {
        KernelCache { dir }
    }

    fn key(source: &str, options: &[String], version: (i32, i32)) -> String {
        let mut h = 0xcbf29ce484222325u64;
        let mut eat = |b: &[u8]| {
            for &x in b {
                h = (h ^ x as u64).wrapping_mul(0x100000001b3);
            }
            h = (h ^ 0xff).wrapping_mul(0x100000001b3);
        };
        eat(source.as_bytes());
        for o in options {
            eat(o.as_bytes());
        }
        eat(format!("{}.{}", version.0, version.1).as_bytes());
        format!("{h:016x}")
    }

    /// Compiles every `(name, source)` (in parallel), using and filling the cache. On failure
    /// the source is saved next to the cache and named in the error.
    pub fn compile_all(
        &self,
        kernels: &[(String, String)],
        options: &[String],
    ) -> Result<Vec<Compiled>, NvrtcError> {
        let version = version()?;
        let cache_err = |path: &Path, e: std::io::Error| NvrtcError::Cache {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| cache_err(&self.dir, e))?;
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(16);
        let chunk = kernels.len().div_ceil(threads).max(1);
        let results: Vec<Result<Compiled, NvrtcError>> = std::thread::scope(|s| {
            let handles: Vec<_> = kernels
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|(name, source)| self.one(name, source, options, version))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("compile threads do not panic"))
                .collect()
        });
        results.into_iter().collect()
    }

    fn one(
        &self,
        name: &str,
        source: &str,
        options: &[String],
        version: (i32, i32),
    ) -> Result<Compiled, NvrtcError> {
        let key = Self::key(source, options, version);
        let ext = if targets_ptx(options) { "ptx" } else { "cubin" };
        let path = self.dir.join(format!("{name}-{key}.{ext}"));
        if let Ok(image) = std::fs::read(&path) {
            if !image.is_empty() {
                return Ok(Compiled {
                    name: name.to_string(),
                    image,
                    log: String::new(),
                    cached: true,
                });
            }
        }
        let src_path = self.dir.join(format!("{name}.cu"));
        let _ = std::fs::write(&src_path, source);
        let (image, log) = compile_image(name, source, options, &src_path)?;
        let tmp = self.dir.join(format!(".{name}-{key}.tmp"));
        if std::fs::write(&tmp, &image).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        Ok(Compiled {
            name: name.to_string(),
            image,
            log,
            cached: false,
        })
    }
}
