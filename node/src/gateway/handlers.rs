//! The endpoints: each reads an OpenAI request, turns it into a mesh payload (checking everything the
//! payload's own bounds check, so that a bad request is a 400 here rather than a refusal from a
//! provider after a round trip), asks the backend, and writes OpenAI's answer.

use super::error::ApiError;
use super::extract::JsonBody;
use super::openai::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatRequest, ChatUsage, Embedding,
    EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, EmbeddingValue, Model, ModelExtra,
    ModelList,
};
use super::sse::{StreamedAnswer, event_stream};
use super::{Answered, GatewayBackend, GatewayConfig, ModelInfo, base64};
use agora_protocols::task::{MAX_EMBED_DIMENSION, MAX_EMBED_TEXTS, MAX_GENERATE_TOKENS};
use agora_protocols::{ChatMessage, EmbedInput, GenerateInput, Payload, Sampling};
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What every handler shares.
#[derive(Debug)]
pub struct Shared<B> {
    /// Answers the queries.
    pub backend: Arc<B>,
    /// Limits and defaults.
    pub config: GatewayConfig,
    /// When the gateway started, in Unix seconds (the `created` of every model).
    pub started: u64,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn model_object(info: ModelInfo, created: u64) -> Model {
    Model {
        id: info.id,
        object: "model",
        created,
        owned_by: "agora-mesh",
        agora: ModelExtra {
            task: info.task.to_string(),
            providers: info.providers,
            min_price: info.min_price,
        },
    }
}

/// `GET /v1/models`.
pub async fn list_models<B: GatewayBackend>(State(shared): State<Arc<Shared<B>>>) -> Response {
    match shared.backend.models().await {
        Ok(models) => axum::Json(ModelList {
            object: "list",
            data: models
                .into_iter()
                .map(|m| model_object(m, shared.started))
                .collect(),
        })
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /v1/models/{id}` (the id may hold slashes, as Hugging Face names do).
pub async fn get_model<B: GatewayBackend>(
    State(shared): State<Arc<Shared<B>>>,
    Path(id): Path<String>,
) -> Response {
    match shared.backend.models().await {
        Ok(models) => match models.into_iter().find(|m| m.id == id) {
            Some(model) => axum::Json(model_object(model, shared.started)).into_response(),
            None => ApiError::model_not_found(&id).into_response(),
        },
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Any route the gateway does not have.
pub async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::unknown_route(method.as_str(), uri.path())
}

/// A known route with the wrong method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

/// How embeddings are written in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    /// JSON numbers.
    Float,
    /// Base64 of little-endian `f32`s.
    Base64,
}

/// Most inputs in one embeddings request: OpenAI's own limit. Requests over [`MAX_EMBED_TEXTS`] (one
/// mesh query's limit) are split into several queries, because common clients send up to this many
/// at once (LangChain batches 1000 texts by default).
pub const MAX_EMBED_INPUTS: usize = 2048;

/// The texts of an embeddings request, checked and cut into mesh queries of at most
/// [`MAX_EMBED_TEXTS`] texts each, in input order.
pub fn embed_batches(input: &Value) -> Result<Vec<EmbedInput>, ApiError> {
    let texts: Vec<String> = match input {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::bad_param("input", "`input` is an empty array"));
        }
        Value::Array(items) if items.iter().all(|v| v.is_number() || v.is_array()) => {
            return Err(ApiError::bad_param(
                "input",
                "token-array inputs are not supported: the mesh's models tokenize themselves; send `input` as a string or an array of strings",
            ));
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(text) => Ok(text.clone()),
                _ => Err(ApiError::bad_param(
                    "input",
                    format!("`input[{i}]` is not a string (token arrays are not supported)"),
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::bad_param(
                "input",
                "`input` must be a string or an array of strings",
            ));
        }
    };
    if texts.len() > MAX_EMBED_INPUTS {
        return Err(ApiError::bad_param(
            "input",
            format!(
                "{} inputs in one request; at most {MAX_EMBED_INPUTS} (split the request)",
                texts.len()
            ),
        ));
    }
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(ApiError::bad_param(
            "input",
            format!("`input[{i}]` is an empty string"),
        ));
    }
    texts
        .chunks(MAX_EMBED_TEXTS)
        .map(|chunk| {
            let batch = EmbedInput {
                texts: chunk.to_vec(),
            };
            // The encoded size is a bound too (one query's input): checked here for a 400 with a
            // reason rather than a refusal after a round trip.
            batch.to_bytes().map_err(|e| {
                ApiError::bad_param("input", format!("the input cannot be sent: {e}"))
            })?;
            Ok(batch)
        })
        .collect()
}

/// `encoding_format`, default `float`.
pub fn encoding_format(format: Option<&str>) -> Result<EncodingFormat, ApiError> {
    match format {
        None | Some("float") => Ok(EncodingFormat::Float),
        Some("base64") => Ok(EncodingFormat::Base64),
        Some(other) => Err(ApiError::bad_param(
            "encoding_format",
            format!("`encoding_format` {other:?} is not supported (float or base64)"),
        )),
    }
}

/// `POST /v1/embeddings`.
///
/// A request over one query's limit becomes several queries, asked one after the other (they are
/// each a full batch for a provider already); the answer then names every provider and receipt in
/// its headers, comma-separated in input order, and the summed price.
pub async fn embeddings<B: GatewayBackend>(
    State(shared): State<Arc<Shared<B>>>,
    JsonBody(request): JsonBody<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    let batches = embed_batches(&request.input)?;
    let format = encoding_format(request.encoding_format.as_deref())?;
    if let Some(d) = request.dimensions
        && (d == 0 || d > MAX_EMBED_DIMENSION as u64)
    {
        return Err(ApiError::bad_param(
            "dimensions",
            format!("`dimensions` {d} is out of range"),
        ));
    }
    let mut vectors: Vec<Vec<f32>> = Vec::new();
    let mut tokens = 0u32;
    let mut dimension = None;
    let mut paid = Vec::with_capacity(batches.len());
    for batch in batches {
        let count = batch.texts.len();
        let answered = shared
            .backend
            .embed(request.model.clone(), batch)
            .await
            .map_err(ApiError::from)?;
        let output = &answered.output;
        if output.vectors.len() != count
            || output
                .vectors
                .iter()
                .any(|v| v.len() != output.dimension as usize)
            || dimension.is_some_and(|d| d != output.dimension)
        {
            return Err(ApiError::from(super::GatewayError::Upstream(format!(
                "the provider answered {} embeddings of dimension {} for {count} inputs, which does not fit the request",
                output.vectors.len(),
                output.dimension
            ))));
        }
        dimension = Some(output.dimension);
        tokens = tokens.saturating_add(output.tokens);
        paid.push(Paid::from(&answered));
        vectors.extend(answered.output.vectors);
    }
    // The width is the model's; it is known only from an answer, so a wrong `dimensions` is found
    // after the query (the model cannot shorten its vectors, and ignoring the field would hand back
    // vectors of a width the caller did not ask for).
    if let (Some(asked), Some(width)) = (request.dimensions, dimension)
        && asked != u64::from(width)
    {
        return Err(ApiError::bad_param(
            "dimensions",
            format!(
                "model `{}` gives {width}-dimensional embeddings and cannot change that; leave out `dimensions` or set it to {width}",
                request.model
            ),
        ));
    }
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| Embedding {
            object: "embedding",
            index,
            embedding: match format {
                EncodingFormat::Float => EmbeddingValue::Float(v),
                EncodingFormat::Base64 => EmbeddingValue::Base64(base64::encode_f32_le(&v)),
            },
        })
        .collect();
    let body = EmbeddingResponse {
        object: "list",
        data,
        model: request.model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    Ok(with_receipts(axum::Json(body).into_response(), &paid))
}

/// One chat message, in whichever shape OpenAI allows for text.
fn chat_message(index: usize, value: &Value) -> Result<ChatMessage, ApiError> {
    let param = format!("messages[{index}]");
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad_param(
            &param,
            format!("`{param}` must be an object with `role` and `content`"),
        ));
    };
    let role = match object.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => "system",
        Some("user") => "user",
        Some("assistant") => "assistant",
        Some(other) => {
            return Err(ApiError::bad_param(
                &format!("{param}.role"),
                format!(
                    "role `{other}` is not supported (system, developer, user or assistant; the mesh's models do not call tools)"
                ),
            ));
        }
        None => {
            return Err(ApiError::bad_param(
                &format!("{param}.role"),
                format!("`{param}.role` is missing"),
            ));
        }
    };
    if object
        .get("tool_calls")
        .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err(ApiError::bad_param(
            &format!("{param}.tool_calls"),
            "tool calls are not supported",
        ));
    }
    let content = match object.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str);
                match (kind, part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(text)) => texts.push(text),
                    _ => {
                        return Err(ApiError::bad_param(
                            &format!("{param}.content[{j}]"),
                            format!(
                                "`{param}.content[{j}]` is not a text part (`{{\"type\":\"text\",\"text\":...}}`); the mesh's models read text only"
                            ),
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        None | Some(Value::Null) if role == "assistant" => String::new(),
        _ => {
            return Err(ApiError::bad_param(
                &format!("{param}.content"),
                format!("`{param}.content` must be a string or an array of text parts"),
            ));
        }
    };
    Ok(ChatMessage {
        role: role.to_owned(),
        content,
    })
}

/// A seed for a request that asks for sampling without one: from the standard library's per-process
/// random hash keys and the clock, which is all "random" has to mean here.
fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Greedy unless the request asks for sampling: temperature 0 is greedy, and so is a request with
/// neither a temperature nor a seed (OpenAI's default would be temperature 1, but greedy answers are
/// reproducible across providers, which is what lets the mesh compare them). A seed without a
/// temperature samples at temperature 1, OpenAI's default.
pub fn sampling(
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<i64>,
) -> Result<Sampling, ApiError> {
    if let Some(t) = temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(ApiError::bad_param(
            "temperature",
            format!("`temperature` {t} is out of range (0 to 2)"),
        ));
    }
    if let Some(p) = top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(ApiError::bad_param(
            "top_p",
            format!("`top_p` {p} is out of range (0 to 1)"),
        ));
    }
    Ok(match (temperature, seed) {
        (Some(0.0), _) => Sampling::Greedy,
        (None, None) => Sampling::Greedy,
        (t, s) => Sampling::Seeded {
            temperature_milli: (t.unwrap_or(1.0) * 1000.0).round() as u32,
            top_p_milli: ((top_p.unwrap_or(1.0) * 1000.0).round() as u32).clamp(1, 1000),
            seed: s.map_or_else(random_seed, |s| u64::from_ne_bytes(s.to_ne_bytes())),
        },
    })
}

