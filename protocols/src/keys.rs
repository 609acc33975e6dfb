//! Ed25519 keys as they appear on the wire and in files.
//!
//! [`PublicKey`] is the 32-byte compressed point, checked to be a valid curve point when decoded, so
//! any `PublicKey` in hand can verify. [`SecretKey`] wraps the signing key and wipes it on drop.

use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An ed25519 public key: a hotkey, a coldkey, a provider or a client.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_bytes().cmp(other.0.as_bytes())
    }
}

/// Why a key could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The bytes are not 32 long, or not valid hex of 32 bytes.
    #[error("a public key is 32 bytes (64 hex digits)")]
    Length,
    /// The 32 bytes are not a point on the curve.
    #[error("not a valid ed25519 public key")]
    InvalidPoint,
}

impl PublicKey {
    /// Parses 32 bytes, rejecting those that are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError::InvalidPoint)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| KeyError::Length)?;
        Self::from_bytes(&bytes)
    }

    /// The 32 bytes of the compressed point.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Lower-case hex of the 32 bytes, the form used in files, logs and the CLI.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// The underlying ed25519-dalek key, for callers that need its API (e.g. libp2p identity).
    pub fn as_dalek(&self) -> &ed25519_dalek::VerifyingKey {
        &self.0
    }

    /// Strict verification of `signature` over `message`: rejects small-order keys and
    /// non-canonical signatures, so no one can make a second valid signature from a first.
    pub(crate) fn verify_raw(&self, message: &[u8], signature: &Signature) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify_strict(message, &sig).is_ok()
    }
}

impl From<ed25519_dalek::VerifyingKey> for PublicKey {
    fn from(key: ed25519_dalek::VerifyingKey) -> Self {
        Self(key)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = <[u8; 32]>::deserialize(deserializer)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Lower-case hex of the 64 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 128 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| KeyError::Length)?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // serde has no impl for [u8; 64]: encode as two fixed halves, still 64 raw bytes in bincode.
        let (a, b) = self.0.split_at(32);
        let mut first = [0u8; 32];
        let mut second = [0u8; 32];
        first.copy_from_slice(a);
        second.copy_from_slice(b);
        (first, second).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (first, second) = <([u8; 32], [u8; 32])>::deserialize(deserializer)?;
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&first);
        bytes[32..].copy_from_slice(&second);
        Ok(Self(bytes))
    }
}

/// An ed25519 signing key. The secret is wiped from memory when this is dropped.
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// Builds a key from its 32-byte seed (the caller should wipe its copy).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        fill_random(seed.as_mut_slice());
        Self::from_seed(&seed)
    }

    /// The 32-byte seed. Handle with care: wipe it after use.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs raw bytes. Crate-private: callers sign through [`crate::signed::Domain`], which adds the
    /// domain separation that keeps signatures from being replayed across message kinds.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public().to_hex())
    }
}

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        let mut seed = self.seed();
        let key = Self::from_seed(&seed);
        zeroize_bytes(&mut seed);
        key
    }
}

fn zeroize_bytes(bytes: &mut [u8]) {
    zeroize::Zeroize::zeroize(bytes);
}

/// Fills `buf` from the operating system's random source.
///
/// An OS without a working random source cannot hold keys safely; there is no fallback to offer, so
/// this is the one place that aborts instead of returning an error.
pub fn fill_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random source failed");
}
