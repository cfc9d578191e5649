//! Properties of the sampler: filters never let excluded tokens through, seeding, greedy,
//! penalties, parameter validation, robustness to NaN.

use std::collections::{BTreeSet, HashMap};

use pio_runtime::sampling::{Sampler, SamplingError, SamplingParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        min_p,
        seed,
        ..SamplingParams::greedy()
    }
}

fn random_logits(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Ids sorted by descending logit (ties by id).
fn ranking(logits: &[f32]) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    ids
}

/// Probabilities (f64) after temperature, indexed by id.
fn probs(logits: &[f32], t: f64) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let w: Vec<f64> = logits
        .iter()
        .map(|&l| ((l as f64 - max) / t).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|x| x / s).collect()
}

fn draws(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| s.sample(logits, &[], &[]).unwrap())
        .collect()
}

#[test]
fn top_k_never_picks_outside_the_k_best() {
    for trial in 0..20u64 {
        let logits = random_logits(trial, 2000, 3.0);
        let k = 1 + (trial as usize % 7);
        let best: BTreeSet<u32> = ranking(&logits)[..k].iter().copied().collect();
        let mut s = Sampler::new(params(2.0, k, 1.0, 0.0, trial)).unwrap();
        let picked: BTreeSet<u32> = draws(&mut s, &logits, 500).into_iter().collect();
        assert!(
            picked.is_subset(&best),
            "k={k}: {picked:?} not within {best:?}"
        );
        assert_eq!(picked.len(), k, "with temperature 2 all k should show up");
    }
}

#[test]
fn top_p_nucleus_property() {
    for trial in 0..20u64 {
        let n = 100 + 400 * trial as usize;
        let logits = random_logits(100 + trial, n, 4.0);
        let top_p = [0.5f32, 0.8, 0.9, 0.95][trial as usize % 4];
        let p = probs(&logits, 1.0);
        let order = ranking(&logits);
        let mut cum = 0.0;
        let mut nucleus = BTreeSet::new();
        for &id in &order {
            nucleus.insert(id);
            cum += p[id as usize];
            if cum >= top_p as f64 {
                break;
            }
        }
        let mut s = Sampler::new(params(1.0, 0, top_p, 0.0, trial)).unwrap();
        let dist: BTreeSet<u32> = s
            .distribution(&logits, &[], &[])
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            dist, nucleus,
            "trial {trial}: distribution differs from the nucleus"
        );
        let picked: BTreeSet<u32> = draws(&mut s, &logits, 300).into_iter().collect();
        assert!(picked.is_subset(&nucleus), "picked outside the nucleus");
    }
}

#[test]
fn top_p_small_nucleus_exact() {
    // probabilities 0.5, 0.3, 0.15, 0.05
    let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
    let mut s = Sampler::new(params(1.0, 0, 0.75, 0.0, 1)).unwrap();
    let d = draws(&mut s, &logits, 4000);
    assert!(d.iter().all(|&t| t <= 1));
    let zeros = d.iter().filter(|&&t| t == 0).count() as f64 / d.len() as f64;
    assert!(
        (zeros - 0.625).abs() < 0.03,
        "renormalised 0.5/0.8, got {zeros}"
    );
    // top_p tiny: only the argmax.
    let logits = random_logits(9, 151_936, 5.0);
    let argmax = ranking(&logits)[0];
    let mut s = Sampler::new(params(1.5, 0, 1e-6, 0.0, 2)).unwrap();
    assert!(draws(&mut s, &logits, 50).iter().all(|&t| t == argmax));
}

#[test]
fn top_k_then_top_p_renormalises_over_k() {
    // probabilities 0.4, 0.2, 0.2, 0.2: top-k 2 leaves 2/3, 1/3; top-p 0.6 then keeps only id 0
    // (2/3 >= 0.6), whereas without top-k it would need 0.4 + 0.2.
    let logits: Vec<f32> = [0.4f32, 0.2, 0.2, 0.2].iter().map(|p| p.ln()).collect();
    let mut s = Sampler::new(params(1.0, 2, 0.6, 0.0, 1)).unwrap();
    assert_eq!(s.distribution(&logits, &[], &[]).unwrap(), vec![(0, 1.0)]);
    let mut s = Sampler::new(params(1.0, 0, 0.55, 0.0, 1)).unwrap();
    let d = s.distribution(&logits, &[], &[]).unwrap();
    assert_eq!(
        d.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![0, 1],
        "ties go to the lower id"
    );
}

