//! The JSON bodies of OpenAI's API that the gateway reads and writes.
//!
//! Requests keep only the fields the gateway acts on (serde ignores the others, as OpenAI-compatible
//! servers commonly do, so clients that send `user`, `logit_bias`, ... still work). Fields that arrive
//! in several shapes (`input`, `content`, `stop`) are read as JSON values and checked by hand in
//! [`super::handlers`], so that a wrong shape gets a message naming the field rather than serde's
//! "did not match any variant". Responses carry every field the official clients expect.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    /// The model id.
    pub model: String,
    /// A string, an array of strings (or token arrays, which the gateway refuses).
    pub input: Value,
    /// `float` (default) or `base64` (what the Python client asks for unless told otherwise).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Requested width; accepted only when it is the model's own.
    #[serde(default)]
    pub dimensions: Option<u64>,
}

/// One embedding, as floats or as base64 of little-endian `f32`s.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbeddingValue {
    /// `encoding_format: "float"`.
    Float(Vec<f32>),
    /// `encoding_format: "base64"`.
    Base64(String),
}

/// One item of `data` in an embeddings answer.
#[derive(Debug, Serialize)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: &'static str,
    /// Position of the input it embeds.
    pub index: usize,
    /// The vector.
    pub embedding: EmbeddingValue,
}

/// Token counts of an embeddings answer.
#[derive(Debug, Serialize)]
pub struct EmbeddingUsage {
    /// Tokens read.
    pub prompt_tokens: u32,
    /// Same as `prompt_tokens`.
    pub total_tokens: u32,
}

/// The embeddings answer.
#[derive(Debug, Serialize)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: &'static str,
    /// One embedding per input, in input order.
    pub data: Vec<Embedding>,
    /// The model id.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The model id.
    pub model: String,
    /// The conversation; each item is checked by hand (see [`super::handlers`]).
    pub messages: Vec<Value>,
    /// Token budget (older name).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Token budget (newer name; wins over `max_tokens`).
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus mass, 0 to 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Sampling seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// A string or an array of strings.
    #[serde(default)]
    pub stop: Option<Value>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`).
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1 is served.
    #[serde(default)]
    pub n: Option<u64>,
    /// Tool definitions; refused when present, the mesh's models do not call tools.
    #[serde(default)]
    pub tools: Option<Value>,
}

/// `stream_options` of a chat request.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the token counts.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Token counts of a chat answer.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChatUsage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

/// The answer's message.
#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The generated text.
    pub content: String,
    /// Always null: the mesh's models do not refuse in a separate channel.
    pub refusal: Option<String>,
}

/// One choice of a chat answer.
#[derive(Debug, Serialize)]
pub struct ChatChoice {
    /// Always 0 (`n` is 1).
    pub index: u32,
    /// The message.
    pub message: AssistantMessage,
    /// Always null.
    pub logprobs: Option<Value>,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

/// A `chat.completion`.
#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-` and the receipt id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: ChatUsage,
}

/// What a chunk adds to the message.
#[derive(Debug, Default, Serialize)]
pub struct ChunkDelta {
    /// `assistant` in the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// A piece of text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a chunk.
#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    /// Always 0.
    pub index: u32,
    /// The piece.
    pub delta: ChunkDelta,
    /// Always null.
    pub logprobs: Option<Value>,
    /// Null until the last content chunk.
    pub finish_reason: Option<&'static str>,
}

/// A `chat.completion.chunk`.
#[derive(Debug, Serialize)]
pub struct ChatChunk {
    /// Same id in every chunk of one answer.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// One choice (none in the usage chunk).
    pub choices: Vec<ChunkChoice>,
    /// Token counts, in the last chunk when `stream_options.include_usage` asks for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
}

/// Agora's own facts about a model, next to OpenAI's fields (clients ignore extra fields).
#[derive(Debug, Serialize)]
pub struct ModelExtra {
    /// `embed` or `generate`.
    pub task: String,
    /// Providers serving it now.
    pub providers: usize,
    /// Lowest price per query among them, in units of 1e-9.
    pub min_price: u64,
}

/// One item of `GET /v1/models`.
#[derive(Debug, Serialize)]
pub struct Model {
    /// The model id, as requests name it.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds (when this gateway started: the mesh does not record when a model appeared).
    pub created: u64,
    /// Always `agora-mesh`.
    pub owned_by: &'static str,
    /// Task, providers and price.
    pub agora: ModelExtra,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<Model>,
}
