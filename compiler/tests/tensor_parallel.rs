//! Tensor parallel on the CPU (issue 18's CPU-testable part): the shard pass's graph run on N
//! simulated ranks (all-reduce a sum in rank order) gives the unsharded logits within f32
//! rounding, for N = 2 and 4 and for KV heads fewer than ranks (replicated); the sharded IR is
//! pinned by a golden file; what cannot split is an error that names the node.

use pio_compiler::error::CompileError;
use pio_compiler::interp::load::slicing;
use pio_compiler::interp::{CpuExecutor, PagedSeq, RankGroup};
use pio_compiler::ir::print::print;
use pio_compiler::ir::{Graph, Op, OutputRole};
use pio_compiler::pass::shard::shard;
use pio_compiler::pass::{default_pipeline, PassOptions};
use std::path::Path;

#[path = "common/hashed.rs"]
mod hashed;
use hashed::{load, rel_l2};

fn spec_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../model-specs/{name}.yaml"))
}

fn lowered(name: &str) -> Graph {
    let spec = pio_compiler::spec::load(&spec_path(name)).unwrap();
    pio_compiler::lower::lower(&spec).unwrap()
}

fn sharded(name: &str, ranks: usize) -> Graph {
    let mut g = lowered(name);
    assert!(shard(&mut g, ranks).unwrap());
    g
}

const PROMPT: [u32; 5] = [3, 141, 59, 265, 35];
const DECODE: [u32; 3] = [97, 9, 323];

/// Logits rows of a 5-token prefill and 3 decode steps.
fn rows_of(step: &mut dyn FnMut(&[u32]) -> Vec<f32>, vocab: usize) -> Vec<Vec<f32>> {
    let mut rows: Vec<Vec<f32>> = step(&PROMPT).chunks(vocab).map(<[f32]>::to_vec).collect();
    for t in DECODE {
        rows.push(step(&[t]));
    }
    rows
}

fn whole_run(g: Graph) -> Vec<Vec<f32>> {
    let vocab = g.vocab_size().unwrap();
    let mut ex = CpuExecutor::new(g, &mut load).unwrap();
    rows_of(
        &mut |t| ex.step(t).unwrap()[&OutputRole::Logits].data.clone(),
        vocab,
    )
}

