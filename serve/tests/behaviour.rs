//! `pio serve` in-process on 127.0.0.1 (tiny spec, random weights), how requests behave:
//! disconnects, the queue bound, seeds, stop strings, logprobs, templates, the metrics and
//! shutdown.

mod common;

use common::{metric, small_engine, sse_payloads, start, start_with};
use pio_serve::ServeConfig;
use serde_json::{json, Value};
use std::time::Duration;

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// A client that goes away mid-stream aborts its request: its blocks are free at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_stream_aborts_and_frees_blocks() {
    let s = start().await;
    let body = json!({"prompt": "Once upon a time", "max_tokens": 400, "stream": true, "ignore_eos": true});
    let mut r = s
        .client
        .post(s.url(COMPLETIONS))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got = 0;
    while got < 3 {
        let chunk = r.chunk().await.unwrap().expect("stream ended early");
        got += chunk.iter().filter(|&&b| b == b'\n').count() / 2;
    }
    let during = s.stats().await;
    assert_eq!(during.active, 1);
    assert!(during.stats.blocks.used > 0);
    drop(r);
    let after = s.wait_idle(Duration::from_secs(5)).await;
    assert!(after.stats.generated_tokens < 400, "{after:?}");
    let (_, text) = s.get("/metrics").await;
    assert_eq!(
        metric(&text, "pio_request_finish_total{reason=\"cancelled\"}"),
        1.0
    );
    // A non-streaming request whose client gives up is aborted too: the client goes as soon as
    // the server runs the request (not after a fixed time, which a fast machine outran).
    let (client, url) = (s.client.clone(), s.url(COMPLETIONS));
    let slow = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"prompt": "Again", "max_tokens": 500, "ignore_eos": true}))
            .send()
            .await
    });
    let started = std::time::Instant::now();
    while s.stats().await.active == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the request never ran"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    slow.abort();
    assert!(slow.await.is_err_and(|e| e.is_cancelled()));
    s.wait_idle(Duration::from_secs(5)).await;
    let (_, text) = s.get("/metrics").await;
    assert_eq!(
        metric(&text, "pio_request_finish_total{reason=\"cancelled\"}"),
        2.0
    );
    s.stop().await.unwrap();
}

