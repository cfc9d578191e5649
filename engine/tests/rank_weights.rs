//! A tensor-parallel rank's weight bytes, as the GPU upload would get them (`fill_rank_bf16`):
//! from a checkpoint, each split weight's rows or columns read straight from the memory map; from
//! the seeded random source, the whole tensor's slice. Both agree with each other (init-weights
//! writes the seeded tensors) and with cutting the checkpoint's whole tensor, part by part where
//! siblings are merged, and the ranks' slices together cover every value once.

use pio_engine::weights::{artifact_weight_specs, fill_rank_bf16, open_dir, Rank};
use pio_engine::WeightsSource;
use std::path::Path;

fn spec(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model-specs")
        .join(name)
}

fn compile(name: &str, ranks: usize) -> pio_engine::artifact::Artifact {
    let s = pio_engine::compiler::spec::load(&spec(name)).unwrap();
    let mut opts = pio_engine::compiler::CompileOptions::default();
    opts.passes.tensor_parallel = ranks;
    pio_engine::compiler::compile(&s, &opts).unwrap().artifact
}

#[test]
fn each_rank_gets_its_slice_from_the_checkpoint_and_from_the_seed() {
    // Qwen2.5-tiny: Q/K/V weights and biases split by heads (2 KV heads), O and down by
    // columns, gate/up by rows, the embedding by vocabulary rows; norms whole.
    let dir = tempfile::tempdir().unwrap();
    pio_engine::init_weights::init_weights(&spec("qwen2.5-tiny.yaml"), dir.path(), 7, false, false)
        .unwrap();
    for ranks in [2, 4] {
        let a = compile("qwen2.5-tiny.yaml", ranks);
        let wd = open_dir(&a, dir.path()).unwrap();
        let whole_shapes = artifact_weight_specs(&a);
        let checkpoint = WeightsSource::Dir(dir.path().to_path_buf());
        let seeded = WeightsSource::Random { seed: 7 };
        let (mut split, mut merged) = (0, 0);
        let u16s = |b: &[u8]| -> Vec<u16> {
            b.chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect()
        };
        for w in &a.weights {
            let cols: usize = w.shape[1..].iter().product();
            merged += usize::from(w.parts.len() > 1);
            let mut covered = vec![0usize; w.parts.len()];
            for rank in 0..ranks {
                let r = Some(Rank { ranks, rank });
                let mut from_dir = vec![0u8; w.bytes as usize];
                fill_rank_bf16(w, &mut from_dir, Some(&wd), &checkpoint, r).unwrap();
                let mut from_seed = vec![0u8; w.bytes as usize];
                fill_rank_bf16(w, &mut from_seed, None, &seeded, r).unwrap();
                assert_eq!(from_dir, from_seed, "{}: rank {rank} of {ranks}", w.name);
                // Each part (siblings merged in a sharded graph: the rank's rows of each) is
                // the rank's cut of its checkpoint tensor.
                let values = u16s(&from_dir);
                let mut at = 0;
                for (i, part) in w.parts.iter().enumerate() {
                    let hf = &part.hf_name;
                    let shape = &whole_shapes.iter().find(|s| &s.name == hf).unwrap().shape;
                    let whole = u16s(wd.tensor_bytes(hf).unwrap().1);
                    let expected = match part.shard {
                        Some(s) => s.slice(&whole, shape, ranks, rank).unwrap(),
                        None => whole.clone(),
                    };
                    let n = part.rows * cols;
                    assert_eq!(
                        &values[at..at + n],
                        &expected[..],
                        "{hf}: rank {rank} of {ranks}"
                    );
                    at += n;
                    covered[i] += n;
                }
                assert_eq!(at, values.len(), "{}", w.name);
            }
            for (part, covered) in w.parts.iter().zip(covered) {
                if let Some(s) = part.shard {
                    split += 1;
                    let whole = wd.tensor_bytes(&part.hf_name).unwrap().1.len() / 2;
                    // Replicated groups (KV heads fewer than ranks) are held by several ranks.
                    let copies = ranks / s.groups.min(ranks);
                    assert_eq!(covered, whole * copies, "{}", part.hf_name);
                }
            }
        }
        // Q/K/V (with their biases) and gate/up are merged per layer in the sharded graph too.
        assert!(merged >= 4, "{ranks} ranks: {merged} merged weights");
        assert!(split > 10, "{ranks} ranks: only {split} split weights");
    }
}

#[test]
fn a_whole_model_fills_as_before() {
    // Without a rank (or without a split) every weight is filled whole.
    let a = compile("qwen3-tiny.yaml", 1);
    let seeded = WeightsSource::Random { seed: 3 };
    for w in &a.weights {
        let mut plain = vec![0u8; w.bytes as usize];
        pio_engine::weights::fill_bf16(w, &mut plain, None, &seeded).unwrap();
        let mut ranked = vec![0u8; w.bytes as usize];
        let r = Some(Rank { ranks: 2, rank: 1 });
        fill_rank_bf16(w, &mut ranked, None, &seeded, r).unwrap();
        assert_eq!(plain, ranked, "{}", w.name);
    }
}
