//! blake3 content ids: the name of a payload, a model output, a receipt.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A blake3 hash naming some bytes. Hashes are keyed by a context string (blake3's `derive_key`
/// mode) so that an id of one kind of thing can never equal an id of another kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentId(pub [u8; 32]);

impl ContentId {
    /// Id of a query input or output payload.
    pub fn of_payload(bytes: &[u8]) -> Self {
        Self::derive("agora 2026-11 payload v1", bytes)
    }

    /// blake3 in derive-key mode under `context`; contexts are fixed strings, one per kind of id.
    pub fn derive(context: &'static str, bytes: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        hasher.update(bytes);
        Self(*hasher.finalize().as_bytes())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, crate::keys::KeyError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| crate::keys::KeyError::Length)?;
        Ok(Self(bytes))
    }

    /// The first 8 hex digits, for tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.to_hex())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
