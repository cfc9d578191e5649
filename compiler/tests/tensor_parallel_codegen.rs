//! The CUDA artifact of a tensor-parallel rank (`pio-compile --tp N`): its collectives as steps
//! of their own after every partial sum and before the logits, the embedding over the rank's
//! vocabulary rows with the rank as an argument, each weight one rank's slice with its split
//! recorded, and the artifact consistent (pointers inside their regions).

use pio_artifact::{
    Arg, Artifact, CollectiveOp, Dim, Region, Shard, ShardAxis, Step, TensorParallel,
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

fn weight<'a>(a: &'a Artifact, name: &str) -> &'a pio_artifact::WeightEntry {
    a.weights.iter().find(|w| w.name == name).unwrap()
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
    for (name, shape, shard) in [
        ("embed_tokens", vec![151_936 / 2, 1024], rows(151_936)),
        ("layers.0.gate_proj", vec![3072 / 2, 1024], rows(3072)),
        ("layers.0.q_proj", vec![16 * 128 / 2, 1024], rows(16)),
        ("layers.0.k_proj", vec![8 * 128 / 2, 1024], rows(8)),
        ("layers.0.o_proj", vec![1024, 16 * 128 / 2], cols(16)),
        ("layers.0.down_proj", vec![1024, 3072 / 2], cols(3072)),
        ("layers.0.input_layernorm", vec![1024], None),
    ] {
        let w = weight(&a, name);
        assert_eq!((&w.shape, w.shard), (&shape, shard), "{name}");
        assert_eq!(
            w.bytes,
            shape.iter().product::<usize>() as u64 * 2,
            "{name}"
        );
    }
    // A whole model's artifact records none of it.
    let whole = compile("qwen3-0.6b.yaml", 1);
    assert_eq!(whole.tensor_parallel, None);
    assert!(whole.weights.iter().all(|w| w.shard.is_none()));
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
    let k = weight(&a, "layers.0.k_proj");
    assert_eq!(
        k.shard,
        Some(Shard {
            axis: ShardAxis::Rows,
            groups: 2
        })
    );
    assert_eq!(k.shape[0], 32, "one KV head of 32 dims");
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
