//! Text generation (SmolLM2, a Llama-architecture model read from GGUF). Being built.