fn sharded_run(g: Graph) -> Vec<Vec<f32>> {
    let vocab = g.vocab_size().unwrap();
    let mut group = RankGroup::new(g, &mut slicing(load)).unwrap();
    rows_of(
        &mut |t| group.step(t).unwrap()[&OutputRole::Logits].data.clone(),
        vocab,
    )
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

fn assert_same_logits(sharded: &[Vec<f32>], whole: &[Vec<f32>], what: &str) {
    assert_eq!(sharded.len(), whole.len(), "{what}");
    for (i, (s, w)) in sharded.iter().zip(whole).enumerate() {
        assert_eq!(s.len(), w.len(), "{what}: row {i}");
        let e = rel_l2(s, w);
        assert!(e <= 1e-5, "{what}: row {i}: relative L2 {e:e}");
        assert_eq!(argmax(s), argmax(w), "{what}: row {i}: greedy token");
    }
}

#[test]
fn sharded_logits_equal_the_whole_models() {
    // The tiny variants have 4 query and 2 KV heads: at 2 ranks each rank holds one KV head, at
    // 4 ranks two ranks share (replicate) each KV head.
    for spec in ["qwen3-tiny", "llama-tiny", "qwen2.5-tiny"] {
        let whole = whole_run(lowered(spec));
        for ranks in [2, 4] {
            let got = sharded_run(sharded(spec, ranks));
            assert_same_logits(&got, &whole, &format!("{spec} over {ranks} ranks"));
        }
    }
}

#[test]
fn untied_lm_head_and_yarn_shard_too() {
    for spec in [
        "../tests/specs/qwen3-tiny-untied",
        "../tests/specs/qwen3-tiny-yarn",
    ] {
        let whole = whole_run(lowered(spec));
        let got = sharded_run(sharded(spec, 2));
        assert_same_logits(&got, &whole, spec);
    }
}

#[test]
fn the_optimized_sharded_graph_keeps_its_collectives_and_its_logits() {
    // The full pipeline with --tp 2: the shard pass before the KV-cache pass and fusion. No
    // fused op may swallow a collective: every all_reduce survives (two per layer and the
    // embedding's), and the logits still match.
    let mut g = lowered("qwen3-tiny");
    let whole = whole_run(g.clone());
    default_pipeline(PassOptions {
        tensor_parallel: 2,
        ..PassOptions::default()
    })
    .unwrap()
    .run(&mut g)
    .unwrap();
    let count = |name: &str| g.ids().filter(|&id| g.node(id).op.name() == name).count();
    assert_eq!(count("all_reduce"), 2 * 2 + 1);
    assert_eq!(count("all_gather"), 1);
    assert_eq!(count("embed_shard"), 1);
    assert!(
        count("norm_linear") + count("norm_linear_swiglu") > 0,
        "fusion ran"
    );
    // Nothing fused reads a partial sum: every all_reduce's operand is a plain projection or
    // the sharded embedding.
    for id in g.ids() {
        if let Op::AllReduce { .. } = g.node(id).op {
            let src = g.operands(id)[0];
            assert!(
                matches!(g.node(src).op, Op::Linear | Op::EmbedShard { .. }),
                "{} reduces a {}",
                g.node(id).name,
                g.node(src).op.name()
            );
        }
    }
    assert_same_logits(&sharded_run(g), &whole, "optimized qwen3-tiny over 2 ranks");
}

#[test]
fn a_batch_of_paged_sequences_runs_sharded() {
    // Two sequences at different positions over the paged cache, as the batching engine
    // drives a model: each rank keeps its own KV heads in its own pool.
    let g = lowered("qwen3-tiny");
    let vocab = g.vocab_size().unwrap();
    let mut whole = CpuExecutor::new(g, &mut load).unwrap();
    let mut group = RankGroup::new(sharded("qwen3-tiny", 2), &mut slicing(load)).unwrap();
    whole.enable_paged_cache(8, 4).unwrap();
    group.enable_paged_cache(8, 4).unwrap();
    let (a, b) = ([0u32, 1], [2u32, 3]);
    let seq = |tokens, start, blocks| PagedSeq {
        tokens,
        start,
        blocks,
    };
    let steps: Vec<Vec<PagedSeq>> = vec![
        vec![seq(&[5, 6, 7], 0, &a), seq(&[11, 12, 13], 0, &b)],
        vec![seq(&[8], 3, &a), seq(&[9], 3, &b)],
    ];
    for seqs in &steps {
        let w = whole.step_paged(seqs).unwrap()[&OutputRole::Logits]
            .data
            .clone();
        let s = group.step_paged(seqs).unwrap()[&OutputRole::Logits]
            .data
            .clone();
        let (w, s): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (
            w.chunks(vocab).map(<[f32]>::to_vec).collect(),
            s.chunks(vocab).map(<[f32]>::to_vec).collect(),
        );
        assert_same_logits(&s, &w, "paged batch over 2 ranks");
    }
}

#[test]
fn a_rank_error_fails_the_step_without_a_hang() {
    let mut group = RankGroup::new(sharded("qwen3-tiny", 2), &mut slicing(load)).unwrap();
    // Token 600 is past the vocabulary of 512: every rank refuses it, none waits forever.
    let e = group.step(&[600]).unwrap_err().to_string();
    assert!(e.contains("600") && e.contains("512"), "{e}");
    // The group is usable again.
    assert!(group.step(&[5]).is_ok());
}

#[test]
fn the_sharded_ir_is_pinned() {
    // One rank's part of qwen3-tiny over 2 ranks: local shapes (2 of 4 heads, 1 of 2 KV heads,
    // 48 of 96 MLP features, 256 of 512 vocabulary rows), the collectives, the shards.
    // `PIO_BLESS=1` rewrites the golden file (review the diff).
    let text = print(&sharded("qwen3-tiny", 2));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/shard-qwen3-tiny-tp2.txt");
    if std::env::var("PIO_BLESS").is_ok_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(text, expected, "golden file {} differs", path.display());
}

fn shard_error(g: &mut Graph, ranks: usize) -> (String, String) {
    match shard(g, ranks) {
        Err(CompileError::Shard { node, message, .. }) => (node, message),
        other => panic!("expected a shard error, got {other:?}"),
    }
}

#[test]
fn what_cannot_split_is_an_error_naming_the_node() {
    // 4 heads over 3 ranks.
    let (node, message) = shard_error(&mut lowered("qwen3-tiny"), 3);
    assert_eq!(node, "embed_tokens");
    assert!(
        message.contains("512") || message.contains("3 ranks"),
        "{message}"
    );
    // 8 ranks: 4 query heads cannot each go to a rank.
    let mut g = lowered("qwen3-tiny");
    let e = shard(&mut g, 8).unwrap_err().to_string();
    assert!(e.contains("8 ranks"), "{e}");
    // A sharded graph is not sharded twice, and one rank changes nothing.
    let mut g = sharded("qwen3-tiny", 2);
    assert!(shard(&mut g, 2).is_err());
    let mut g = lowered("qwen3-tiny");
    assert!(!shard(&mut g, 1).unwrap());
    assert!(!g.is_sharded());
    // A graph whose weights declare no split (an artifact's reference graph from before
    // `shard:`) is refused, not run whole on every rank.
    for id in g.ids().collect::<Vec<_>>() {
        if let Op::Weight(b) = &mut g.node_mut(id).op {
            b.shard = None;
        }
    }
    let e = shard(&mut g, 2).unwrap_err().to_string();
    assert!(e.contains("shard:"), "{e}");
}

#[test]
fn the_whole_executor_refuses_a_sharded_graph() {
    let e = CpuExecutor::new(sharded("qwen3-tiny", 2), &mut load)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("RankGroup"), "{e}");
}

