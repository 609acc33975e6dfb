//! The anchor record: one node's signed statement of what one subnet's epoch settled, and the
//! 32-byte hash of it that a chain stores.
//!
//! The record commits to three Merkle roots (the epoch's countersigned receipts, the weight sets
//! revealed in it, the consensus result) plus counts and totals, and to the hash of the same
//! anchorer's previous record, so an anchorer's records form a chain that cannot be rewritten
//! without every later hash changing. It travels and is stored as a [`Signed`] envelope made by
//! the anchorer's hotkey; what is hashed, stored and proven against is always the exact envelope
//! bytes, never a re-encoding.

use agora_protocols::codec::CodecError;
use agora_protocols::{Domain, PublicKey, SecretKey, SignError, Signed, WireMessage};
use serde::{Deserialize, Serialize};

/// Format version of [`AnchorRecord`].
pub const ANCHOR_VERSION: u8 = 1;
/// The domain anchor signatures are made under.
pub const ANCHOR_DOMAIN: Domain = Domain::new("ledger/anchor", 1);
/// Most bytes an encoded [`AnchorRecord`] may take (it encodes to exactly
/// [`ANCHOR_RECORD_LEN`]; the slack is for nothing but a clearer error).
pub const MAX_ANCHOR_RECORD_LEN: usize = 256;
/// Bytes of an encoded [`AnchorRecord`]: every field has a fixed width.
pub const ANCHOR_RECORD_LEN: usize = 1 + 2 + 8 + 32 + 32 + 8 + 8 + 32 + 32 + 8 + 32;
/// Bytes of the signed envelope around a payload: version u16, signer, length prefix, signature.
const ENVELOPE_OVERHEAD: usize = 2 + 32 + 8 + 64;
/// Most bytes a signed anchor envelope may take: the decode limit for anyone reading one from a
/// file, the network or a chain event. A valid one is exactly [`SIGNED_ANCHOR_LEN`] bytes.
pub const MAX_SIGNED_ANCHOR_LEN: usize = MAX_ANCHOR_RECORD_LEN + ENVELOPE_OVERHEAD;
/// Bytes of a valid signed anchor envelope.
pub const SIGNED_ANCHOR_LEN: usize = ANCHOR_RECORD_LEN + ENVELOPE_OVERHEAD;
/// The previous hash of an anchorer's first record.
pub const FIRST_PREV_HASH: [u8; 32] = [0; 32];
/// The blake3 derive-key context of [`record_hash`].
pub const RECORD_HASH_CONTEXT: &str = "agora 2026-11 anchor record v1";

/// What one anchorer states about one subnet's epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorRecord {
    /// Format version, [`ANCHOR_VERSION`].
    pub version: u8,
    /// The subnet (netuid).
    pub subnet: u16,
    /// The subnet's epoch index (`Subnet::epoch_index` of the epoch's blocks).
    pub epoch: u64,
    /// The node's hotkey: the signer of the envelope.
    pub anchorer: PublicKey,
    /// Merkle root over the countersigned receipts this anchor covers (leaves:
    /// [`super::receipt_leaf`], ordered by receipt id).
    pub receipts_root: [u8; 32],
    /// Leaves under `receipts_root`.
    pub receipt_count: u64,
    /// Sum of the covered receipts' prices, units of 1e-9.
    pub total_paid: u64,
    /// Merkle root over the weight sets revealed (or set) in the epoch, by uid.
    pub weights_root: [u8; 32],
    /// Merkle root over the epoch's consensus result, one leaf per uid.
    pub consensus_root: [u8; 32],
    /// Units the epoch's consensus run paid to the subnet's participants (the sum of the consensus
    /// leaves' emission).
    pub emission: u64,
    /// [`record_hash`] of this anchorer's previous record ([`FIRST_PREV_HASH`] for its first).
    pub prev_hash: [u8; 32],
}

