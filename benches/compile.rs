//! Compile-time benchmarks: spec file to artifact, for every spec in `model-specs/`.
//!
//! `spec_to_artifact/<spec>` is what `pio-compile` does before it writes files: load and check
//! the YAML spec (variant + family), lower it to the IR, run the default pass pipeline
//! (verifying after every pass), generate the CUDA kernels, launch lists and memory plan, and
//! serialize the artifact to JSON in memory (no file I/O). `compile_stages/<stage>/<spec>`
//! times each of those stages alone, so a regression can be pinned to one of them.
//!
//! ```sh
//! cargo bench --bench compile               # a minute or so on a 2-core machine
//! cargo bench --bench compile -- --quick    # a rough number, faster
//! ```

mod common;

use common::root;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pio_compiler::codegen::{generate, CodegenOptions};
use pio_compiler::ir::Graph;
use pio_compiler::pass::{default_pipeline, PassOptions};
use pio_compiler::spec::ModelSpec;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

/// The specs benchmarked, by file name under `model-specs/`.
const SPECS: [&str; 3] = [
    "qwen3-tiny.yaml",
    "qwen3-0.6b.yaml",
    "qwen3-4b-instruct-2507.yaml",
];

fn spec_path(name: &str) -> PathBuf {
    root().join("model-specs").join(name)
}

/// A short display name: the file name without `.yaml`.
fn short(name: &str) -> &str {
    name.trim_end_matches(".yaml")
}

fn load(name: &str) -> ModelSpec {
    let path = spec_path(name);
    pio_compiler::spec::load(&path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

fn optimize(graph: &mut Graph) {
    default_pipeline(PassOptions::default())
        .expect("default pipeline")
        .run(graph)
        .expect("passes");
}

/// The whole spec-to-artifact path; returns the artifact's JSON.
fn spec_to_artifact(name: &str) -> Vec<u8> {
    let spec = load(name);
    let compiled = pio_compiler::compile(&spec, &Default::default()).expect("compile");
    serde_json::to_vec_pretty(&compiled.artifact).expect("artifact json")
}

fn bench_spec_to_artifact(c: &mut Criterion) {
    let mut group = c.benchmark_group("spec_to_artifact");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for name in SPECS {
        group.bench_function(short(name), |b| {
            b.iter(|| spec_to_artifact(black_box(name)))
        });
    }
    group.finish();
}

fn bench_stages(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile_stages");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for name in SPECS {
        let s = short(name);
        let spec = load(name);
        let lowered = pio_compiler::lower::lower(&spec).expect("lower");
        let mut optimized = lowered.clone();
        optimize(&mut optimized);
        let info = pio_compiler::compile::model_info(&spec, &lowered).expect("model info");
        let reference = pio_artifact::Attachment::new(
            "reference-graph.json",
            pio_compiler::ir::serial::to_json(&lowered).into_bytes(),
        );
        let codegen = || {
            generate(
                &optimized,
                &CodegenOptions::default(),
                info.clone(),
                reference.clone(),
            )
        };
        let artifact = codegen().expect("codegen");

        group.bench_function(format!("load/{s}"), |b| b.iter(|| load(black_box(name))));
        group.bench_function(format!("lower/{s}"), |b| {
            b.iter(|| pio_compiler::lower::lower(black_box(&spec)).expect("lower"))
        });
        group.bench_function(format!("passes/{s}"), |b| {
            b.iter_batched(
                || lowered.clone(),
                |mut g| {
                    optimize(&mut g);
                    g
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("codegen/{s}"), |b| b.iter(|| black_box(codegen())));
        group.bench_function(format!("artifact_json/{s}"), |b| {
            b.iter(|| serde_json::to_vec_pretty(black_box(&artifact)).expect("json"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_spec_to_artifact, bench_stages);
criterion_main!(benches);
