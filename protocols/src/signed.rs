//! Signed envelopes with domain separation.
//!
//! Every signature in Agora is made over `"agora/" || domain || 0x00 || version || signer || bytes`.
//! The domain names the kind of message, so a signature made for a capability advert can never pass
//! as a receipt; the signer's key is bound in, so a signature cannot be re-attributed to another key;
//! and `bytes` are the exact bytes that travel, so nothing is re-encoded before it is checked.

use crate::codec::{self, CodecError};
use crate::keys::{PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::marker::PhantomData;

/// A kind of signed message: a fixed name and the version of its payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain {
    name: &'static str,
    version: u16,
}

impl Domain {
    /// A domain. Names are fixed strings such as `"receipt/provider"`; they never come from input.
    pub const fn new(name: &'static str, version: u16) -> Self {
        Self { name, version }
    }

    /// The domain's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The payload format version signed under this domain.
    pub const fn version(&self) -> u16 {
        self.version
    }

    fn message(&self, signer: &PublicKey, bytes: &[u8]) -> Vec<u8> {
        let mut message = Vec::with_capacity(6 + self.name.len() + 1 + 2 + 32 + bytes.len());
        message.extend_from_slice(b"agora/");
        message.extend_from_slice(self.name.as_bytes());
        message.push(0);
        message.extend_from_slice(&self.version.to_le_bytes());
        message.extend_from_slice(&signer.to_bytes());
        message.extend_from_slice(bytes);
        message
    }

    /// Signs `bytes` under this domain.
    pub fn sign(&self, key: &SecretKey, bytes: &[u8]) -> Signature {
        key.sign_raw(&self.message(&key.public(), bytes))
    }

    /// Checks `signature` by `signer` over `bytes` under this domain.
    pub fn verify(&self, signer: &PublicKey, bytes: &[u8], signature: &Signature) -> bool {
        signer.verify_raw(&self.message(signer, bytes), signature)
    }
}

/// A payload type that travels inside a [`Signed`] envelope.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// The domain its signatures are made under; its version is the payload format version.
    const DOMAIN: Domain;
    /// The most bytes an encoded payload of this type may take.
    const MAX_LEN: usize;
}

/// Why a signed message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    /// The envelope or its payload could not be decoded.
    #[error("cannot decode signed message: {0}")]
    Codec(#[from] CodecError),
    /// The payload has a format version this node does not speak.
    #[error("{domain} version {got} is not supported (this node speaks version {supported})")]
    UnsupportedVersion {
        /// The message kind.
        domain: &'static str,
        /// The version received.
        got: u16,
        /// The version understood here.
        supported: u16,
    },
    /// The signature does not match the signer and bytes.
    #[error("bad signature on {domain} from {signer}")]
    BadSignature {
        /// The message kind.
        domain: &'static str,
        /// The key the message claims to be from (boxed: a decompressed key is large).
        signer: Box<PublicKey>,
    },
}

/// The envelope as it travels: a version, the signer, the payload's exact bytes, the signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope {
    version: u16,
    signer: PublicKey,
    payload: Vec<u8>,
    signature: Signature,
}

/// Bytes of envelope around the payload: version, signer, length prefix, signature.
const ENVELOPE_OVERHEAD: usize = 2 + 32 + 8 + 64;

/// A verified message of type `T`: it can only be built by signing or by checking a signature.
#[derive(Debug, Clone)]
pub struct Signed<T> {
    envelope: Envelope,
    value: T,
    _kind: PhantomData<T>,
}

impl<T: WireMessage> Signed<T> {
    /// Encodes `value` and signs it with `key`.
    pub fn sign(value: T, key: &SecretKey) -> Result<Self, CodecError> {
        let payload = codec::encode(&value)?;
        if payload.len() > T::MAX_LEN {
            return Err(CodecError::TooLarge {
                len: payload.len(),
                limit: T::MAX_LEN,
            });
        }
        let signature = T::DOMAIN.sign(key, &payload);
        Ok(Self {
            envelope: Envelope {
                version: T::DOMAIN.version(),
                signer: key.public(),
                payload,
                signature,
            },
            value,
            _kind: PhantomData,
        })
    }

    /// Decodes an envelope, checks its version and signature, then decodes the payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignError> {
        let envelope: Envelope = codec::decode(bytes, T::MAX_LEN + ENVELOPE_OVERHEAD)?;
        if envelope.version != T::DOMAIN.version() {
            return Err(SignError::UnsupportedVersion {
                domain: T::DOMAIN.name(),
                got: envelope.version,
                supported: T::DOMAIN.version(),
            });
        }
        if !T::DOMAIN.verify(&envelope.signer, &envelope.payload, &envelope.signature) {
            return Err(SignError::BadSignature {
                domain: T::DOMAIN.name(),
                signer: Box::new(envelope.signer),
            });
        }
        let value = codec::decode(&envelope.payload, T::MAX_LEN)?;
        Ok(Self {
            envelope,
            value,
            _kind: PhantomData,
        })
    }

    /// The envelope's canonical bytes, ready to send or store.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(&self.envelope)
    }

    /// The verified payload.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The key that signed it.
    pub fn signer(&self) -> PublicKey {
        self.envelope.signer
    }

    /// The exact payload bytes that were signed.
    pub fn payload_bytes(&self) -> &[u8] {
        &self.envelope.payload
    }

    /// The signature.
    pub fn signature(&self) -> Signature {
        self.envelope.signature
    }

    /// Gives up the envelope, keeping the verified payload.
    pub fn into_value(self) -> T {
        self.value
    }
}
