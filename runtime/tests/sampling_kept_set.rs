//! The set `Sampler::distribution` keeps (issue 19, cargo-mutants survivors of sampling.rs):
//! masked (-inf) tokens are never candidates, and top-k above the bounded heap's reach
//! (`TOP_K_HEAP_MAX`, 4,096) keeps exactly the k best logits through its selection path.

use pio_runtime::sampling::{Sampler, SamplingParams};

fn sampler(top_k: usize) -> Sampler {
    Sampler::new(SamplingParams {
        temperature: 1.0,
        top_k,
        seed: 5,
        ..SamplingParams::greedy()
    })
    .unwrap()
}

/// Distinct logits in a scrambled order: id i gets (i * 7919 mod n) / n.
fn scrambled(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % n) as f32 / n as f32).collect()
}

#[test]
fn masked_tokens_are_never_candidates() {
    let mut logits = vec![f32::NEG_INFINITY; 40];
    for (id, l) in [(3, 0.5f32), (17, 1.5), (39, -2.0)] {
        logits[id] = l;
    }
    // Every filter off (top-k 0, top-p 1, min-p 0): only the finite logits are kept.
    let d = sampler(0).distribution(&logits, &[], &[]).unwrap();
    let mut ids: Vec<u32> = d.iter().map(|e| e.0).collect();
    ids.sort_unstable();
    assert_eq!(ids, [3, 17, 39], "{d:?}");
    assert!(d.iter().all(|e| e.1 > 0.0));
    let total: f32 = d.iter().map(|e| e.1).sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");
}

#[test]
fn top_k_past_the_heap_keeps_exactly_the_k_best() {
    let n = 6000;
    let logits = scrambled(n);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    for k in [4097, 5000, n - 1] {
        let d = sampler(k).distribution(&logits, &[], &[]).unwrap();
        let mut ids: Vec<u32> = d.iter().map(|e| e.0).collect();
        ids.sort_unstable();
        let mut want = order[..k].to_vec();
        want.sort_unstable();
        assert_eq!(ids.len(), k, "top-k {k}");
        assert_eq!(ids, want, "top-k {k}: not the k best");
        // The best logit is kept, with the largest probability.
        assert_eq!(d[0].0, order[0], "top-k {k}");
    }
}
