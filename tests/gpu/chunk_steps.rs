//! A chunk step of several sequences on the GPU (one run of the chunk launch list: their rows
//! one after another, 64-token attention windows that hold the end of one sequence and the start
//! of the next, each sequence's last row moved before the logits GEMM) against each chunk run
//! alone and against the CPU executor (f32).

use super::{have_gpu, load};
use crate::common::rel_l2;
use pio::compiler::interp::PagedSeq;
use pio::{argmax, Device, LoadOptions};

/// Cached prefix and new tokens of each sequence: lengths that cross 64-token windows at odd
/// offsets, a one-token chunk, one of exactly a window, chunks after cached prefixes.
const SHAPES: [(usize, usize); 6] = [(0, 70), (13, 1), (0, 130), (40, 64), (3, 5), (200, 37)];
const BLOCK_SIZE: usize = 16;

fn tokens(len: usize, salt: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((i * 37 + salt * 101 + 11) % 500) as u32)
        .collect()
}

#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn a_chunk_step_of_several_sequences_matches_each_chunk_alone() {
    if !have_gpu() {
        return;
    }
    for spec in [
        "model-specs/qwen3-tiny.yaml",
        "compiler/tests/specs/qwen3-0.6b-2layers.yaml",
        "tests/specs/gpu/qwen3-odd50.yaml",
    ] {
        let per_seq = 256 / BLOCK_SIZE;
        let num_blocks = 2 * SHAPES.len() * per_seq;
        let mut gpu = load(spec, Device::Cuda, &LoadOptions::default());
        gpu.enable_paged_cache(num_blocks, BLOCK_SIZE).unwrap();
        let mut cpu = load(spec, Device::Cpu, &LoadOptions::default());
        cpu.enable_paged_cache(num_blocks, BLOCK_SIZE).unwrap();
        let prompts: Vec<Vec<u32>> = SHAPES
            .iter()
            .enumerate()
            .map(|(i, &(cached, new))| tokens(cached + new, i))
            .collect();
        // Two block sets: one for the chunks run alone, one for the chunks run together.
        let tables: Vec<Vec<Vec<u32>>> = (0..2)
            .map(|set| {
                (0..SHAPES.len())
                    .map(|i| {
                        let first = ((set * SHAPES.len() + i) * per_seq) as u32;
                        (first..first + per_seq as u32).collect()
                    })
                    .collect()
            })
            .collect();
        let prefix = |i: usize, set: usize| PagedSeq {
            tokens: &prompts[i][..SHAPES[i].0],
            start: 0,
            blocks: &tables[set][i],
        };
        let chunk = |i: usize, set: usize| PagedSeq {
            tokens: &prompts[i][SHAPES[i].0..],
            start: SHAPES[i].0,
            blocks: &tables[set][i],
        };
        // The cached prefixes, in both sets, on both devices.
        for i in (0..SHAPES.len()).filter(|&i| SHAPES[i].0 > 0) {
            for set in 0..2 {
                gpu.forward_paged(&[prefix(i, set)]).unwrap();
                cpu.forward_paged(&[prefix(i, set)]).unwrap();
            }
        }
        let alone: Vec<Vec<f32>> = (0..SHAPES.len())
            .map(|i| gpu.forward_paged(&[chunk(i, 0)]).unwrap().remove(0))
            .collect();
        let together_seqs: Vec<PagedSeq<'_>> = (0..SHAPES.len()).map(|i| chunk(i, 1)).collect();
        let together = gpu.forward_paged(&together_seqs).unwrap();
        // The greedy picks on the device, from a second run of the same step.
        let picks = gpu.forward_paged_argmax(&together_seqs).unwrap();
        let want = cpu.forward_paged(&together_seqs).unwrap();
        assert_eq!(together.len(), SHAPES.len(), "{spec}");
        let (mut worst, mut bitwise, mut worst_ratio) = (0f64, 0, 0f64);
        for i in 0..SHAPES.len() {
            let e = rel_l2(&together[i], &alone[i]);
            worst = worst.max(e);
            bitwise += usize::from(together[i] == alone[i]);
            assert_eq!(
                argmax(&together[i]),
                argmax(&alone[i]),
                "{spec}: sequence {i}'s greedy pick"
            );
            assert_eq!(picks[i], argmax(&together[i]), "{spec}: device argmax {i}");
            // Against f32: within 1.5 x the lone chunk's own gap (at least 1e-2).
            let yardstick = rel_l2(&alone[i], &want[i]);
            worst_ratio =
                worst_ratio.max(rel_l2(&together[i], &want[i]) / (1.5 * yardstick).max(1e-2));
        }
        eprintln!(
            "{spec}: a chunk step of {} sequences vs each chunk alone: worst rel L2 {worst:.2e} \
             ({bitwise}/{} bitwise equal); vs the CPU executor at most {worst_ratio:.2} of its \
             bound",
            SHAPES.len(),
            SHAPES.len()
        );
        assert!(worst <= 1e-2, "{spec}: together vs alone, rel L2 {worst:e}");
        assert!(
            worst_ratio <= 1.0,
            "{spec}: vs the CPU executor ({worst_ratio:.2} of the bound)"
        );
    }
}
