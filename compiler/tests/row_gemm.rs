//! `CodegenOptions::fused_row_gemm`: the batching engine's decode-batch list runs its
//! projections as fused row GEMMs (`row_gemm.cu`); every other list is untouched.

#[path = "common/compile_spec.rs"]
mod compile_spec;
use compile_spec::compile;
use pio_artifact::{Artifact, Dim, KernelFamily as F, Step};
use pio_compiler::codegen::CodegenOptions;
use pio_compiler::pass::PassOptions;

fn at(spec: &str, fused_row_gemm: bool) -> Artifact {
    compile(
        spec,
        &CodegenOptions {
            fused_row_gemm,
            ..Default::default()
        },
        PassOptions::default(),
    )
}

/// The decode-batch list's steps as (what, node): a kernel's family or "gemm".
fn kinds(a: &Artifact) -> Vec<(String, String)> {
    a.paged
        .steps
        .iter()
        .map(|s| match s {
            Step::Kernel(l) => (
                a.kernel(&l.kernel).unwrap().family.to_string(),
                l.node.clone(),
            ),
            Step::Gemm(g) => ("gemm".to_string(), g.node.clone()),
            Step::Collective(c) => ("collective".to_string(), c.node.clone()),
        })
        .collect()
}

fn row_gemm_grids(a: &Artifact) -> Vec<[Dim; 3]> {
    a.paged
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Kernel(l) if a.kernel(&l.kernel).unwrap().family == F::RowGemm => Some(l.grid),
            _ => None,
        })
        .collect()
}

#[test]
fn the_decode_batch_projections_become_one_launch_each_and_nothing_else_changes() {
    let (plain, fused) = (at("qwen3-0.6b.yaml", false), at("qwen3-0.6b.yaml", true));
    for (a, b) in [
        (&plain.prefill, &fused.prefill),
        (&plain.decode, &fused.decode),
        (&plain.paged.chunk_steps, &fused.paged.chunk_steps),
        (&plain.paged.single_steps, &fused.paged.single_steps),
    ] {
        assert_eq!(a, b, "only the decode-batch list changes");
    }
    let (before, after) = (kinds(&plain), kinds(&fused));
    let count = |k: &[(String, String)], what: &str| k.iter().filter(|(w, _)| w == what).count();
    // Per layer before: two RMSNorms, four GEMMs, the SwiGLU; after: four row GEMMs. The
    // logits keep the final RMSNorm and their GEMM (the executor picks their rows).
    assert_eq!(
        (count(&before, "rmsnorm"), count(&before, "gemm")),
        (2 * 28 + 1, 4 * 28 + 1)
    );
    assert_eq!((count(&after, "rmsnorm"), count(&after, "gemm")), (1, 1));
    assert_eq!(count(&after, "row_gemm"), 4 * 28);
    assert_eq!(
        count(&before, "elementwise") - count(&after, "elementwise"),
        28
    );
    assert_eq!(before.len() - after.len(), 3 * 28);
    assert!(matches!(fused.paged.steps.last(), Some(Step::Gemm(g)) if g.logits));
    // Grids (column tiles, k splits): q/k/v 4096 x 1024, o 1024 x 2048, gate/up 3072 SwiGLU
    // columns (32 a block) x 1024, down 1024 x 3072.
    let f = Dim::Fixed;
    let expected = [
        [f(64), f(4), f(1)],
        [f(16), f(8), f(1)],
        [f(96), f(4), f(1)],
        [f(16), f(8), f(1)],
    ];
    for layer in row_gemm_grids(&fused).chunks(4) {
        assert_eq!(layer, expected);
    }
    for s in &fused.paged.steps {
        if let Step::Kernel(l) = s {
            let k = fused.kernel(&l.kernel).unwrap();
            if k.family == F::RowGemm {
                assert_eq!(
                    l.shared_bytes,
                    128 * 256,
                    "{}: a pass of 128 staged rows",
                    l.node
                );
                assert!(k.source.contains("__cluster_dims__(1, SPLITS, 1)"));
            }
        }
    }
}

#[test]
fn projections_with_a_bias_fuse_it_too() {
    // Qwen2.5: q/k/v have biases (NormLinearBias: before, an RMSNorm, a bias copy and a GEMM
    // with beta 1); every projection but the logits fuses.
    let (plain, fused) = (
        at("qwen2.5-0.5b.yaml", false),
        at("qwen2.5-0.5b.yaml", true),
    );
    let layers = 24;
    let count = |a: &Artifact, what: &str| kinds(a).iter().filter(|(w, _)| w == what).count();
    assert_eq!(count(&plain, "gemm"), 4 * layers + 1);
    assert_eq!(count(&fused, "gemm"), 1, "the logits");
    assert_eq!(count(&fused, "row_gemm"), 4 * layers);
    assert_eq!(count(&fused, "rmsnorm"), 1);
    // The bias kernel reads its row with a stride of 0 (the same row for every token).
    let bias_kernels: Vec<&str> = fused
        .paged
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Kernel(l) if l.node.ends_with("q_k_v") => {
                Some(fused.kernel(&l.kernel).unwrap().source.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(bias_kernels.len(), layers);
    assert!(bias_kernels.iter().all(|src| src.contains("#define RS 0")
        && src.contains("o[h] = s[h] + bf2f(residual[col + h]);")));
}
