//! Semantics are preserved: the CPU executor gives the same logits for the lowered graph, the
//! fully optimized graph, the graph compiled with `--no-fusion`, and the optimized graph with
//! every fused op decomposed again. The executor has no fused kernels of its own: it runs a
//! fused op through its decomposition into primitives (`fusion::decompose`, the fused ops' one
//! definition and the oracle the GPU's fused kernels are held to), so these checks test the
//! fusion rewrites against the primitive kernels only. Prefill and decode steps through the KV
//! cache are both covered.

use pio_compiler::interp::CpuExecutor;
use pio_compiler::ir::Graph;
use pio_compiler::pass::{default_pipeline, PassOptions};
use std::path::Path;

#[path = "common/hashed.rs"]
mod hashed;
use hashed::{load, rel_l2};

fn graph(spec: &Path) -> Graph {
    let spec = pio_compiler::spec::load(spec).unwrap();
    pio_compiler::lower::lower(&spec).unwrap()
}

fn optimized(mut g: Graph, no_fusion: bool) -> Graph {
    let pm = default_pipeline(PassOptions {
        no_fusion,
        ..PassOptions::default()
    })
    .unwrap();
    pm.run(&mut g).unwrap();
    g
}

/// Logits of a 5-token prefill followed by 3 decode steps.
fn run(g: Graph, vocab_limit: u32) -> Vec<Vec<f32>> {
    let mut ex = CpuExecutor::new(g, &mut load).unwrap();
    let mut rows = Vec::new();
    let prompt: Vec<u32> = [3u32, 141, 59, 265, 35]
        .iter()
        .map(|t| t % vocab_limit)
        .collect();
    let logits = &ex.step(&prompt).unwrap()[&pio_compiler::ir::OutputRole::Logits];
    rows.extend(logits.rows().map(<[f32]>::to_vec));
    for t in [97u32, 9, 323] {
        let logits = &ex.step(&[t % vocab_limit]).unwrap()[&pio_compiler::ir::OutputRole::Logits];
        rows.extend(logits.rows().map(<[f32]>::to_vec));
    }
    rows
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let e = rel_l2(x, y);
        assert!(e <= 1e-5, "{what}: row {i}: relative L2 {e:.3e}");
    }
}

fn check(spec: &Path) {
    let lowered = graph(spec);
    let limit = 500;
    let reference = run(lowered.clone(), limit);
    let full = optimized(lowered.clone(), false);
    assert!(
        full.ids().any(|id| g_is_fused(&full, id)),
        "fusion did nothing"
    );
    assert_close(&run(full.clone(), limit), &reference, "full pipeline");
    assert_close(
        &run(optimized(lowered.clone(), true), limit),
        &reference,
        "--no-fusion",
    );
    let mut decomposed = full;
    assert!(pio_compiler::fusion::decompose(&mut decomposed) > 0);
    pio_compiler::ir::verify::verify(&decomposed, Some("decompose")).unwrap();
    assert_close(&run(decomposed, limit), &reference, "decomposed");
}

fn g_is_fused(g: &Graph, id: pio_compiler::ir::NodeId) -> bool {
    g.node(id).op.is_fused()
}

#[test]
fn tiny_spec_same_logits_fused_and_unfused() {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-specs/qwen3-tiny.yaml"));
}

#[test]
fn two_layers_of_real_shapes_same_logits_fused_and_unfused() {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/qwen3-0.6b-2layers.yaml"));
}

fn spec_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn count(g: &Graph, pred: impl Fn(&pio_compiler::ir::Op) -> bool) -> usize {
    g.ids().filter(|&id| pred(&g.node(id).op)).count()
}

#[test]
fn qwen2_biases_merge_and_fuse_and_keep_the_logits() {
    let spec = spec_path("../model-specs/qwen2.5-tiny.yaml");
    check(&spec);
    use pio_compiler::ir::Op;
    let g = optimized(graph(&spec), false);
    // Per layer: one Q/K/V projection with its norm and one concatenated bias (3 parts), and
    // K's rope and cache write in one op; no bias is left on its own.
    assert_eq!(count(&g, |o| matches!(o, Op::NormLinearBias { .. })), 2);
    assert_eq!(count(&g, |o| matches!(o, Op::RopeKvWrite { .. })), 2);
    assert_eq!(count(&g, |o| matches!(o, Op::BiasAdd | Op::LinearBias)), 0);
    let biases = g
        .ids()
        .filter(|&id| matches!(&g.node(id).op, Op::Weight(w) if w.hf_name.contains("q_proj.bias")))
        .map(|id| match &g.node(id).op {
            Op::Weight(w) => w.concat.len(),
            _ => 0,
        })
        .collect::<Vec<_>>();
    assert_eq!(biases, vec![3, 3], "concatenated Q/K/V biases per layer");
}

#[test]
fn llama_tiny_same_logits_fused_and_unfused() {
    check(&spec_path("../model-specs/llama-tiny.yaml"));
}

#[test]
fn yarn_tiny_same_logits_fused_and_unfused() {
    check(&spec_path("../tests/specs/qwen3-tiny-yarn.yaml"));
}
