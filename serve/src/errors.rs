//! OpenAI's error responses: `{"error": {"message", "type", "param", "code"}}` with the HTTP
//! status that goes with them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pio_engine::scheduler::AdmissionError;
use pio_engine::PioError;
use serde::Serialize;

/// The `type` of an OpenAI error object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
}

/// A request's failure, as the client sees it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub message: String,
    /// The request field at fault (`"messages"`, `"top_p"`, `"tools[0].function.name"`).
    pub param: Option<String>,
    /// A machine-readable code (`"model_not_found"`, `"context_length_exceeded"`).
    pub code: Option<&'static str>,
    /// Seconds to wait before retrying (429 and 503).
    pub retry_after: Option<u64>,
    /// Answered before the request's body was read to its end: the response says
    /// `Connection: close`, so that the client does not send its next request on a connection
    /// the server is closing (it will not read the rest of that body).
    pub close_connection: bool,
}

/// The JSON body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

/// The error object itself (also sent as an SSE event when a stream fails mid-way).
#[derive(Serialize)]
pub struct ErrorObject<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: ErrorType,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            close_connection: false,
        }
    }

    /// The same error, answered with `Connection: close` (its request's body is left unread).
    pub fn closing(mut self) -> Self {
        self.close_connection = true;
        self
    }

    /// 400: the request is wrong; `param` names the field.
    pub fn bad_request(message: impl Into<String>, param: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequestError,
            message,
        );
        e.param = Some(param.into()).filter(|p: &String| !p.is_empty());
        e
    }

    /// 400: a field this server does not implement, or a value of it that it cannot honour.
    pub fn unsupported(param: &str, what: impl std::fmt::Display) -> Self {
        let mut e = Self::bad_request(format!("{param}: {what} is not supported"), param);
        e.code = Some("unsupported_parameter");
        e
    }

    /// 400 with `code: context_length_exceeded`.
    pub fn context_length(message: impl Into<String>, param: &str) -> Self {
        let mut e = Self::bad_request(message, param);
        e.code = Some("context_length_exceeded");
        e
    }

    /// 404: the request names a model this server does not serve.
    pub fn model_not_found(asked: &str, served: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::NotFoundError,
            format!("The model `{asked}` does not exist (this server serves `{served}`)"),
        );
        e.param = Some("model".into());
        e.code = Some("model_not_found");
        e
    }

    /// 404 for a path with no route.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::NotFoundError,
            format!("no route for {path}"),
        )
    }

    /// 405 for a known path with another method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorType::InvalidRequestError,
            "method not allowed for this path",
        )
    }

    /// 401: no or a wrong bearer token.
    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::AuthenticationError,
            "missing or invalid API key: send `Authorization: Bearer <key>`",
        );
        e.code = Some("invalid_api_key");
        e
    }

    /// 413: the body is larger than the server takes.
    pub fn too_large(limit: usize) -> Self {
        let mut e = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::InvalidRequestError,
            format!("the request body is larger than {limit} bytes"),
        );
        e.code = Some("request_too_large");
        e.closing()
    }

    /// 429: as many requests as the server takes are running or queued.
    pub fn queue_full(limit: usize) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::RateLimitError,
            format!(
                "the server is at its limit of {limit} running and queued requests; retry later"
            ),
        );
        e.code = Some("queue_full");
        e.retry_after = Some(1);
        e
    }

    /// 500: this request failed inside the server (the server goes on).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ServerError,
            message,
        )
    }

    /// 503: the server is shutting down or its engine is gone.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ServiceUnavailableError,
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// An engine's refusal of a request (admission), as the client sees it.
    pub fn refused(e: PioError) -> ApiError {
        match e {
            PioError::Admission(AdmissionError::PromptTooLong { prompt, bound }) => {
                Self::context_length(
                    format!(
                        "This model's maximum context length is {bound} tokens; the prompt has {prompt}"
                    ),
                    "messages",
                )
            }
            PioError::Admission(AdmissionError::EmptyPrompt) => Self::bad_request(
                "the prompt is empty: at least one token is needed",
                "prompt",
            ),
            PioError::Admission(AdmissionError::Sampling(s)) => {
                Self::bad_request(s.to_string(), "")
            }
            other => Self::bad_request(other.to_string(), ""),
        }
    }

    /// The error object, for an SSE `data:` line.
    pub fn object(&self) -> ErrorObject<'_> {
        ErrorObject {
            message: &self.message,
            kind: self.kind,
            param: self.param.as_deref(),
            code: self.code,
        }
    }

    /// `{"error": {...}}` as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&ErrorBody {
            error: self.object(),
        })
        .unwrap_or_else(|_| String::from("{\"error\":{\"message\":\"error\"}}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.to_json(),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.close_connection {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_openai_shape() {
        let e = ApiError::bad_request("top_p must be in (0, 1]", "top_p");
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "top_p");
        assert_eq!(v["error"]["code"], serde_json::Value::Null);
        assert_eq!(v["error"]["message"], "top_p must be in (0, 1]");
        let r = ApiError::queue_full(4).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
