//! A check of pio's few-rows GEMM kernel (`gemm/rows.rs`) on the GPU, for the GPU tests: random
//! bf16 operands, each of the kernel's k splits and cuBLAS against an f64 reference on the host.

use super::device::{CudaError, Gpu};
use super::gemm::rows::{self, RowsCall, RowsKernels, RowsMode};
use super::gemm::{blas_gemm, Blas};
use super::nvrtc::{arch_number, options_for, target_arch_from_env, KernelCache};
use std::path::PathBuf;

/// The few-rows GEMM's whole source as NVRTC compiles it (for the CPU's NVRTC test).
pub const FEW_ROWS_GEMM_SOURCE: &str = rows::SOURCE;

/// One run of a GEMM in the check.
#[derive(Clone, Debug)]
pub struct GemmRun {
    /// `cublas` or `rows/<splits>`.
    pub what: String,
    /// The worst error over the output, in units of the reference's bf16 spacing plus the f32
    /// accumulation's own allowance (`2^-20` times the sum of the terms' magnitudes): a
    /// correctly rounded f32 dot product stays below 1.
    pub worst: f64,
    /// The output, bf16 bits, row-major `[m, n]`.
    pub out: Vec<u16>,
}

fn bf16_to_f64(b: u16) -> f64 {
    f32::from_bits((b as u32) << 16) as f64
}

/// Random bf16 values in [-1, 1) from `seed` (xorshift; no dependency).
fn random_bf16(count: usize, seed: u64) -> Vec<u16> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..count)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            (x.to_bits() >> 16) as u16
        })
        .collect()
}

fn to_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `C[m, n] = A[m, k] · B[n, k]ᵀ + beta · C` on random operands (C starts random too): cuBLAS,
/// then the few-rows kernel with each k split it may use on this GPU; each run's output and
/// worst error. Compiles the kernel (into `cache_dir`) for the GPU's architecture.
pub fn check_few_rows_gemm(
    gpu: &Gpu,
    cache_dir: PathBuf,
    (m, n, k): (u32, u32, u32),
    beta: f32,
    seed: u64,
) -> Result<Vec<GemmRun>, CudaError> {
    let arch = target_arch_from_env(&gpu.arch).map_err(CudaError::Other)?;
    let arch_n = arch_number(&arch).unwrap_or(0);
    if arch_n < 80 {
        return Err(CudaError::Other(format!(
            "the few-rows GEMM needs sm_80 or newer, not {arch}"
        )));
    }
    let compiled = KernelCache::new(cache_dir).compile_all(
        &[(rows::SOURCE_NAME.to_string(), rows::SOURCE.to_string())],
        &options_for(&arch, &[]),
    )?;
    let mut funcs = [std::ptr::null_mut(); 3];
    for (f, (_, name)) in funcs.iter_mut().zip(rows::VARIANTS) {
        *f = gpu.load_function(&compiled[0].image, name)?;
    }
    let kernels = RowsKernels {
        funcs,
        clusters: arch_n >= 90,
        mode: RowsMode::Candidate,
    };
    let (mu, nu, ku) = (m as usize, n as usize, k as usize);
    let a = random_bf16(mu * ku, seed);
    let b = random_bf16(nu * ku, seed + 1);
    let c0 = random_bf16(mu * nu, seed + 2);
    let (da, db) = (
        gpu.alloc(a.len() as u64 * 2, "the GEMM check")?,
        gpu.alloc(b.len() as u64 * 2, "the GEMM check")?,
    );
    let dc = gpu.alloc(c0.len() as u64 * 2, "the GEMM check")?;
    gpu.upload(da.ptr, &to_bytes(&a))?;
    gpu.upload(db.ptr, &to_bytes(&b))?;
    // The reference and each element's allowance, in f64.
    let mut reference = vec![0f64; mu * nu];
    let mut allowance = vec![0f64; mu * nu];
    for i in 0..mu {
        for j in 0..nu {
            let (mut s, mut mag) = (0f64, 0f64);
            for l in 0..ku {
                let t = bf16_to_f64(a[i * ku + l]) * bf16_to_f64(b[j * ku + l]);
                s += t;
                mag += t.abs();
            }
            let c = beta as f64 * bf16_to_f64(c0[i * nu + j]);
            reference[i * nu + j] = s + c;
            allowance[i * nu + j] = (mag + c.abs()) * 2f64.powi(-20);
        }
    }
    let blas = Blas::new(gpu)?;
    let call = RowsCall {
        m,
        n,
        k,
        lda: k,
        ldc: n,
        a: da.ptr,
        b: db.ptr,
        c: dc.ptr,
    };
    let mut runs: Vec<(String, Option<u32>)> = vec![("cublas".into(), None)];
    for s in rows::split_options(k, kernels.clusters) {
        runs.push((format!("rows/{s}"), Some(s)));
    }
    let mut out = Vec::new();
    for (what, splits) in runs {
        gpu.upload(dc.ptr, &to_bytes(&c0))?;
        match splits {
            None => blas_gemm(&blas, (m, n, k), (da.ptr, db.ptr, dc.ptr), beta)?,
            Some(s) => rows::run(gpu, &kernels, &call, s, beta)?,
        }
        let mut bytes = vec![0u8; mu * nu * 2];
        gpu.download(&mut bytes, dc.ptr)?;
        let got: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect();
        let worst = got
            .iter()
            .zip(reference.iter().zip(&allowance))
            .map(|(&g, (&r, &slack))| {
                // The spacing of bf16 values at |r| (8 significant bits).
                let spacing = if r == 0.0 {
                    0.0
                } else {
                    2f64.powi(r.abs().log2().floor() as i32 - 7)
                };
                (bf16_to_f64(g) - r).abs() / (spacing + slack).max(f64::MIN_POSITIVE)
            })
            .fold(0f64, f64::max);
        out.push(GemmRun {
            what,
            worst,
            out: got,
        });
    }
    Ok(out)
}