/// Past `max_concurrent` running and queued requests: 429 with Retry-After, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_server_answers_429() {
    let cfg = ServeConfig {
        max_concurrent: 2,
        ..ServeConfig::default()
    };
    let s = start_with(cfg, small_engine()).await;
    let long = json!({"prompt": "Busy", "max_tokens": 450, "stream": true, "ignore_eos": true});
    let mut a = s
        .client
        .post(s.url(COMPLETIONS))
        .json(&long)
        .send()
        .await
        .unwrap();
    let mut b = s
        .client
        .post(s.url(COMPLETIONS))
        .json(&long)
        .send()
        .await
        .unwrap();
    a.chunk().await.unwrap();
    b.chunk().await.unwrap();
    let started = std::time::Instant::now();
    let r = s
        .client
        .post(s.url(COMPLETIONS))
        .json(&json!({"prompt": "one more", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop((a, b));
    s.wait_idle(Duration::from_secs(5)).await;
    // Room again; n larger than the bound never fits.
    let (status, _) = s
        .post(COMPLETIONS, json!({"prompt": "x", "max_tokens": 1}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(COMPLETIONS, json!({"prompt": "x", "max_tokens": 1, "n": 3}))
        .await;
    assert_eq!(status, 429);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_text() {
    let s = start().await;
    let ask = |seed: u64| {
        s.post(
            COMPLETIONS,
            json!({"prompt": "Tell me", "max_tokens": 16, "temperature": 1.0, "top_k": 0,
                   "top_p": 1.0, "seed": seed, "ignore_eos": true, "skip_special_tokens": false}),
        )
    };
    let text = |v: Value| v["choices"][0]["text"].as_str().unwrap().to_string();
    let a = text(ask(42).await.1);
    let b = text(ask(42).await.1);
    assert_eq!(a, b);
    let mut differs = false;
    for seed in 43..48 {
        differs |= text(ask(seed).await.1) != a;
    }
    assert!(differs, "five other seeds all gave {a:?}");
    s.stop().await.unwrap();
}

/// A stop string taken from the model's own unconstrained output ends the text before it,
/// whole and streamed alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_end_the_text_before_them() {
    let s = start().await;
    // Seeded sampling (greedy decoding of random weights repeats itself): the same seed gives
    // the same tokens, so the run with a stop string follows the unconstrained one.
    let base = json!({"prompt": "Hello", "max_tokens": 40, "temperature": 1.0, "top_k": 0,
                      "seed": 11, "ignore_eos": true});
    let (_, v) = s.post(COMPLETIONS, base.clone()).await;
    let full = v["choices"][0]["text"].as_str().unwrap().to_string();
    // Three characters from the middle whose first occurrence is past the start.
    let chars: Vec<(usize, char)> = full.char_indices().collect();
    assert!(chars.len() > 12, "{full:?}");
    let (at, stop) = (chars.len() / 3..chars.len() - 3)
        .map(|k| {
            let (start, _) = chars[k];
            let end = chars[k + 3].0;
            (start, full[start..end].to_string())
        })
        .find(|(start, s)| full.find(s.as_str()) == Some(*start) && !s.trim().is_empty())
        .unwrap_or_else(|| panic!("no stop string in {full:?}"));
    let mut body = base.clone();
    body["stop"] = json!([stop.clone(), "never-in-output-zzz"]);
    let (status, v) = s.post(COMPLETIONS, body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["text"].as_str().unwrap(),
        &full[..at],
        "stop {stop:?}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    body["include_stop_str_in_output"] = json!(true);
    let (_, v) = s.post(COMPLETIONS, body.clone()).await;
    assert_eq!(
        v["choices"][0]["text"].as_str().unwrap(),
        &full[..at + stop.len()]
    );
    body["include_stop_str_in_output"] = json!(false);
    body["stream"] = json!(true);
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
    let mut joined = String::new();
    let mut finish = Value::Null;
    for p in sse_payloads(&text).iter().filter(|p| *p != "[DONE]") {
        let c: Value = serde_json::from_str(p).unwrap();
        joined.push_str(c["choices"][0]["text"].as_str().unwrap());
        if !c["choices"][0]["finish_reason"].is_null() {
            finish = c["choices"][0]["finish_reason"].clone();
        }
    }
    assert_eq!(joined, &full[..at]);
    assert_eq!(finish, "stop");
    s.wait_idle(Duration::from_secs(5)).await;
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_per_generated_token() {
    let s = start().await;
    let (status, v) = s
        .post(
            CHAT,
            json!({"messages": user("Hi"), "max_tokens": 5, "ignore_eos": true,
                   "logprobs": true, "top_logprobs": 3}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 5);
    for e in content {
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let tops: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(tops.windows(2).all(|w| w[0] >= w[1]), "{tops:?}");
        assert!(lp <= tops[0] + 1e-6);
        assert!(e["bytes"].is_array() && e["token"].is_string());
    }
    let (status, v) = s
        .post(
            COMPLETIONS,
            json!({"prompt": "Hi", "max_tokens": 4, "ignore_eos": true, "logprobs": 2}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 4);
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), 4);
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2);
    s.stop().await.unwrap();
}

/// `enable_thinking` (top level or in chat_template_kwargs) and tools reach the template:
/// the prompt changes by what the template writes for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_arguments_and_tools_shape_the_prompt() {
    let s = start().await;
    let prompt_tokens = |v: &Value| v["usage"]["prompt_tokens"].as_u64().unwrap();
    let base = json!({"messages": user("Hi"), "max_tokens": 1});
    let (_, plain) = s.post(CHAT, base.clone()).await;
    let mut off = base.clone();
    off["chat_template_kwargs"] = json!({"enable_thinking": false});
    let (_, kw) = s.post(CHAT, off).await;
    let mut top = base.clone();
    top["enable_thinking"] = json!(false);
    let (_, toplevel) = s.post(CHAT, top).await;
    // `<think>\n\n</think>\n\n`: the tags and the newlines between them.
    assert!(prompt_tokens(&kw) > prompt_tokens(&plain));
    assert_eq!(prompt_tokens(&kw), prompt_tokens(&toplevel));

    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let mut with_tools = base.clone();
    with_tools["tools"] = tools.clone();
    let (status, t) = s.post(CHAT, with_tools.clone()).await;
    assert_eq!(status, 200, "{t}");
    assert!(prompt_tokens(&t) > prompt_tokens(&plain) + 50);
    with_tools["tool_choice"] = json!("none");
    let (_, none) = s.post(CHAT, with_tools).await;
    assert_eq!(prompt_tokens(&none), prompt_tokens(&plain));

    // A tool round trip: the assistant's call and the tool's result feed the next turn.
    let turn = json!({"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}],
        "tools": tools, "max_tokens": 2});
    let (status, v) = s.post(CHAT, turn).await;
    assert_eq!(status, 200, "{v}");
    s.stop().await.unwrap();
}

/// `/metrics` agrees with what the responses said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_the_responses() {
    let s = start().await;
    let mut generated = 0;
    for i in 0..4 {
        let (status, v) = s
            .post(
                COMPLETIONS,
                json!({"prompt": format!("count {i}"), "max_tokens": 3 + i, "ignore_eos": true}),
            )
            .await;
        assert_eq!(status, 200);
        generated += v["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let (status, _) = s
        .post(COMPLETIONS, json!({"prompt": "x", "top_p": 7}))
        .await;
    assert_eq!(status, 400);
    s.wait_idle(Duration::from_secs(5)).await;
    let (status, text) = s.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &text,
            "pio_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(
            &text,
            "pio_requests_total{endpoint=\"/v1/completions\",status=\"400\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "pio_generation_tokens_total"),
        generated as f64
    );
    assert_eq!(metric(&text, "pio_time_to_first_token_seconds_count"), 4.0);
    assert_eq!(
        metric(&text, "pio_inter_token_latency_seconds_count"),
        (generated - 4) as f64
    );
    assert_eq!(metric(&text, "pio_kv_blocks_used"), 0.0);
    assert_eq!(metric(&text, "pio_requests_running"), 0.0);
    assert_eq!(metric(&text, "pio_requests_waiting"), 0.0);
    assert!(metric(&text, "pio_kv_blocks_total") >= 256.0);
    assert_eq!(
        metric(&text, "pio_request_finish_total{reason=\"length\"}"),
        4.0
    );
    s.stop().await.unwrap();
}

/// Shutdown stops accepting, aborts what is still running after the grace period, and
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_aborts_in_flight_requests_within_the_grace() {
    let cfg = ServeConfig {
        shutdown_grace: Duration::from_millis(200),
        ..ServeConfig::default()
    };
    let s = start_with(cfg, small_engine()).await;
    let body = json!({"prompt": "Long", "max_tokens": 500, "stream": true, "ignore_eos": true});
    let mut r = s
        .client
        .post(s.url(COMPLETIONS))
        .json(&body)
        .send()
        .await
        .unwrap();
    r.chunk().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(c)) = r.chunk().await {
            all.extend_from_slice(&c);
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let started = std::time::Instant::now();
    s.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let rest = reader.await.unwrap();
    assert!(
        rest.contains("shutting down") || rest.contains("[DONE]"),
        "{rest}"
    );
}
