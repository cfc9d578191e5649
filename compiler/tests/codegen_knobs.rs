//! Codegen's tuning knobs (GEMV launch shapes, the paged decode attention's splits, wide row
//! access): each changes only the kernels and launch shapes it names.

use pio_artifact::{Artifact, Dim, Step};
use pio_compiler::codegen::CodegenOptions;
use pio_compiler::pass::PassOptions;

#[path = "common/compile_spec.rs"]
mod compile_spec;
use compile_spec::compile;

#[test]
fn gemv_tuning_changes_launch_shapes_only() {
    use pio_compiler::codegen::GemvTuning;
    let base = compile(
        "qwen3-0.6b.yaml",
        &CodegenOptions::default(),
        PassOptions::default(),
    );
    let tuned = compile(
        "qwen3-0.6b.yaml",
        &CodegenOptions {
            gemv: GemvTuning::parse("warps=4,rows=1,blocks=528").unwrap(),
            ..Default::default()
        },
        PassOptions::default(),
    );
    assert_eq!(base.decode.len(), tuned.decode.len());
    // (blocks, threads) of every decode GEMV launch.
    let gemv_shapes = |a: &Artifact| -> Vec<(u32, u32)> {
        a.decode
            .iter()
            .filter_map(|s| match s {
                Step::Kernel(l) if l.kernel.starts_with("gemv") => match l.grid[0] {
                    pio_artifact::Dim::Fixed(b) => Some((b, l.block[0])),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    };
    let (b, t) = (gemv_shapes(&base), gemv_shapes(&tuned));
    assert_eq!(b.len(), t.len());
    assert!(b.iter().all(|&(_, threads)| threads == 256));
    assert!(t
        .iter()
        .all(|&(blocks, threads)| blocks <= 528 && threads == 128));
    assert!(b.iter().any(|&(blocks, _)| blocks > 528));
}

#[test]
fn paged_attention_target_blocks_changes_the_splits_only() {
    use pio_compiler::codegen::PAGED_ATTENTION_TARGET_BLOCKS;
    let at = |target: Option<usize>| {
        compile(
            "qwen3-0.6b.yaml",
            &CodegenOptions {
                paged_attention_target_blocks: target,
                ..Default::default()
            },
            PassOptions::default(),
        )
    };
    let (base, wide) = (at(None), at(Some(4 * PAGED_ATTENTION_TARGET_BLOCKS)));
    // The split dims of the batch decode attention launches (one per layer).
    let splits = |a: &Artifact| -> Vec<Dim> {
        a.paged
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Kernel(l) if l.kernel.starts_with("attention_paged") => Some(l.grid[1]),
                _ => None,
            })
            .collect()
    };
    let (b, w) = (splits(&base), splits(&wide));
    assert_eq!(b.len(), 28);
    assert_eq!(b.len(), w.len());
    // 8 kv-head blocks per split: 66 splits aimed at per token by default, 264 with 4x.
    assert!(
        b.iter().all(|d| matches!(d, Dim::Split { target: 66, .. })),
        "{b:?}"
    );
    assert!(
        w.iter()
            .all(|d| matches!(d, Dim::Split { target: 264, .. })),
        "{w:?}"
    );
    assert_eq!((b[0].eval(128), w[0].eval(128)), (1, 3));
    assert_eq!(base.paged.steps.len(), wide.paged.steps.len());
    assert_eq!(
        base.kernels, wide.kernels,
        "the kernels' source is the same"
    );
}

#[test]
fn wide_row_access_changes_only_the_elementwise_norm_and_per_head_kernels() {
    use pio_artifact::KernelFamily as F;
    let at = |wide_row_access| {
        compile(
            "qwen3-0.6b.yaml",
            &CodegenOptions {
                wide_row_access,
                ..Default::default()
            },
            PassOptions::default(),
        )
    };
    let (narrow, wide) = (at(false), at(true));
    let family = |a: &Artifact, s: &Step| match s {
        Step::Kernel(l) => Some(a.kernel(&l.kernel).unwrap().family),
        _ => None,
    };
    let lists = |a: &Artifact| {
        [&a.prefill, &a.decode, &a.paged.steps, &a.paged.chunk_steps]
            .map(|l| (*l).clone())
            .to_vec()
    };
    let (mut changed_rows, mut changed_heads, mut changed_norms) = (0, 0, 0);
    for (ln, lw) in lists(&narrow).iter().zip(lists(&wide)) {
        assert_eq!(ln.len(), lw.len(), "the same launches");
        for (n, w) in ln.iter().zip(&lw) {
            let (fam, famw) = (family(&narrow, n), family(&wide, w));
            assert_eq!(fam, famw);
            let (Step::Kernel(n), Step::Kernel(w)) = (n, w) else {
                assert_eq!(n, w);
                continue;
            };
            let (sn, sw) = (
                &narrow.kernel(&n.kernel).unwrap().source,
                &wide.kernel(&w.kernel).unwrap().source,
            );
            match fam {
                Some(F::Elementwise) => {
                    // 8 columns per thread: an eighth of the blocks (rounded up).
                    assert!(sn.contains("#define VEC 1") && sw.contains("#define VEC 8"));
                    let (Dim::PerToken(bn), Dim::PerToken(bw)) = (n.grid[0], w.grid[0]) else {
                        panic!("{:?}", n.grid)
                    };
                    assert_eq!(bw, bn.div_ceil(8));
                    changed_rows += 1;
                }
                Some(F::HeadOp | F::HeadOps) => {
                    // head_dim 128: 4 consecutive elements per lane.
                    assert!(sn.contains("#define PER_LANE 0") && sw.contains("#define PER_LANE 4"));
                    assert_eq!(n.grid, w.grid);
                    changed_heads += 1;
                }
                Some(F::RmsNorm) => {
                    // Hidden 1,024: a thread per 8 columns, 128 threads instead of 256.
                    assert!(sn.contains("#define VEC 1") && sw.contains("#define VEC 8"));
                    assert_eq!((n.grid, n.block[0], w.block[0]), (w.grid, 256, 128));
                    changed_norms += 1;
                }
                _ => assert_eq!((sn, n), (sw, w), "{}", n.kernel),
            }
        }
    }
    assert!(changed_rows > 0 && changed_heads > 0 && changed_norms > 0);
}

#[test]
fn online_chunk_attention_changes_only_the_chunk_steps_attention() {
    use pio_artifact::KernelFamily as F;
    let at = |online_chunk_attention| {
        compile(
            "qwen3-0.6b.yaml",
            &CodegenOptions {
                online_chunk_attention,
                ..Default::default()
            },
            PassOptions::default(),
        )
    };
    let (two, one) = (at(false), at(true));
    assert_lists_equal_but_the_chunk_steps(&two, &one);
    let attention = |a: &Artifact| -> Vec<(String, [Dim; 3], u32)> {
        a.paged
            .chunk_steps
            .iter()
            .filter_map(|s| match s {
                Step::Kernel(l) if a.kernel(&l.kernel).unwrap().family == F::AttentionMma => {
                    Some((l.node.clone(), l.grid, l.shared_bytes))
                }
                _ => None,
            })
            .collect()
    };
    let (att2, att1) = (attention(&two), attention(&one));
    // Per layer: stats, P.V, reduce against one pass and its reduce.
    assert_eq!((att2.len(), att1.len()), (3 * 28, 2 * 28));
    for (l2, l1) in att2.chunks(3).zip(att1.chunks(2)) {
        assert_eq!(l1[0].0, l2[0].0, "the same node");
        // One pass: the P.V launch's grid and shared memory (key and value tiles).
        assert_eq!((l1[0].1, l1[0].2), (l2[1].1, l2[1].2));
        // Its reduce: the reduce's grid (none where the step has one split).
        assert_eq!(l1[1].1, l2[2].1);
    }
    let others = |a: &Artifact| -> usize {
        a.paged
            .chunk_steps
            .iter()
            .filter(|s| match s {
                Step::Kernel(l) => a.kernel(&l.kernel).unwrap().family != F::AttentionMma,
                _ => true,
            })
            .count()
    };
    assert_eq!(others(&two), others(&one));
    let one_pass = one
        .paged
        .chunk_steps
        .iter()
        .filter_map(|s| match s {
            Step::Kernel(l) => Some(&one.kernel(&l.kernel).unwrap().source),
            _ => None,
        })
        .filter(|src| src.contains("online_pass(acc"))
        .count();
    assert_eq!(one_pass, 28, "one one-pass kernel launch per layer");
}

#[test]
fn chunk_attention_min_blocks_changes_only_the_chunk_attention_launch_bounds() {
    use pio_artifact::KernelFamily as F;
    let at = |chunk_attention_min_blocks| {
        compile(
            "qwen3-0.6b.yaml",
            &CodegenOptions {
                chunk_attention_min_blocks,
                ..Default::default()
            },
            PassOptions::default(),
        )
    };
    let (free, bound) = (at(0), at(3));
    assert_lists_equal_but_the_chunk_steps(&free, &bound);
    let mut bounded = 0;
    for (f, b) in free.paged.chunk_steps.iter().zip(&bound.paged.chunk_steps) {
        let (Step::Kernel(f), Step::Kernel(b)) = (f, b) else {
            assert_eq!(f, b);
            continue;
        };
        assert_eq!((&f.node, f.grid, f.block), (&b.node, b.grid, b.block));
        let (sf, sb) = (
            &free.kernel(&f.kernel).unwrap().source,
            &bound.kernel(&b.kernel).unwrap().source,
        );
        if free.kernel(&f.kernel).unwrap().family == F::AttentionMma
            && sb.contains("__launch_bounds__(THREADS, 3)")
        {
            assert!(!sf.contains("__launch_bounds__(THREADS, 3)"));
            bounded += 1;
        } else {
            assert_eq!(sf, sb, "{}", f.kernel);
        }
    }
    // Per layer: the P.V kernel (the stats kernel keeps its 4 blocks per SM, the reduce has no
    // launch bound).
    assert_eq!(bounded, 28);
}

/// Every launch list of `a` and `b` but the chunk steps' is the same.
fn assert_lists_equal_but_the_chunk_steps(a: &Artifact, b: &Artifact) {
    for (la, lb) in [
        (&a.prefill, &b.prefill),
        (&a.decode, &b.decode),
        (&a.paged.steps, &b.paged.steps),
        (&a.paged.single_steps, &b.paged.single_steps),
    ] {
        assert_eq!(la, lb, "only the chunk steps change");
    }
}
