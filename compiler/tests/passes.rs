//! Golden tests: for each pass, a tiny input graph and the exact IR text after the pass
//! (compiler/tests/golden/PASS.txt holds "before" and "after"; `PIO_BLESS=1` rewrites them —
//! review the diff). Plus the pass manager's options and limits.

use pio_compiler::error::CompileError;
use pio_compiler::ir::print::print;
mod common;

use common::{f32t, leaf, node};
use pio_compiler::ir::*;
use pio_compiler::pass::{self, default_pipeline, Pass, PassManager, PassOptions};
use std::path::Path;

fn golden(name: &str, before: &Graph, after: &Graph) {
    let text = format!(
        "# before\n{}\n# after {name}\n{}",
        print(before),
        print(after)
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.txt"));
    if std::env::var("PIO_BLESS").is_ok_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(text, expected, "golden file {} differs", path.display());
}

fn run(p: &dyn Pass, g: &Graph) -> Graph {
    let mut out = g.clone();
    let mut rounds = 0;
    while p.run(&mut out).unwrap() && p.fixed_point() {
        rounds += 1;
        assert!(rounds < 100);
    }
    verify::verify(&out, Some(p.name())).unwrap();
    out
}

fn mini() -> Graph {
    let spec = pio_compiler::spec::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/specs/mini-variant.yaml"),
    )
    .unwrap();
    pio_compiler::lower::lower(&spec).unwrap()
}

#[test]
fn canonicalize_golden() {
    let mut g = Graph::new("canon", vec![]);
    let a = leaf(&mut g, "a", &[2, 6]);
    let same = node(
        &mut g,
        "same",
        Op::Reshape {
            shape: Shape::fixed(&[2, 6]),
        },
        &[2, 6],
        &[a],
    );
    let r1 = node(
        &mut g,
        "r1",
        Op::Reshape {
            shape: Shape::fixed(&[3, 4]),
        },
        &[3, 4],
        &[same],
    );
    let r2 = node(
        &mut g,
        "r2",
        Op::Reshape {
            shape: Shape::fixed(&[12]),
        },
        &[12],
        &[r1],
    );
    let full = node(
        &mut g,
        "full",
        Op::Slice { start: 0, len: 12 },
        &[12],
        &[r2],
    );
    node(
        &mut g,
        "out",
        Op::Output(OutputRole::Logits),
        &[12],
        &[full],
    );
    golden("canonicalize", &g, &run(&pass::Canonicalize, &g));
}

#[test]
fn cse_golden() {
    let mut g = Graph::new("cse", vec![]);
    let a = leaf(&mut g, "a", &[4]);
    let s1 = node(&mut g, "s1", Op::Silu, &[4], &[a]);
    let s2 = node(&mut g, "s2", Op::Silu, &[4], &[a]);
    let m = node(&mut g, "m", Op::Mul, &[4], &[s1, s2]);
    node(&mut g, "out", Op::Output(OutputRole::Logits), &[4], &[m]);
    golden("cse", &g, &run(&pass::Cse, &g));
}

#[test]
fn dce_golden() {
    let mut g = Graph::new("dce", vec![]);
    let a = leaf(&mut g, "a", &[4]);
    let b = leaf(&mut g, "b", &[4]);
    let dead = node(&mut g, "dead", Op::Silu, &[4], &[b]);
    node(&mut g, "dead2", Op::Mul, &[4], &[dead, dead]);
    let s = node(&mut g, "s", Op::Silu, &[4], &[a]);
    node(&mut g, "out", Op::Output(OutputRole::Logits), &[4], &[s]);
    golden("dce", &g, &run(&pass::Dce::named("dce"), &g));
}

#[test]
fn kv_cache_golden() {
    let g = mini();
    golden("kv-cache", &g, &run(&pass::KvCache, &g));
}

#[test]
fn fuse_golden() {
    let g = run(&pass::KvCache, &mini());
    golden("fuse", &g, &run(&pio_compiler::pass::Fuse::default(), &g));
}

#[test]
fn unknown_pass_names_list_the_valid_ones() {
    for opts in [
        PassOptions {
            disabled: vec!["fusion".into()],
            ..PassOptions::default()
        },
        PassOptions {
            dump_after: vec!["cse2".into()],
            ..PassOptions::default()
        },
    ] {
        let e = default_pipeline(opts).err().unwrap().to_string();
        assert!(
            e.ends_with(
                "(passes: canonicalize, cse, dce, kv-cache, fuse, dce-final; not run here: shard)"
            ),
            "{e}"
        );
    }
    // The shard pass runs in a tensor-parallel compile only: a dump after it is an error without
    // one (it would write nothing), disabling it is not.
    let dump = |tensor_parallel| {
        default_pipeline(PassOptions {
            dump_after: vec!["shard".into()],
            tensor_parallel,
            ..PassOptions::default()
        })
    };
    let e = dump(1).err().unwrap().to_string();
    assert!(
        e.starts_with(
            "no IR to dump after pass 'shard': it runs only in a tensor-parallel compile"
        ),
        "{e}"
    );
    assert!(dump(2).is_ok());
    assert!(default_pipeline(PassOptions {
        disabled: vec!["shard".into()],
        ..PassOptions::default()
    })
    .is_ok());
}

#[test]
fn disable_no_fusion_and_dumps() {
    let mut g = mini();
    let pm = default_pipeline(PassOptions {
        disabled: vec!["kv-cache".into()],
        no_fusion: true,
        dump_after: vec!["all".into()],
        ..PassOptions::default()
    })
    .unwrap();
    let report = pm.run(&mut g).unwrap();
    let ran: Vec<&str> = report.records.iter().map(|r| r.name).collect();
    assert_eq!(ran, ["canonicalize", "cse", "dce", "dce-final"]);
    assert_eq!(report.dumps.len(), 4);
    assert!(print(&g).contains("kv_append"));
}

/// A broken pass that always claims a change.
struct Restless;
impl Pass for Restless {
    fn name(&self) -> &'static str {
        "restless"
    }
    fn fixed_point(&self) -> bool {
        true
    }
    fn run(&self, _: &mut Graph) -> Result<bool, CompileError> {
        Ok(true)
    }
}

/// A broken pass that corrupts the graph.
struct Vandal;
impl Pass for Vandal {
    fn name(&self) -> &'static str {
        "vandal"
    }
    fn run(&self, g: &mut Graph) -> Result<bool, CompileError> {
        let id = g.find("x").unwrap();
        g.node_mut(id).ty = f32t(&[7]);
        Ok(true)
    }
}

#[test]
fn fixed_point_cap_and_verification_name_the_pass() {
    let pm = PassManager::new(
        vec![Box::new(Restless)],
        PassOptions {
            max_iterations: 5,
            ..PassOptions::default()
        },
    )
    .unwrap();
    let e = pm.run(&mut mini()).unwrap_err().to_string();
    assert_eq!(
        e,
        "pass 'restless' did not reach a fixed point after 5 iterations"
    );
    let pm = PassManager::new(vec![Box::new(Vandal)], PassOptions::default()).unwrap();
    let e = pm.run(&mut mini()).unwrap_err().to_string();
    assert!(
        e.starts_with("IR verification failed after pass 'vandal'"),
        "{e}"
    );
}
