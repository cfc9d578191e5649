//! The order of the sampling filters, pinned with every filter active at once against
//! distributions computed by hand (issue 19): HF applies the temperature first, then top-k,
//! then top-p with its mass renormalised over the top-k set, then min-p. Each case below is
//! chosen so that any other order (min-p before top-p as vLLM does, top-p over the whole
//! vocabulary, filtering before the temperature) keeps a different set.

use pio_runtime::sampling::{Sampler, SamplingParams};

/// Token weights (the probabilities at temperature 2 of the logits below), ids 0..7.
const W: [f64; 8] = [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.04, 0.01];

/// Logits `2 ln w`: at temperature 2 the probabilities are exactly `W`; at temperature 1 they
/// would be proportional to `W^2`.
fn logits() -> Vec<f32> {
    W.iter().map(|w| (2.0 * w.ln()) as f32).collect()
}

fn sampler(top_k: usize, top_p: f32, min_p: f32) -> Sampler {
    Sampler::new(SamplingParams {
        temperature: 2.0,
        top_k,
        top_p,
        min_p,
        seed: 11,
        ..SamplingParams::greedy()
    })
    .unwrap()
}

/// The kept ids and probabilities, sorted by id.
fn dist(top_k: usize, top_p: f32, min_p: f32) -> Vec<(u32, f64)> {
    let mut d: Vec<(u32, f64)> = sampler(top_k, top_p, min_p)
        .distribution(&logits(), &[], &[])
        .unwrap()
        .into_iter()
        .map(|(id, p)| (id, p as f64))
        .collect();
    d.sort_by_key(|e| e.0);
    d
}

fn assert_dist(found: &[(u32, f64)], want: &[(u32, f64)]) {
    let ids: Vec<u32> = found.iter().map(|e| e.0).collect();
    let want_ids: Vec<u32> = want.iter().map(|e| e.0).collect();
    assert_eq!(ids, want_ids, "kept set: {found:?}");
    for ((_, p), (_, q)) in found.iter().zip(want) {
        assert!((p - q).abs() < 1e-5, "{found:?} vs {want:?}");
    }
}

#[test]
fn top_p_mass_is_taken_over_top_k_before_min_p() {
    // top-k 5: {0..4}, mass 0.87. top-p 0.7 over it: 0.345, 0.575, 0.747 -> {0, 1, 2}.
    // min-p 0.45: keep p >= 0.45 * 0.30 = 0.135 -> {0, 1, 2}. Renormalised over 0.65.
    // (min-p first would give {0, 1, 2}, then top-p over 0.65: 0.46, 0.77 -> {0, 1}.)
    assert_dist(
        &dist(5, 0.7, 0.45),
        &[(0, 0.30 / 0.65), (1, 0.20 / 0.65), (2, 0.15 / 0.65)],
    );
}

#[test]
fn min_p_cuts_after_top_p() {
    // As above, then min-p 0.6: p >= 0.18 -> {0, 1}.
    assert_dist(&dist(5, 0.7, 0.6), &[(0, 0.6), (1, 0.4)]);
}

#[test]
fn top_p_is_renormalised_over_top_k_not_the_vocabulary() {
    // top-k 3: {0, 1, 2}, mass 0.65; top-p 0.9 over it keeps all three. Over the whole
    // vocabulary the cut would come at 0.30, 0.50, 0.65, 0.77, 0.87, 0.95 -> six tokens
    // before top-k, the same three after; so test top-p 0.7 with top-k 5 too: over the
    // vocabulary 0.65 < 0.7 would keep id 3 as well.
    assert_dist(
        &dist(3, 0.9, 0.0),
        &[(0, 0.30 / 0.65), (1, 0.20 / 0.65), (2, 0.15 / 0.65)],
    );
    assert_dist(
        &dist(5, 0.7, 0.0),
        &[(0, 0.30 / 0.65), (1, 0.20 / 0.65), (2, 0.15 / 0.65)],
    );
}

#[test]
fn temperature_comes_before_every_filter() {
    // Over top-k 5 at temperature 2 (p ~ W) the cumulative masses are 0.345, 0.575, 0.747;
    // at temperature 1 (p ~ W^2) they would be 0.509, 0.735. So top-p 0.7 keeps {0, 1, 2}
    // (not {0, 1}) and top-p 0.5 keeps {0, 1} (not {0}) only when the temperature comes first.
    assert_dist(
        &dist(5, 0.7, 0.0),
        &[(0, 0.30 / 0.65), (1, 0.20 / 0.65), (2, 0.15 / 0.65)],
    );
    assert_dist(&dist(5, 0.5, 0.0), &[(0, 0.6), (1, 0.4)]);
}

#[test]
fn draws_follow_the_filtered_distribution() {
    let mut s = sampler(5, 0.7, 0.45);
    let n = 30_000;
    let mut counts = [0usize; 8];
    for _ in 0..n {
        counts[s.sample(&logits(), &[], &[]).unwrap() as usize] += 1;
    }
    let want = [0.30 / 0.65, 0.20 / 0.65, 0.15 / 0.65];
    for (id, &c) in counts.iter().enumerate() {
        let f = c as f64 / n as f64;
        match want.get(id) {
            // 5 standard deviations of a binomial frequency at n = 30,000 is under 0.015.
            Some(&p) => assert!((f - p).abs() < 0.015, "id {id}: {f} vs {p}"),
            None => assert_eq!(c, 0, "id {id} is filtered out but was drawn"),
        }
    }
}

#[test]
fn greedy_means_temperature_zero() {
    let greedy = SamplingParams::greedy();
    assert!(greedy.is_greedy());
    assert_eq!(
        (greedy.temperature, greedy.top_k, greedy.top_p),
        (0.0, 0, 1.0)
    );
    assert_eq!((greedy.min_p, greedy.repetition_penalty), (0.0, 1.0));
    let warm = SamplingParams {
        temperature: 0.7,
        ..greedy
    };
    assert!(!warm.is_greedy());
    assert_eq!(Sampler::new(warm.clone()).unwrap().params(), &warm);
}

#[test]
fn top_k_ties_at_the_boundary_keep_the_lower_ids() {
    // id 1 is best; ids 0, 2, 3 tie for second: top-k 2 keeps {0, 1}, top-k 3 keeps {0, 1, 2},
    // with the heap (k <= 4096) and with the selection path (k > 4096) alike.
    let mut logits = vec![-20.0f32; 5000];
    logits[..4].copy_from_slice(&[1.0, 3.0, 1.0, 1.0]);
    for (k, want) in [(2, vec![0, 1]), (3, vec![0, 1, 2])] {
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: k,
            ..SamplingParams::greedy()
        })
        .unwrap();
        let mut ids: Vec<u32> = s
            .distribution(&logits, &[], &[])
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        assert_eq!(ids, want, "top-k {k}");
    }
    let mut s = Sampler::new(SamplingParams {
        temperature: 1.0,
        top_k: 4097,
        ..SamplingParams::greedy()
    })
    .unwrap();
    let d = s.distribution(&logits, &[], &[]).unwrap();
    assert_eq!(d.len(), 4097);
    // The ties at -20 are cut at the boundary by id: ids 4..4097 are kept, 4097.. are not.
    assert!(
        d.iter().all(|&(id, _)| id < 4097),
        "{:?}",
        d.iter().map(|e| e.0).max()
    );
}
