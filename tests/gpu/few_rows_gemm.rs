//! pio's few-rows GEMM kernel (the decode batches' GEMM tuning candidate, `PIO_GEMM_ROWS`)
//! against an f64 reference on the host, at every k split it may use, beside cuBLAS; and a row's
//! bits whatever the other rows of the call.

use super::have_gpu;
use pio_runtime::cuda::device::Gpu;
use pio_runtime::cuda::gemm_check::{check_few_rows_gemm, GemmRun};

fn check(gpu: &Gpu, shape: (u32, u32, u32), beta: f32) -> Vec<GemmRun> {
    let dir = tempfile::tempdir().unwrap();
    check_few_rows_gemm(gpu, dir.path().to_path_buf(), shape, beta, 7).unwrap()
}

#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn the_few_rows_gemm_rounds_as_an_f32_dot_product_at_every_split() {
    if !have_gpu() {
        return;
    }
    let gpu = Gpu::open().unwrap();
    // Row counts at and around the kernels' limits (32, 64, 128 rows), the 0.6B's o and down
    // projections, a column count that is not a multiple of a block's 64, a k of three chunks,
    // the 4B's hidden size, beta 0 and 1 (the residual GEMMs).
    for (shape, beta) in [
        ((1, 1024, 2048), 0.0),
        ((5, 4096, 1024), 1.0),
        ((32, 1024, 3072), 1.0),
        ((33, 1000, 3072), 1.0),
        ((64, 6144, 1024), 0.0),
        ((100, 1024, 96), 0.0),
        ((128, 2056, 2560), 1.0),
    ] {
        let runs = check(&gpu, shape, beta);
        assert!(runs.len() >= 2, "{shape:?}: no run of the few-rows kernel");
        for r in &runs {
            eprintln!("{shape:?} beta {beta}: {} worst {:.3}", r.what, r.worst);
            assert!(
                r.what == "cublas" || r.worst < 1.0,
                "{shape:?} beta {beta}: {} is off the reference by {:.3} of a bf16 step",
                r.what,
                r.worst
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn a_row_of_the_few_rows_gemm_has_the_same_bits_whatever_rows_share_its_call() {
    if !have_gpu() {
        return;
    }
    let gpu = Gpu::open().unwrap();
    // The operands of fewer rows are the first rows of the larger call's (the same random
    // streams): each kernel (32, 64, 128 rows) and each split gives those rows the same bits.
    let (n, k) = (1024, 2048);
    let full = check(&gpu, (128, n, k), 0.0);
    for m in [5u32, 40, 70] {
        let part = check(&gpu, (m, n, k), 0.0);
        for (p, f) in part.iter().zip(&full).filter(|(p, _)| p.what != "cublas") {
            assert_eq!(p.what, f.what);
            let len = (m * n) as usize;
            assert!(
                p.out[..] == f.out[..len],
                "{}: {m} rows differ from the same rows of a 128-row call",
                p.what
            );
        }
    }
}
