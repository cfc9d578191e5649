//! GPU tests: they run on a machine with a CUDA GPU (the GPU machine, through
//! tests/reference/run_on_gpu.sh, which runs them with `--include-ignored` and
//! `PIO_REQUIRE_GPU=1`) and are reported as ignored everywhere else (build.rs sets cfg
//! `pio_gpu` where a driver is present). With `PIO_REQUIRE_GPU=1` a GPU that cannot be opened
//! fails them instead of skipping.

#[path = "gpu/batching.rs"]
mod batching;
#[path = "gpu/chunk_steps.rs"]
mod chunk_steps;
#[path = "gpu/chunking.rs"]
mod chunking;
mod common;
#[path = "gpu/few_rows_gemm.rs"]
mod few_rows_gemm;
#[path = "gpu/kernel_oracle.rs"]
mod kernel_oracle;
#[path = "gpu/long_batch.rs"]
mod long_batch;
#[path = "gpu/oracle.rs"]
mod oracle;
#[path = "gpu/tensor_parallel.rs"]
mod tensor_parallel;

use common::rel_l2;
use pio::{Device, LoadOptions, Model, WeightsSource};
use pio_runtime::cuda::device::{driver_present, Gpu};
use std::path::Path;

fn have_gpu() -> bool {
    let opened = if driver_present() {
        Gpu::open().map(|_| ()).map_err(|e| e.to_string())
    } else {
        Err("no NVIDIA driver".to_string())
    };
    match opened {
        Ok(()) => true,
        Err(e) if common::required("PIO_REQUIRE_GPU") => {
            panic!("PIO_REQUIRE_GPU is set but no GPU can be used: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no CUDA GPU on this machine ({e})");
            false
        }
    }
}

fn load(spec: &str, device: Device, opts: &LoadOptions) -> Model {
    Model::load_with(
        Path::new(spec),
        &WeightsSource::Random { seed: 1 },
        device,
        opts,
    )
    .unwrap()
}

/// The tiny spec on the GPU, default options.
fn tiny_on_gpu() -> Model {
    load(
        "model-specs/qwen3-tiny.yaml",
        Device::Cuda,
        &LoadOptions::default(),
    )
}

const PROMPT: [u32; 9] = [9, 72, 300, 17, 255, 480, 101, 33, 7];

/// CUDA (bf16, fused kernels) against the CPU executor (f32, unfused) on the same weights:
/// a prefill (also chunked) and decode steps through the CUDA graph, or as one-token prefills.
#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn cuda_matches_the_cpu_executor_on_tiny_and_odd_sizes() {
    if !have_gpu() {
        return;
    }
    for spec in [
        "model-specs/qwen3-tiny.yaml",
        "tests/specs/gpu/qwen3-odd50.yaml",
        "tests/specs/gpu/qwen3-odd3.yaml",
        // Long decode GEMV rows (4,096 and 9,736 features) and 32 query heads.
        "tests/specs/gpu/qwen3-wide.yaml",
        // Real 0.6B layer shapes (head_dim 128: the vector paths), two layers.
        "compiler/tests/specs/qwen3-0.6b-2layers.yaml",
    ] {
        let mut cpu = load(spec, Device::Cpu, &LoadOptions::default());
        let (expected, generated) = cpu.greedy_logits(&PROMPT, 6).unwrap();
        // The decode steps also run as one-token prefill steps (cuBLAS GEMMs with one row, the
        // tensor-core attention with one query), as `pio logits --step-path prefill` runs them.
        for (max_prefill, steps_as_prefill) in [(None, false), (Some(4), false), (None, true)] {
            let opts = LoadOptions {
                max_prefill,
                ..Default::default()
            };
            let mut gpu = load(spec, Device::Cuda, &opts);
            let cuda = gpu.cuda().unwrap().model();
            cuda.set_single_tokens_as_prefill(steps_as_prefill);
            // Every prompt row's logits, also from a prefill in chunks of 4.
            let mut rows = gpu.prefill_logits(&PROMPT).unwrap();
            for &t in &generated {
                rows.extend(gpu.step_logits(&[t]).unwrap());
            }
            assert_eq!(rows.len(), expected.len());
            for (i, (g, c)) in rows.iter().zip(&expected).enumerate() {
                let e = rel_l2(g, c);
                let at = format!("{spec} max_prefill={max_prefill:?} steps_as_prefill={steps_as_prefill} row {i}");
                eprintln!("{at}: rel L2 {e:.2e}");
                assert!(e <= 1e-2, "{at}: relative L2 {e:.3e} > 1e-2");
            }
        }
    }
}

