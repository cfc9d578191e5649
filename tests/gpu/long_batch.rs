//! A big decode batch over long contexts on the GPU: 72 sequences of 1,100-token prompts on
//! the 4B's attention shape (groups of 4 query heads, 8 kv heads). Once every sequence decodes,
//! the batch takes no context splits, so each block scores its 1,100+ keys in chunks of 1,024
//! (the paged decode attention's multi-chunk path); each request alone takes 32 splits of one
//! chunk each and their combine. The two must agree.

use super::{have_gpu, load};
use crate::common::rel_l2;
use pio::{Device, Engine, EngineConfig, LoadOptions};

const SPEC: &str = "tests/specs/gpu/qwen3-group4-8kv.yaml";
const REQUESTS: usize = 72;
const PROMPT: u32 = 1_100;
/// Enough that the first requests still decode when the last prompt is prefilled.
const GEN: usize = 48;

#[test]
#[cfg_attr(
    not(pio_gpu),
    ignore = "no NVIDIA GPU here: tests/reference/run_on_gpu.sh runs these"
)]
fn a_big_batch_over_long_contexts_matches_each_request_alone() {
    if !have_gpu() {
        return;
    }
    let reqs: Vec<(Vec<u32>, usize, usize)> = (0..REQUESTS as u32)
        .map(|r| {
            let p = (0..PROMPT).map(|i| (i * 37 + r * 101 + 11) % 500).collect();
            (p, GEN, 0)
        })
        .collect();
    let cfg = EngineConfig {
        num_blocks: Some(REQUESTS * 80),
        max_running: 128,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(load(SPEC, Device::Cuda, &LoadOptions::default()), cfg).unwrap();
    let batched = super::batching::run(&mut engine, &reqs, true);
    let (mut worst, mut same_tokens, mut rows) = (0f64, 0, 0);
    for (i, (prompt, n, _)) in reqs.iter().enumerate() {
        engine.clear_prefix_cache();
        let alone = super::batching::run(&mut engine, &[(prompt.clone(), *n, 0)], true);
        let ((tokens, logits), (alone_tokens, alone_logits)) = (&batched[&i], &alone[&0]);
        assert_eq!(logits.len(), *n, "request {i}");
        same_tokens += usize::from(tokens == alone_tokens);
        // Decode rows only (row 0 is the prompt's last chunk), while the tokens agree.
        for k in 1..*n {
            if tokens[..k] == alone_tokens[..k] {
                worst = worst.max(rel_l2(&logits[k], &alone_logits[k]));
                rows += 1;
            }
        }
    }
    eprintln!(
        "{SPEC}: {REQUESTS} sequences of {PROMPT} + {GEN} tokens in one batch vs each alone: \
         worst rel L2 {worst:.2e} over {rows} decode rows, {same_tokens}/{REQUESTS} requests \
         with the same greedy tokens"
    );
    assert!(
        rows >= REQUESTS * (GEN - 1) / 2,
        "only {rows} rows compared"
    );
    assert!(worst <= 1e-2, "batched vs alone: rel L2 {worst:e}");
    assert!(same_tokens + 2 >= REQUESTS, "greedy tokens diverged");
    assert_eq!(engine.stats().blocks.used, 0);
}
