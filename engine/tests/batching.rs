//! The batching engine on the CPU executor against the batch-1 path: a sequence decoded inside
//! a batch of others (different lengths, joining and leaving mid-way, its cache in scattered
//! blocks, its prefix shared, preempted and recomputed) gives the logits and tokens it gives
//! alone. The batch-1 path is the contiguous-cache executor (`Model::greedy_logits`), which the
//! HF-parity fixture checks.

use pio_engine::runtime::sampling::SamplingParams;
use pio_engine::{
    Device, Engine, EngineConfig, FinishReason, Model, PioError, RequestId, WeightsSource,
};
use std::collections::HashMap;

fn tiny() -> Model {
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../model-specs/qwen3-tiny.yaml"
    );
    Model::load(
        spec.as_ref(),
        &WeightsSource::Random { seed: 7 },
        Device::Cpu,
    )
    .unwrap()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut d, mut n) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        d += (x as f64 - y as f64).powi(2);
        n += (y as f64).powi(2);
    }
    (d / n.max(1e-30)).sqrt()
}

/// A prompt of `len` ids that differs per `salt`.
fn prompt(len: usize, salt: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 37 + salt * 101 + 11) % 500)
        .collect()
}

/// Tokens and per-token logits of a greedy run alone on the batch-1 path.
fn alone(model: &mut Model, prompt: &[u32], steps: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let (rows, generated) = model.greedy_logits(prompt, steps - 1).unwrap();
    let mut logits = vec![rows[prompt.len() - 1].clone()];
    logits.extend(rows[prompt.len()..].iter().cloned());
    let last = pio_engine::argmax(logits.last().unwrap());
    let mut tokens = generated;
    tokens.push(last);
    (tokens, logits)
}

struct Run {
    tokens: HashMap<RequestId, Vec<u32>>,
    logits: HashMap<RequestId, Vec<Vec<f32>>>,
    finish: HashMap<RequestId, FinishReason>,
}

/// Runs requests through an engine; request `i` joins at step `join[i]`.
fn run(engine: &mut Engine, requests: &[(Vec<u32>, usize, usize)], greedy: bool) -> Run {
    let mut ids = vec![None; requests.len()];
    let mut out = Run {
        tokens: HashMap::new(),
        logits: HashMap::new(),
        finish: HashMap::new(),
    };
    let mut step = 0;
    while ids.iter().any(Option::is_none) || engine.has_work() {
        for (i, (p, max_new, join)) in requests.iter().enumerate() {
            if ids[i].is_none() && *join <= step {
                let sampling = if greedy {
                    SamplingParams::greedy()
                } else {
                    SamplingParams {
                        temperature: 0.9,
                        top_k: 50,
                        seed: 1000 + i as u64,
                        ..SamplingParams::greedy()
                    }
                };
                let mut params = engine.request_params(*max_new, Some(sampling));
                params.stop_token_ids.clear();
                params.return_logits = true;
                ids[i] = Some(engine.add_request(p.clone(), params).unwrap());
            }
        }
        for o in engine.step().unwrap() {
            out.tokens.entry(o.id).or_default().extend(&o.new_tokens);
            out.logits.entry(o.id).or_default().extend(o.logits);
            if let Some(f) = o.finish {
                assert!(out.finish.insert(o.id, f).is_none(), "finished twice");
            }
        }
        step += 1;
        assert!(step < 10_000, "the engine does not finish");
    }
    let ids: Vec<RequestId> = ids.into_iter().map(Option::unwrap).collect();
    Run {
        tokens: by_index(&ids, out.tokens),
        logits: by_index(&ids, out.logits),
        finish: by_index(&ids, out.finish),
    }
}

/// Re-keys a map by request index (the order the requests were listed in).
fn by_index<V>(ids: &[RequestId], mut m: HashMap<RequestId, V>) -> HashMap<u64, V> {
    ids.iter()
        .enumerate()
        .filter_map(|(i, id)| m.remove(id).map(|v| (i as u64, v)))
        .collect()
}

/// Prompt, tokens to generate, step at which it joins.
fn workload() -> Vec<(Vec<u32>, usize, usize)> {
    vec![
        (prompt(5, 0), 12, 0),
        (prompt(23, 1), 6, 0),
        (prompt(1, 2), 9, 2),
        (prompt(40, 3), 4, 3),
        (prompt(17, 4), 15, 7),
        (prompt(9, 5), 3, 12),
    ]
}

