//! What a query's `input` and an answer's `output` carry, per task.
//!
//! [`crate::QueryRequest::input`] and the answer's output are opaque bytes to the overlay and to the
//! receipt (which signs their hashes). Their meaning is fixed here, once, so that a client, a provider,
//! a validator re-running a query and the OpenAI gateway all read the same bytes the same way. Every
//! type is decoded with the codec's size limit and then [`validate`](EmbedInput::validate)d.

use crate::codec::{self, CodecError};
use crate::query::{MAX_INPUT_LEN, MAX_OUTPUT_LEN};
use serde::{Deserialize, Serialize};

/// Most texts in one embedding query (OpenAI's API allows 2048; one query is one batch on one
/// provider, so it stays small enough to answer within a deadline).
pub const MAX_EMBED_TEXTS: usize = 256;
/// Most messages in one chat.
pub const MAX_CHAT_MESSAGES: usize = 256;
/// Most tokens one generation query may ask for.
pub const MAX_GENERATE_TOKENS: u32 = 4096;
/// Most stop strings.
pub const MAX_STOP_STRINGS: usize = 8;
/// Longest stop string or role name, in bytes.
pub const MAX_SHORT_STRING_LEN: usize = 256;
/// Largest embedding dimension accepted.
pub const MAX_EMBED_DIMENSION: usize = 16_384;

/// Why a payload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// The bytes do not decode.
    #[error("cannot decode the payload: {0}")]
    Codec(#[from] CodecError),
    /// A field breaks a bound.
    #[error("invalid payload: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> PayloadError {
    PayloadError::Invalid(message.into())
}

/// Input of [`crate::Task::Embed`]: texts to embed, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedInput {
    /// The texts (1 to [`MAX_EMBED_TEXTS`]).
    pub texts: Vec<String>,
}

/// Output of [`crate::Task::Embed`]: one vector per input text, in the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedOutput {
    /// Length of every vector.
    pub dimension: u32,
    /// The vectors.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read, over all texts (what OpenAI's `usage.prompt_tokens` reports).
    pub tokens: u32,
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sampling {
    /// Always the most likely token: answers are reproducible across providers, which is what
    /// redundant queries and validators compare.
    Greedy,
    /// Temperature and nucleus sampling with a seed (fixed-point so the bytes are canonical).
    Seeded {
        /// Temperature times 1000 (1000 = 1.0); 0 means greedy.
        temperature_milli: u32,
        /// Nucleus mass times 1000, 1 to 1000.
        top_p_milli: u32,
        /// Seed of the sampler.
        seed: u64,
    },
}

/// Input of [`crate::Task::Generate`]: a chat to continue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateInput {
    /// The conversation so far (1 to [`MAX_CHAT_MESSAGES`]).
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate (1 to [`MAX_GENERATE_TOKENS`]).
    pub max_tokens: u32,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// Generation stops before the first of these (at most [`MAX_STOP_STRINGS`]).
    pub stop: Vec<String>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finish {
    /// The model ended its answer.
    Eos,
    /// A stop string was reached.
    Stop,
    /// `max_tokens` were generated.
    Length,
}

