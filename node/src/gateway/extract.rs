//! The JSON body extractor: axum's own `Json` answers a bad body with a plain-text 400, 415 or 422,
//! which OpenAI clients cannot parse. This one answers every refusal in OpenAI's error shape: 413 for a
//! body over the limit, 400 for anything that is not the expected JSON.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// A request body read as JSON into `T`, refused in OpenAI's error shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// The body limit the extractor reports in its 413 message (set by the router as an extension next
/// to axum's `DefaultBodyLimit`, which does the limiting).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit.unwrap_or_default())
            } else {
                ApiError::bad_request(format!(
                    "cannot read the request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "the request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            // serde_json says what and where: "missing field `model` at line 1 column 2".
            ApiError::bad_request(format!("invalid JSON body: {e}"))
        })
    }
}