fn check_against_alone(run: &Run, requests: &[(Vec<u32>, usize, usize)], tol: f64) {
    let mut model = tiny();
    for (i, (p, max_new, _)) in requests.iter().enumerate() {
        let (tokens, logits) = alone(&mut model, p, *max_new);
        let i = i as u64;
        assert_eq!(run.tokens[&i], tokens, "request {i}: tokens");
        assert_eq!(run.finish[&i], FinishReason::Length, "request {i}");
        assert_eq!(run.logits[&i].len(), logits.len(), "request {i}");
        for (k, (got, want)) in run.logits[&i].iter().zip(&logits).enumerate() {
            let e = rel_l2(got, want);
            assert!(e <= tol, "request {i}, token {k}: relative L2 {e:e}");
        }
    }
}

#[test]
fn batched_requests_joining_and_leaving_match_each_alone() {
    let requests = workload();
    let cfg = EngineConfig {
        block_size: 4,
        num_blocks: Some(128),
        max_batch_tokens: 16,
        max_running: 4,
        prefix_caching: false,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(tiny(), cfg).unwrap();
    let r = run(&mut engine, &requests, true);
    check_against_alone(&r, &requests, 1e-5);
    let s = engine.stats();
    assert_eq!(s.preemptions, 0);
    assert_eq!(s.blocks.used, 0, "every block is free again");
    assert!(
        engine.steps() > 10,
        "chunked prefill and batching took several steps"
    );
}

#[test]
fn a_tiny_pool_preempts_and_still_gives_every_token() {
    let requests = workload();
    let big = EngineConfig {
        block_size: 4,
        num_blocks: Some(256),
        max_batch_tokens: 32,
        max_running: 6,
        prefix_caching: true,
        ..EngineConfig::default()
    };
    // 16 blocks of 4 = 64 positions: the longest request (40 + 4) fits alone, not with others.
    let small = EngineConfig {
        num_blocks: Some(16),
        ..big.clone()
    };
    for greedy in [true, false] {
        let mut a = Engine::new(tiny(), big.clone()).unwrap();
        let ra = run(&mut a, &requests, greedy);
        let mut b = Engine::new(tiny(), small.clone()).unwrap();
        let rb = run(&mut b, &requests, greedy);
        assert!(b.stats().preemptions > 0, "the small pool preempted");
        assert_eq!(a.stats().preemptions, 0);
        assert_eq!(ra.tokens, rb.tokens, "greedy {greedy}");
        assert_eq!(rb.finish.len(), requests.len());
        assert_eq!(b.stats().blocks.used, 0);
        if greedy {
            check_against_alone(&rb, &requests, 1e-5);
        }
    }
}

#[test]
fn a_prefix_cache_hit_skips_the_shared_prefill_and_gives_the_same_logits() {
    let shared = prompt(40, 9);
    let with_tail = |t: u32| {
        let mut p = shared.clone();
        p.extend(prompt(6, 20 + t));
        p
    };
    let requests = vec![(with_tail(0), 5, 0), (with_tail(1), 5, 30)];
    let cfg = EngineConfig {
        block_size: 8,
        num_blocks: Some(64),
        max_batch_tokens: 64,
        max_running: 4,
        prefix_caching: true,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(tiny(), cfg.clone()).unwrap();
    let r = run(&mut engine, &requests, true);
    check_against_alone(&r, &requests, 1e-5);
    let s = engine.stats();
    // The second prompt's 5 full blocks of the shared 40 tokens come from the cache.
    assert_eq!(s.prefix_hit_tokens, 40);
    assert_eq!(s.prompt_tokens, 92);
    let mut off = Engine::new(
        tiny(),
        EngineConfig {
            prefix_caching: false,
            ..cfg
        },
    )
    .unwrap();
    let r_off = run(&mut off, &requests, true);
    assert_eq!(off.stats().prefix_hit_tokens, 0);
    assert_eq!(r.tokens, r_off.tokens);
    // ... and the model ran 40 tokens fewer.
    assert_eq!(
        off.stats().computed_tokens - engine.stats().computed_tokens,
        40
    );
}

#[test]
fn the_engine_reports_the_configuration_in_force() {
    let asked = EngineConfig {
        num_blocks: None,
        max_running: 5,
        max_batch_tokens: 300,
        ..EngineConfig::default()
    };
    let engine = Engine::new(tiny(), asked.clone()).unwrap();
    let c = engine.config();
    // The pool's size resolved; the CPU's steps cap nothing else.
    assert_eq!(c.num_blocks, Some(engine.stats().blocks.total));
    assert!(c.num_blocks.unwrap() > 0);
    assert_eq!(
        (c.max_running, c.max_batch_tokens, c.block_size),
        (5, 300, asked.block_size)
    );
}

#[test]
fn a_gpus_step_limits_cap_running_and_step_tokens_only() {
    let asked = EngineConfig {
        max_running: 256,
        max_batch_tokens: 4096,
        ..EngineConfig::default()
    };
    let limits = pio_engine::PagedLimits {
        block_size: 16,
        max_seqs: 128,
        max_tokens: 2048,
        block_bytes: 1,
    };
    let c = asked.within(Some(limits));
    assert_eq!((c.max_running, c.max_batch_tokens), (128, 2048));
    assert_eq!(
        (c.block_size, c.num_blocks),
        (asked.block_size, asked.num_blocks)
    );
    // Within the limits, or without any (the CPU): as asked.
    let small = EngineConfig {
        max_running: 8,
        max_batch_tokens: 512,
        ..asked.clone()
    };
    let c = small.within(Some(limits));
    assert_eq!((c.max_running, c.max_batch_tokens), (8, 512));
    let c = asked.within(None);
    assert_eq!((c.max_running, c.max_batch_tokens), (256, 4096));
}

#[test]
fn abort_frees_blocks_and_reports_once() {
    let mut engine = Engine::new(tiny(), EngineConfig::default()).unwrap();
    let params = engine.request_params(50, Some(SamplingParams::greedy()));
    let a = engine.add_request(prompt(30, 1), params.clone()).unwrap();
    let b = engine.add_request(prompt(10, 2), params).unwrap();
    engine.step().unwrap();
    assert!(engine.stats().blocks.used > 0);
    assert!(engine.abort(a));
    assert!(!engine.abort(a), "an aborted request is gone");
    let outs = engine.step().unwrap();
    let aborted: Vec<_> = outs
        .iter()
        .filter(|o| o.finish == Some(FinishReason::Aborted))
        .collect();
    assert_eq!(aborted.len(), 1);
    assert_eq!(aborted[0].id, a);
    assert!(engine.abort(b));
    engine.step().unwrap();
    assert!(!engine.has_work());
    assert_eq!(engine.stats().blocks.used, 0);
}

#[test]
fn requests_that_can_never_run_are_refused_at_admission() {
    let cfg = EngineConfig {
        block_size: 4,
        num_blocks: Some(8),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(tiny(), cfg).unwrap();
    assert_eq!(engine.max_seq_len(), 32, "the pool bounds a sequence");
    let params = engine.request_params(4, None);
    let err = |r: Result<RequestId, PioError>| r.unwrap_err().to_string();
    let e = err(engine.add_request(prompt(33, 0), params.clone()));
    assert!(e.contains("33 tokens") && e.contains("at most 32"), "{e}");
    assert!(err(engine.add_request(vec![], params.clone())).contains("empty"));
    assert!(err(engine.add_request(vec![512], params.clone())).contains("out of range"));
    let none = pio_engine::RequestParams {
        max_new_tokens: 0,
        ..params.clone()
    };
    assert!(err(engine.add_request(vec![1], none)).contains("at least 1"));
    let bad = pio_engine::RequestParams {
        sampling: SamplingParams {
            top_p: 2.0,
            ..SamplingParams::greedy()
        },
        ..params.clone()
    };
    assert!(err(engine.add_request(vec![1], bad)).contains("top_p"));
    // A prompt of exactly the bound runs and ends with the context full after one token.
    let id = engine.add_request(prompt(32, 0), params).unwrap();
    let mut last = None;
    while engine.has_work() {
        for o in engine.step().unwrap() {
            assert_eq!(o.id, id);
            last = o.finish.or(last);
        }
    }
    assert!(matches!(
        last,
        Some(FinishReason::ContextFull | FinishReason::Stop(_))
    ));
}

#[test]
fn bad_engine_settings_are_errors() {
    for cfg in [
        EngineConfig {
            block_size: 0,
            ..EngineConfig::default()
        },
        EngineConfig {
            num_blocks: Some(0),
            ..EngineConfig::default()
        },
        EngineConfig {
            max_running: 0,
            ..EngineConfig::default()
        },
    ] {
        let e = Engine::new(tiny(), cfg).err().unwrap().to_string();
        assert!(e.contains("at least 1"), "{e}");
    }
}

#[test]
fn the_engine_drives_tensor_parallel_ranks() {
    // The same workload through the engine on 2 and 4 simulated ranks (the tiny model's 2 KV
    // heads split, then replicated): every request's tokens and logits as decoded alone on the
    // whole model.
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../model-specs/qwen3-tiny.yaml"
    );
    let requests = workload();
    for ranks in [2, 4] {
        let opts = pio_engine::LoadOptions {
            tensor_parallel: Some(ranks),
            ..Default::default()
        };
        let model = Model::load_with(
            spec.as_ref(),
            &WeightsSource::Random { seed: 7 },
            Device::Cpu,
            &opts,
        )
        .unwrap();
        let cfg = EngineConfig {
            block_size: 4,
            num_blocks: Some(128),
            max_batch_tokens: 16,
            max_running: 4,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(model, cfg).unwrap();
        let r = run(&mut engine, &requests, true);
        check_against_alone(&r, &requests, 1e-5);
        assert_eq!(engine.stats().blocks.used, 0);
    }
}
