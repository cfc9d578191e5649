//! `pio serve`: an OpenAI-compatible HTTP server on pio's batching engine.
//!
//! One OS thread owns the [`pio_engine::Engine`] ([`engine_thread`]); axum handlers parse and
//! check requests ([`protocol`], [`params`]), render chat prompts through the model's own
//! template ([`chat_prompt`]), submit engine requests and turn their tokens into OpenAI
//! responses or server-sent events ([`routes`]), splitting off reasoning ([`reasoning`]) and
//! tool calls ([`tools`]). [`Server`] binds, serves and shuts down gracefully.
//!
//! ```no_run
//! use pio_engine::{Device, EngineConfig, Model, WeightsSource};
//! use pio_serve::{ServeConfig, Server};
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let model = Model::load("model-specs/qwen3-tiny.yaml".as_ref(),
//!                         &WeightsSource::Random { seed: 0 }, Device::Cpu)?;
//! let server = Server::bind(model, EngineConfig::default(), ServeConfig::default()).await?;
//! eprintln!("listening on http://{}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod chat_prompt;
pub mod choice;
pub mod config;
pub mod engine_thread;
pub mod errors;
pub mod ids;
pub mod logprobs;
pub mod metrics;
pub mod params;
pub mod protocol;
pub mod reasoning;
pub mod routes;
pub mod server;
pub mod state;
pub mod stop;
pub mod tools;

pub use config::ServeConfig;
pub use errors::ApiError;
pub use server::{ServeError, Server};