impl WireMessage for AnchorRecord {
    const DOMAIN: Domain = ANCHOR_DOMAIN;
    const MAX_LEN: usize = MAX_ANCHOR_RECORD_LEN;
}

/// Why an anchor record was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnchorError {
    /// The envelope is larger than any valid one.
    #[error("a signed anchor of {len} bytes is over the {MAX_SIGNED_ANCHOR_LEN}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The envelope does not decode or its signature does not verify.
    #[error("bad signed anchor: {0}")]
    Signed(#[from] SignError),
    /// The record could not be encoded.
    #[error("cannot encode an anchor: {0}")]
    Codec(#[from] CodecError),
    /// The record's format version is not one this node reads.
    #[error("anchor record version {0} is not supported (this node reads {ANCHOR_VERSION})")]
    UnsupportedVersion(u8),
    /// The envelope is signed by another key than the record's anchorer.
    #[error("the anchor names {anchorer} as its anchorer but is signed by {signer}")]
    WrongSigner {
        /// The record's anchorer (boxed: a decompressed key is large).
        anchorer: Box<PublicKey>,
        /// The envelope's signer.
        signer: Box<PublicKey>,
    },
}

/// The hash a chain stores for an anchor: blake3 in derive-key mode under
/// [`RECORD_HASH_CONTEXT`] over the signed envelope's exact bytes. It covers the record, the
/// signer and the signature, so two different envelopes never share a hash.
pub fn record_hash(signed_bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(RECORD_HASH_CONTEXT);
    hasher.update(signed_bytes);
    *hasher.finalize().as_bytes()
}

/// A verified, signed anchor record with the exact envelope bytes it came as.
#[derive(Debug, Clone)]
pub struct SignedAnchor {
    signed: Signed<AnchorRecord>,
    bytes: Vec<u8>,
    hash: [u8; 32],
}

impl PartialEq for SignedAnchor {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for SignedAnchor {}

impl SignedAnchor {
    /// Signs `record` with the anchorer's hotkey. Fails if `key` is not `record.anchorer`.
    pub fn sign(record: AnchorRecord, key: &SecretKey) -> Result<Self, AnchorError> {
        if key.public() != record.anchorer {
            return Err(AnchorError::WrongSigner {
                anchorer: Box::new(record.anchorer),
                signer: Box::new(key.public()),
            });
        }
        if record.version != ANCHOR_VERSION {
            return Err(AnchorError::UnsupportedVersion(record.version));
        }
        let signed = Signed::sign(record, key)?;
        let bytes = signed.to_bytes()?;
        let hash = record_hash(&bytes);
        Ok(Self {
            signed,
            bytes,
            hash,
        })
    }

    /// Decodes an envelope (at most [`MAX_SIGNED_ANCHOR_LEN`] bytes) and checks everything that
    /// needs nothing else: the signature, that the signer is the record's anchorer, the version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AnchorError> {
        if bytes.len() > MAX_SIGNED_ANCHOR_LEN {
            return Err(AnchorError::TooLarge { len: bytes.len() });
        }
        let signed = Signed::<AnchorRecord>::from_bytes(bytes)?;
        let record = signed.value();
        if record.version != ANCHOR_VERSION {
            return Err(AnchorError::UnsupportedVersion(record.version));
        }
        if signed.signer() != record.anchorer {
            return Err(AnchorError::WrongSigner {
                anchorer: Box::new(record.anchorer),
                signer: Box::new(signed.signer()),
            });
        }
        Ok(Self {
            hash: record_hash(bytes),
            bytes: bytes.to_vec(),
            signed,
        })
    }

    /// The record.
    pub fn record(&self) -> &AnchorRecord {
        self.signed.value()
    }

    /// The exact envelope bytes: what a journal keeps and a chain event carries.
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// [`record_hash`] of the envelope: the value stored on chain per (anchorer, subnet, epoch).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The anchorer's signature.
    pub fn signature(&self) -> agora_protocols::Signature {
        self.signed.signature()
    }
}
