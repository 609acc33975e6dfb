//! The tokenizer, built from a GGUF file's metadata, the chat template, and incremental decoding.
//!
//! SmolLM2 uses a GPT-2 style byte-level BPE (`tokenizer.ggml.model = gpt2`): text is split with the
//! GPT-2 regex, each piece is mapped byte by byte to printable characters, and the merges are applied.
//! Encoding goes through the `tokenizers` crate configured as transformers configures it when it loads a
//! GGUF (BPE from vocab and merges, ByteLevel pre-tokenizer without a prefix space, control tokens as
//! special added tokens), so ids match transformers exactly. Decoding maps ids back to bytes with our
//! own table, which lets a stream hold back an incomplete UTF-8 sequence instead of printing U+FFFD.

use std::collections::HashMap;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use super::gguf::{Gguf, GgufError, MetadataArray};

/// GGUF token type of a control token (`<|im_start|>`, ...): matched whole in the input, never merged.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of a user-defined token: also matched whole.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Why a tokenizer could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The GGUF metadata lacks or mistypes a tokenizer field.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Only GPT-2 style byte-level BPE is implemented.
    #[error("tokenizer model {0:?} is not supported (only \"gpt2\" byte-level BPE)")]
    UnsupportedModel(String),
    /// Token types, tokens or merges disagree with each other.
    #[error("inconsistent tokenizer metadata: {0}")]
    Inconsistent(String),
    /// The `tokenizers` crate refused the vocabulary or failed to encode.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
}

/// One chat message for [`Tokenizer::apply_chat_template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role` with `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A byte-level BPE tokenizer read from GGUF metadata.
pub struct Tokenizer {
    inner: HfTokenizer,
    /// The bytes each id decodes to (control tokens decode to their text).
    token_bytes: Vec<Vec<u8>>,
    /// Whether each id is a control token (not shown when decoding with `skip_special`).
    special: Vec<bool>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    default_system: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.token_bytes.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .finish()
    }
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100 onwards in byte order.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0u32..256 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
        let c = if printable {
            b
        } else {
            let c = next;
            next += 1;
            c
        };
        if let (Some(slot), Some(ch)) = (table.get_mut(b as usize), char::from_u32(c)) {
            *slot = ch;
        }
    }
    table
}

