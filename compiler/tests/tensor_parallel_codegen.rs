//! The CUDA artifact of a tensor-parallel rank (`pio-compile --tp N`): its collectives as steps
//! of their own after every partial sum and before the logits, the embedding over the rank's
//! vocabulary rows with the rank as an argument, each weight one rank's slice with its split
//! recorded (per part: sibling projections are merged), and the artifact consistent (pointers
//! inside their regions).

use pio_artifact::{
    Arg, Artifact, CollectiveOp, Dim, Region, Shard, ShardAxis, Step, TensorParallel, WeightEntry,
    WeightPart,
};
use pio_compiler::pass::PassOptions;
use pio_compiler::CompileOptions;
use std::path::Path;

fn compile(spec: &str, ranks: usize) -> Artifact {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-specs");
    let spec = pio_compiler::spec::load(&root.join(spec)).unwrap();
    let opts = CompileOptions {
        passes: PassOptions {
            tensor_parallel: ranks,
            ..PassOptions::default()
        },
        ..CompileOptions::default()
    };
    pio_compiler::compile(&spec, &opts).unwrap().artifact
}

fn count(steps: &[Step], op: CollectiveOp) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Collective(c) if c.op == op))
        .count()
}

/// The weight holding checkpoint tensor `hf`, and its part.
fn part<'a>(a: &'a Artifact, hf: &str) -> (&'a WeightEntry, &'a WeightPart) {
    a.weights
        .iter()
        .find_map(|w| w.parts.iter().find(|p| p.hf_name == hf).map(|p| (w, p)))
        .unwrap_or_else(|| panic!("no weight holds {hf}"))
}

