//! Models served on the Agora mesh, built on burn, with real weights from a local model cache.
//!
//! - [`embedding`]: all-MiniLM-L6-v2 sentence embeddings, matching sentence-transformers;
//! - [`generation`]: text generation;
//! - [`scheduler`]: the batching queue in front of every model;
//! - [`backend`]: CPU by default, CUDA (feature `cuda`) when a GPU is really there;
//! - [`model_cache`]: where the weights live (`scripts/fetch-models` fills it).

pub mod backend;
pub mod embedding;
pub mod generation;
pub mod model_cache;
pub mod scheduler;
