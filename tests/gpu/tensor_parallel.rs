//! Tensor parallel on GPUs (issue 18): a model split over 2 (and 4, where the machine has them)
//! GPUs, NCCL between them, against the same model whole on one GPU, batch 1 (prefill, decode
//! through the CUDA graph) and through the batching engine (paged steps). They need a GPU per
//! rank: on a machine with fewer they skip, or fail with `PIO_REQUIRE_TP=1` (the multi-GPU
//! script, `tests/reference/tp_on_gpu.sh`, sets it).

use super::batching::run;
use super::{have_gpu, load};
use crate::common::rel_l2;
use pio::{Device, Engine, EngineConfig, LoadOptions};
use pio_runtime::cuda::device::Gpu;

/// bf16 tolerance of a row against the whole model's (the bar).
const BOUND: f64 = 1e-2;

/// Whether the machine has `ranks` GPUs; otherwise skipped (or a failure when required).
fn have_gpus(ranks: usize) -> bool {
    if !have_gpu() {
        return false;
    }
    let count = Gpu::count().unwrap_or(0);
    if count >= ranks {
        return true;
    }
    assert!(
        !crate::common::required("PIO_REQUIRE_TP"),
        "PIO_REQUIRE_TP is set but this machine has {count} GPU(s), not {ranks}"
    );
    eprintln!("skipped: {ranks} ranks need {ranks} GPUs, this machine has {count}");
    false
}

fn opts(ranks: usize) -> LoadOptions {
    LoadOptions {
        tensor_parallel: Some(ranks),
        ..LoadOptions::default()
    }
}

/// Whether `pick` is as good as the best of the whole model's `row` within bf16 rounding of
/// the logits (random weights tie often: a rank split may round the other way).
fn near_tie(row: &[f32], pick: u32) -> bool {
    let top = row[pio::argmax(row) as usize];
    top - row[pick as usize] <= 0.02 * top.abs().max(1.0)
}

/// How many of `tokens` equal the whole model's `want` before the first that differs, which
/// must be a near tie in the whole model's row (`rows[k]` picked `want[k]`).
fn same_tokens(tokens: &[u32], want: &[u32], rows: &[Vec<f32>], what: &str) -> usize {
    match tokens.iter().zip(want).position(|(a, b)| a != b) {
        None => tokens.len().min(want.len()),
        Some(k) => {
            assert!(
                near_tie(&rows[k], tokens[k]),
                "{what}: token {k} is {} where the whole model picks {} by more than a tie",
                tokens[k],
                want[k]
            );
            eprintln!("{what}: tokens agree up to {k}, then a near tie");
            k
        }
    }
}

/// Worst relative L2 of `rows` against `whole`, row by row, and how many rows pick the same
/// token.
fn compare(rows: &[Vec<f32>], whole: &[Vec<f32>]) -> (f64, usize) {
    assert_eq!(rows.len(), whole.len());
    let worst = rows
        .iter()
        .zip(whole)
        .map(|(a, b)| rel_l2(a, b))
        .fold(0.0, f64::max);
    let same = rows
        .iter()
        .zip(whole)
        .filter(|(a, b)| pio::argmax(a) == pio::argmax(b))
        .count();
    (worst, same)
}

#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/tp_on_gpu.sh runs these"
)]
fn tensor_parallel_logits_match_the_whole_model() {
    if !have_gpus(2) {
        return;
    }
    let prompt: Vec<u32> = (0..40).map(|i| (i * 7919 + 13) % 500).collect();
    let steps = 16;
    let count = Gpu::count().unwrap_or(0);
    // The tiny model's 2 KV heads replicate over 4 ranks; the 0.6B's 8 split.
    for spec in ["model-specs/qwen3-tiny.yaml", "model-specs/qwen3-0.6b.yaml"] {
        let mut whole = load(spec, Device::Cuda, &LoadOptions::default());
        let (want, generated) = whole.greedy_logits(&prompt, steps).unwrap();
        drop(whole);
        for ranks in [2, 4].into_iter().filter(|&r| r <= count) {
            let mut m = load(spec, Device::Cuda, &opts(ranks));
            assert_eq!(m.cuda().unwrap().ranks(), ranks);
            // Teacher-forced on the whole model's tokens: prefill, then decode steps (graph).
            let mut rows = m.prefill_logits(&prompt).unwrap();
            for &t in &generated[..steps - 1] {
                rows.extend(m.step_logits(&[t]).unwrap());
            }
            let (worst, same) = compare(&rows, &want[..rows.len()]);
            eprintln!(
                "{spec}, {ranks} ranks: worst rel L2 {worst:.3e} over {} rows, same top-1 {same}/{}",
                rows.len(),
                rows.len()
            );
            assert!(worst <= BOUND, "{spec} over {ranks} ranks: {worst:.3e}");
            // The greedy run itself (sampled on the GPU, every rank the same token).
            let (_, tokens) = m.greedy_logits(&prompt, steps).unwrap();
            let what = format!("{spec} over {ranks} ranks");
            same_tokens(&tokens, &generated, &want[prompt.len() - 1..], &what);
            let c = m.cuda().unwrap();
            assert!(
                c.model().graph_fallback.is_none(),
                "{spec}: the decode step with its collectives ran without a CUDA graph: {:?}",
                c.model().graph_fallback
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/tp_on_gpu.sh runs these"
)]
fn the_batching_engine_drives_every_rank() {
    if !have_gpus(2) {
        return;
    }
    let spec = "model-specs/qwen3-0.6b.yaml";
    // Requests of different lengths joining at different steps: chunk steps and paged
    // decode batches, over 2 ranks against one GPU.
    let reqs: Vec<(Vec<u32>, usize, usize)> = (0..6)
        .map(|i| {
            let len = 9 + 37 * i;
            let prompt = (0..len)
                .map(|j| ((j * 31 + i * 101) % 480) as u32)
                .collect();
            (prompt, 12, i)
        })
        .collect();
    let engine_on = |o: LoadOptions| {
        Engine::new(
            load(spec, Device::Cuda, &o),
            EngineConfig {
                num_blocks: Some(256),
                max_batch_tokens: 64,
                max_running: 8,
                ..EngineConfig::default()
            },
        )
        .unwrap()
    };
    let whole = run(&mut engine_on(LoadOptions::default()), &reqs, true);
    let split = run(&mut engine_on(opts(2)), &reqs, true);
    for i in 0..reqs.len() {
        let (w, s) = (&whole[&i], &split[&i]);
        // Rows up to the first token that differs (a near tie): after it the contexts differ.
        let agree = same_tokens(&s.0, &w.0, &w.1, &format!("request {i}"));
        let n = (agree + 1).min(w.1.len()).min(s.1.len());
        let (worst, same) = compare(&s.1[..n], &w.1[..n]);
        eprintln!("request {i}: worst rel L2 {worst:.3e} over {n} rows, same top-1 {same}/{n}");
        assert!(worst <= BOUND, "request {i}: {worst:.3e}");
    }
}