#[test]
fn min_p_filters_relative_to_the_top() {
    let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
    // threshold 0.2 * 0.5 = 0.1: id 3 (0.05) goes.
    let mut s = Sampler::new(params(1.0, 0, 1.0, 0.2, 3)).unwrap();
    let d = draws(&mut s, &logits, 4000);
    assert!(d.iter().all(|&t| t != 3));
    let mut counts = HashMap::new();
    for t in d {
        *counts.entry(t).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 3);
    let f2 = counts[&2] as f64 / 4000.0;
    assert!((f2 - 0.15 / 0.95).abs() < 0.03, "{f2}");
    // Random logits: kept set is exactly {p >= min_p * p_max}.
    let logits = random_logits(4, 5000, 6.0);
    let p = probs(&logits, 0.8);
    let pmax = p.iter().cloned().fold(0.0, f64::max);
    let want: BTreeSet<u32> = (0..5000u32)
        .filter(|&i| p[i as usize] >= 0.05 * pmax)
        .collect();
    let mut s = Sampler::new(params(0.8, 0, 1.0, 0.05, 3)).unwrap();
    let got: BTreeSet<u32> = s
        .distribution(&logits, &[], &[])
        .unwrap()
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn frequencies_follow_temperature() {
    let logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
    for t in [1.0f32, 0.5, 2.0] {
        let p = probs(&logits, t as f64);
        let mut s = Sampler::new(params(t, 0, 1.0, 0.0, 77)).unwrap();
        let d = draws(&mut s, &logits, 20_000);
        for (id, &pi) in p.iter().enumerate() {
            let f = d.iter().filter(|&&x| x as usize == id).count() as f64 / d.len() as f64;
            assert!((f - pi).abs() < 0.015, "T={t} id={id}: {f} vs {pi}");
        }
        let dist = s.distribution(&logits, &[], &[]).unwrap();
        let total: f32 = dist.iter().map(|x| x.1).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
}

#[test]
fn seeding() {
    let logits = random_logits(5, 1000, 1.0);
    let run = |seed| {
        let mut s = Sampler::new(params(1.0, 50, 0.9, 0.0, seed)).unwrap();
        draws(&mut s, &logits, 64)
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn greedy_ignores_seed_and_breaks_ties_low() {
    let logits = random_logits(6, 1000, 1.0);
    let argmax = ranking(&logits)[0];
    for seed in 0..5 {
        let mut s = Sampler::new(SamplingParams {
            seed,
            ..SamplingParams::greedy()
        })
        .unwrap();
        assert_eq!(s.sample(&logits, &[], &[]).unwrap(), argmax);
    }
    let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
    assert_eq!(s.sample(&[1.0, 3.0, 2.0, 3.0], &[], &[]).unwrap(), 1);
    assert_eq!(
        s.distribution(&[1.0, 3.0, 2.0, 3.0], &[], &[]).unwrap(),
        vec![(1, 1.0)]
    );
    // Greedy equals sampling at a vanishing top_p.
    let mut t = Sampler::new(params(0.7, 0, 1e-9, 0.0, 3)).unwrap();
    assert_eq!(t.sample(&logits, &[], &[]).unwrap(), argmax);
}

#[test]
fn repetition_penalty_hf_semantics() {
    let p = |r| SamplingParams {
        repetition_penalty: r,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(p(1.2)).unwrap();
    // positive logit divided: 2.0 / 1.2 = 1.67 < 1.9
    assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[0], &[]).unwrap(), 1);
    // negative logit multiplied: -1.0 * 1.2 = -1.2 < -1.1
    assert_eq!(s.sample(&[-1.0, -1.1], &[0], &[]).unwrap(), 1);
    // each id once, however often it occurs: 2.0 / 1.2 = 1.67 > 1.5 (thrice would be 1.16)
    assert_eq!(s.sample(&[2.0, 1.5], &[0, 0, 0], &[0, 0]).unwrap(), 0);
    // penalty < 1 rewards repetition
    let mut s = Sampler::new(p(0.5)).unwrap();
    assert_eq!(s.sample(&[2.0, 1.5], &[1], &[]).unwrap(), 1);
    // no penalty: context irrelevant
    let mut s = Sampler::new(p(1.0)).unwrap();
    assert_eq!(s.sample(&[2.0, 1.9], &[0], &[0]).unwrap(), 0);
}

#[test]
fn presence_penalty_on_generated_only() {
    let p = SamplingParams {
        presence_penalty: 0.6,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(p).unwrap();
    // 2.0 - 0.6 = 1.4 < 1.5
    assert_eq!(s.sample(&[2.0, 1.5], &[0], &[0]).unwrap(), 1);
    // once per id: 2.0 - 0.6 = 1.4 > 1.3 (three times would be 0.2)
    assert_eq!(s.sample(&[2.0, 1.3], &[0, 0, 0], &[0, 0, 0]).unwrap(), 0);
    // only in the prompt: no presence penalty
    assert_eq!(s.sample(&[2.0, 1.5], &[0], &[]).unwrap(), 0);
    // penalties also shape sampled distributions
    let p = SamplingParams {
        presence_penalty: 100.0,
        ..params(1.0, 0, 1.0, 0.0, 1)
    };
    let mut s = Sampler::new(p).unwrap();
    let d: Vec<u32> = (0..200)
        .map(|_| s.sample(&[1.0, 1.0, 1.0], &[0, 1], &[0, 1]).unwrap())
        .collect();
    assert!(d.iter().all(|&t| t == 2));
}

#[test]
fn frequency_penalty_counts_every_occurrence_in_generated() {
    let p = SamplingParams {
        frequency_penalty: 0.3,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(p).unwrap();
    // once: 2.0 - 0.3 = 1.7 > 1.5
    assert_eq!(s.sample(&[2.0, 1.5], &[0], &[0]).unwrap(), 0);
    // twice: 2.0 - 0.6 = 1.4 < 1.5 (a presence penalty of 0.3 would not flip it)
    assert_eq!(s.sample(&[2.0, 1.5], &[0, 0], &[0, 0]).unwrap(), 1);
    // only in the prompt: no frequency penalty
    assert_eq!(s.sample(&[2.0, 1.5], &[0, 0, 0], &[]).unwrap(), 0);
    // negative penalties favour repeats
    let p = SamplingParams {
        frequency_penalty: -1.0,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(p).unwrap();
    assert_eq!(s.sample(&[2.0, 1.5], &[1], &[1]).unwrap(), 1);
}

#[test]
fn presence_then_frequency_penalty_as_openai_defines_them() {
    // OpenAI: logit - count * frequency - (count > 0) * presence.
    let p = SamplingParams {
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        temperature: 1.0,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(p).unwrap();
    let logits = [1.0f32, 1.0, 1.0];
    let generated = [0u32, 0, 0, 1];
    let d = s.distribution(&logits, &generated, &generated).unwrap();
    let want = [1.0 - 3.0 * 0.25 - 0.5, 1.0 - 0.25 - 0.5, 1.0f64];
    let z: f64 = want.iter().map(|l| l.exp()).sum();
    for (id, prob) in d {
        let expect = want[id as usize].exp() / z;
        assert!(
            (prob as f64 - expect).abs() < 1e-6,
            "{id}: {prob} vs {expect}"
        );
    }
}

#[test]
fn bad_params_rejected_with_their_name() {
    let cases: Vec<(SamplingParams, &str, &str)> = vec![
        (
            SamplingParams {
                temperature: -0.5,
                ..SamplingParams::greedy()
            },
            "temperature",
            "-0.5",
        ),
        (
            SamplingParams {
                temperature: f32::NAN,
                ..SamplingParams::greedy()
            },
            "temperature",
            "NaN",
        ),
        (
            SamplingParams {
                temperature: f32::INFINITY,
                ..SamplingParams::greedy()
            },
            "temperature",
            "inf",
        ),
        (
            SamplingParams {
                top_p: 0.0,
                ..SamplingParams::greedy()
            },
            "top_p",
            "0",
        ),
        (
            SamplingParams {
                top_p: 1.5,
                ..SamplingParams::greedy()
            },
            "top_p",
            "1.5",
        ),
        (
            SamplingParams {
                top_p: f32::NAN,
                ..SamplingParams::greedy()
            },
            "top_p",
            "NaN",
        ),
        (
            SamplingParams {
                min_p: 1.0,
                ..SamplingParams::greedy()
            },
            "min_p",
            "1",
        ),
        (
            SamplingParams {
                min_p: -0.1,
                ..SamplingParams::greedy()
            },
            "min_p",
            "-0.1",
        ),
        (
            SamplingParams {
                repetition_penalty: 0.0,
                ..SamplingParams::greedy()
            },
            "repetition_penalty",
            "0",
        ),
        (
            SamplingParams {
                repetition_penalty: -1.0,
                ..SamplingParams::greedy()
            },
            "repetition_penalty",
            "-1",
        ),
        (
            SamplingParams {
                presence_penalty: f32::NAN,
                ..SamplingParams::greedy()
            },
            "presence_penalty",
            "NaN",
        ),
        (
            SamplingParams {
                frequency_penalty: f32::INFINITY,
                ..SamplingParams::greedy()
            },
            "frequency_penalty",
            "inf",
        ),
    ];
    for (p, name, value) in cases {
        let err = p.validate().unwrap_err();
        let SamplingError::InvalidParam {
            name: n, value: v, ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!((*n, v.as_str()), (name, value));
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains(value), "{msg}");
        assert_eq!(Sampler::new(p).unwrap_err(), err);
    }
    SamplingParams::greedy().validate().unwrap();
    params(0.6, 20, 0.95, 0.0, 0).validate().unwrap();
    SamplingParams {
        presence_penalty: -1.5,
        ..params(0.7, 20, 0.8, 0.0, 0)
    }
    .validate()
    .unwrap();
}

#[test]
fn nan_and_inf_logits_do_not_panic() {
    for p in [
        SamplingParams::greedy(),
        params(1.0, 0, 1.0, 0.0, 1),
        params(1.0, 2, 0.9, 0.1, 1),
    ] {
        let mut s = Sampler::new(p).unwrap();
        let d: Vec<u32> = (0..100)
            .map(|_| s.sample(&[f32::NAN, 1.0, f32::NAN, 0.5], &[], &[]).unwrap())
            .collect();
        assert!(d.iter().all(|&t| t == 1 || t == 3), "{d:?}");
        assert_eq!(
            s.sample(&[f32::NAN, f32::NEG_INFINITY], &[], &[]),
            Err(SamplingError::NoFiniteLogits { vocab: 2 })
        );
        assert_eq!(s.sample(&[], &[], &[]), Err(SamplingError::EmptyLogits));
        assert_eq!(s.sample(&[0.0, f32::INFINITY, 3.0], &[], &[]).unwrap(), 1);
        assert_eq!(
            s.sample(&[0.0, 1.0], &[5], &[]),
            Err(SamplingError::TokenOutOfRange { token: 5, vocab: 2 })
        );
    }
}

#[test]
fn full_vocab_is_fast_enough() {
    // Flat logits: top-p needs most of the vocabulary, exercising the growing prefix sort.
    let logits = random_logits(12, 151_936, 0.5);
    let ctx: Vec<u32> = (0..4000).map(|i| (i * 37) % 151_936).collect();
    for p in [
        params(0.6, 20, 0.95, 0.0, 1),
        params(0.7, 0, 0.8, 0.0, 1),
        params(1.0, 0, 1.0, 0.05, 1),
        SamplingParams {
            repetition_penalty: 1.1,
            presence_penalty: 1.5,
            ..params(0.7, 20, 0.8, 0.0, 1)
        },
    ] {
        let mut s = Sampler::new(p.clone()).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..10 {
            s.sample(&logits, &ctx, &ctx[..100]).unwrap();
        }
        let per = t.elapsed() / 10;
        eprintln!("{p:?}: {per:?} per token");
        assert!(per < std::time::Duration::from_millis(200), "{per:?}");
    }
}
