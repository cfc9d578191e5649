//! `pio serve`: the OpenAI-compatible server (the `pio-serve` crate) with its flags; stops
//! gracefully on SIGINT/SIGTERM and exits 0.

use crate::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use pio::{errln, Device, EngineConfig, LoadOptions, WeightsSource};
use pio_serve::{ServeConfig, Server};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

#[derive(Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An HF model directory, or `random` for seeded random weights of the real shapes.
    #[arg(long, default_value = "random")]
    weights: String,
    /// Seed of random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    device: Device,
    /// Address (or host name) to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the address is printed on stderr).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every request but GET /health.
    #[arg(long)]
    api_key: Option<String>,
    /// Most requests running and queued at once (n choices count n); beyond it, 429 with
    /// Retry-After.
    #[arg(long, default_value_t = 256)]
    max_concurrent: usize,
    /// The model's name in requests and responses [default: the spec's name].
    #[arg(long)]
    served_model_name: Option<String>,
    /// KV blocks in the pool [default: enough for --max-running whole sequences, within
    /// --memory-fraction of the free memory].
    #[arg(long)]
    kv_blocks: Option<usize>,
    /// Share of the free GPU memory (CPU: available host memory) the KV pool may take, in
    /// (0, 1].
    #[arg(long, default_value_t = 0.9)]
    memory_fraction: f64,
    /// Most tokens per engine step (decode tokens plus prefill chunks).
    #[arg(long, default_value_t = 2048)]
    max_batch_tokens: usize,
    /// Most requests running at once in the engine (the others queue).
    #[arg(long, default_value_t = 64)]
    max_running: usize,
    /// Positions per KV block.
    #[arg(long, default_value_t = 16)]
    block_size: usize,
    /// Turn prefix caching off.
    #[arg(long)]
    no_prefix_caching: bool,
    /// KV-cache length, i.e. the longest prompt plus completion (default: the spec's bound, at
    /// most 32768).
    #[arg(long)]
    max_context: Option<usize>,
    /// Tensor-parallel ranks: the graph sharded over N ranks, one GPU each (NCCL between
    /// them), or simulated ranks on the CPU backend.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    tp: Option<u32>,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 4 << 20)]
    max_body_bytes: usize,
    /// On SIGINT/SIGTERM, seconds in-flight requests may go on before they are aborted.
    #[arg(long, default_value_t = 5.0)]
    shutdown_timeout: f64,
}

pub(crate) fn serve(a: ServeArgs) -> Result<()> {
    if a.max_concurrent == 0 || a.max_running == 0 || a.max_batch_tokens == 0 {
        bail!("--max-concurrent, --max-running and --max-batch-tokens must be at least 1");
    }
    if a.kv_blocks == Some(0) || a.block_size == 0 {
        bail!("--kv-blocks and --block-size must be at least 1");
    }
    if !(a.memory_fraction > 0.0 && a.memory_fraction <= 1.0) {
        bail!(
            "--memory-fraction must be in (0, 1] (got {})",
            a.memory_fraction
        );
    }
    if !(a.shutdown_timeout.is_finite() && a.shutdown_timeout >= 0.0) {
        bail!("--shutdown-timeout must be a number of seconds >= 0");
    }
    if a.max_body_bytes < 1024 {
        bail!("--max-body-bytes must be at least 1024");
    }
    let addr: SocketAddr = (a.host.as_str(), a.port)
        .to_socket_addrs()
        .with_context(|| format!("--host {}: not an address or a known host name", a.host))?
        .next()
        .with_context(|| format!("--host {}: the name has no address", a.host))?;
    let opts = LoadOptions {
        max_context: a.max_context,
        // A spec is compiled for steps of --max-batch-tokens; an artifact's are what they are.
        max_prefill: match &a.model.artifact {
            None => Some(crate::serving::step_tokens(a.max_batch_tokens)?),
            Some(_) => None,
        },
        tensor_parallel: a.tp.map(|n| n as usize),
        progress: true,
        ..Default::default()
    };
    let model = a.model.load(
        &WeightsSource::from_arg(&a.weights, a.seed),
        a.device,
        &opts,
    )?;
    errln!("device: {}", model.device_name());
    if model.has_random_weights() {
        errln!("note: random weights: the output is gibberish");
    }
    let engine = EngineConfig {
        block_size: a.block_size,
        num_blocks: a.kv_blocks,
        memory_fraction: a.memory_fraction,
        max_batch_tokens: a.max_batch_tokens,
        max_running: a.max_running,
        prefix_caching: !a.no_prefix_caching,
    };
    crate::serving::note_step_limits(&model, &engine);
    let cfg = ServeConfig {
        addr,
        api_key: a.api_key.filter(|k| !k.is_empty()),
        max_concurrent: a.max_concurrent,
        served_model_name: a.served_model_name,
        max_body_bytes: a.max_body_bytes,
        shutdown_grace: Duration::from_secs_f64(a.shutdown_timeout),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pio-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(model, engine, cfg).await?;
        errln!(
            "serving {} on http://{}",
            server.model_name(),
            server.local_addr()
        );
        server.run(shutdown_signal()).await?;
        errln!("server stopped");
        Ok(())
    })
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    errln!("shutting down: no new requests; in-flight ones finish or are aborted");
}
