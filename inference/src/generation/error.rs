//! Errors of text generation.

use super::gguf::GgufError;
use super::tokenizer::TokenizerError;

/// Why a model could not be loaded or a generation could not run.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The model file is not in the cache (the message says to run `scripts/fetch-models`).
    #[error(transparent)]
    ModelFileMissing(#[from] crate::model_cache::ModelCacheError),
    /// The GGUF file is unreadable or lacks something the model needs.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The tokenizer could not be built or failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The file describes another architecture than Llama.
    #[error("architecture {0:?} is not supported (only \"llama\")")]
    UnsupportedArchitecture(String),
    /// The hyper-parameters in the metadata do not make a consistent model.
    #[error("invalid model configuration: {0}")]
    BadConfig(String),
    /// A weight tensor has another shape than the configuration implies.
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor.
        name: String,
        /// The shape the configuration implies (innermost first, as in GGUF).
        expected: Vec<u64>,
        /// The shape in the file.
        found: Vec<u64>,
    },
    /// A token id outside the vocabulary was given to the model.
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The prompt plus the tokens to generate exceed the model's context.
    #[error("{needed} positions needed but the model's context holds {max}")]
    ContextFull {
        /// Positions the request needs.
        needed: usize,
        /// The model's context length.
        max: usize,
    },
    /// Nothing to condition on.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// Temperature or top-p out of range.
    #[error("invalid sampling parameters: {0}")]
    InvalidSampling(String),
    /// The backend could not hand back a tensor's values.
    #[error("backend: {0}")]
    Backend(String),
}
