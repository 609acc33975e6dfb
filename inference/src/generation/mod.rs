//! Text generation with SmolLM2-135M-Instruct, a Llama-architecture model read from a GGUF file.
//!
//! The pieces, each in its own module: [`gguf`] reads the file (untrusted input: every size checked)
//! and dequantises its tensors; [`tokenizer`] builds the byte-level BPE tokenizer and the chat template
//! from the file's metadata; [`model`] is Llama in burn with a KV cache; [`sampling`] picks tokens
//! (greedy, or seeded temperature / top-p). [`TextGenerator`] ties them together and streams text as it
//! is produced, stopping at the end-of-turn token, a stop string, or the token budget; it runs one
//! request at a time. To serve many, [`batch::GenerationScheduler`] decodes concurrent requests together
//! step by step (continuous batching), each getting the tokens it would get alone.
//!
//! ```no_run
//! use agora_inference::generation::{GenerationParams, TextGenerator, default_model_path};
//! use burn::backend::Flex;
//!
//! let generator = TextGenerator::<Flex>::load(&default_model_path(), &Default::default())?;
//! let params = GenerationParams { max_tokens: 64, ..GenerationParams::default() };
//! let out = generator.chat("Write a haiku about the sea.", &params, |piece| print!("{piece}"))?;
//! println!("\n({} tokens, {:?})", out.token_ids.len(), out.finish);
//! # Ok::<(), agora_inference::generation::GenerationError>(())
//! ```

pub mod batch;
pub mod error;
pub mod gguf;
pub mod model;
pub mod sampling;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::backend::Backend;

pub use batch::{GenerationScheduler, GenerationTicket, RequestError};
pub use error::GenerationError;
pub use gguf::{Gguf, GgufError};
pub use model::{KvCache, Llama, LlamaConfig};
pub use sampling::{Rng, Sampler, SamplingParams};
pub use tokenizer::{ChatMessage, IncrementalDecoder, Tokenizer, TokenizerError};

/// Where the SmolLM2 GGUF file is expected in the local model cache (see [`crate::model_cache`]:
/// `$AGORA_MODELS`, else `$XDG_CACHE_HOME/agora/models`, else `~/.cache/agora/models`).
pub fn default_model_path() -> PathBuf {
    crate::model_cache::model_dir(crate::model_cache::SMOLLM2)
        .join(crate::model_cache::SMOLLM2_GGUF)
}

/// The model file, or the model cache's "missing, run scripts/fetch-models" error.
fn require_model_file(path: &Path) -> Result<(), GenerationError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(crate::model_cache::ModelCacheError::Missing {
            path: path.to_path_buf(),
            root: crate::model_cache::root(),
        }
        .into())
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced its end-of-sequence token.
    Eos,
    /// The text reached one of the stop strings (which is not part of the output).
    Stop(String),
    /// `max_tokens` tokens were produced.
    MaxTokens,
}

/// What to generate and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// Greedy or seeded sampling.
    pub sampling: SamplingParams,
    /// Generation stops as soon as the text contains one of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Stop on the model's end-of-sequence token (on by default; off only to probe the model).
    pub stop_on_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::greedy(),
            stop: Vec::new(),
            stop_on_eos: true,
        }
    }
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text (control tokens left out, cut before a stop string).
    pub text: String,
    /// The generated ids, including the one that completed a stop string, excluding the end token.
    pub token_ids: Vec<u32>,
    /// How many tokens the prompt had.
    pub prompt_tokens: usize,
    /// Why it ended.
    pub finish: FinishReason,
}

/// Keeps generated text back while it could still be the start of a stop string, so the caller never
/// sees text that a stop string later removes, and finds the first complete stop string.
#[derive(Debug)]
struct StopMatcher {
    stops: Vec<String>,
    text: String,
    emitted: usize,
}