impl Finish {
    /// OpenAI's `finish_reason` for it.
    pub fn openai_reason(&self) -> &'static str {
        match self {
            Finish::Eos | Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Output of [`crate::Task::Generate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateOutput {
    /// The generated text.
    pub text: String,
    /// The generated token ids (greedy answers are compared on these).
    pub token_ids: Vec<u32>,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Why it ended.
    pub finish: Finish,
}

/// A payload type with bounds: encoded and decoded only through these methods.
pub trait Payload: Serialize + serde::de::DeserializeOwned {
    /// Largest encoding accepted.
    const MAX_LEN: usize;

    /// Checks the bounds the size limit alone does not express.
    fn validate(&self) -> Result<(), PayloadError>;

    /// Validates and encodes.
    fn to_bytes(&self) -> Result<Vec<u8>, PayloadError> {
        self.validate()?;
        let bytes = codec::encode(self)?;
        if bytes.len() > Self::MAX_LEN {
            return Err(invalid(format!(
                "{} bytes encoded, over the limit of {}",
                bytes.len(),
                Self::MAX_LEN
            )));
        }
        Ok(bytes)
    }

    /// Decodes within [`Payload::MAX_LEN`] and validates.
    fn from_bytes(bytes: &[u8]) -> Result<Self, PayloadError> {
        let value: Self = codec::decode(bytes, Self::MAX_LEN)?;
        value.validate()?;
        Ok(value)
    }
}

impl Payload for EmbedInput {
    const MAX_LEN: usize = MAX_INPUT_LEN;
    fn validate(&self) -> Result<(), PayloadError> {
        if self.texts.is_empty() || self.texts.len() > MAX_EMBED_TEXTS {
            return Err(invalid(format!(
                "{} texts to embed (1 to {MAX_EMBED_TEXTS})",
                self.texts.len()
            )));
        }
        Ok(())
    }
}

impl Payload for EmbedOutput {
    const MAX_LEN: usize = MAX_OUTPUT_LEN;
    fn validate(&self) -> Result<(), PayloadError> {
        let dimension = self.dimension as usize;
        if dimension == 0 || dimension > MAX_EMBED_DIMENSION {
            return Err(invalid(format!("embedding dimension {dimension}")));
        }
        if self.vectors.len() > MAX_EMBED_TEXTS {
            return Err(invalid(format!("{} vectors", self.vectors.len())));
        }
        if let Some(v) = self.vectors.iter().find(|v| v.len() != dimension) {
            return Err(invalid(format!(
                "a vector of {} values in an output of dimension {dimension}",
                v.len()
            )));
        }
        if self.vectors.iter().flatten().any(|x| !x.is_finite()) {
            return Err(invalid("a vector holds a value that is not finite"));
        }
        Ok(())
    }
}

impl Payload for GenerateInput {
    const MAX_LEN: usize = MAX_INPUT_LEN;
    fn validate(&self) -> Result<(), PayloadError> {
        if self.messages.is_empty() || self.messages.len() > MAX_CHAT_MESSAGES {
            return Err(invalid(format!(
                "{} chat messages (1 to {MAX_CHAT_MESSAGES})",
                self.messages.len()
            )));
        }
        if let Some(m) = self
            .messages
            .iter()
            .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
        {
            return Err(invalid(format!(
                "role {:?} (expected system, user or assistant)",
                truncated(&m.role)
            )));
        }
        if self.max_tokens == 0 || self.max_tokens > MAX_GENERATE_TOKENS {
            return Err(invalid(format!(
                "max_tokens {} (1 to {MAX_GENERATE_TOKENS})",
                self.max_tokens
            )));
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(invalid(format!(
                "{} stop strings (at most {MAX_STOP_STRINGS})",
                self.stop.len()
            )));
        }
        if self
            .stop
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_SHORT_STRING_LEN)
        {
            return Err(invalid(format!(
                "a stop string is empty or over {MAX_SHORT_STRING_LEN} bytes"
            )));
        }
        if let Sampling::Seeded { top_p_milli, .. } = self.sampling
            && !(1..=1000).contains(&top_p_milli)
        {
            return Err(invalid(format!("top_p {top_p_milli}/1000 (1 to 1000)")));
        }
        Ok(())
    }
}

impl Payload for GenerateOutput {
    const MAX_LEN: usize = MAX_OUTPUT_LEN;
    fn validate(&self) -> Result<(), PayloadError> {
        if self.token_ids.len() > MAX_GENERATE_TOKENS as usize {
            return Err(invalid(format!(
                "{} generated tokens",
                self.token_ids.len()
            )));
        }
        Ok(())
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(32).collect()
}

/// Cosine similarity of two vectors (0 when either is zero or the lengths differ): how redundant
/// embedding answers are compared.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}
