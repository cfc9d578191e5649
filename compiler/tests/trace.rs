//! The launch lists' trace (which nodes each step computes, where values live), which the
//! per-kernel GPU oracle relies on, agrees with the artifact: a step's nodes are the ones its
//! name lists, each node's steps are consecutive, every operand of a computed node has a place,
//! and every place lies inside its region.

use pio_artifact::{Artifact, Region, Step};
use pio_compiler::codegen::PhaseTrace;
use pio_compiler::ir::Op;
use pio_compiler::{compile, CompileOptions};
use std::path::Path;

fn check(name: &str, a: &Artifact, g: &pio_compiler::ir::Graph, steps: &[Step], t: &PhaseTrace) {
    assert_eq!(
        t.step_nodes.len(),
        steps.len(),
        "{name}: a trace entry per step"
    );
    for (i, (step, nodes)) in steps.iter().zip(&t.step_nodes).enumerate() {
        let names: Vec<&str> = nodes.iter().map(|&n| g.node(n).name.as_str()).collect();
        assert_eq!(step.node(), names.join("+"), "{name}: step {i}");
        for &n in nodes {
            let op = &g.node(n).op;
            assert!(
                !matches!(op, Op::Input(_) | Op::Weight(_) | Op::Output(_)) && !op.is_view(),
                "{name}: step {i} computes a {}",
                op.name()
            );
            let s = t.steps_of(n);
            assert_eq!(
                s,
                (s[0]..=s[s.len() - 1]).collect::<Vec<_>>(),
                "{name}: {}",
                names[0]
            );
            for arg in g.operands(n) {
                assert!(
                    t.values.contains_key(&arg),
                    "{name}: no place for an operand of step {i}"
                );
            }
        }
    }
    for (id, p) in &t.values {
        let size = match p.region {
            Region::Weights => a.regions.weights,
            Region::Kv => a.regions.kv,
            Region::Io => a.regions.io,
            Region::Arena => a.regions.arena,
            Region::Pool => a.paged.block_bytes,
        };
        assert!(
            p.offset < size,
            "{name}: {} at {p:?} is past its region ({size} bytes)",
            g.node(*id).name
        );
    }
}

#[test]
fn every_list_is_traced_as_the_artifact_says() {
    for (spec, no_fusion) in [
        ("../model-specs/qwen3-tiny.yaml", false),
        ("../model-specs/qwen3-tiny.yaml", true),
        ("../tests/specs/gpu/qwen3-odd50.yaml", false),
    ] {
        let s = pio_compiler::spec::load(Path::new(spec)).unwrap();
        let mut opts = CompileOptions::default();
        opts.passes.no_fusion = no_fusion;
        let c = compile(&s, &opts).unwrap();
        let (a, g, t) = (&c.artifact, &c.optimized, &c.trace);
        check("decode", a, g, &a.decode, &t.decode);
        check("prefill", a, g, &a.prefill, &t.prefill);
        check("paged", a, g, &a.paged.steps, &t.paged);
        check("chunk", a, g, &a.paged.chunk_steps, &t.chunk);
        check("single", a, g, &a.paged.single_steps, &t.single);
        // Merged head-op launches compute several nodes.
        assert!(
            t.prefill.step_nodes.iter().any(|n| n.len() > 1),
            "{spec}: no merged launch"
        );
    }
}
