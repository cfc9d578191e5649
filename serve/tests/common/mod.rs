//! A server on 127.0.0.1, port 0, over the tiny spec with random weights, in this process.

#![allow(dead_code)]

use pio_engine::{Device, EngineConfig, Model, WeightsSource};
use pio_serve::engine_thread::EngineHandle;
use pio_serve::metrics::EngineGauges;
use pio_serve::{ServeConfig, ServeError, Server};
use std::time::{Duration, Instant};

pub struct TestServer {
    pub base: String,
    pub engine: EngineHandle,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

pub fn tiny() -> Model {
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../model-specs/qwen3-tiny.yaml"
    );
    Model::load(
        spec.as_ref(),
        &WeightsSource::Random { seed: 3 },
        Device::Cpu,
    )
    .unwrap()
}

pub fn small_engine() -> EngineConfig {
    EngineConfig {
        num_blocks: Some(256),
        max_running: 16,
        ..EngineConfig::default()
    }
}

pub async fn start_with(cfg: ServeConfig, engine: EngineConfig) -> TestServer {
    let cfg = ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..cfg
    };
    let server = Server::bind(tiny(), engine, cfg).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let engine = server.engine();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestServer {
        base,
        engine,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        task: Some(task),
    }
}

pub async fn start() -> TestServer {
    start_with(ServeConfig::default(), small_engine()).await
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON; returns the status and the parsed body (Null when not JSON).
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// POSTs raw bytes as JSON; the whole response (headers too).
    pub async fn post_raw_response(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs raw bytes.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, String) {
        let r = self.post_raw_response(path, body).await;
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    pub async fn stats(&self) -> EngineGauges {
        self.engine.stats().await.unwrap()
    }

    /// Waits (at most `within`) until nothing runs, waits or holds a KV block.
    pub async fn wait_idle(&self, within: Duration) -> EngineGauges {
        let start = Instant::now();
        loop {
            let g = self.stats().await;
            if g.active == 0
                && g.stats.running == 0
                && g.stats.waiting == 0
                && g.stats.blocks.used == 0
            {
                return g;
            }
            assert!(start.elapsed() < within, "not idle after {within:?}: {g:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Shuts down and waits for the server to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

/// A metric's value in Prometheus text (the first line starting with `name`).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

/// The `data:` payloads of an SSE body, checking the framing on the way.
pub fn sse_payloads(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("\n\n"),
        "SSE body must end with a blank line: {body:?}"
    );
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event is not `data: `: {e:?}"));
            assert!(!data.contains('\n'), "one line per event: {e:?}");
            data.to_string()
        })
        .collect()
}