fn get_u32_opt(gguf: &Gguf, key: &str) -> Result<Option<u32>, GgufError> {
    match gguf.get_u64(key) {
        Ok(v) => Ok(u32::try_from(v).ok()),
        Err(GgufError::MissingKey(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Pulls the default system prompt out of SmolLM2's chat template (the text the template inserts when
/// the conversation does not start with a system message). A template without one gives `None`.
fn default_system_prompt(template: &str) -> Option<String> {
    let start_marker = "<|im_start|>system\n";
    let start = template.find(start_marker)? + start_marker.len();
    let end = template.get(start..)?.find("<|im_end|>")? + start;
    template.get(start..end).map(str::to_string)
}

impl Tokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, TokenizerError> {
        let model = gguf.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let tokens = gguf.get_string_array("tokenizer.ggml.tokens")?;
        let merges = gguf.get_string_array("tokenizer.ggml.merges")?;
        let types: Vec<i32> = match gguf.get_array("tokenizer.ggml.token_type") {
            Ok(MetadataArray::I32(v)) => v.clone(),
            Ok(_) => {
                return Err(TokenizerError::Inconsistent(
                    "tokenizer.ggml.token_type is not an i32 array".into(),
                ));
            }
            Err(GgufError::MissingKey(_)) => vec![1; tokens.len()],
            Err(e) => return Err(e.into()),
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Inconsistent(format!(
                "{} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let n_tokens = u32::try_from(tokens.len())
            .map_err(|_| TokenizerError::Inconsistent("more than 2^32 tokens".into()))?;

        let vocab: Vocab = tokens.iter().cloned().zip(0..n_tokens).collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        TokenizerError::Inconsistent(format!("merge {m:?} has no space"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        let mut inner = HfTokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::new(true, true, true)));

        let char_to_byte: HashMap<char, u8> = byte_to_char_table()
            .iter()
            .zip(0u8..=255)
            .map(|(c, b)| (*c, b))
            .collect();
        let mut token_bytes = Vec::with_capacity(tokens.len());
        let mut special = Vec::with_capacity(tokens.len());
        let mut added = Vec::new();
        for (token, ty) in tokens.iter().zip(&types) {
            let is_control = *ty == TOKEN_TYPE_CONTROL;
            if is_control || *ty == TOKEN_TYPE_USER_DEFINED {
                added.push(AddedToken::from(token.clone(), is_control));
                token_bytes.push(token.as_bytes().to_vec());
            } else {
                // A normal token is byte-level text; a character outside the map (none in a sane
                // file) is kept as its UTF-8 so decoding still shows something.
                let mut bytes = Vec::with_capacity(token.len());
                for c in token.chars() {
                    match char_to_byte.get(&c) {
                        Some(b) => bytes.push(*b),
                        None => bytes.extend_from_slice(c.to_string().as_bytes()),
                    }
                }
                token_bytes.push(bytes);
            }
            special.push(is_control);
        }
        inner
            .add_special_tokens(added)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;

        let template = gguf.get_str("tokenizer.chat_template").ok();
        Ok(Self {
            inner,
            token_bytes,
            special,
            bos_id: get_u32_opt(gguf, "tokenizer.ggml.bos_token_id")?,
            eos_id: get_u32_opt(gguf, "tokenizer.ggml.eos_token_id")?,
            default_system: template.and_then(default_system_prompt),
        })
    }

    /// Number of ids.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// The end-of-sequence id (`<|im_end|>` for SmolLM2-Instruct): generation stops on it.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The beginning-of-sequence id (not added by this model's template).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The id of a token given by its exact text, such as `<|im_end|>`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes text to ids. Control-token text such as `<|im_start|>` becomes its single id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
    }

    /// The raw bytes of one id (empty for an unknown id).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.token_bytes.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether an id is a control token.
    pub fn is_special(&self, id: u32) -> bool {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.special.get(i))
            .copied()
            .unwrap_or(false)
    }

    /// Decodes ids to text; invalid UTF-8 becomes U+FFFD, control tokens are dropped if `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|id| !(skip_special && self.is_special(**id)))
            .flat_map(|id| self.token_bytes(*id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Renders a conversation with SmolLM2's ChatML template, exactly as the GGUF's
    /// `tokenizer.chat_template` does: a default system message when the first message is not one, each
    /// message as `<|im_start|>{role}\n{content}<|im_end|>\n`, then `<|im_start|>assistant\n` when a
    /// reply is wanted. (The template is fixed Jinja; rendering it needs no template engine.)
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> String {
        let mut out = String::new();
        let starts_with_system = messages.first().is_some_and(|m| m.role == "system");
        if !messages.is_empty()
            && !starts_with_system
            && let Some(system) = &self.default_system
        {
            out.push_str("<|im_start|>system\n");
            out.push_str(system);
            out.push_str("<|im_end|>\n");
        }
        for m in messages {
            out.push_str("<|im_start|>");
            out.push_str(&m.role);
            out.push('\n');
            out.push_str(&m.content);
            out.push_str("<|im_end|>\n");
        }
        if add_generation_prompt {
            out.push_str("<|im_start|>assistant\n");
        }
        out
    }
}

/// Turns a stream of ids into text pieces without ever splitting a multi-byte UTF-8 character: bytes of
/// an incomplete character wait for the next token; bytes that can never become valid UTF-8 are shown
/// as U+FFFD, as a full decode would show them.
#[derive(Debug, Default, Clone)]
pub struct IncrementalDecoder {
    pending: Vec<u8>,
}

impl IncrementalDecoder {
    /// A decoder with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the bytes of one token and returns the text that is now complete (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(
                        self.pending.get(..valid).unwrap_or(&[]),
                    ));
                    match e.error_len() {
                        // Incomplete sequence at the end: keep it for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending
                                .drain(..valid.saturating_add(bad).min(self.pending.len()));
                        }
                    }
                }
            }
        }
    }

    /// Flushes what is left at the end of the stream (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