#[test]
fn a_rank_of_qwen3_0_6b_over_two_gpus() {
    let a = compile("qwen3-0.6b.yaml", 2);
    assert_eq!(a.tensor_parallel, Some(TensorParallel { ranks: 2 }));
    a.check().unwrap();
    for (list, steps) in [
        ("decode", &a.decode),
        ("prefill", &a.prefill),
        ("paged", &a.paged.steps),
        ("chunk", &a.paged.chunk_steps),
        ("single", &a.paged.single_steps),
    ] {
        // After the embedding and after each layer's O and down projections (row-parallel:
        // partial sums), one all-reduce each; the vocabulary-split logits are gathered last.
        assert_eq!(count(steps, CollectiveOp::AllReduce), 1 + 2 * 28, "{list}");
        assert_eq!(count(steps, CollectiveOp::AllGather), 1, "{list}");
        let Some(Step::Collective(gather)) = steps.last() else {
            panic!("{list}: the logits gather is not the last step")
        };
        assert_eq!(gather.op, CollectiveOp::AllGather);
        assert_eq!(gather.row as usize, 151_936 / 2, "{list}");
        assert_eq!(gather.rows, Dim::PerToken(1));
        assert_eq!(
            gather.output,
            Arg::Ptr {
                region: Region::Io,
                offset: a.io.logits
            },
            "{list}: the gathered logits land where the sampler reads them"
        );
        // The gather follows the logits GEMM and takes the rows it computes (the last row,
        // unless every row is asked for); a GEMV list's logits are one row anyway.
        let gemv_list = list == "decode" || list == "single";
        assert_eq!(gather.logits, !gemv_list, "{list}");
        if !gemv_list {
            let [.., Step::Gemm(gemm), Step::Collective(_)] = steps.as_slice() else {
                panic!("{list}: no logits GEMM before the gather")
            };
            assert!(gemm.logits && gemm.c == gather.input, "{list}");
        }
        // One token's row needs no interleaving of the ranks' parts; more rows go through
        // scratch.
        assert_eq!(
            gather.scratch.is_none(),
            list == "decode" || list == "single"
        );
        for s in steps {
            if let Step::Collective(c) = s {
                assert_ne!(c.input, c.output, "{list}: {}", c.node);
                assert!(
                    matches!(
                        c.input,
                        Arg::Ptr {
                            region: Region::Arena,
                            ..
                        }
                    ),
                    "{list}: {}",
                    c.node
                );
            }
        }
        // The embedding kernel takes the rank.
        let Some(Step::Kernel(embed)) = steps.first() else {
            panic!("{list}: no embedding first")
        };
        assert_eq!(embed.args.last(), Some(&Arg::Rank), "{list}");
    }
    // Each weight is one rank's slice; the split says how the checkpoint's tensor is cut.
    let rows = |groups| {
        Some(Shard {
            axis: ShardAxis::Rows,
            groups,
        })
    };
    let cols = |groups| {
        Some(Shard {
            axis: ShardAxis::Cols,
            groups,
        })
    };
    for (hf, shape, shard) in [
        (
            "model.embed_tokens.weight",
            vec![151_936 / 2, 1024],
            rows(151_936),
        ),
        (
            "model.layers.0.mlp.gate_proj.weight",
            vec![3072 / 2, 1024],
            rows(3072),
        ),
        (
            "model.layers.0.self_attn.q_proj.weight",
            vec![16 * 128 / 2, 1024],
            rows(16),
        ),
        (
            "model.layers.0.self_attn.k_proj.weight",
            vec![8 * 128 / 2, 1024],
            rows(8),
        ),
        (
            "model.layers.0.self_attn.o_proj.weight",
            vec![1024, 16 * 128 / 2],
            cols(16),
        ),
        (
            "model.layers.0.mlp.down_proj.weight",
            vec![1024, 3072 / 2],
            cols(3072),
        ),
        ("model.layers.0.input_layernorm.weight", vec![1024], None),
    ] {
        let (w, p) = part(&a, hf);
        let mut here = vec![p.rows];
        here.extend(&w.shape[1..]);
        assert_eq!((&here, p.shard), (&shape, shard), "{hf}");
    }
    for w in &a.weights {
        let rows: usize = w.parts.iter().map(|p| p.rows).sum();
        assert_eq!(rows, w.shape[0], "{}", w.name);
        assert_eq!(
            w.bytes,
            w.shape.iter().product::<usize>() as u64 * 2,
            "{}",
            w.name
        );
    }
    // Sibling projections are merged in a rank's graph too, each part the rank's rows of its
    // tensor: Q, K, V in one weight, gate and up in another.
    let (qkv, _) = part(&a, "model.layers.0.self_attn.q_proj.weight");
    assert_eq!(qkv.parts.len(), 3, "{}", qkv.name);
    assert_eq!(qkv.shape[0], (16 + 8 + 8) * 128 / 2);
    let (gate_up, _) = part(&a, "model.layers.0.mlp.up_proj.weight");
    assert_eq!(gate_up.parts.len(), 2, "{}", gate_up.name);
    // The rank's part of the logits holds the rows the logits do, so a rank's arena stays near
    // the whole model's (58 MB against 42 MB; every row's logits would be 0.9 GB at 2,048
    // tokens).
    let whole = compile("qwen3-0.6b.yaml", 1);
    assert!(
        a.regions.arena < 2 * whole.regions.arena,
        "arena {} > {}",
        a.regions.arena,
        whole.regions.arena
    );
    // A whole model's artifact records none of it.
    assert_eq!(whole.tensor_parallel, None);
    assert!(whole
        .weights
        .iter()
        .all(|w| w.parts.iter().all(|p| p.shard.is_none())));
    assert!(whole
        .decode
        .iter()
        .all(|s| !matches!(s, Step::Collective(_))));
}

#[test]
fn kv_heads_fewer_than_ranks_are_replicated() {
    // Qwen3-tiny has 2 KV heads: over 4 ranks each holds one of them whole, two ranks apiece.
    let a = compile("qwen3-tiny.yaml", 4);
    a.check().unwrap();
    let (_, k) = part(&a, "model.layers.0.self_attn.k_proj.weight");
    assert_eq!(
        k.shard,
        Some(Shard {
            axis: ShardAxis::Rows,
            groups: 2
        })
    );
    assert_eq!(k.rows, 32, "one KV head of 32 dims");
    let json = serde_json::to_string(&a).unwrap();
    let back: Artifact = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (
            back.tensor_parallel,
            &back.weights,
            &back.decode,
            &back.prefill
        ),
        (a.tensor_parallel, &a.weights, &a.decode, &a.prefill),
        "the artifact's JSON keeps the collectives and the rank layout"
    );
}
