//! Server-sent events as OpenAI sends them: `data: {json}\n\n` per chunk, `data: [DONE]` at
//! the end; a request that fails mid-stream gets `data: {"error": {...}}` before `[DONE]`.
//! The stream owns its requests' abort guard: a client that goes away drops the stream, which
//! aborts its engine requests at once.

use crate::engine_thread::{Event, Submitted};
use crate::errors::ApiError;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::convert::Infallible;

/// Turns a request's engine events into chunk payloads (JSON text).
pub trait Chunker: Send + 'static {
    /// Chunks for one engine event.
    fn event(&mut self, index: usize, event: Event) -> Result<Vec<String>, ApiError>;
    /// Whether every choice has ended.
    fn done(&self) -> bool;
    /// Chunks after the last choice ended (the usage chunk).
    fn end(&mut self) -> Vec<String>;
}

struct State<C> {
    sub: Submitted,
    chunker: C,
    queue: VecDeque<String>,
    finished: bool,
}

impl<C: Chunker> State<C> {
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(x) = self.queue.pop_front() {
                return Some(x);
            }
            if self.finished {
                return None;
            }
            let item = self.sub.events.recv().await;
            let result = match item {
                Some((index, event)) => self.chunker.event(index, event),
                None => Err(ApiError::internal("the engine dropped the request")),
            };
            match result {
                Ok(chunks) => {
                    self.queue.extend(chunks);
                    if self.chunker.done() {
                        self.queue.extend(self.chunker.end());
                        self.queue.push_back("[DONE]".into());
                        self.finished = true;
                    }
                }
                Err(e) => {
                    self.queue
                        .push_back(serde_json::json!({ "error": e.object() }).to_string());
                    self.queue.push_back("[DONE]".into());
                    self.finished = true;
                }
            }
        }
    }
}

/// The SSE response for submitted requests; `first` are chunks to send before any event
/// (the role chunks).
pub fn sse<C: Chunker>(sub: Submitted, chunker: C, first: Vec<String>) -> Response {
    let state = State {
        sub,
        chunker,
        queue: first.into(),
        finished: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let data = s.next().await?;
        Some((Ok::<_, Infallible>(SseEvent::default().data(data)), s))
    });
    Sse::new(stream).into_response()
}
