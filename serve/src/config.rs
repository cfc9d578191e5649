//! The server's settings (what `pio serve`'s flags set).

use std::net::SocketAddr;
use std::time::Duration;

/// How the server listens and what it takes.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeConfig {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// When set, every request but `GET /health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Most engine requests running and queued at once (a request with `n` choices counts
    /// `n`); beyond it, 429 with `Retry-After`.
    pub max_concurrent: usize,
    /// The model's name in requests and responses (default: the spec's name).
    pub served_model_name: Option<String>,
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
    /// On shutdown, how long in-flight requests may go on before they are aborted.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            api_key: None,
            max_concurrent: 256,
            served_model_name: None,
            max_body_bytes: 4 << 20,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}
