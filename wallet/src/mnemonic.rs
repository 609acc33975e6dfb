//! BIP-39 backup phrases and the one documented way keys are derived from them.
//!
//! Derivation (fixed forever; a change would make old backups restore the wrong key):
//!
//! 1. `bip39_seed = PBKDF2-HMAC-SHA512(phrase, "mnemonic", 2048 rounds)`, 64 bytes: the standard
//!    BIP-39 seed with an empty passphrase.
//! 2. `ed25519_seed = blake3::derive_key(CONTEXT, bip39_seed)`, 32 bytes, where `CONTEXT` is
//!    [`COLDKEY_CONTEXT`] for a coldkey and [`HOTKEY_CONTEXT`] for a hotkey.
//!
//! Each key has its own phrase (as in Bittensor). The role is in the context so that a phrase reused
//! by mistake for both keys still gives two different keys: leaking an unencrypted hotkey then never
//! leaks the coldkey.

use crate::error::WalletError;
use crate::keyfile::KeyKind;
use agora_protocols::{SecretKey, keys::fill_random};
use std::fmt;
use zeroize::Zeroizing;

/// blake3 context for coldkey seeds.
pub const COLDKEY_CONTEXT: &str = "agora-wallet 2026-11-24 coldkey ed25519 seed from BIP-39 seed";
/// blake3 context for hotkey seeds.
pub const HOTKEY_CONTEXT: &str = "agora-wallet 2026-11-24 hotkey ed25519 seed from BIP-39 seed";

/// How long a new phrase is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordCount {
    /// 12 words, 128 bits of entropy.
    #[default]
    Twelve,
    /// 24 words, 256 bits of entropy.
    TwentyFour,
}

impl WordCount {
    /// 12 or 24 gives a word count; anything else none.
    pub fn from_words(words: usize) -> Option<Self> {
        match words {
            12 => Some(Self::Twelve),
            24 => Some(Self::TwentyFour),
            _ => None,
        }
    }

    fn entropy_bytes(self) -> usize {
        match self {
            Self::Twelve => 16,
            Self::TwentyFour => 32,
        }
    }
}

/// A BIP-39 phrase (English word list). Wiped from memory when dropped.
#[derive(Clone)]
pub struct Mnemonic(bip39::Mnemonic);

impl Mnemonic {
    /// A fresh phrase from the operating system's random source.
    pub fn generate(words: WordCount) -> Result<Self, WalletError> {
        let mut entropy = Zeroizing::new([0u8; 32]);
        let entropy = &mut entropy[..words.entropy_bytes()];
        fill_random(entropy);
        bip39::Mnemonic::from_entropy(entropy)
            .map(Self)
            .map_err(|e| WalletError::InvalidMnemonic(e.to_string()))
    }

    /// Parses a phrase typed by a person: case and runs of whitespace do not matter; the word list and
    /// checksum are checked. Any standard length (12, 15, 18, 21, 24) restores.
    pub fn parse(phrase: &str) -> Result<Self, WalletError> {
        // Built in one wiping buffer, sized up front so that no copy is left behind by a reallocation.
        let mut normalized = Zeroizing::new(String::with_capacity(phrase.len() * 2));
        for word in phrase.split_whitespace() {
            if !normalized.is_empty() {
                normalized.push(' ');
            }
            normalized.extend(word.chars().flat_map(char::to_lowercase));
        }
        bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
            .map(Self)
            .map_err(|e| WalletError::InvalidMnemonic(describe(&e)))
    }

    /// The words, space separated.
    pub fn phrase(&self) -> Zeroizing<String> {
        // The longest English word has 8 letters; sized so the buffer never reallocates.
        let mut phrase = Zeroizing::new(String::with_capacity(self.word_count() * 9));
        for (i, word) in self.0.words().enumerate() {
            if i > 0 {
                phrase.push(' ');
            }
            phrase.push_str(word);
        }
        phrase
    }

    /// How many words.
    pub fn word_count(&self) -> usize {
        self.0.word_count()
    }

    /// The ed25519 key this phrase gives for `kind` (see the module docs for the derivation).
    pub fn derive_key(&self, kind: KeyKind) -> SecretKey {
        let bip39_seed = Zeroizing::new(self.0.to_seed_normalized(""));
        let context = match kind {
            KeyKind::Coldkey => COLDKEY_CONTEXT,
            KeyKind::Hotkey => HOTKEY_CONTEXT,
        };
        let seed = Zeroizing::new(blake3::derive_key(context, bip39_seed.as_slice()));
        SecretKey::from_seed(&seed)
    }
}

fn describe(error: &bip39::Error) -> String {
    match error {
        // The word itself is not echoed: it is part of a secret and error messages end up in logs.
        bip39::Error::UnknownWord(index) => {
            format!("word {} is not in the BIP-39 English word list", index + 1)
        }
        bip39::Error::BadWordCount(count) => {
            format!("{count} words; a phrase has 12, 15, 18, 21 or 24")
        }
        bip39::Error::InvalidChecksum => {
            "checksum does not match: a word is wrong or the words are out of order".into()
        }
        other => other.to_string(),
    }
}

impl fmt::Debug for Mnemonic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mnemonic({} words, <redacted>)", self.word_count())
    }
}
