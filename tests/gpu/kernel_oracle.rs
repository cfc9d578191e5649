//! Per-kernel GPU oracles: every node of every launch list (batch-1 prefill and decode, the
//! batching engine's decode batches and chunks) is run on the GPU on random inputs written into
//! its operands (the KV cache and the paged pool included) and compared with the CPU executor's
//! op evaluated alone on the same inputs (`interp::eval_node`: f32, fused ops through their
//! decomposition), at a tolerance set per op from its arithmetic (see [`tolerance`]: copies
//! exact, elementwise ops one rounding, the rest a few bf16 roundings), against the CPU's result
//! rounded to bf16. Norm inputs have a mean square of 9 eps, so an eps that is off shows. Specs
//! at odd sizes and at the real 0.6B and 4B shapes, with and without fusion.

use super::have_gpu;
use super::oracle::{Check, Oracle, SeqRows};
use pio::artifact::Phase;
use pio::compiler::ir::Op;
use pio::compiler::pass::PassOptions;
use pio::compiler::{compile, CompileOptions, Compiled};
use pio::runtime::cuda::executor::{CudaModel, PagedSeqRef};
use pio::{Device, LoadOptions, Model, WeightsSource};
use std::collections::BTreeMap;
use std::path::Path;

/// The largest relative L2 gap to the CPU (rounded to bf16) a correct kernel of this op shows.
///
/// One bf16 rounding of an f32 value moves it by about 1.6e-3 (relative RMS); the kernels keep
/// HF's bf16 intermediates, which the f32 CPU op does not, so each op's bound is its count of
/// roundings past the CPU's one, with room for the sampling noise of small nodes (the worst of
/// 7 specs x 4 lists on an H200, 2026-12-03, in brackets):
/// - copies (embedding rows, cache writes) are exact [0];
/// - add, mul, silu: one rounding, as the CPU's [0];
/// - rmsnorm (normed value rounded before the weight, as HF) [4.2e-3], rope [3.0e-3];
/// - norm + rope (+ cache write): both [4.8e-3];
/// - projections: the normed input of a GEMM, f32 sums in another order [4.0e-3]; with SwiGLU
///   also the gate/up product and the activation [6.7e-3];
/// - attention: scores and softmax weights rounded to bf16 as HF eager does [8.2e-3].
///
/// Norm inputs have a mean square of 9 eps: an rmsnorm eps 10x off moves a GEMV's output by
/// 3.5e-1 (measured with that bug planted).
fn tolerance(op: &Op) -> f64 {
    match op {
        Op::Embed | Op::KvWrite { .. } | Op::Reshape { .. } | Op::Slice { .. } => 0.0,
        Op::Silu | Op::Mul | Op::Add | Op::SiluMul | Op::BiasAdd => 1e-3,
        Op::RmsNorm { .. } | Op::Rope { .. } => 6e-3,
        Op::NormRope { .. } | Op::NormRopeKvWrite { .. } | Op::RopeKvWrite { .. } => 7e-3,
        Op::Linear | Op::NormLinear { .. } | Op::LinearAdd => 6e-3,
        Op::LinearBias | Op::NormLinearBias { .. } => 6e-3,
        Op::NormLinearSwiGlu { .. } => 1e-2,
        Op::Attention { .. } => 1.2e-2,
        _ => 0.0,
    }
}

fn compiled(spec: &str, no_fusion: bool) -> Compiled {
    let s = pio::compiler::spec::load(Path::new(spec)).unwrap();
    let opts = CompileOptions {
        passes: PassOptions {
            no_fusion,
            ..PassOptions::default()
        },
        // The engine's codegen options (its environment switches included), so that a run
        // checks what they turn on.
        codegen: LoadOptions {
            max_prefill: Some(512),
            ..LoadOptions::default()
        }
        .codegen_options()
        .unwrap(),
    };
    compile(&s, &opts).unwrap()
}

fn tokens(n: usize, salt: u32, vocab: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % vocab as u32)
        .collect()
}

