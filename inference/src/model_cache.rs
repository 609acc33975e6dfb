//! Where model weights live on disk.
//!
//! Weights are never fetched at run time or in tests: `scripts/fetch-models` fills the cache once, and
//! every model here (and the generation engineer's) reads from it. The layout is a convention other
//! tools rely on, so it is written down once, here:
//!
//! - root: `$AGORA_MODELS` if set, else `$XDG_CACHE_HOME/agora/models`, else `~/.cache/agora/models`;
//! - `<root>/all-minilm-l6-v2/` holds `model.safetensors`, `tokenizer.json`, `config.json`;
//! - `<root>/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf`.

use std::path::{Path, PathBuf};

/// Folder name of the all-MiniLM-L6-v2 sentence encoder inside the cache root.
pub const MINILM: &str = "all-minilm-l6-v2";
/// Folder name of SmolLM2-135M-Instruct inside the cache root.
pub const SMOLLM2: &str = "smollm2-135m-instruct";
/// File name of the SmolLM2 weights inside [`SMOLLM2`].
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The command that fills the cache, quoted in every "missing weights" error.
pub const FETCH_COMMAND: &str = "scripts/fetch-models";

/// A model file the cache should hold but does not.
#[derive(Debug, thiserror::Error)]
pub enum ModelCacheError {
    /// The file is absent (or unreadable); the message says how to fetch it.
    #[error(
        "model file {path} is missing: run `{FETCH_COMMAND}` from the repository root to fill the model cache \
         ({root}; set AGORA_MODELS to use another folder)"
    )]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
        /// The cache root in use, shown so that a wrong `AGORA_MODELS` is easy to spot.
        root: PathBuf,
    },
}

/// The cache root: `$AGORA_MODELS`, else `$XDG_CACHE_HOME/agora/models`, else `~/.cache/agora/models`.
///
/// Empty variables count as unset, as the XDG spec asks. Without a home directory the root is the
/// relative `.cache/agora/models`, which then shows up in the "missing" error rather than a panic.
pub fn root() -> PathBuf {
    if let Some(dir) = non_empty_env("AGORA_MODELS") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty_env("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("agora").join("models");
    }
    dirs::home_dir()
        .unwrap_or_default()
        .join(".cache")
        .join("agora")
        .join("models")
}

/// The folder of one model (`name` is a folder name such as [`MINILM`]) under [`root()`].
pub fn model_dir(name: &str) -> PathBuf {
    root().join(name)
}

/// `dir/file` if it exists as a file, else [`ModelCacheError::Missing`] naming the fetch command.
pub fn require_file(dir: &Path, file: &str) -> Result<PathBuf, ModelCacheError> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelCacheError::Missing { path, root: root() })
    }
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}
