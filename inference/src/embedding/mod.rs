//! Sentence embeddings with all-MiniLM-L6-v2, matching sentence-transformers.
//!
//! The pipeline is the one sentence-transformers runs for this model (its `modules.json`): BERT word-piece
//! tokenisation truncated at 256 tokens, the 6-layer BERT encoder, mean pooling over the real tokens,
//! L2 normalisation. Batches are padded to their longest member; the padding is masked in attention and
//! left out of the mean, so an embedding does not depend on what it was batched with.
//!
//! ```no_run
//! # fn main() -> Result<(), agora_inference::embedding::EmbedError> {
//! let embedder = agora_inference::embedding::SentenceEmbedder::load_default()?;
//! let v = embedder.embed("A man is eating food.")?;
//! assert_eq!(v.len(), 384);
//! # Ok(()) }
//! ```

mod bert;
mod kernels;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use burn_store::{KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationParams};

use crate::backend::{self, CpuBackend, CpuDevice, Device, DevicePreference};
use crate::model_cache::{self, ModelCacheError};
use crate::scheduler::{Scheduler, SchedulerConfig};

pub use bert::BertConfig;
pub use kernels::erf;

/// Tokens per text the model sees (sentence-transformers' `max_seq_length` for this model).
pub const MAX_TOKENS: usize = 256;
/// Width of an embedding.
pub const DIMENSION: usize = 384;
/// Texts run through the encoder together at most; bigger inputs to [`SentenceEmbedder::embed_batch`]
/// are split, which bounds memory (a batch costs about `batch * tokens^2 * heads` floats in attention).
pub const MAX_BATCH: usize = 64;
/// Embeddings tagged with their position in the caller's batch.
type Indexed = Vec<(usize, Vec<f32>)>;

/// Most parts a CPU batch is split into to run side by side (see [`SentenceEmbedder::embed_batch`]).
const MAX_PARTS: usize = 4;

/// Why an embedding could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is not in the cache.
    #[error(transparent)]
    Missing(#[from] ModelCacheError),
    /// `config.json` could not be read or is not a BERT config this code runs.
    #[error("bad model config {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `tokenizer.json` could not be loaded or configured.
    #[error("cannot load tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizers crate's message.
        reason: String,
    },
    /// The weights file could not be read, or does not fit the model.
    #[error("cannot load weights {path}: {reason}")]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// What went wrong (unreadable file, missing or mis-shaped tensors).
        reason: String,
    },
    /// Tokenising an input failed.
    #[error("tokenising failed: {0}")]
    Tokenize(String),
    /// The backend failed while running the model.
    #[error("model execution failed: {0}")]
    Execution(String),
}

/// The model on one backend. Generic code runs on `B`; this enum picks `B` at run time.
#[derive(Debug)]
enum Engine {
    Cpu(bert::Encoder<CpuBackend>, CpuDevice),
    #[cfg(feature = "cuda")]
    Cuda(bert::Encoder<backend::CudaBackend>, backend::CudaDevice),
}

/// all-MiniLM-L6-v2: text in, 384 floats of unit length out.
///
/// Loading takes a fraction of a second (90 MB of weights). The embedder is `Send`, so it can move into
/// the worker thread of a [`Scheduler`] (see [`SentenceEmbedder::into_scheduler`]).
#[derive(Debug)]
pub struct SentenceEmbedder {
    tokenizer: Tokenizer,
    engine: Engine,
    device: Device,
    max_positions: usize,
}