impl StopMatcher {
    fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            text: String::new(),
            emitted: 0,
        }
    }

    /// Adds text; returns the part now safe to show, and the stop string if one completed.
    fn push(&mut self, piece: &str) -> (String, Option<String>) {
        self.text.push_str(piece);
        let unseen = self.text.get(self.emitted..).unwrap_or("");
        // Any stop string completed now starts at or after `emitted`: everything before it was shown
        // only once no stop string could start there.
        let first = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| unseen.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = first {
            let cut = self.emitted + at;
            let out = self.text.get(self.emitted..cut).unwrap_or("").to_string();
            self.text.truncate(cut);
            self.emitted = cut;
            return (out, Some(stop.clone()));
        }
        let hold = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(unseen, s))
            .max()
            .unwrap_or(0);
        let end = self.text.len() - hold;
        let out = self.text.get(self.emitted..end).unwrap_or("").to_string();
        self.emitted = end;
        (out, None)
    }

    /// Everything not yet shown (at the end of the stream nothing can start a stop string any more).
    fn flush(&mut self) -> String {
        let out = self.text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = self.text.len();
        out
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (on char boundaries).
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|n| {
            let start = text.len() - n;
            text.is_char_boundary(start)
                && stop.is_char_boundary(*n)
                && text
                    .get(start..)
                    .zip(stop.get(..*n))
                    .is_some_and(|(a, b)| a == b)
        })
        .unwrap_or(0)
}

/// One sequence's decoding state after its prompt: sampler, UTF-8 assembly, stop strings, budget.
///
/// Both [`TextGenerator::generate`] (one sequence) and the batching
/// [`GenerationScheduler`](batch::GenerationScheduler) (many) drive a sequence through this, so the
/// two decide the next token and the end of a generation the same way.
#[derive(Debug)]
pub(crate) struct Decoding {
    sampler: Sampler,
    decoder: IncrementalDecoder,
    stops: StopMatcher,
    token_ids: Vec<u32>,
    max_tokens: usize,
    eos: Option<u32>,
    prompt_tokens: usize,
    finish: Option<FinishReason>,
}

impl Decoding {
    /// Checks a request against the model (prompt not empty, ids in the vocabulary, prompt plus budget
    /// within the context, sampling parameters in range) and sets up its state.
    pub(crate) fn new(
        tokenizer: &Tokenizer,
        config: &LlamaConfig,
        prompt_ids: &[u32],
        params: &GenerationParams,
    ) -> Result<Self, GenerationError> {
        if prompt_ids.is_empty() {
            return Err(GenerationError::EmptyPrompt);
        }
        let sampler = Sampler::new(params.sampling.clone())?;
        let needed = prompt_ids.len().saturating_add(params.max_tokens);
        if needed > config.context_length {
            return Err(GenerationError::ContextFull {
                needed,
                max: config.context_length,
            });
        }
        if let Some(id) = prompt_ids.iter().find(|id| **id as usize >= config.vocab) {
            return Err(GenerationError::TokenOutOfRange {
                id: *id,
                vocab: config.vocab,
            });
        }
        Ok(Self {
            sampler,
            decoder: IncrementalDecoder::new(),
            stops: StopMatcher::new(params.stop.clone()),
            token_ids: Vec::new(),
            max_tokens: params.max_tokens,
            eos: if params.stop_on_eos {
                tokenizer.eos_id()
            } else {
                None
            },
            prompt_tokens: prompt_ids.len(),
            finish: (params.max_tokens == 0).then_some(FinishReason::MaxTokens),
        })
    }

    /// Whether the generation has ended (a zero budget ends it before the prompt runs).
    pub(crate) fn is_done(&self) -> bool {
        self.finish.is_some()
    }

    /// Tokens generated so far.
    pub(crate) fn generated(&self) -> usize {
        self.token_ids.len()
    }

    /// Picks the next token from the logits of the last position. Appends the text that became safe
    /// to show to `shown`; returns the token to feed back, or `None` when the generation has ended.
    pub(crate) fn step(
        &mut self,
        tokenizer: &Tokenizer,
        logits: &[f32],
        shown: &mut String,
    ) -> Option<u32> {
        if self.finish.is_some() {
            return None;
        }
        let next = self.sampler.sample(logits);
        if Some(next) == self.eos {
            self.finish = Some(FinishReason::Eos);
            return None;
        }
        self.token_ids.push(next);
        if !tokenizer.is_special(next) {
            let piece = self.decoder.push(tokenizer.token_bytes(next));
            let (text, stop) = self.stops.push(&piece);
            shown.push_str(&text);
            if let Some(stop) = stop {
                self.finish = Some(FinishReason::Stop(stop));
                return None;
            }
        }
        if self.token_ids.len() >= self.max_tokens {
            self.finish = Some(FinishReason::MaxTokens);
            return None;
        }
        Some(next)
    }