/// Runs one observed step and returns its checks.
fn observe(
    c: &Compiled,
    cuda: &mut CudaModel,
    phase: Phase,
    seqs: &[(Vec<u32>, usize, Vec<u32>)],
    seed: u64,
) -> Vec<Check> {
    let trace = match phase {
        Phase::Decode => &c.trace.decode,
        Phase::Prefill => &c.trace.prefill,
        Phase::Paged => &c.trace.paged,
        Phase::PagedChunk => &c.trace.chunk,
        Phase::PagedSingle => &c.trace.single,
    };
    let rows = seqs
        .iter()
        .map(|(t, start, blocks)| SeqRows {
            start: *start,
            len: t.len(),
            blocks: blocks.clone(),
        })
        .collect();
    let mut oracle = Oracle::new(&c.optimized, trace, &c.artifact, phase, rows, seed);
    match phase {
        Phase::Decode | Phase::Prefill => cuda.step_observed(&seqs[0].0, &mut oracle),
        Phase::Paged | Phase::PagedChunk | Phase::PagedSingle => {
            let refs: Vec<PagedSeqRef> = seqs
                .iter()
                .map(|(t, start, blocks)| PagedSeqRef {
                    tokens: t,
                    start: *start,
                    blocks,
                })
                .collect();
            cuda.step_paged_observed(&refs, &mut oracle)
        }
    }
    .unwrap();
    assert!(!oracle.checks.is_empty(), "{phase:?}: nothing was checked");
    oracle.checks
}

/// Every list of one compiled spec: batch-1 prefill from 0 and over a cached prefix, decode at
/// short and long contexts (several attention spans); paged chunks from 0 and over cached
/// blocks; a decode batch of three sequences (one past 1,024 keys where the spec's context
/// allows) padded to its bucket.
fn run_all(c: &Compiled) -> Vec<Check> {
    let vocab = c.artifact.model.vocab_size;
    let mut model = Model::from_artifact(
        c.artifact.clone(),
        &WeightsSource::Random { seed: 3 },
        Device::Cuda,
        &LoadOptions::default(),
    )
    .unwrap();
    let cuda = model.cuda().unwrap().model();
    let mut checks = Vec::new();
    let one = |t: Vec<u32>, start: usize| vec![(t, start, Vec::new())];
    checks.extend(observe(
        c,
        cuda,
        Phase::Prefill,
        &one(tokens(37, 1, vocab), 0),
        1,
    ));
    checks.extend(observe(
        c,
        cuda,
        Phase::Decode,
        &one(tokens(1, 2, vocab), 37),
        2,
    ));
    checks.extend(observe(
        c,
        cuda,
        Phase::Prefill,
        &one(tokens(200, 3, vocab), 38),
        3,
    ));
    // The long context: past 1,024 keys where the spec allows.
    let long = (c.artifact.max_context - 1).min(1100);
    for chunk in tokens(long - 238, 4, vocab).chunks(512) {
        cuda.step(chunk).unwrap();
    }
    let at_long = one(tokens(1, 5, vocab), long);
    checks.extend(observe(c, cuda, Phase::Decode, &at_long, 4));

    // Paged: blocks handed out interleaved, so that a block table read wrongly shows.
    let bs = c.artifact.paged.block_size;
    let lens = [46usize, 201, long + 1];
    let need: Vec<usize> = lens.iter().map(|l| l.div_ceil(bs)).collect();
    let total: usize = need.iter().sum();
    cuda.enable_paged(total + 4).unwrap();
    let mut blocks: Vec<Vec<u32>> = vec![Vec::new(); 3];
    let mut next = (0..total as u32).rev();
    while blocks.iter().zip(&need).any(|(b, &n)| b.len() < n) {
        for (b, &n) in blocks.iter_mut().zip(&need) {
            if b.len() < n {
                b.push(next.next().unwrap());
            }
        }
    }
    let seq = |i: usize, t: Vec<u32>, start: usize| vec![(t, start, blocks[i].clone())];
    checks.extend(observe(
        c,
        cuda,
        Phase::PagedChunk,
        &seq(0, tokens(45, 6, vocab), 0),
        5,
    ));
    cuda.step_paged(&[PagedSeqRef {
        tokens: &tokens(130, 7, vocab),
        start: 0,
        blocks: &blocks[1],
    }])
    .unwrap();
    checks.extend(observe(
        c,
        cuda,
        Phase::PagedChunk,
        &seq(1, tokens(70, 8, vocab), 130),
        6,
    ));
    for (i, chunk) in tokens(long, 9, vocab).chunks(512).enumerate() {
        cuda.step_paged(&[PagedSeqRef {
            tokens: chunk,
            start: i * 512,
            blocks: &blocks[2],
        }])
        .unwrap();
    }
    let batch: Vec<(Vec<u32>, usize, Vec<u32>)> = [45, 200, long]
        .iter()
        .enumerate()
        .map(|(i, &start)| (tokens(1, 10 + i as u32, vocab), start, blocks[i].clone()))
        .collect();
    checks.extend(observe(c, cuda, Phase::Paged, &batch, 7));
    // One sequence alone runs the single-sequence list (GEMV kernels, paged attention), at a
    // short context and past 1,024 keys (its positions' slots are written again).
    for (i, seed) in [(1usize, 11u64), (2, 12)] {
        let (_, start, b) = &batch[i];
        let alone = vec![(tokens(1, 20 + i as u32, vocab), *start, b.clone())];
        checks.extend(observe(c, cuda, Phase::PagedSingle, &alone, seed));
    }
    checks
}

