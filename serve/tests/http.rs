//! `pio serve` in-process on 127.0.0.1 (tiny spec, random weights): every endpoint, the error
//! cases with their status and OpenAI error JSON, SSE framing, and the API key (requests'
//! behaviour is in `behaviour.rs`).

mod common;

use common::{small_engine, sse_payloads, start, start_with};
use pio_serve::ServeConfig;
use serde_json::{json, Value};
use std::time::Duration;

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_and_a_whole_chat_completion() {
    let s = start().await;
    let (status, body) = s.get("/v1/models").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "Qwen3-tiny");
    assert_eq!(s.get("/health").await, (200, "ok\n".to_string()));

    let (status, v) = s
        .post(
            CHAT,
            json!({"model": "Qwen3-tiny", "messages": user("Hi"), "max_tokens": 8, "temperature": 0}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let u = &v["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 5 && (1..=8).contains(&c), "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    if choice["finish_reason"] == "length" {
        assert_eq!(c, 8);
    }
    s.wait_idle(Duration::from_secs(5)).await;
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_take_text_ids_several_prompts_and_n() {
    let s = start().await;
    let (status, v) = s
        .post(
            COMPLETIONS,
            json!({"prompt": "Hello", "max_tokens": 4, "ignore_eos": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let (status, v) = s
        .post(
            COMPLETIONS,
            json!({"prompt": [[1, 2, 3], [4, 5]], "n": 2, "max_tokens": 3, "ignore_eos": true, "seed": 1}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
    }
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 12);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_openai_sse_with_usage_last() {
    let s = start().await;
    let body = json!({"messages": user("Hi"), "max_tokens": 6, "stream": true, "n": 2,
                      "stream_options": {"include_usage": true}, "ignore_eos": true});
    let r = s.client.post(s.url(CHAT)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let payloads = sse_payloads(&text);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    // Role first for each choice; usage null on every chunk but the last.
    for (i, c) in chunks[..2].iter().enumerate() {
        assert_eq!(c["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(c["choices"][0]["index"], i);
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    assert_eq!(last["usage"]["completion_tokens"], 12);
    let mut finishes = [0, 0];
    for c in &chunks[..chunks.len() - 1] {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c["usage"].is_null(), "{c}");
        let ch = &c["choices"][0];
        if !ch["finish_reason"].is_null() {
            assert_eq!(ch["finish_reason"], "length");
            finishes[ch["index"].as_u64().unwrap() as usize] += 1;
        }
    }
    assert_eq!(finishes, [1, 1]);

    // Completions stream without usage: no usage field at all.
    let body = json!({"prompt": "Hi", "max_tokens": 3, "stream": true, "ignore_eos": true});
    let text = s
        .client
        .post(s.url(COMPLETIONS))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let payloads = sse_payloads(&text);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let mut joined = String::new();
    for p in &payloads[..payloads.len() - 1] {
        let c: Value = serde_json::from_str(p).unwrap();
        assert!(c.get("usage").is_none(), "{c}");
        joined.push_str(c["choices"][0]["text"].as_str().unwrap());
    }
    let _ = joined;
    s.stop().await.unwrap();
}

/// A request, its status, and the error's `param` and `code`.
type Case = (
    &'static str,
    Value,
    u16,
    Option<&'static str>,
    Option<&'static str>,
);

/// Every error case: its status, and OpenAI's error object naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_clear_4xx_errors() {
    let cfg = ServeConfig {
        max_body_bytes: 64 << 10,
        ..ServeConfig::default()
    };
    let s = start_with(cfg, small_engine()).await;
    let long = "word ".repeat(700);
    let cases: Vec<Case> = vec![
        (
            CHAT,
            json!({"messages": user("x"), "temperature": "hot"}),
            400,
            Some("temperature"),
            None,
        ),
        (
            CHAT,
            json!({"messages": user("x"), "max_tokens": -1}),
            400,
            Some("max_tokens"),
            None,
        ),
        (
            CHAT,
            json!({"messages": user("x"), "max_completion_tokens": 0}),
            400,
            Some("max_completion_tokens"),
            None,
        ),
        (
            CHAT,
            json!({"messages": user("x"), "top_p": 1.5}),
            400,
            Some("top_p"),
            None,
        ),
        (
            CHAT,
            json!({"messages": user("x"), "top_k": -5}),
            400,
            Some("top_k"),
            None,
        ),
        (
            CHAT,
            json!({"messages": user("x"), "frequency_penalty": 3}),
            400,
            Some("frequency_penalty"),
            None,
        ),
        (
            CHAT,
            json!({"messages": user("x"), "n": 0}),
            400,
            Some("n"),
            None,
        ),
        (
            CHAT,
            json!({"messages": user("x"), "stop": 5}),
            400,
            Some("stop"),
            None,
        ),
        (
            CHAT,
            json!({"messages": user("x"), "top_logprobs": 3}),
            400,
            Some("top_logprobs"),
            None,
        ),
        (CHAT, json!({"messages": []}), 400, Some("messages"), None),
        (
            CHAT,
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            400,
            Some("messages[0].role"),
            None,
        ),
        (
            CHAT,
            json!({"model": "gpt-4", "messages": user("x")}),
            404,
            Some("model"),
            Some("model_not_found"),
        ),
        (
            CHAT,
            json!({"messages": user(&long)}),
            400,
            Some("messages"),
            Some("context_length_exceeded"),
        ),
        (
            CHAT,
            json!({"messages": user("x"), "max_tokens": 100000}),
            400,
            Some("max_tokens"),
            Some("context_length_exceeded"),
        ),
        (
            CHAT,
            json!({"messages": user("x"), "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}),
            400,
            Some("tool_choice"),
            Some("unsupported_parameter"),
        ),
        (
            CHAT,
            json!({"messages": user("x"), "tools": [{"type": "function", "function": {}}]}),
            400,
            Some("tools[0].function"),
            None,
        ),
        (
            CHAT,
            json!({"messages": user("x"), "logit_bias": {"5": 1.0}}),
            400,
            Some("logit_bias"),
            Some("unsupported_parameter"),
        ),
        (
            CHAT,
            json!({"messages": user("x"), "response_format": {"type": "json_object"}}),
            400,
            Some("response_format"),
            Some("unsupported_parameter"),
        ),
        (
            CHAT,
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            400,
            Some("messages[0].content[0].type"),
            Some("unsupported_parameter"),
        ),
        (
            COMPLETIONS,
            json!({"prompt": [999999]}),
            400,
            Some("prompt"),
            None,
        ),
        (
            COMPLETIONS,
            json!({"prompt": []}),
            400,
            Some("prompt"),
            None,
        ),
        (
            COMPLETIONS,
            json!({"prompt": "x", "echo": true}),
            400,
            Some("echo"),
            Some("unsupported_parameter"),
        ),
        (
            COMPLETIONS,
            json!({"prompt": "x", "stop_token_ids": [100000]}),
            400,
            Some("stop_token_ids"),
            None,
        ),
        (
            COMPLETIONS,
            json!({"prompt": "x", "logprobs": 50}),
            400,
            Some("logprobs"),
            None,
        ),
        (
            COMPLETIONS,
            json!({"max_tokens": 1}),
            400,
            Some("prompt"),
            None,
        ),
    ];
    for (path, body, status, param, code) in cases {
        let (got, v) = s.post(path, body.clone()).await;
        assert_eq!(got, status, "{body}: {v}");
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].is_string(), "{v}");
        assert_eq!(e["param"].as_str(), param, "{body}: {v}");
        if let Some(code) = code {
            assert_eq!(e["code"], code, "{body}: {v}");
        }
    }
    for raw in [
        &b"{not json"[..],
        b"",
        b"[1, 2]",
        b"{\"messages\": [] } trailing",
    ] {
        let (status, text) = s.post_raw(CHAT, raw.to_vec()).await;
        assert_eq!(status, 400, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    // Too large: answered without reading the body, so the server closes the connection and
    // says so (a client that pooled it would send its next request into a closed socket).
    for _ in 0..3 {
        let big = format!("{{\"prompt\": \"{}\"}}", "a".repeat(100 << 10));
        let r = s.post_raw_response(COMPLETIONS, big.into_bytes()).await;
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers()["connection"], "close");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "request_too_large");
        assert_eq!(s.get("/health").await.0, 200);
    }
    let (status, text) = s.get("/v1/nothing").await;
    assert_eq!(status, 404, "{text}");
    let (status, _) = s.get(CHAT).await;
    assert_eq!(status, 405);
    // Still healthy, nothing held.
    assert_eq!(s.get("/health").await.0, 200);
    s.wait_idle(Duration::from_secs(5)).await;
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_guards_everything_but_health() {
    let cfg = ServeConfig {
        api_key: Some("sekrit".into()),
        ..ServeConfig::default()
    };
    let s = start_with(cfg, small_engine()).await;
    let body = json!({"prompt": "x", "max_tokens": 1});
    let send = |key: Option<&'static str>| {
        let mut r = s.client.post(s.url(COMPLETIONS)).json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let r = send(None).await.unwrap();
    assert_eq!(r.status(), 401);
    // Its body unread: the connection is closed (and said to be); a GET's is kept.
    assert_eq!(r.headers()["connection"], "close");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(send(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(send(Some("sekrit")).await.unwrap().status(), 200);
    assert_eq!(s.get("/health").await.0, 200);
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("connection").is_none_or(|c| c != "close"));
    assert_eq!(s.get("/v1/models").await.0, 401);
    s.stop().await.unwrap();
}
