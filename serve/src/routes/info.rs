//! `GET /v1/models`, `GET /health`, `GET /metrics`.

use crate::errors::ApiError;
use crate::protocol::response::{ModelCard, ModelList};
use crate::state::Shared;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::atomic::Ordering;

pub(super) async fn models(State(st): State<Shared>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            id: st.model.name.clone(),
            object: "model",
            created: st.created,
            owned_by: "pio",
            max_model_len: st.model.max_seq_len,
        }],
    })
}

/// 200 while the engine thread answers; 503 once shutting down or when it is gone.
pub(super) async fn health(State(st): State<Shared>) -> Response {
    if st.draining.load(Ordering::Relaxed) {
        return ApiError::unavailable("the server is shutting down").into_response();
    }
    match st.engine.stats().await {
        Ok(_) => "ok\n".into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn metrics(State(st): State<Shared>) -> Response {
    match st.engine.stats().await {
        Ok(g) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            st.metrics.render(&st.model.name, &g),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}
