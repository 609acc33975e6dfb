//! Errors: what a backend reports ([`GatewayError`]) and what the HTTP client sees ([`ApiError`]).
//!
//! Every error leaves the gateway in OpenAI's shape, `{"error":{"message","type","param","code"}}`,
//! with the status code OpenAI uses for the same situation, because the official clients pick the
//! exception they raise from the status code alone (400 `BadRequestError`, 404 `NotFoundError`,
//! 429 `RateLimitError`, 5xx `InternalServerError`, ...) and retry 429 and 5xx on their own.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why the backend (the mesh client, or a test's in-process models) could not answer.
///
/// The variant decides the HTTP status; the message is shown to the user as is, so it should say
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed or asks for something the model cannot do (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// No such model is known to the mesh (HTTP 404).
    #[error("{0}")]
    ModelNotFound(String),
    /// The model is known but no provider can take the query now (HTTP 503).
    #[error("{0}")]
    NoProvider(String),
    /// A provider, or the gateway's own client, refused for rate (HTTP 429).
    #[error("{0}")]
    RateLimited(String),
    /// The client's credit does not cover the query's price (HTTP 402).
    #[error("{0}")]
    InsufficientCredit(String),
    /// No answer came within the deadline (HTTP 504).
    #[error("{0}")]
    Timeout(String),
    /// A provider answered with an error or with an answer that does not check out (HTTP 502).
    #[error("{0}")]
    Upstream(String),
    /// A fault in the gateway or its backend itself (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

/// An error response in OpenAI's shape, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's `error.type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// OpenAI's `error.code`, e.g. `model_not_found` (null for plain invalid requests, as OpenAI does).
    pub code: Option<&'static str>,
    /// OpenAI's `error.param`: the request field at fault, when one is.
    pub param: Option<String>,
    /// What went wrong, for a person.
    pub message: String,
    /// Seconds after which retrying makes sense (sent as `Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            param: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        )
    }

    /// 400 about one field of the request.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            ..Self::bad_request(message)
        }
    }

    /// 404: the model is unknown.
    pub fn model_not_found(model: &str) -> Self {
        Self {
            param: Some("model".to_owned()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                format!(
                    "The model `{model}` does not exist on the Agora mesh (GET /v1/models lists the models served now)."
                ),
            )
        }
    }

    /// 404: no such route (OpenAI answers unknown URLs the same way).
    pub fn unknown_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("unknown_url"),
            format!("Invalid URL ({method} {path})"),
        )
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            Some("method_not_allowed"),
            format!("Method {method} is not allowed on {path}"),
        )
    }

    /// 413: the body is over the gateway's limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!("The request body is over this gateway's limit of {limit} bytes."),
        )
    }

    /// 503: the gateway already runs as many requests as it allows.
    pub fn overloaded(max: usize) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("overloaded"),
                format!(
                    "The gateway is answering {max} requests already, its limit; retry shortly."
                ),
            )
        }
    }

    /// 504: the request ran past the gateway's deadline.
    pub fn deadline(deadline: std::time::Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            Some("timeout"),
            format!("No answer within the gateway's deadline of {deadline:?}."),
        )
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::BadRequest(m) => ApiError::bad_request(m),
            GatewayError::ModelNotFound(m) => Self {
                param: Some("model".to_owned()),
                ..Self::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    Some("model_not_found"),
                    m,
                )
            },
            GatewayError::NoProvider(m) => Self {
                retry_after: Some(5),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    Some("no_provider"),
                    m,
                )
            },
            GatewayError::RateLimited(m) => Self {
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    Some("rate_limit_exceeded"),
                    m,
                )
            },
            GatewayError::InsufficientCredit(m) => Self::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_quota",
                Some("insufficient_quota"),
                m,
            ),
            GatewayError::Timeout(m) => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                Some("timeout"),
                m,
            ),
            GatewayError::Upstream(m) => Self::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                Some("upstream_error"),
                m,
            ),
            GatewayError::Internal(m) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                Some("internal_error"),
                m,
            ),
        }
    }
}

/// The JSON body, `{"error": {...}}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = ?self.code, message = %self.message, "gateway error");
        } else {
            tracing::debug!(status = %self.status, code = ?self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: ErrorObject {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
