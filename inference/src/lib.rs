//! Models served on the Agora mesh, built on burn, with real weights from a local model cache.

pub mod generation;