impl SentenceEmbedder {
    /// Loads from the model cache (`<root>/all-minilm-l6-v2`) on the device `AGORA_DEVICE` asks for.
    pub fn load_default() -> Result<Self, EmbedError> {
        Self::load(
            &model_cache::model_dir(model_cache::MINILM),
            DevicePreference::from_env(),
        )
    }

    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path, preference: DevicePreference) -> Result<Self, EmbedError> {
        let config_path = model_cache::require_file(dir, "config.json")?;
        let tokenizer_path = model_cache::require_file(dir, "tokenizer.json")?;
        let weights_path = model_cache::require_file(dir, "model.safetensors")?;

        let config = read_config(&config_path)?;
        let tokenizer = load_tokenizer(&tokenizer_path)?;
        let device = backend::select(preference);
        let engine = match &device {
            Device::Cpu => {
                let d = CpuDevice::default();
                Engine::Cpu(load_weights(&config, &weights_path, &d)?, d)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => {
                let d = backend::CudaDevice::new(*i);
                Engine::Cuda(load_weights(&config, &weights_path, &d)?, d)
            }
        };
        Ok(SentenceEmbedder {
            tokenizer,
            engine,
            device,
            max_positions: config.max_position_embeddings,
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Width of every embedding ([`DIMENSION`]).
    pub fn dimension(&self) -> usize {
        DIMENSION
    }

    /// Token ids the model would see for `text` (with `[CLS]` and `[SEP]`, at most [`MAX_TOKENS`]).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        // The tokenizer truncates already; this keeps the position table in range whatever it does.
        ids.truncate(MAX_TOKENS.min(self.max_positions));
        Ok(ids)
    }

    /// The embedding of one text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut out = self.embed_batch(&[text])?;
        out.pop()
            .ok_or_else(|| EmbedError::Execution("no output for the input".to_owned()))
    }

    /// Embeddings of many texts, in input order.
    ///
    /// Texts are sorted by length and run in groups of at most [`MAX_BATCH`], so that little compute
    /// goes to padding; the result is the same as embedding each text alone.
    pub fn embed_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut tokenized = texts
            .iter()
            .map(|t| self.tokenize(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .enumerate()
            .collect::<Vec<_>>();
        tokenized.sort_by_key(|(_, ids)| ids.len());
        let mut out = vec![Vec::new(); texts.len()];
        for group in tokenized.chunks(MAX_BATCH) {
            let ids: Vec<&[u32]> = group.iter().map(|(_, ids)| ids.as_slice()).collect();
            let vectors = self.run(&ids)?;
            for ((index, _), v) in group.iter().zip(vectors) {
                if let Some(slot) = out.get_mut(*index) {
                    *slot = v;
                }
            }
        }
        Ok(out)
    }

    /// Runs the encoder on one batch of token-id sequences (sorted by length).
    ///
    /// On CPU the batch is dealt into as many parts as rayon has threads (at most [`MAX_PARTS`]) and the
    /// parts run side by side: burn parallelises only its big matrix products, so this keeps every core
    /// busy through the norms, activations, copies and attention as well.
    fn run(&self, ids: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match &self.engine {
            Engine::Cpu(model, device) => {
                let parts = rayon::current_num_threads()
                    .clamp(1, MAX_PARTS)
                    .min(ids.len());
                if parts <= 1 {
                    // On one of rayon's workers, so that the products big enough for burn's matmul
                    // to split across the pool (a sentence of 12 tokens or more) fork and join inside
                    // it; called from outside, each such product sent a job into the pool and put
                    // this thread to sleep until it came back. Batch 1, 2 threads, load 1.4: 294
                    // embeddings/s from outside the pool, 328 inside (one thread: 333).
                    return rayon::scope(|_| encode(model, device, ids, true));
                }
                // Round-robin over the length-sorted ids gives parts of nearly equal token counts.
                let mut groups: Vec<Vec<(usize, &[u32])>> = vec![Vec::new(); parts];
                for (i, s) in ids.iter().enumerate() {
                    if let Some(g) = groups.get_mut(i % parts) {
                        g.push((i, s));
                    }
                }
                let results: Vec<Result<Indexed, EmbedError>> = groups
                    .par_iter()
                    .map(|g| {
                        let seqs: Vec<&[u32]> = g.iter().map(|(_, s)| *s).collect();
                        let vectors = encode(model, device, &seqs, false)?;
                        Ok(g.iter().map(|(i, _)| *i).zip(vectors).collect())
                    })
                    .collect();
                let mut out = vec![Vec::new(); ids.len()];
                for part in results {
                    for (i, v) in part? {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = v;
                        }
                    }
                }
                Ok(out)
            }
            #[cfg(feature = "cuda")]
            Engine::Cuda(model, device) => encode(model, device, ids, false),
        }
    }

    /// Moves the embedder into a [`Scheduler`] that batches concurrent requests into it.
    ///
    /// Each request is one text; its answer is the embedding or the error for that text.
    pub fn into_scheduler(
        self,
        config: SchedulerConfig,
    ) -> Result<Scheduler<String, Result<Vec<f32>, EmbedError>>, std::io::Error> {
        Scheduler::spawn("minilm-embed", config, move |texts: Vec<String>| {
            match self.embed_batch(&texts) {
                Ok(vectors) => vectors.into_iter().map(Ok).collect(),
                // A failure of the whole batch (rare: tokenisation cannot fail on valid UTF-8) is
                // retried text by text so that one bad input does not fail its neighbours.
                Err(_) => texts.iter().map(|t| self.embed(t)).collect(),
            }
        })
    }
}

fn read_config(path: &Path) -> Result<BertConfig, EmbedError> {
    let bad = |reason: String| EmbedError::Config {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let config: BertConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if config.hidden_act != "gelu" {
        return Err(bad(format!(
            "activation {:?} is not supported",
            config.hidden_act
        )));
    }
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(bad(
            "hidden size is not a multiple of the head count".to_owned()
        ));
    }
    if config.hidden_size != DIMENSION {
        return Err(bad(format!(
            "hidden size {} is not {DIMENSION}",
            config.hidden_size
        )));
    }
    Ok(config)
}

/// Loads the tokenizer with the model's real limits: the file as shipped pads every input to 128 tokens
/// and truncates at 128, which would change the embedding of anything longer than 126 word pieces; the
/// model was trained (and sentence-transformers runs it) with truncation at 256 and no padding.
fn load_tokenizer(path: &Path) -> Result<Tokenizer, EmbedError> {
    let bad = |reason: String| EmbedError::Tokenizer {
        path: path.to_owned(),
        reason,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| bad(e.to_string()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..TruncationParams::default()
        }))
        .map_err(|e| bad(e.to_string()))?;
    Ok(tokenizer)
}