    /// Ends the generation: appends what was held back to `shown` (a dangling partial character, text
    /// that might have begun a stop string) and returns the result.
    pub(crate) fn finish(mut self, shown: &mut String) -> Generation {
        let mut finish = self.finish.take().unwrap_or(FinishReason::MaxTokens);
        if !matches!(finish, FinishReason::Stop(_)) {
            let tail = self.decoder.finish();
            let (text, stop) = self.stops.push(&tail);
            shown.push_str(&text);
            match stop {
                Some(stop) => finish = FinishReason::Stop(stop),
                None => shown.push_str(&self.stops.flush()),
            }
        }
        Generation {
            text: self.stops.text,
            token_ids: self.token_ids,
            prompt_tokens: self.prompt_tokens,
            finish,
        }
    }
}

/// A loaded model with its tokenizer: the thing that answers prompts.
#[derive(Debug)]
pub struct TextGenerator<B: Backend> {
    model: Llama<B>,
    /// Shared with the [`batch::GenerationScheduler`] handles, which tokenize on the caller's thread.
    tokenizer: Arc<Tokenizer>,
}

impl<B: Backend> TextGenerator<B> {
    /// Loads the GGUF file at `path` onto `device`. A missing file is
    /// [`GenerationError::ModelFileMissing`], whose message says to run `scripts/fetch-models`.
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, GenerationError> {
        require_model_file(path)?;
        let gguf = Gguf::open(path)?;
        Self::from_gguf(&gguf, device)
    }