/// `stop`: absent, null, a string or an array of strings (empty strings are dropped).
fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let stops: Vec<String> = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::bad_param("stop", "`stop` must be a string or an array of strings")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_param(
                "stop",
                "`stop` must be a string or an array of strings",
            ));
        }
    };
    Ok(stops.into_iter().filter(|s| !s.is_empty()).collect())
}

/// The mesh payload of a chat request, checked against the payload's bounds.
pub fn generate_input(
    request: &ChatRequest,
    config: &GatewayConfig,
) -> Result<GenerateInput, ApiError> {
    if let Some(n) = request.n
        && n != 1
    {
        return Err(ApiError::bad_param(
            "n",
            format!("`n` {n} is not supported: the mesh answers one choice per request"),
        ));
    }
    if request
        .tools
        .as_ref()
        .is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(ApiError::bad_param(
            "tools",
            "`tools` is not supported: the mesh's models do not call tools",
        ));
    }
    if request.messages.is_empty() {
        return Err(ApiError::bad_param("messages", "`messages` is empty"));
    }
    let messages = request
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| chat_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let (param, asked) = match (request.max_completion_tokens, request.max_tokens) {
        (Some(n), _) => ("max_completion_tokens", Some(n)),
        (None, Some(n)) => ("max_tokens", Some(n)),
        (None, None) => ("max_tokens", None),
    };
    let max_tokens = match asked {
        None => config.default_max_tokens,
        Some(n) if n == 0 || n > u64::from(MAX_GENERATE_TOKENS) => {
            return Err(ApiError::bad_param(
                param,
                format!("`{param}` {n} is out of range (1 to {MAX_GENERATE_TOKENS})"),
            ));
        }
        Some(n) => u32::try_from(n).unwrap_or(MAX_GENERATE_TOKENS),
    };
    let input = GenerateInput {
        messages,
        max_tokens,
        sampling: sampling(request.temperature, request.top_p, request.seed)?,
        stop: stop_strings(request.stop.as_ref())?,
    };
    input
        .to_bytes()
        .map_err(|e| ApiError::bad_request(format!("the request cannot be sent: {e}")))?;
    Ok(input)
}