/// Long prompts (chunked prefill; head_dim 10 through the scalar prefill attention, 128 through
/// the tensor-core one) and decode steps over many attention spans, against the CPU executor.
#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn long_contexts_match_the_cpu_executor() {
    if !have_gpu() {
        return;
    }
    for (spec, len, spans, every_row) in [
        // Every prompt row's logits (prefill steps of 128 tokens, the rows the io region holds).
        ("tests/specs/gpu/qwen3-odd50.yaml", 650, None, true),
        // Tensor-core prefill attention: 12 tiles of 64 tokens and one of 15, in one step.
        ("tests/specs/gpu/qwen3-long.yaml", 783, None, false),
        // Decode attention over several 512-position spans (a cluster each), their outputs
        // weighed by the last span to finish; past the default 5 spans, 5 longer ones (848
        // positions, 106 per block); with at most 2 spans, 2,104 positions each (263 per block,
        // several rounds of loads).
        ("tests/specs/gpu/qwen3-long.yaml", 1500, None, false),
        ("tests/specs/gpu/qwen3-long.yaml", 4200, None, false),
        ("tests/specs/gpu/qwen3-long.yaml", 4200, Some(2), false),
        // 3 and 8 query heads per kv head in the decode attention's tensor-core tiles, over
        // three spans.
        ("tests/specs/gpu/qwen3-group3.yaml", 1100, None, false),
        ("tests/specs/gpu/qwen3-group8.yaml", 1100, None, false),
    ] {
        let prompt: Vec<u32> = (0..len).map(|i| ((i * 7919 + 13) % 512) as u32).collect();
        let mut cpu = load(spec, Device::Cpu, &LoadOptions::default());
        let (expected, generated) = cpu.greedy_logits(&prompt, 4).unwrap();
        let opts = LoadOptions {
            max_prefill: Some(1024),
            attention_spans: spans,
            ..Default::default()
        };
        let mut gpu = load(spec, Device::Cuda, &opts);
        let mut rows = if every_row {
            gpu.prefill_logits(&prompt).unwrap()
        } else {
            // As generation runs a prompt: steps of up to 1,024 tokens, the logits GEMM on the
            // last row alone.
            let cuda = gpu.cuda().unwrap().model();
            cuda.step(&prompt).unwrap();
            cuda.logits().unwrap()
        };
        for &t in &generated {
            rows.extend(gpu.step_logits(&[t]).unwrap());
        }
        let want = if every_row { len } else { 1 } + generated.len();
        assert_eq!(rows.len(), want, "{spec}: rows of logits");
        let skip = expected.len() - rows.len();
        for (i, (g, c)) in rows.iter().zip(&expected[skip..]).enumerate() {
            let e = rel_l2(g, c);
            assert!(
                e <= 1e-2,
                "{spec} row {}: relative L2 {e:.3e} > 1e-2",
                skip + i
            );
        }
        eprintln!("{spec} (spans {spans:?}): {} rows checked", rows.len());
    }
}

/// A decode step replayed from the CUDA graph gives bit-identical logits to the same step run
/// eagerly, with and without programmatic dependent launch.
#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn graph_replay_is_bitwise_equal_to_eager() {
    if !have_gpu() {
        return;
    }
    let mut m = tiny_on_gpu();
    let mut run = |graph: bool, pdl: bool| {
        let cuda = m.cuda().unwrap().model();
        cuda.set_graph(graph);
        cuda.set_pdl(pdl);
        cuda.reset().unwrap();
        cuda.step(&PROMPT).unwrap();
        let mut rows = Vec::new();
        for t in [5u32, 99, 400] {
            cuda.step(&[t]).unwrap();
            rows.push(cuda.logits().unwrap().remove(0));
        }
        rows
    };
    let eager = run(false, false);
    let bits = |r: &Vec<Vec<f32>>| r.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (graph, pdl) in [(true, false), (false, true), (true, true)] {
        let other = run(graph, pdl);
        assert_eq!(bits(&eager), bits(&other), "graph {graph}, pdl {pdl}");
    }
    assert!(m.cuda().unwrap().model().graph_fallback.is_none());
}