fn load_weights<B: kernels::EncoderOps>(
    config: &BertConfig,
    path: &Path,
    device: &B::Device,
) -> Result<bert::Encoder<B>, EmbedError> {
    let bad = |reason: String| EmbedError::Weights {
        path: path.to_owned(),
        reason,
    };
    let remap = KeyRemapper::new()
        .add_pattern(r"LayerNorm", "layer_norm")
        .and_then(|r| r.add_pattern(r"\.attention\.self\.", ".attention.self_attn."))
        .map_err(|e| bad(e.to_string()))?;
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .remap(remap)
        .validate(true)
        .allow_partial(false);
    let mut model = bert::Bert::<B>::new(config, device);
    let result = model
        .load_from(&mut store)
        .map_err(|e| bad(e.to_string()))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        return Err(bad(format!(
            "missing tensors {:?}, errors {:?}",
            result.missing, result.errors
        )));
    }
    tracing::debug!(
        applied = result.applied.len(),
        unused = ?result.unused,
        "loaded all-MiniLM-L6-v2 weights"
    );
    Ok(model.no_grad().into_encoder(config.num_attention_heads))
}

/// Runs the encoder on a batch of token-id sequences (packed, see [`bert::Encoder`]), mean-pools each
/// sequence's token states and L2-normalises. `alone`: nothing else runs on rayon's pool beside this
/// batch, so the encoder may split its own steps across the pool.
fn encode<B: kernels::EncoderOps>(
    model: &bert::Encoder<B>,
    device: &B::Device,
    ids: &[&[u32]],
    alone: bool,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    // The tokenizer always adds [CLS] and [SEP]; an empty sequence could only come from a broken
    // tokenizer file, and gets the zero vector rather than a division by zero.
    let lengths: Vec<usize> = ids.iter().map(|s| s.len()).collect();
    let live: Vec<&[u32]> = ids.iter().copied().filter(|s| !s.is_empty()).collect();
    let live_lengths: Vec<usize> = live.iter().map(|s| s.len()).collect();
    let tokens: usize = live_lengths.iter().sum();
    let mut pooled = Vec::with_capacity(ids.len());
    if tokens > 0 {
        let flat: Vec<i32> = live
            .iter()
            .flat_map(|s| s.iter().map(|&t| i32::try_from(t).unwrap_or(0)))
            .collect();
        let positions: Vec<i32> = live_lengths
            .iter()
            .flat_map(|&len| (0..len).map(|p| i32::try_from(p).unwrap_or(0)))
            .collect();
        let ints =
            |v: Vec<i32>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [tokens]), device);
        let packing = bert::Packing::new(&live_lengths, device).alone(alone);
        let states = model.forward(ints(flat), ints(positions), &packing);
        let values = states
            .try_into_data()
            .map_err(|e| EmbedError::Execution(format!("{e:?}")))?
            .to_vec::<f32>()
            .map_err(|e| EmbedError::Execution(format!("{e:?}")))?;
        let mut rows = values.chunks_exact(DIMENSION);
        for &len in &live_lengths {
            // Mean over the sequence's tokens, as sentence-transformers' mean pooling.
            let mut sum = vec![0.0f32; DIMENSION];
            for row in rows.by_ref().take(len) {
                for (acc, x) in sum.iter_mut().zip(row) {
                    *acc += x;
                }
            }
            pooled.push(sum);
        }
    }
    let mut pooled = pooled.into_iter();
    Ok(lengths
        .iter()
        .map(|&len| {
            let sum = if len == 0 { None } else { pooled.next() };
            sum.map_or_else(|| vec![0.0; DIMENSION], normalize)
        })
        .collect())
}

/// `F.normalize`: `x / max(|x|, 1e-12)`. Dividing the sum instead of the mean by its norm gives the
/// same unit vector (up to rounding), so the division by the token count is skipped.
fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
