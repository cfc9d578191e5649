//! A small fuzz of request bodies: random JSON shapes and values (a fixed-seed generator)
//! for both generation endpoints. No 5xx but a deliberate 503, no panic, and afterwards the
//! server is healthy with nothing left running.

mod common;

use common::{small_engine, start_with};
use pio_serve::ServeConfig;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// SplitMix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// Any JSON value, nested at most `depth`.
fn any(r: &mut Rng, depth: u32) -> Value {
    match r.below(if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(r.below(2) == 0),
        2 => json!(*r.pick(&[-1i64, 0, 1, 2, 7, 513, 100_000, i64::MIN, i64::MAX])),
        3 => json!(*r.pick(&[-0.5f64, 0.0, 0.3, 1.0, 1.5, 2.5, 1e30, -1e-9])),
        4 => json!(*r.pick(&[
            "",
            "x",
            "user",
            "assistant",
            "<think>",
            "<tool_call>",
            "é🙂",
            "\u{0}"
        ])),
        5 => json!("a".repeat(r.below(40) as usize)),
        6 => Value::Array((0..r.below(4)).map(|_| any(r, depth - 1)).collect()),
        _ => {
            let keys = [
                "role",
                "content",
                "type",
                "text",
                "function",
                "name",
                "arguments",
                "x",
            ];
            let mut m = Map::new();
            for _ in 0..r.below(4) {
                m.insert(r.pick(&keys).to_string(), any(r, depth - 1));
            }
            Value::Object(m)
        }
    }
}

fn message(r: &mut Rng) -> Value {
    if r.below(4) == 0 {
        return any(r, 2);
    }
    let role = *r.pick(&["system", "user", "assistant", "tool", "developer", "bogus"]);
    let content = match r.below(4) {
        0 => any(r, 2),
        1 => json!([{"type": "text", "text": "hi"}]),
        _ => json!(*r.pick(&["Hello", "", "<tool_call>{\"name\": 1}</tool_call>", "é"])),
    };
    json!({"role": role, "content": content})
}

/// A body: mostly plausible fields with random values, sometimes junk.
fn body(r: &mut Rng, chat: bool) -> Value {
    if r.below(12) == 0 {
        return any(r, 3);
    }
    let mut m = Map::new();
    if chat {
        let messages = if r.below(8) == 0 {
            any(r, 2)
        } else {
            Value::Array((0..1 + r.below(3)).map(|_| message(r)).collect())
        };
        m.insert("messages".into(), messages);
    } else {
        let prompt = match r.below(5) {
            0 => any(r, 2),
            1 => json!([1, 2, 3]),
            2 => json!(["a", "b"]),
            _ => json!("Hello world"),
        };
        m.insert("prompt".into(), prompt);
    }
    // Small generations (a fuzz of inputs, not a load test), unless a field says otherwise.
    m.insert("max_tokens".into(), json!(1 + r.below(4)));
    let fields = [
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "seed",
        "stop",
        "stop_token_ids",
        "n",
        "stream",
        "stream_options",
        "logprobs",
        "top_logprobs",
        "tools",
        "tool_choice",
        "chat_template_kwargs",
        "enable_thinking",
        "ignore_eos",
        "skip_special_tokens",
        "model",
        "user",
        "response_format",
        "logit_bias",
        "unknown_field",
        "echo",
    ];
    for _ in 0..r.below(5) {
        let f = *r.pick(&fields);
        let v = match (f, r.below(3)) {
            ("stream", 0) => json!(true),
            ("model", 0) => json!("Qwen3-tiny"),
            ("max_tokens", _) => json!(*r.pick(&[-3i64, 0, 1, 3, 100_000])),
            ("n", _) => json!(*r.pick(&[-1i64, 0, 1, 2, 65])),
            _ => any(r, 2),
        };
        m.insert(f.into(), v);
    }
    Value::Object(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_never_make_a_5xx_or_wedge_the_server() {
    let cfg = ServeConfig {
        max_concurrent: 64,
        ..ServeConfig::default()
    };
    let s = start_with(cfg, small_engine()).await;
    let mut r = Rng(0x5EED);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..300 {
        let chat = i % 2 == 0;
        let b = body(&mut r, chat);
        let path = if chat {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        };
        let resp = s
            .client
            .post(s.url(path))
            .json(&b)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{b}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(status < 500 || status == 503, "{status} for {b}: {text}");
        if status != 200 {
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{b}: {text}"));
            assert!(v["error"]["message"].is_string(), "{b}: {text}");
        } else if text.starts_with("data: ") {
            assert!(text.ends_with("data: [DONE]\n\n"), "{b}: {text}");
            assert!(!text.contains("\"error\""), "{b}: {text}");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    eprintln!("statuses: {statuses:?}");
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 20,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 20,
        "{statuses:?}"
    );
    assert_eq!(s.get("/health").await.0, 200);
    s.wait_idle(Duration::from_secs(10)).await;
    s.stop().await.unwrap();
}
