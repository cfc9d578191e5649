//! Codegen: launch counts, kernel deduplication, memory plan and the artifact format.

use pio_artifact::{Arg, Artifact, Dim, Region, Step};
use pio_compiler::codegen::{generate, CodegenOptions};
use pio_compiler::pass::{default_pipeline, PassOptions};
use std::path::Path;

#[path = "common/compile_spec.rs"]
mod compile_spec;
use compile_spec::compile;

/// Model info and reference graph for calling codegen directly.
fn extras(
    spec: &pio_compiler::spec::ModelSpec,
    g: &pio_compiler::ir::Graph,
) -> (pio_artifact::ModelInfo, pio_artifact::Attachment) {
    let info = pio_compiler::compile::model_info(spec, g).unwrap();
    let graph = pio_artifact::Attachment::new("reference-graph.json", b"{}".to_vec());
    (info, graph)
}

fn layer_launches(a: &Artifact, layers: usize) -> f64 {
    let n = a
        .decode
        .iter()
        .filter(|s| matches!(s, Step::Kernel(l) if l.node.starts_with("layers.")))
        .count();
    n as f64 / layers as f64
}

#[test]
fn qwen3_0_6b_decode_needs_at_most_ten_launches_per_layer() {
    let a = compile(
        "qwen3-0.6b.yaml",
        &CodegenOptions::default(),
        PassOptions::default(),
    );
    // RMSNorm+QKV GEMV, the merged Q/K/V head ops, attention (one kernel), O GEMV + residual,
    // RMSNorm+gate/up+SwiGLU GEMV, down GEMV + residual.
    assert_eq!(layer_launches(&a, 28), 6.0);
    assert!(
        a.decode.iter().all(|s| matches!(s, Step::Kernel(_))),
        "decode uses no GEMM"
    );
    assert_eq!(a.decode.len(), 28 * 6 + 2);
    // The same layer shape in every layer: each kernel is emitted once (the merged head-op
    // kernel comes in two orders of its ops, hence 12 rather than 11); the paged list adds its
    // attention and its two merged head ops that write the pool; the chunk list its tensor-core
    // attention over the pool with the keys split over blocks (three kernels: statistics, P.V,
    // the splits' sum); the single-sequence list its attention of one query head per block.
    let paged_only: std::collections::HashSet<&str> = a
        .paged
        .steps
        .iter()
        .chain(&a.paged.chunk_steps)
        .chain(&a.paged.single_steps)
        .filter_map(|s| match s {
            Step::Kernel(l) => Some(l.kernel.as_str()),
            Step::Gemm(_) | Step::Collective(_) => None,
        })
        .filter(|k| {
            !a.decode
                .iter()
                .chain(&a.prefill)
                .any(|s| matches!(s, Step::Kernel(l) if l.kernel == *k))
        })
        .collect();
    assert_eq!(paged_only.len(), 7);
    assert_eq!(a.kernels.len(), 12 + 7);
    let chunk_mma: Vec<&pio_artifact::Launch> = a
        .paged
        .chunk_steps
        .iter()
        .filter_map(|s| match s {
            Step::Kernel(l)
                if a.kernel(&l.kernel).unwrap().family
                    == pio_artifact::KernelFamily::AttentionMma =>
            {
                Some(l)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        chunk_mma.len(),
        28 * 3,
        "a chunk's attention runs on tensor cores"
    );
    // Per layer: statistics and P.V over (heads, token tiles, key splits) with two and four
    // 64-row tiles of shared memory (rows padded to 136 elements), then the sum per token and
    // head where the step splits (none where it does not: a grid of 0, the launch skipped); a
    // 64-token chunk splits its keys 8 ways, a 512-token one not at all.
    for l in chunk_mma.chunks(3) {
        let split = Dim::Split {
            target: 512,
            max: 16,
        };
        assert_eq!(l[0].grid, [Dim::Fixed(16), Dim::TokenTiles(64), split]);
        assert_eq!(l[1].grid, l[0].grid);
        assert_eq!(
            (l[0].shared_bytes, l[1].shared_bytes),
            (2 * 64 * 136 * 2, 4 * 64 * 136 * 2)
        );
        let split_rows = Dim::SplitTokens {
            target: 512,
            max: 16,
        };
        assert_eq!(l[2].grid, [split_rows, Dim::Fixed(16), Dim::Fixed(1)]);
        assert_eq!((split_rows.eval(511), split_rows.eval(512)), (511, 0));
        assert_eq!(l[2].shared_bytes, 0);
        assert_eq!(
            (split.eval(64), split.eval(511), split.eval(512)),
            (8, 2, 1)
        );
    }
    let prefill_mma = a.prefill.iter().filter(|s| matches!(s, Step::Kernel(l) if a.kernel(&l.kernel).unwrap().family == pio_artifact::KernelFamily::AttentionMma));
    assert!(
        prefill_mma.clone().count() == 28
            && prefill_mma.clone().all(|s| matches!(s, Step::Kernel(l) if l.grid[2] == Dim::Fixed(1) && l.shared_bytes == 4 * 64 * 136 * 2)),
        "the batch-1 prefill walks all keys in one block per head and 64 tokens"
    );
    // A lone sequence's token: the decode list's GEMV kernels, launch for launch, with the
    // paged attention and the pool-writing head ops in place of the contiguous cache's.
    let single = &a.paged.single_steps;
    assert_eq!(single.len(), a.decode.len());
    let family = |s: &Step| match s {
        Step::Kernel(l) => Some(a.kernel(&l.kernel).unwrap().family),
        Step::Gemm(_) | Step::Collective(_) => None,
    };
    use pio_artifact::KernelFamily as F;
    for (s, d) in single.iter().zip(&a.decode) {
        let (fs, fd) = (family(s), family(d));
        assert_eq!(s.node(), d.node());
        match fd {
            Some(F::AttentionCluster) => assert_eq!(fs, Some(F::AttentionPaged), "{}", s.node()),
            Some(F::HeadOp | F::HeadOps) => assert_eq!(fs, fd, "{}", s.node()),
            _ => assert!(
                matches!((s, d), (Step::Kernel(x), Step::Kernel(y)) if x.kernel == y.kernel && x.grid == y.grid),
                "{}: not the decode list's kernel",
                s.node()
            ),
        }
    }
    let names: std::collections::HashSet<&str> =
        a.kernels.iter().map(|k| k.name.as_str()).collect();
    for s in a.decode.iter().chain(&a.prefill) {
        if let Step::Kernel(l) = s {
            assert!(
                names.contains(l.kernel.as_str()),
                "{} not emitted",
                l.kernel
            );
        }
    }
    // Without fusion the decode step needs more launches.
    let unfused = compile(
        "qwen3-0.6b.yaml",
        &CodegenOptions::default(),
        PassOptions {
            no_fusion: true,
            ..PassOptions::default()
        },
    );
    assert!(layer_launches(&unfused, 28) > 12.0);
}

#[test]
fn regions_and_offsets_are_consistent() {
    let a = compile(
        "qwen3-tiny.yaml",
        &CodegenOptions {
            max_prefill: 64,
            max_context: Some(128),
            ..Default::default()
        },
        PassOptions::default(),
    );
    assert_eq!(a.max_context, 128);
    assert_eq!(a.kv_caches.len(), 4);
    assert!(a
        .weights
        .iter()
        .all(|w| w.offset % 256 == 0 && w.offset + w.bytes <= a.regions.weights));
    let total_params: usize = a
        .weights
        .iter()
        .map(|w| w.shape.iter().product::<usize>())
        .sum();
    assert_eq!(total_params, 119_232);
    assert!(
        a.weights.iter().any(|w| w.parts.len() == 3),
        "fused QKV weight"
    );
    for s in a.decode.iter().chain(&a.prefill).chain(&a.paged.steps) {
        let args: Vec<&Arg> = match s {
            Step::Kernel(l) => l.args.iter().collect(),
            Step::Gemm(g) => vec![&g.a, &g.b, &g.c],
            Step::Collective(c) => vec![&c.input, &c.output],
        };
        for arg in args {
            if let Arg::Ptr { region, offset } = arg {
                let size = match region {
                    Region::Weights => a.regions.weights,
                    Region::Kv => a.regions.kv,
                    Region::Io => a.regions.io,
                    Region::Arena => a.regions.arena,
                    Region::Pool => a.paged.block_bytes,
                };
                assert!(*offset < size, "{region:?}+{offset} outside {size}");
            }
        }
    }
    assert!(a.memory.prefill_arena_bytes < a.memory.prefill_activation_bytes_unplanned);
    // The paged list: every KV write goes to the pool, attention reads it through block
    // tables, and nothing touches the static cache.
    let pg = &a.paged;
    assert_eq!(
        (pg.block_size, pg.max_blocks_per_seq),
        (16, a.max_context.div_ceil(16))
    );
    assert_eq!(pg.pool.len(), 4, "2 layers x (k, v)");
    // Tiny: 2 kv heads x 16 positions x 32 dims x 2 bytes per layer and cache.
    assert_eq!(pg.block_bytes, 4 * 2 * 16 * 32 * 2);
    let family = |s: &Step| match s {
        Step::Kernel(l) => a.kernel(&l.kernel).map(|k| k.family),
        Step::Gemm(_) | Step::Collective(_) => None,
    };
    let paged_attn = pg
        .steps
        .iter()
        .filter(|s| family(s) == Some(pio_artifact::KernelFamily::AttentionPaged))
        .count();
    assert_eq!(paged_attn, 2, "one paged attention per layer");
    let touches = |s: &Step, r: Region| match s {
        Step::Kernel(l) => l
            .args
            .iter()
            .any(|x| matches!(x, Arg::Ptr { region, .. } if *region == r)),
        Step::Gemm(_) | Step::Collective(_) => false,
    };
    assert!(pg.steps.iter().all(|s| !touches(s, Region::Kv)));
    assert_eq!(
        pg.steps.iter().filter(|s| touches(s, Region::Pool)).count(),
        2 + 2
    );
    // The artifact survives a round trip through its folder (the runtime reads it without the
    // compiler), kernel sources and attachments included.
    let dir = tempfile::tempdir().unwrap();
    a.write_dir(dir.path()).unwrap();
    let back = Artifact::load_dir(dir.path()).unwrap();
    assert_eq!(back, a);
    assert!(back.kernels.iter().all(|k| !k.source.is_empty()));
    assert!(!back.reference_graph.data.is_empty());
}

#[test]
fn the_io_region_holds_a_bounded_number_of_logits_rows() {
    // (spec, max prefill, fusion) -> rows of logits the io region holds.
    for (file, max_prefill, fusion, rows) in [
        ("qwen3-0.6b.yaml", 512, true, 128),
        ("qwen3-0.6b.yaml", 2048, true, 128),
        ("qwen3-0.6b.yaml", 2048, false, 128),
        ("qwen3-tiny.yaml", 64, true, 64),
    ] {
        let a = compile(
            file,
            &CodegenOptions {
                max_prefill,
                ..Default::default()
            },
            PassOptions {
                no_fusion: !fusion,
                ..PassOptions::default()
            },
        );
        assert_eq!(a.io.logits_rows, rows, "{file} at {max_prefill}");
        let logits_bytes = (rows * a.model.vocab_size * 2) as u64;
        assert!(a.io.logits + logits_bytes <= a.paged.slots);
        assert!(a.paged.slots < a.io.logits + logits_bytes + 256);
        assert!(a.paged.block_tables < a.regions.io);
        // One prefill GEMM writes the logits, marked so that generation computes the last row
        // alone; it writes at the logits' offset, and nothing else in the prefill writes there.
        let marked: Vec<_> = a
            .prefill
            .iter()
            .filter_map(|s| match s {
                Step::Gemm(g) if g.logits => Some(g),
                _ => None,
            })
            .collect();
        assert_eq!(marked.len(), 1, "{file}");
        assert_eq!(
            marked[0].c,
            Arg::Ptr {
                region: Region::Io,
                offset: a.io.logits
            }
        );
        assert_eq!(marked[0].n as usize, a.model.vocab_size);
    }
}

#[test]
fn bad_codegen_options_are_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-specs");
    let spec = pio_compiler::spec::load(&root.join("qwen3-tiny.yaml")).unwrap();
    let mut g = pio_compiler::lower::lower(&spec).unwrap();
    let lowered = g.clone();
    default_pipeline(PassOptions::default())
        .unwrap()
        .run(&mut g)
        .unwrap();
    let (info, graph) = extras(&spec, &lowered);
    let e = generate(
        &g,
        &CodegenOptions {
            max_prefill: 16,
            max_context: Some(100_000),
            ..Default::default()
        },
        info.clone(),
        graph.clone(),
    )
    .err()
    .unwrap();
    assert_eq!(
        e.to_string(),
        "codegen: max context 100000 must be between 1 and the spec's bound 512"
    );
    let e = generate(
        &g,
        &CodegenOptions {
            max_prefill: 0,
            max_context: None,
            ..Default::default()
        },
        info.clone(),
        graph.clone(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("max prefill"));
    let e = generate(&lowered, &CodegenOptions::default(), info, graph)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("codegen needs the kv-cache pass"),
        "{e}"
    );
}

#[test]
fn gemv_tuning_parses_and_rejects_bad_settings() {
    use pio_compiler::codegen::GemvTuning;
    let t = GemvTuning::parse("warps=4, rows=1,blocks=528").unwrap();
    assert_eq!((t.warps, t.tall_rows, t.max_blocks), (4, 1, 528));
    assert_eq!(t.max_unroll, GemvTuning::default().max_unroll);
    assert_eq!(GemvTuning::parse("").unwrap(), GemvTuning::default());
    for (bad, msg) in [
        ("warps", "GEMV setting 'warps' is not key=value"),
        (
            "warps=0",
            "GEMV setting 'warps': '0' is not a positive integer",
        ),
        ("rows=9", "GEMV setting 'rows=9' is out of range"),
        (
            "lanes=2",
            "unknown GEMV setting 'lanes' (warps, rows, blocks, unroll)",
        ),
    ] {
        assert_eq!(GemvTuning::parse(bad).unwrap_err(), msg);
    }
}

#[test]
fn decode_attention_fits_shared_memory() {
    use pio_compiler::codegen::{decode_attention_shape, DecodeAttentionShape, ATTENTION_SPANS};
    // (query heads per kv head, head dim, context bound, spans at most) -> (tensor-core path,
    // positions per block, spans), or None.
    let cases = [
        // Qwen3 (head_dim 128), 2 or 4 query heads per kv head: spans of 8 blocks of 64
        // positions while at most 8 (by default 5) spans cover the context bound, else that many
        // longer spans, the scores of a block's positions in shared memory.
        ((2, 128, 4096, ATTENTION_SPANS), Some((true, 103, 5))),
        ((2, 128, 4096, 8), Some((true, 64, 8))),
        ((4, 128, 40_960, 8), Some((true, 640, 8))),
        ((4, 128, 40_960, 80), Some((true, 64, 80))),
        ((2, 128, 1000, 8), Some((true, 63, 2))),
        // Short contexts take one span.
        ((4, 128, 300, 8), Some((true, 38, 1))),
        ((1, 10, 100, 8), Some((false, 13, 1))),
        // Many query heads per kv head: the tensor-core path takes at most 8 (the columns of an
        // mma tile), then the scalar path (no per-warp sums), with more spans where the scores
        // of fewer would not fit, then nothing.
        ((8, 128, 40_960, 8), Some((true, 640, 8))),
        ((12, 128, 4096, ATTENTION_SPANS), Some((false, 103, 5))),
        ((16, 128, 40_960, 8), Some((false, 320, 16))),
        ((64, 128, 40_960, 8), None),
    ];
    for ((group, d, ctx, spans), expected) in cases {
        let expected = expected.map(|(vec, per_block, spans)| DecodeAttentionShape {
            vec,
            per_block,
            spans,
        });
        assert_eq!(
            decode_attention_shape(group, d, ctx, spans),
            expected,
            "group {group}, d {d}, context {ctx}, spans {spans}"
        );
    }
}