/// `POST /v1/chat/completions`.
pub async fn chat<B: GatewayBackend>(
    State(shared): State<Arc<Shared<B>>>,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    let input = generate_input(&request, &shared.config)?;
    let answered = shared
        .backend
        .chat(request.model.clone(), input)
        .await
        .map_err(ApiError::from)?;
    let output = &answered.output;
    let completion_tokens = u32::try_from(output.token_ids.len()).unwrap_or(u32::MAX);
    let usage = ChatUsage {
        prompt_tokens: output.prompt_tokens,
        completion_tokens,
        total_tokens: output.prompt_tokens.saturating_add(completion_tokens),
    };
    let id = format!("chatcmpl-{}", answered.receipt_id);
    let created = unix_seconds();
    let finish_reason = output.finish.openai_reason();
    let response = if request.stream.unwrap_or(false) {
        let include_usage = request
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let body = event_stream(&StreamedAnswer {
            id: &id,
            created,
            model: &request.model,
            text: &output.text,
            finish_reason,
            usage: include_usage.then_some(usage),
        })
        .map_err(|e| ApiError::from(super::GatewayError::Internal(e.to_string())))?;
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response()
    } else {
        axum::Json(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model: request.model.clone(),
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: output.text.clone(),
                    refusal: None,
                },
                logprobs: None,
                finish_reason,
            }],
            usage,
        })
        .into_response()
    };
    tracing::info!(
        model = %request.model,
        provider = %answered.provider,
        price = answered.price,
        prompt_tokens = usage.prompt_tokens,
        completion_tokens = usage.completion_tokens,
        "chat completion answered"
    );
    Ok(with_receipts(response, &[Paid::from(&answered)]))
}

