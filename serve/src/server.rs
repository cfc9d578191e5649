//! Starting and stopping the server: the engine thread, the listener, the router, and a
//! graceful shutdown (stop accepting, let in-flight requests finish for a grace period, then
//! abort them, then exit).

use crate::config::ServeConfig;
use crate::engine_thread::{self, EngineHandle};
use crate::logprobs::TokenText;
use crate::metrics::Metrics;
use crate::state::{AppState, ModelContext, Shared};
use pio_engine::{Engine, EngineConfig, Model, PioError};
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot set up the engine: {0}")]
    Engine(#[from] PioError),
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot start the engine thread: {0}")]
    Thread(std::io::Error),
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
}

/// How long connections may stay open after in-flight requests were aborted at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A bound server, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Shared,
    engine_thread: std::thread::JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.local_addr())
            .finish()
    }
}

impl Server {
    /// Puts `model` behind an engine configured by `engine`, starts the engine thread and
    /// binds `cfg.addr`.
    pub async fn bind(
        model: Model,
        engine: EngineConfig,
        cfg: ServeConfig,
    ) -> Result<Server, ServeError> {
        let name = cfg
            .served_model_name
            .clone()
            .unwrap_or_else(|| model.info().name.clone());
        let tokenizer = model.tokenizer().clone();
        let chat = model.chat_template().cloned().map_err(|e| e.to_string());
        let defaults = model.defaults().clone();
        let vocab_size = model.info().vocab_size;
        let engine = Engine::new(model, engine)?;
        let max_seq_len = engine.max_seq_len();
        let metrics = Arc::new(Metrics::default());
        let (handle, engine_thread) =
            engine_thread::spawn(engine, cfg.max_concurrent, metrics.clone())
                .map_err(ServeError::Thread)?;
        let listener = tokio::net::TcpListener::bind(cfg.addr)
            .await
            .map_err(|cause| ServeError::Bind {
                addr: cfg.addr,
                cause,
            })?;
        let state = Arc::new(AppState {
            engine: handle,
            model: ModelContext {
                name,
                token_text: TokenText::new(tokenizer.clone()),
                tokenizer,
                chat,
                defaults,
                max_seq_len,
                vocab_size,
            },
            metrics,
            config: cfg,
            draining: Default::default(),
            created: crate::ids::unix_now(),
        });
        Ok(Server {
            listener,
            state,
            engine_thread,
        })
    }

    /// The address it listens on (the port picked when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.addr)
    }

    /// The engine thread's handle (stats, for tests and tools).
    pub fn engine(&self) -> EngineHandle {
        self.state.engine.clone()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// The served model's name.
    pub fn model_name(&self) -> &str {
        &self.state.model.name
    }

    /// Serves until `shutdown` resolves, then stops accepting, gives in-flight requests the
    /// configured grace period, aborts what is left, and returns once the engine thread has
    /// ended.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            state,
            engine_thread,
        } = self;
        let app = crate::routes::router(state.clone());
        let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let graceful = async move {
            shutdown.await;
            st.draining.store(true, Ordering::Relaxed);
            let _ = fired_tx.send(());
        };
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .into_future();
        let grace = state.config.shutdown_grace;
        let engine = state.engine.clone();
        let deadline = async move {
            if fired_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
            engine.abort_all();
            tokio::time::sleep(CLOSE_GRACE).await;
        };
        let result = tokio::select! {
            r = serve => r.map_err(ServeError::Serve),
            () = deadline => Ok(()),
        };
        state.engine.shutdown();
        drop(state);
        let _ = tokio::task::spawn_blocking(move || engine_thread.join()).await;
        result
    }
}
