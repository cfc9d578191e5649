//! Thousands of random requests through the scheduler alone, with a stand-in model whose next
//! token depends only on the token before it (so every request's whole output is known in
//! advance): shared prefixes, tiny pools, preemption, random aborts and stop ids. After every
//! step the pool's invariants hold; in the end every request ended exactly once with exactly
//! its expected tokens, and every block is free again.

use pio_engine::blocks::BlockPool;
use pio_engine::runtime::sampling::SamplingParams;
use pio_engine::scheduler::{Picked, Scheduler, SchedulerConfig};
use pio_engine::{FinishReason, RequestId, RequestParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

const VOCAB: usize = 64;

/// The stand-in model's next token after `t`.
fn next(t: u32) -> u32 {
    (t * 17 + 5) % VOCAB as u32
}

fn one_hot(t: u32) -> Vec<f32> {
    let mut l = vec![0f32; VOCAB];
    l[next(t) as usize] = 10.0;
    l
}

struct Expect {
    tokens: Vec<u32>,
    finish: FinishReason,
}

/// What a request must produce: follow `next` from the prompt's last token until a stop id,
/// max_new_tokens or the sequence bound.
fn expected(prompt: &[u32], p: &RequestParams, max_seq: usize) -> Expect {
    let mut tokens = Vec::new();
    let mut last = *prompt.last().unwrap();
    loop {
        let t = next(last);
        if p.stop_token_ids.contains(&t) {
            return Expect {
                tokens,
                finish: FinishReason::Stop(t),
            };
        }
        tokens.push(t);
        last = t;
        if tokens.len() >= p.max_new_tokens {
            return Expect {
                tokens,
                finish: FinishReason::Length,
            };
        }
        if prompt.len() + tokens.len() > max_seq {
            return Expect {
                tokens,
                finish: FinishReason::ContextFull,
            };
        }
    }
}

fn run(seed: u64, requests: usize, num_blocks: usize, block_size: usize, caching: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let max_seq = 96;
    let mut s = Scheduler::new(
        SchedulerConfig {
            max_batch_tokens: rng.random_range(1..64),
            max_running: rng.random_range(1..12),
            max_seq_len: max_seq,
        },
        BlockPool::new(num_blocks, block_size, caching),
    );
    let max_seq = s.config().max_seq_len;
    let prefixes: Vec<Vec<u32>> = (0..4)
        .map(|_| {
            let n = rng.random_range(1..40);
            (0..n).map(|_| rng.random_range(0..VOCAB as u32)).collect()
        })
        .collect();
    let mut expect: HashMap<RequestId, Expect> = HashMap::new();
    let mut got: HashMap<RequestId, Vec<u32>> = HashMap::new();
    let mut ended: HashMap<RequestId, FinishReason> = HashMap::new();
    let mut aborted = 0;
    let mut added = 0;
    let mut steps = 0;
    while added < requests || s.has_work() {
        // A few arrivals per step.
        for _ in 0..rng.random_range(0..4) {
            if added == requests {
                break;
            }
            added += 1;
            let mut prompt = if rng.random_bool(0.6) {
                prefixes[rng.random_range(0..prefixes.len())].clone()
            } else {
                Vec::new()
            };
            for _ in 0..rng.random_range(usize::from(prompt.is_empty())..30) {
                prompt.push(rng.random_range(0..VOCAB as u32));
            }
            prompt.truncate(max_seq);
            let params = RequestParams {
                max_new_tokens: rng.random_range(1..40),
                sampling: SamplingParams::greedy(),
                stop_token_ids: (0..rng.random_range(0..3))
                    .map(|_| rng.random_range(0..VOCAB as u32))
                    .collect(),
                return_logits: false,
            };
            let e = expected(&prompt, &params, max_seq);
            let id = s.add(prompt, params).unwrap();
            expect.insert(id, e);
        }
        // Now and then abort a random request still queued.
        if rng.random_bool(0.02) {
            let candidates: Vec<RequestId> = expect
                .keys()
                .copied()
                .filter(|id| !ended.contains_key(id) && s.generated(*id).is_some())
                .collect();
            if !candidates.is_empty() {
                let id = candidates[rng.random_range(0..candidates.len())];
                assert!(s.abort(id));
                aborted += 1;
            }
        }
        let plan = s.schedule();
        // Half the picks as logits for the request's sampler, half as the device's argmax.
        let logits: Vec<Option<Picked>> = plan
            .chunks
            .iter()
            .map(|c| {
                let last = *c.tokens.last().unwrap();
                c.sample.then(|| {
                    if rng.random_bool(0.5) {
                        Picked::Logits(one_hot(last))
                    } else {
                        Picked::Token(next(last))
                    }
                })
            })
            .collect();
        for c in &plan.chunks {
            assert!(c.blocks.len() * block_size >= c.start + c.tokens.len());
        }
        for o in s.complete(&plan, &logits) {
            got.entry(o.id).or_default().extend(&o.new_tokens);
            if let Some(f) = o.finish {
                assert!(
                    ended.insert(o.id, f).is_none(),
                    "request {} ended twice",
                    o.id
                );
            }
        }
        s.pool().check().unwrap();
        steps += 1;
        assert!(steps < 200_000, "the scheduler made no progress");
    }
    assert_eq!(ended.len(), requests, "every request ended");
    let mut aborted_seen = 0;
    for (id, e) in &expect {
        let out = got.get(id).map(Vec::as_slice).unwrap_or(&[]);
        if ended[id] == FinishReason::Aborted {
            aborted_seen += 1;
            assert!(e.tokens.starts_with(out), "request {id}: aborted output");
        } else {
            assert_eq!(out, e.tokens.as_slice(), "request {id}: tokens");
            assert_eq!(ended[id], e.finish, "request {id}: finish reason");
        }
    }
    assert_eq!(aborted_seen, aborted);
    let st = s.stats();
    assert_eq!(st.blocks.used, 0, "a block leaked");
    assert_eq!(st.blocks.free + st.blocks.cached, num_blocks);
    assert_eq!((st.running, st.waiting), (0, 0));
    if !caching {
        assert_eq!(st.prefix_hit_tokens, 0);
    }
}

#[test]
fn thousands_of_random_requests_leave_no_block_behind() {
    let mut preempting = 0;
    for seed in 0..6u64 {
        // Pools from "barely one sequence" (96 / 4 = 24 blocks) to roomy.
        let blocks = [24, 25, 40, 200][seed as usize % 4];
        run(seed, 600, blocks, 4, seed % 2 == 0);
        preempting += usize::from(blocks < 40);
    }
    assert!(preempting > 0);
}

#[test]
fn the_prefix_cache_gets_hits_and_preemption_happens_under_pressure() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut s = Scheduler::new(
        SchedulerConfig {
            max_batch_tokens: 32,
            max_running: 8,
            max_seq_len: 64,
        },
        BlockPool::new(20, 4, true),
    );
    let prefix: Vec<u32> = (0..24).map(|_| rng.random_range(0..VOCAB as u32)).collect();
    for i in 0..40 {
        let mut p = prefix.clone();
        p.push(i % VOCAB as u32);
        let params = RequestParams {
            max_new_tokens: 30,
            sampling: SamplingParams::greedy(),
            stop_token_ids: vec![],
            return_logits: false,
        };
        s.add(p, params).unwrap();
    }
    let mut steps = 0;
    while s.has_work() {
        steps += 1;
        assert!(steps < 100_000, "the scheduler made no progress");
        let plan = s.schedule();
        let logits: Vec<_> = plan
            .chunks
            .iter()
            .map(|c| {
                c.sample
                    .then(|| Picked::Logits(one_hot(*c.tokens.last().unwrap())))
            })
            .collect();
        s.complete(&plan, &logits);
        s.pool().check().unwrap();
    }
    let st = s.stats();
    assert!(st.preemptions > 0, "{st:?}");
    // Every request finds the 6 shared blocks, but for those admitted in the first step
    // (before the first one's blocks were full and registered).
    let first_step = 32usize.div_ceil(25);
    assert!(
        st.prefix_hit_tokens >= (40 - first_step as u64) * 24,
        "{st:?}"
    );
    assert_eq!(st.blocks.used, 0);
}