/// `x-agora-provider`: the peer id of the provider that answered.
pub const PROVIDER_HEADER: &str = "x-agora-provider";
/// `x-agora-receipt`: the id of the receipt both sides signed for the query.
pub const RECEIPT_HEADER: &str = "x-agora-receipt";
/// `x-agora-price`: what the query cost, in units of 1e-9.
pub const PRICE_HEADER: &str = "x-agora-price";

/// Who answered one query, its receipt and its price.
#[derive(Debug)]
struct Paid {
    provider: String,
    receipt_id: String,
    price: u64,
}

impl<T> From<&Answered<T>> for Paid {
    fn from(answered: &Answered<T>) -> Self {
        Self {
            provider: answered.provider.clone(),
            receipt_id: answered.receipt_id.clone(),
            price: answered.price,
        }
    }
}

/// Adds who answered, the receipts and the total price as headers (lists comma-separated when a
/// request took several queries), so a caller can audit its queries without an OpenAI field for it.
/// A value that is not a valid header (it never should be) is left out.
fn with_receipts(mut response: Response, paid: &[Paid]) -> Response {
    let join = |field: fn(&Paid) -> &str| paid.iter().map(field).collect::<Vec<_>>().join(",");
    let price = paid.iter().fold(0u64, |sum, p| sum.saturating_add(p.price));
    let headers = response.headers_mut();
    for (name, value) in [
        (PROVIDER_HEADER, join(|p| &p.provider)),
        (RECEIPT_HEADER, join(|p| &p.receipt_id)),
        (PRICE_HEADER, price.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}