    /// Builds the model and tokenizer from a parsed GGUF file.
    pub fn from_gguf(gguf: &Gguf, device: &B::Device) -> Result<Self, GenerationError> {
        let tokenizer = Tokenizer::from_gguf(gguf)?;
        let model = Llama::from_gguf(gguf, device)?;
        if tokenizer.vocab_size() > model.config().vocab {
            return Err(GenerationError::BadConfig(format!(
                "{} tokens but {} embedding rows",
                tokenizer.vocab_size(),
                model.config().vocab
            )));
        }
        Ok(Self {
            model,
            tokenizer: Arc::new(tokenizer),
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model.
    pub fn model(&self) -> &Llama<B> {
        &self.model
    }

    /// Answers one user message through the chat template, streaming text to `on_text`.
    pub fn chat(
        &self,
        user_message: &str,
        params: &GenerationParams,
        on_text: impl FnMut(&str),
    ) -> Result<Generation, GenerationError> {
        let prompt = self
            .tokenizer
            .apply_chat_template(&[ChatMessage::new("user", user_message)], true);
        self.generate_text(&prompt, params, on_text)
    }

    /// Continues raw text (already formatted; control-token text such as `<|im_start|>` is honoured).
    pub fn generate_text(
        &self,
        prompt: &str,
        params: &GenerationParams,
        on_text: impl FnMut(&str),
    ) -> Result<Generation, GenerationError> {
        let ids = self.tokenizer.encode(prompt)?;
        self.generate(&ids, params, on_text)
    }

    /// Generates from prompt ids. Text reaches `on_text` as soon as it is final: whole UTF-8 characters
    /// only, and never text that could still turn out to begin a stop string.
    pub fn generate(
        &self,
        prompt_ids: &[u32],
        params: &GenerationParams,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generation, GenerationError> {
        let mut decoding = Decoding::new(&self.tokenizer, self.model.config(), prompt_ids, params)?;
        let mut cache = self.model.new_cache();
        let mut shown = String::new();
        let emit = |shown: &mut String, on_text: &mut dyn FnMut(&str)| {
            if !shown.is_empty() {
                on_text(shown);
                shown.clear();
            }
        };
        if !decoding.is_done() {
            let mut logits = self.model.forward(prompt_ids, &mut cache)?;
            while let Some(next) = decoding.step(&self.tokenizer, &logits, &mut shown) {
                emit(&mut shown, &mut on_text);
                logits = self.model.forward(&[next], &mut cache)?;
            }
        }
        let generation = decoding.finish(&mut shown);
        emit(&mut shown, &mut on_text);
        Ok(generation)
    }
}

/// A [`TextGenerator`] on the device chosen at run time: the GPU when this build has CUDA and the
/// machine a usable one, else the CPU. This is what a command or a serving node holds; code that
/// knows its backend at compile time can use [`TextGenerator`] directly.
#[derive(Debug)]
pub enum Generator {
    /// On the CPU.
    Cpu(TextGenerator<crate::backend::CpuBackend>),
    /// On the CUDA device with this ordinal.
    #[cfg(feature = "cuda")]
    Cuda(TextGenerator<crate::backend::CudaBackend>, usize),
}

/// Runs the same expression on whichever backend the generator holds.
macro_rules! on_backend {
    ($self:expr, $g:ident => $body:expr) => {
        match $self {
            Generator::Cpu($g) => $body,
            #[cfg(feature = "cuda")]
            Generator::Cuda($g, _) => $body,
        }
    };
}

impl Generator {
    /// Loads the GGUF file at `path` on the device `preference` leads to (see
    /// [`crate::backend::select`]).
    pub fn load(
        path: &Path,
        preference: crate::backend::DevicePreference,
    ) -> Result<Self, GenerationError> {
        require_model_file(path)?;
        Ok(match crate::backend::select(preference) {
            crate::backend::Device::Cpu => {
                Self::Cpu(TextGenerator::load(path, &Default::default())?)
            }
            #[cfg(feature = "cuda")]
            crate::backend::Device::Cuda(i) => Self::Cuda(
                TextGenerator::load(path, &crate::backend::CudaDevice::new(i))?,
                i,
            ),
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> crate::backend::Device {
        match self {
            Generator::Cpu(_) => crate::backend::Device::Cpu,
            #[cfg(feature = "cuda")]
            Generator::Cuda(_, i) => crate::backend::Device::Cuda(*i),
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        on_backend!(self, g => g.tokenizer())
    }

    /// See [`TextGenerator::chat`].
    pub fn chat(
        &self,
        user_message: &str,
        params: &GenerationParams,
        on_text: impl FnMut(&str),
    ) -> Result<Generation, GenerationError> {
        on_backend!(self, g => g.chat(user_message, params, on_text))
    }

    /// See [`TextGenerator::generate_text`].
    pub fn generate_text(
        &self,
        prompt: &str,
        params: &GenerationParams,
        on_text: impl FnMut(&str),
    ) -> Result<Generation, GenerationError> {
        on_backend!(self, g => g.generate_text(prompt, params, on_text))
    }

    /// See [`TextGenerator::generate`].
    pub fn generate(
        &self,
        prompt_ids: &[u32],
        params: &GenerationParams,
        on_text: impl FnMut(&str),
    ) -> Result<Generation, GenerationError> {
        on_backend!(self, g => g.generate(prompt_ids, params, on_text))
    }
}

#[cfg(test)]
mod tests {
    use super::{StopMatcher, longest_suffix_prefix};

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, Option<String>, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(stops);
        let mut shown = Vec::new();
        for p in pieces {
            let (out, stop) = m.push(p);
            shown.push(out);
            if stop.is_some() {
                return (shown, stop, m.text);
            }
        }
        shown.push(m.flush());
        (shown, None, m.text)
    }

    #[test]
    fn text_that_may_start_a_stop_string_is_held_back() {
        let (shown, stop, text) = run(&["END"], &["abc E", "N", "D tail"]);
        assert_eq!(shown, ["abc ", "", ""]);
        assert_eq!(stop.as_deref(), Some("END"));
        assert_eq!(text, "abc ");
    }

    #[test]
    fn a_false_start_is_released() {
        let (shown, stop, text) = run(&["END"], &["abc E", "Nx", " more"]);
        assert_eq!(shown, ["abc ", "ENx", " more", ""]);
        assert_eq!(stop, None);
        assert_eq!(text, "abc ENx more");
    }

    #[test]
    fn the_earliest_stop_string_wins() {
        let (_, stop, text) = run(&["world", "lo w"], &["hello world"]);
        assert_eq!(stop.as_deref(), Some("lo w"));
        assert_eq!(text, "hel");
    }

    #[test]
    fn suffix_prefix_respects_char_boundaries() {
        assert_eq!(longest_suffix_prefix("abcé", "éx"), 2);
        assert_eq!(longest_suffix_prefix("abc", "xyz"), 0);
        assert_eq!(longest_suffix_prefix("ab", "abc"), 2);
        assert_eq!(longest_suffix_prefix("abc", "abc"), 0); // a whole match is found, not held
    }
}
