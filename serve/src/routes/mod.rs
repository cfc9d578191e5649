//! The HTTP routes, and what every request goes through: the API key, the body limit, the
//! request counter.

mod chat;
mod completions;
mod info;
mod stream;

use crate::engine_thread::{Submission, Submitted};
use crate::errors::ApiError;
use crate::logprobs::Logprobs;
use crate::protocol::response::{TokenLogprobEntry, TopLogprob};
use crate::state::Shared;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The endpoints (also the `endpoint` label of `pio_requests_total`).
pub const CHAT: &str = "/v1/chat/completions";
pub const COMPLETIONS: &str = "/v1/completions";
pub const MODELS: &str = "/v1/models";
pub const HEALTH: &str = "/health";
pub const METRICS: &str = "/metrics";

/// The router over `state`.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route(CHAT, post(chat::handle))
        .route(COMPLETIONS, post(completions::handle))
        .route(MODELS, get(info::models))
        .route(HEALTH, get(info::health))
        .route(METRICS, get(info::metrics))
        .fallback(|req: Request| async move { ApiError::no_route(req.uri().path()) })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Counts every response by endpoint and status.
async fn count(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let endpoint = [CHAT, COMPLETIONS, MODELS, HEALTH, METRICS]
        .into_iter()
        .find(|&e| e == req.uri().path())
        .unwrap_or("other");
    let r = next.run(req).await;
    st.metrics.count_request(endpoint, r.status().as_u16());
    r
}

/// `Authorization: Bearer <key>` on everything but `/health` when the server has a key.
async fn authorize(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.config.api_key {
        let open = req.uri().path() == HEALTH && req.method() == Method::GET;
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !open && !given.is_some_and(|g| same(g.as_bytes(), key.as_bytes())) {
            let e = ApiError::unauthorized();
            return if has_body(&req) { e.closing() } else { e }.into_response();
        }
    }
    next.run(req).await
}

/// Whether the request declares a body (a length above 0, or a chunked one).
fn has_body(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The body, at most `max_body_bytes` (413 beyond; 503 once the server is shutting down).
async fn read_body(st: &Shared, req: Request) -> Result<Bytes, ApiError> {
    if st.draining.load(Ordering::Relaxed) {
        return Err(ApiError::unavailable("the server is shutting down").closing());
    }
    let limit = st.config.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return ApiError::too_large(limit);
                }
                source = s.source();
            }
            ApiError::bad_request(format!("cannot read the request body: {e}"), "")
        })
}

/// 404 unless `asked` (when given) is the served model's name.
fn check_model(st: &Shared, asked: Option<&str>) -> Result<(), ApiError> {
    match asked {
        Some(m) if m != st.model.name => Err(ApiError::model_not_found(m, &st.model.name)),
        _ => Ok(()),
    }
}

/// Submits, unless the server is shutting down.
async fn submit(
    st: &Shared,
    subs: Vec<Submission>,
    arrived: Instant,
) -> Result<Submitted, ApiError> {
    if st.draining.load(Ordering::Relaxed) {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    st.engine.submit(subs, arrived).await
}

/// Runs prompt preparation (template rendering, tokenizing) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("preparing the prompt failed: {e}")))?
}

/// A chat logprob entry for a generated token.
fn chat_logprob(st: &Shared, id: u32, lp: &Logprobs) -> TokenLogprobEntry {
    let t = &st.model.token_text;
    TokenLogprobEntry {
        token: t.text(id),
        logprob: lp.logprob,
        bytes: t.bytes(id),
        top_logprobs: lp
            .top
            .iter()
            .map(|&(alt, logprob)| TopLogprob {
                token: t.text(alt),
                logprob,
                bytes: t.bytes(alt),
            })
            .collect(),
    }
}