/// Every kernel of one spec's lists against the CPU op alone; panics with the gaps past their
/// tolerance.
fn check_spec(spec: &str, no_fusion: bool) {
    if !have_gpu() {
        return;
    }
    let mut failures = Vec::new();
    let c = compiled(spec, no_fusion);
    let checks = run_all(&c);
    // The worst gap per (list, op), and the op's tolerance.
    let mut worst: BTreeMap<(String, &str), (f64, String, usize, usize)> = BTreeMap::new();
    for ch in &checks {
        let e =
            worst
                .entry((format!("{:?}", ch.phase), ch.op))
                .or_insert((0.0, String::new(), 0, 0));
        e.2 += 1;
        e.3 += ch.values;
        if ch.rel_l2 >= e.0 {
            e.0 = ch.rel_l2;
            e.1 = ch.node.clone();
        }
    }
    let tol_of: BTreeMap<&str, f64> = c
        .optimized
        .ids()
        .map(|id| {
            (
                c.optimized.node(id).op.name(),
                tolerance(&c.optimized.node(id).op),
            )
        })
        .collect();
    eprintln!("== {spec}{}", if no_fusion { " (no fusion)" } else { "" });
    for ((phase, op), (gap, node, n, values)) in &worst {
        let tol = tol_of[op];
        let ok = *gap <= tol;
        eprintln!(
            "  {phase:<11} {op:<22} {n:>3} nodes {values:>9} values  worst {gap:.3e} ({node})  \
             tolerance {tol:.0e} {}",
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            failures.push(format!(
                "{spec} {phase} {node} ({op}): {gap:.3e} > {tol:.0e}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "kernels off the CPU:\n{}",
        failures.join("\n")
    );
}

/// One test per spec (a filter picks some: `gpu-tests kernel_oracle::qwen3_0_6b`).
macro_rules! oracle_tests {
    ($($name:ident: $spec:literal, $no_fusion:literal;)*) => {$(
        #[test]
        #[cfg_attr(
            not(pio_gpu),
            ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
        )]
        fn $name() {
            check_spec($spec, $no_fusion);
        }
    )*};
}

oracle_tests! {
    qwen3_tiny: "model-specs/qwen3-tiny.yaml", false;
    qwen3_tiny_no_fusion: "model-specs/qwen3-tiny.yaml", true;
    qwen3_odd50: "tests/specs/gpu/qwen3-odd50.yaml", false;
    qwen3_group8: "tests/specs/gpu/qwen3-group8.yaml", false;
    qwen3_group4_8kv: "tests/specs/gpu/qwen3-group4-8kv.yaml", false;
    qwen3_0_6b_2layers: "compiler/tests/specs/qwen3-0.6b-2layers.yaml", false;
    qwen3_4b_1layer: "tests/specs/gpu/qwen3-4b-1layer.yaml", false;
    // The qwen2 and llama families: biases (fused and on their own), rope without a norm,
    // llama3 and yarn rope scaling, head_dim 64, groups of 6.
    qwen2_5_tiny: "model-specs/qwen2.5-tiny.yaml", false;
    qwen2_5_tiny_no_fusion: "model-specs/qwen2.5-tiny.yaml", true;
    llama_tiny: "model-specs/llama-tiny.yaml", false;
    qwen3_tiny_yarn: "tests/specs/qwen3-tiny-yarn.yaml", false;
    qwen2_5_1_5b_1layer: "tests/specs/gpu/qwen2.5-1.5b-1layer.yaml", false;
    llama_3_2_1b_1layer: "tests/specs/gpu/llama-3.2-1b-1layer.yaml", false;
}