#[test]
fn query_heads_must_land_with_their_kv_heads() {
    // K and V declared as one group (whole on every rank) while Q splits by heads: rank 0's
    // query heads 0 and 1 both read KV head 0, but the local grouping would give head 1 its
    // own KV head. The pass refuses rather than compute the wrong attention.
    let mut g = lowered("qwen3-tiny");
    for id in g.ids().collect::<Vec<_>>() {
        let name = g.node(id).name.clone();
        if let Op::Weight(b) = &mut g.node_mut(id).op {
            if name.ends_with("k_proj") || name.ends_with("v_proj") {
                b.shard.as_mut().unwrap().groups = 1;
            }
        }
    }
    let (node, message) = shard_error(&mut g, 2);
    assert_eq!(node, "layers.0.attn");
    assert!(message.contains("reads KV head"), "{message}");
}

#[test]
fn the_group_bounds_and_resets_every_rank() {
    let mut group = RankGroup::new(sharded("qwen3-tiny", 4), &mut slicing(load)).unwrap();
    assert_eq!(group.ranks(), 4);
    let first = group.step(&PROMPT).unwrap()[&OutputRole::Logits]
        .data
        .clone();
    assert_eq!(group.first().cached_len(), PROMPT.len());
    // Reset: every rank starts over, and the same prompt gives the same logits.
    group.reset();
    assert_eq!(group.first().cached_len(), 0);
    assert_eq!(
        group.step(&PROMPT).unwrap()[&OutputRole::Logits].data,
        first
    );
    // A context bound on every rank: past it, a clear error and nothing cached.
    group.reset();
    group.set_context_bound(4).unwrap();
    assert_eq!(group.first().context_bound(), 4);
    let e = group.step(&PROMPT).unwrap_err().to_string();
    assert!(e.contains("context"), "{e}");
    assert!(group.step(&PROMPT[..4]).is_ok());
}
