//! GPU benchmarks: decode step and prefill of the CUDA executor. Without a CUDA driver and GPU
//! they print one line saying they were skipped, register nothing and exit 0.
//!
//! The model is Qwen3-0.6B with random weights (bf16), KV cache of 4,096 tokens
//! (`$PIO_BENCH_GPU_SPEC` names another spec in `model-specs/`, e.g.
//! `qwen3-4b-instruct-2507`, with or without `.yaml`). Loading compiles the model (passes, codegen, NVRTC with the
//! disk cache) and fills the weights, which takes a while before the first bench.
//!
//! - `gpu/decode_step/<spec>`: one token through the decode launch list (CUDA-graph replay),
//!   waited for with a stream sync; positions 128 to 384 (a 128-token prompt and up to 256
//!   generated tokens, as in the README's speed figures); the re-prefill when that range is
//!   used up is not timed. Logits stay on the GPU.
//! - `gpu/decode_step+greedy_sample/<spec>`: the same plus greedy sampling on the GPU, its token
//!   read back and fed to the next step: the per-token cost of `pio run`.
//! - `gpu/prefill_128/<spec>`: a 128-token prefill (cuBLAS GEMMs) on an empty cache.
//!
//! ```sh
//! cargo bench --bench gpu
//! ```

mod common;

use common::root;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pio::{Device, LoadOptions, Model, WeightsSource};
use pio_runtime::cuda::device::{driver_present, Gpu};
use pio_runtime::cuda::executor::CudaModel;
use pio_runtime::sampling::SamplingParams;
use std::hint::black_box;
use std::time::{Duration, Instant};

const DEFAULT_SPEC: &str = "qwen3-0.6b.yaml";
const PROMPT_LEN: usize = 128;
/// Most tokens generated after the prompt before the cache is reset.
const GENERATED: usize = 256;
const MAX_CONTEXT: usize = 4096;

/// Whether a CUDA driver and a GPU are there (never panics).
fn gpu_available() -> bool {
    driver_present() && Gpu::open().is_ok()
}

/// A prompt of `n` ids spread over the vocabulary (deterministic).
fn prompt(n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % vocab)
        .collect()
}

/// Resets the cache and prefills `tokens`.
fn refill(m: &mut CudaModel, tokens: &[u32]) {
    m.reset().expect("reset");
    m.step(tokens).expect("prefill");
}

fn bench_gpu(c: &mut Criterion) {
    if !gpu_available() {
        println!("gpu benches skipped: no CUDA GPU on this machine");
        return;
    }
    let spec_name = std::env::var("PIO_BENCH_GPU_SPEC").unwrap_or_else(|_| DEFAULT_SPEC.into());
    // A file in model-specs/, with or without its .yaml.
    let short = spec_name.trim_end_matches(".yaml").to_string();
    let path = root().join("model-specs").join(format!("{short}.yaml"));
    let opts = LoadOptions {
        max_context: Some(MAX_CONTEXT),
        ..LoadOptions::default()
    };
    let load_start = Instant::now();
    let mut model = Model::load_with(
        &path,
        &WeightsSource::Random { seed: 0 },
        Device::Cuda,
        &opts,
    )
    .unwrap_or_else(|e| {
        eprintln!(
            "gpu benches: cannot load {} on the GPU: {e}",
            path.display()
        );
        std::process::exit(2)
    });
    let vocab = model.info().vocab_size as u32;
    let device = model.device_name();
    println!(
        "gpu benches: {short} (random weights) on {device}, loaded in {:.1} s",
        load_start.elapsed().as_secs_f64()
    );
    let m = model.cuda().expect("the model runs on the GPU").model();
    let tokens = prompt(PROMPT_LEN, vocab);
    let limit = (PROMPT_LEN + GENERATED).min(m.context_bound());

    let mut group = c.benchmark_group("gpu");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    // Decode step, logits left on the GPU.
    group.throughput(Throughput::Elements(1));
    refill(m, &tokens);
    group.bench_function(format!("decode_step/{short}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                if m.cached_len() >= limit {
                    refill(m, &tokens);
                }
                let token = tokens[i as usize % tokens.len()];
                let start = Instant::now();
                m.step(&[token]).expect("decode step");
                m.gpu().sync().expect("sync");
                total += start.elapsed();
            }
            total
        })
    });

    // Decode step + greedy GPU sampling, the sampled token fed back.
    let greedy = SamplingParams::greedy();
    refill(m, &tokens);
    let mut next = m.sample(&greedy, 0).expect("sample");
    group.bench_function(format!("decode_step+greedy_sample/{short}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                if m.cached_len() >= limit {
                    refill(m, &tokens);
                    next = m.sample(&greedy, 0).expect("sample");
                }
                let start = Instant::now();
                m.step(&[next]).expect("decode step");
                next = m.sample(&greedy, i + 1).expect("sample");
                total += start.elapsed();
            }
            black_box(next);
            total
        })
    });

    // Prefill of the prompt on an empty cache (`step` syncs after a prefill).
    group.throughput(Throughput::Elements(PROMPT_LEN as u64));
    group.bench_function(format!("prefill_{PROMPT_LEN}/{short}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                m.reset().expect("reset");
                let start = Instant::now();
                m.step(black_box(&tokens)).expect("prefill");
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench_gpu);
criterion_main!(benches);