/// Rewinding to a cached length and decoding again repeats the same tokens and logits bit for
/// bit (what `pio bench` relies on to time decode repeats from one filled context); rewinding
/// past the cache is an error.
#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn rewind_repeats_a_decode_bitwise() {
    if !have_gpu() {
        return;
    }
    let mut m = tiny_on_gpu();
    let cuda = m.cuda().unwrap().model();
    cuda.reset().unwrap();
    cuda.step(&PROMPT).unwrap();
    let first = cuda
        .sample(&pio_runtime::sampling::SamplingParams::greedy(), 0)
        .unwrap();
    let decode = |cuda: &mut pio_runtime::cuda::executor::CudaModel| {
        let (mut tokens, mut bits) = (Vec::new(), Vec::new());
        let mut next = first;
        for _ in 0..6 {
            cuda.step(&[next]).unwrap();
            let row = cuda.logits().unwrap().remove(0);
            bits.extend(row.iter().map(|x| x.to_bits()));
            next = pio::model::argmax(&row);
            tokens.push(next);
        }
        (tokens, bits)
    };
    let a = decode(cuda);
    assert_eq!(cuda.cached_len(), PROMPT.len() + 6);
    cuda.rewind(PROMPT.len(), first).unwrap();
    let b = decode(cuda);
    assert_eq!(a.0, b.0);
    assert!(a.1 == b.1, "logits differ after the rewind");
    let e = cuda
        .rewind(PROMPT.len() + 7, first)
        .unwrap_err()
        .to_string();
    assert!(e.contains("only 15 are cached"), "{e}");
}

/// Greedy generation sampled on the GPU follows the argmax of the GPU's own logits; top-k
/// sampling never leaves the k best.
#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn gpu_sampling() {
    if !have_gpu() {
        return;
    }
    let mut m = tiny_on_gpu();
    let (_, greedy_ids) = m.greedy_logits(&PROMPT, 8).unwrap();
    let mut opts = m.generate_options(8, Some(pio_runtime::sampling::SamplingParams::greedy()));
    opts.eos_token_ids.clear();
    let ids: Vec<u32> = m
        .generate(&PROMPT, opts)
        .unwrap()
        .map(|t| t.unwrap().id)
        .collect();
    assert_eq!(ids, greedy_ids);
    let logits = m.prefill_logits(&PROMPT).unwrap().pop().unwrap();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let top5 = &order[..5];
    for seed in 0..20 {
        let p = pio_runtime::sampling::SamplingParams {
            temperature: 1.5,
            top_k: 5,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed,
        };
        let mut opts = m.generate_options(1, Some(p));
        opts.eos_token_ids.clear();
        let first = m
            .generate(&PROMPT, opts)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .id;
        assert!(
            top5.contains(&first),
            "seed {seed}: {first} not in the top 5 {top5:?}"
        );
    }
}

#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn out_of_memory_and_long_prompts_are_clear_errors() {
    if !have_gpu() {
        return;
    }
    let gpu = Gpu::open().unwrap();
    let e = gpu
        .alloc(1 << 50, "a test buffer")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("out of GPU memory: a test buffer needs 1125899906842624 bytes"),
        "{e}"
    );
    let opts = LoadOptions {
        max_context: Some(16),
        ..Default::default()
    };
    let mut m = load("model-specs/qwen3-tiny.yaml", Device::Cuda, &opts);
    let prompt: Vec<u32> = (0..20).collect();
    let o = m.generate_options(4, None);
    let e = m.generate(&prompt, o).err().unwrap().to_string();
    assert_eq!(
        e,
        "the prompt has 20 tokens but the model's context holds at most 16"
    );
    let opts = LoadOptions {
        attention_spans: Some(0),
        ..Default::default()
    };
    let e = Model::load_with(
        Path::new("model-specs/qwen3-tiny.yaml"),
        &WeightsSource::Random { seed: 1 },
        Device::Cuda,
        &opts,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.ends_with("the load option attention_spans: spans per kv head must be 1 to 1024"),
        "{e}"
    );
}