#[test]
fn a_request_whose_logits_are_nan_fails_alone() {
    let mut s = Scheduler::new(
        SchedulerConfig {
            max_batch_tokens: 64,
            max_running: 4,
            max_seq_len: 64,
        },
        BlockPool::new(16, 4, true),
    );
    let params = RequestParams {
        max_new_tokens: 5,
        sampling: SamplingParams::greedy(),
        stop_token_ids: vec![],
        return_logits: false,
    };
    let bad = s.add(vec![1, 2, 3], params.clone()).unwrap();
    let good = s.add(vec![4, 5, 6], params).unwrap();
    let mut ended = std::collections::HashMap::new();
    let mut tokens = 0;
    while s.has_work() {
        let plan = s.schedule();
        let picked: Vec<_> = plan
            .chunks
            .iter()
            .map(|c| {
                c.sample.then(|| {
                    if c.id == bad {
                        Picked::Logits(vec![f32::NAN; VOCAB])
                    } else {
                        Picked::Logits(one_hot(*c.tokens.last().unwrap()))
                    }
                })
            })
            .collect();
        for o in s.complete(&plan, &picked) {
            if o.id == good {
                tokens += o.new_tokens.len();
            }
            if let Some(f) = o.finish {
                ended.insert(o.id, (f, o.error));
            }
        }
    }
    assert_eq!(ended[&bad].0, FinishReason::Failed);
    assert!(
        ended[&bad].1.as_deref().unwrap_or("").contains("NaN"),
        "{:?}",
        ended[&bad]
    );
    assert_eq!(ended[&good], (FinishReason::Length, None));
    assert_eq!(tokens, 5);
    assert_eq!(s.stats().blocks.used, 0);
}
