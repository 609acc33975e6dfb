//! `agora gateway`: an OpenAI-compatible HTTP endpoint in front of the mesh, so tools written for
//! OpenAI's API (the official `openai` clients, LangChain, curl scripts) query the marketplace
//! unchanged: point their base URL at `http://<gateway>/v1`.
//!
//! Endpoints, in OpenAI's shapes:
//! - `GET /v1/models`, `GET /v1/models/{id}`: the models the mesh serves now, with Agora's facts
//!   (task, providers, lowest price) in an extra `agora` field;
//! - `POST /v1/embeddings`: `input` as a string or an array of up to 2048 strings (more than one
//!   query takes are split into several queries), `encoding_format` `float` or `base64` (the Python
//!   client's default), `dimensions` only when it is the model's own;
//! - `POST /v1/chat/completions`: text messages, `max_tokens` / `max_completion_tokens`,
//!   `temperature`, `top_p`, `seed`, `stop`, `stream` (see [`sse`] for what streaming means while the
//!   mesh answers whole texts).
//!
//! Answers carry `x-agora-provider`, `x-agora-receipt` and `x-agora-price` headers; errors are
//! OpenAI's `{"error": {...}}` with OpenAI's status codes (see [`error`]).
//!
//! The gateway knows nothing of peers: it talks to a [`GatewayBackend`], which the node implements
//! with its mesh client and tests implement with models in the same process. Everything is bounded
//! by a [`GatewayConfig`]: body size, time per request, requests at once.

pub mod base64;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod mesh;
pub mod openai;
pub mod sse;

pub use error::{ApiError, GatewayError};
pub use handlers::{PRICE_HEADER, PROVIDER_HEADER, RECEIPT_HEADER};

use agora_protocols::{EmbedInput, EmbedOutput, GenerateInput, GenerateOutput, Task};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Largest request body by default: a full embedding batch of 4 MiB of text (a query's input limit)
/// with room for JSON escaping.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Time one request may take by default, the mesh's retries on other providers included.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(120);
/// Requests answered at once by default; more get 503 with `Retry-After`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;
/// Tokens generated when a chat request names no budget (OpenAI's "as many as fit" would be a
/// surprise on a metered mesh).
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// Limits and defaults of a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Bodies over this many bytes get 413.
    pub max_body_bytes: usize,
    /// A request not answered within this gets 504.
    pub request_deadline: Duration,
    /// Requests beyond this many at once get 503 with `Retry-After: 1` (OpenAI clients retry those).
    pub max_concurrent_requests: usize,
    /// `max_tokens` of a chat request that gives none.
    pub default_max_tokens: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

/// A model the mesh serves now, as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The id requests name it by.
    pub id: String,
    /// What it does.
    pub task: Task,
    /// Providers serving it now.
    pub providers: usize,
    /// Lowest price per query among them, in units of 1e-9.
    pub min_price: u64,
}

/// An answer with who gave it and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered<T> {
    /// The answer.
    pub output: T,
    /// Peer id of the provider that answered.
    pub provider: String,
    /// Id of the countersigned receipt.
    pub receipt_id: String,
    /// Price paid, in units of 1e-9.
    pub price: u64,
}

/// Where the gateway's queries go: the node's mesh client in production, in-process models in tests.
///
/// The gateway has already checked each input against the payload's bounds when it calls
/// [`embed`](Self::embed) or [`chat`](Self::chat). A backend reports failures as [`GatewayError`]s,
/// whose variant picks the HTTP status. A call may be dropped when the request's deadline passes.
pub trait GatewayBackend: Send + Sync + 'static {
    /// The models served now.
    fn models(&self) -> impl Future<Output = Result<Vec<ModelInfo>, GatewayError>> + Send;
    /// Embeds the texts with `model`.
    fn embed(
        &self,
        model: String,
        input: EmbedInput,
    ) -> impl Future<Output = Result<Answered<EmbedOutput>, GatewayError>> + Send;
    /// Continues the chat with `model`.
    fn chat(
        &self,
        model: String,
        input: GenerateInput,
    ) -> impl Future<Output = Result<Answered<GenerateOutput>, GatewayError>> + Send;
}

/// The limits the guard middleware applies to every request.
#[derive(Debug)]
struct Guard {
    permits: Arc<Semaphore>,
    config: GatewayConfig,
}

/// Refuses oversized bodies up front (by `Content-Length`), bounds the requests in flight and their
/// time. Each request holds a permit until its whole response is built (answers are never streamed
/// out of the backend), so the bound covers all the work a request causes.
async fn guard(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let limit = guard.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::too_large(limit).into_response();
    }
    request.extensions_mut().insert(extract::BodyLimit(limit));
    let Ok(_permit) = Arc::clone(&guard.permits).try_acquire_owned() else {
        return ApiError::overloaded(guard.config.max_concurrent_requests).into_response();
    };
    let deadline = guard.config.request_deadline;
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::deadline(deadline).into_response(),
    }
}

/// The gateway's routes over `backend`, with every limit of `config` applied (tests serve this on a
/// listener of their own; [`serve`] is the production entry).
pub fn router<B: GatewayBackend>(backend: Arc<B>, config: GatewayConfig) -> Router {
    let guard_state = Arc::new(Guard {
        permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
        config: config.clone(),
    });
    let body_limit = config.max_body_bytes;
    let shared = Arc::new(handlers::Shared {
        backend,
        config,
        started: handlers::unix_seconds(),
    });
    Router::new()
        .route("/v1/models", get(handlers::list_models::<B>))
        .route("/v1/models/{*id}", get(handlers::get_model::<B>))
        .route("/v1/embeddings", post(handlers::embeddings::<B>))
        .route("/v1/chat/completions", post(handlers::chat::<B>))
        .fallback(handlers::unknown_route)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(shared)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(guard_state, guard))
}

/// Serves the gateway on `listener` until the process ends.
pub async fn serve<B: GatewayBackend>(
    listener: tokio::net::TcpListener,
    backend: Arc<B>,
    config: GatewayConfig,
) -> std::io::Result<()> {
    serve_with_shutdown(listener, backend, config, std::future::pending()).await
}

/// Serves the gateway on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve_with_shutdown<B: GatewayBackend>(
    listener: tokio::net::TcpListener,
    backend: Arc<B>,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "OpenAI-compatible gateway listening (base URL http://{address}/v1)");
    }
    axum::serve(listener, router(backend, config))
        .with_graceful_shutdown(shutdown)
        .await
}
