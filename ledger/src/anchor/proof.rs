//! Inclusion proofs: a countersigned receipt, its place under an anchor's receipts root, and the
//! signed anchor itself, checkable by anyone without trusting the node that made the proof.
//!
//! [`InclusionProof::verify`] checks everything the proof carries: the receipt's two signatures,
//! its leaf up the Merkle path to the anchor's `receipts_root`, the anchor's signature by its
//! anchorer. What it cannot check alone is that the anchor was really published: it returns the
//! anchor's hash ([`VerifiedInclusion::anchor_hash`]), which must then be found in a journal
//! ([`VerifiedInclusion::verify_against_journal`]) or on chain (the chain client looks the same
//! hash up under (anchorer, subnet, epoch)).
//!
//! # Encodings
//!
//! - compact: the project codec (bincode 2, fixed-width little-endian, decode limit
//!   [`MAX_INCLUSION_PROOF_LEN`]) of [`InclusionProof`];
//! - text: one JSON object, `{"format": "agora-inclusion-proof", "version": 1, "proof": HEX, ...}`
//!   where `proof` is the lower-case hex of the compact bytes. The other fields (receipt id,
//!   subnet, epoch, anchorer, anchor hash) are for people; [`InclusionProof::from_text`] reads only
//!   `proof` (or a bare hex string), so they can never make a bad proof pass.

use super::journal::{Journal, JournalError};
use super::record::{AnchorError, MAX_SIGNED_ANCHOR_LEN, SignedAnchor};
use super::settle::{SettleError, anchored_receipts, receipt_leaf};
use crate::store::ReceiptStore;
use agora_protocols::codec::{self, CodecError};
use agora_protocols::merkle::{self, MAX_PROOF_LEN};
use agora_protocols::receipt::MAX_RECEIPT_LEN;
use agora_protocols::{ContentId, MerkleProof, Receipt, ReceiptError};
use serde::{Deserialize, Serialize};

/// Format version of [`InclusionProof`].
pub const INCLUSION_PROOF_VERSION: u16 = 1;
/// Largest compact proof accepted: version, the three length-prefixed parts and the index.
pub const MAX_INCLUSION_PROOF_LEN: usize =
    2 + (8 + MAX_RECEIPT_LEN) + 8 + MAX_PROOF_LEN + (8 + MAX_SIGNED_ANCHOR_LEN);
/// Largest text proof accepted (hex doubles the compact size; the rest is JSON around it).
pub const MAX_PROOF_TEXT_LEN: usize = 2 * MAX_INCLUSION_PROOF_LEN + 4096;
/// The `format` field of the text form.
pub const TEXT_FORMAT: &str = "agora-inclusion-proof";

/// Why a proof was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The compact bytes do not decode.
    #[error("cannot decode the proof: {0}")]
    Codec(#[from] CodecError),
    /// The text form is not a proof.
    #[error("not a proof in text form: {0}")]
    Text(String),
    /// The proof's format version is not one this node reads.
    #[error("proof version {0} is not supported (this node reads {INCLUSION_PROOF_VERSION})")]
    UnsupportedVersion(u16),
    /// The receipt does not decode or a signature on it does not verify.
    #[error("bad receipt: {0}")]
    Receipt(#[from] ReceiptError),
    /// The anchor does not decode or its signature does not verify.
    #[error("bad anchor: {0}")]
    Anchor(#[from] AnchorError),
    /// The receipt and the anchor are of different subnets.
    #[error("the receipt is of subnet {receipt} but the anchor of subnet {anchor}")]
    SubnetMismatch {
        /// The receipt's subnet.
        receipt: u16,
        /// The anchor's subnet.
        anchor: u16,
    },
    /// The proof's index or leaf count disagree with the anchor.
    #[error("the Merkle proof does not fit the anchor: {0}")]
    Shape(&'static str),
    /// The receipt is not under the anchor's receipts root.
    #[error("the receipt is not under the anchor's receipts root: {0}")]
    Merkle(#[from] merkle::ProofError),
    /// The anchor is not in the journal.
    #[error("anchor {hash} is not in the journal")]
    NotInJournal {
        /// The anchor's hash (hex).
        hash: String,
    },
    /// The journal holds another anchor for the same (anchorer, subnet, epoch).
    #[error("the journal holds anchor {journal} for this anchorer, subnet and epoch, not {hash}")]
    Conflict {
        /// The proof's anchor hash (hex).
        hash: String,
        /// The journal's (hex).
        journal: String,
    },
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Proof that a countersigned receipt is covered by a signed anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Format version, [`INCLUSION_PROOF_VERSION`].
    pub version: u16,
    /// The countersigned receipt's canonical bytes.
    pub receipt: Vec<u8>,
    /// Its leaf index under the anchor's receipts root.
    pub leaf_index: u64,
    /// The Merkle path from its leaf to the receipts root.
    pub merkle: MerkleProof,
    /// The signed anchor envelope's exact bytes.
    pub anchor: Vec<u8>,
}

/// What a valid proof establishes.
#[derive(Debug, Clone)]
pub struct VerifiedInclusion {
    /// The receipt, both signatures checked.
    pub receipt: Receipt,
    /// The anchor, its signature checked.
    pub anchor: SignedAnchor,
    /// The receipt's leaf index.
    pub leaf_index: u64,
}

impl VerifiedInclusion {
    /// The hash to find in a journal or on chain under (anchorer, subnet, epoch).
    pub fn anchor_hash(&self) -> [u8; 32] {
        self.anchor.hash()
    }

    /// Checks that the anchor is the one `journal` holds for its (anchorer, subnet, epoch).
    pub fn verify_against_journal(&self, journal: &Journal) -> Result<(), ProofError> {
        let r = self.anchor.record();
        let hash = self.anchor.hash();
        match journal.get(&r.anchorer, r.subnet, r.epoch)? {
            Some(journaled) if journaled.hash() == hash => Ok(()),
            Some(journaled) => Err(ProofError::Conflict {
                hash: hex::encode(hash),
                journal: hex::encode(journaled.hash()),
            }),
            None => Err(ProofError::NotInJournal {
                hash: hex::encode(hash),
            }),
        }
    }
}

impl InclusionProof {
    /// The compact bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// Decodes compact bytes (at most [`MAX_INCLUSION_PROOF_LEN`]); checks only the format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        Ok(codec::decode(bytes, MAX_INCLUSION_PROOF_LEN)?)
    }

    /// The text form: a JSON object whose `proof` is the hex of the compact bytes.
    pub fn to_text(&self) -> Result<String, ProofError> {
        let mut value = serde_json::json!({
            "format": TEXT_FORMAT,
            "version": self.version,
            "leaf_index": self.leaf_index,
        });
        if let (Some(obj), Ok(receipt)) =
            (value.as_object_mut(), Receipt::from_bytes(&self.receipt))
        {
            obj.insert("receipt_id".into(), receipt.id().to_hex().into());
        }
        if let (Some(obj), Ok(anchor)) = (
            value.as_object_mut(),
            SignedAnchor::from_bytes(&self.anchor),
        ) {
            let r = anchor.record();
            obj.insert("subnet".into(), r.subnet.into());
            obj.insert("epoch".into(), r.epoch.into());
            obj.insert("anchorer".into(), r.anchorer.to_hex().into());
            obj.insert("anchor_hash".into(), hex::encode(anchor.hash()).into());
        }
        if let Some(obj) = value.as_object_mut() {
            obj.insert("proof".into(), hex::encode(self.to_bytes()?).into());
        }
        Ok(value.to_string())
    }

    /// Reads the text form (or a bare hex string of the compact bytes). Only `proof` is read.
    pub fn from_text(text: &str) -> Result<Self, ProofError> {
        if text.len() > MAX_PROOF_TEXT_LEN {
            return Err(ProofError::Text(format!(
                "{} bytes is over the {MAX_PROOF_TEXT_LEN}-byte limit",
                text.len()
            )));
        }
        let text = text.trim();
        let hex_text = if text.starts_with('{') {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| ProofError::Text(e.to_string()))?;
            if value.get("format").and_then(|f| f.as_str()) != Some(TEXT_FORMAT) {
                return Err(ProofError::Text(format!(
                    "the \"format\" field is not {TEXT_FORMAT:?}"
                )));
            }
            value
                .get("proof")
                .and_then(|p| p.as_str())
                .ok_or_else(|| ProofError::Text("no \"proof\" string".into()))?
                .to_string()
        } else {
            text.to_string()
        };
        let bytes = hex::decode(hex_text.trim())
            .map_err(|e| ProofError::Text(format!("proof is not hex: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// Checks the receipt's signatures, its leaf up to the anchor's receipts root and the anchor's
    /// signature. The anchor must still be found published: see [`VerifiedInclusion`].
    pub fn verify(&self) -> Result<VerifiedInclusion, ProofError> {
        if self.version != INCLUSION_PROOF_VERSION {
            return Err(ProofError::UnsupportedVersion(self.version));
        }
        let receipt = Receipt::from_bytes(&self.receipt)?;
        let anchor = SignedAnchor::from_bytes(&self.anchor)?;
        let record = anchor.record();
        if receipt.body().subnet != record.subnet {
            return Err(ProofError::SubnetMismatch {
                receipt: receipt.body().subnet,
                anchor: record.subnet,
            });
        }
        if self.merkle.leaf_index != self.leaf_index {
            return Err(ProofError::Shape(
                "leaf index differs from the Merkle proof's",
            ));
        }
        if self.merkle.leaf_count != record.receipt_count {
            return Err(ProofError::Shape(
                "leaf count differs from the anchor's receipt count",
            ));
        }
        // The receipt decoded without trailing bytes under a canonical codec: these are its
        // canonical bytes, the ones its leaf was made from.
        self.merkle
            .verify(&record.receipts_root, &receipt_leaf(&self.receipt))?;
        Ok(VerifiedInclusion {
            receipt,
            anchor,
            leaf_index: self.leaf_index,
        })
    }
}

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The receipt is not in the store.
    #[error("no receipt {0} in the store")]
    Unknown(ContentId),
    /// No anchor covers the receipt yet.
    #[error(
        "receipt {0} is not anchored yet (it is folded at the next `agora anchor settle` of its subnet)"
    )]
    NotAnchored(ContentId),
    /// The epoch is recorded in the store but the journal has no matching anchor.
    #[error(
        "receipt {id} is folded into subnet {subnet} epoch {epoch}, but the journal has no anchor for it \
         (run `agora anchor settle` for that epoch again)"
    )]
    NotJournaled {
        /// The receipt.
        id: ContentId,
        /// The subnet.
        subnet: u16,
        /// The epoch.
        epoch: u64,
    },
    /// Reading the store or rebuilding the tree failed.
    #[error(transparent)]
    Settle(#[from] SettleError),
    /// Reading the journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Encoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// The inclusion proof of receipt `id`, from the store's record of which anchor covers it and the
/// journal's copy of that anchor (the one whose receipts root matches what the store recorded).
pub fn prove(
    store: &ReceiptStore,
    journal: &Journal,
    id: &ContentId,
) -> Result<InclusionProof, ProveError> {
    let Some(slot) = store.anchor_slot(id).map_err(SettleError::from)? else {
        if store.get(id).map_err(SettleError::from)?.is_none() {
            return Err(ProveError::Unknown(*id));
        }
        return Err(ProveError::NotAnchored(*id));
    };
    let not_journaled = ProveError::NotJournaled {
        id: *id,
        subnet: slot.subnet,
        epoch: slot.epoch,
    };
    let Some((receipts, tree, recorded)) = anchored_receipts(store, slot.subnet, slot.epoch)?
    else {
        return Err(not_journaled);
    };
    let mut anchor = None;
    for (i, entry) in journal.entries().iter().enumerate() {
        if entry.subnet == slot.subnet && entry.epoch == slot.epoch {
            let candidate = journal.read(i)?;
            if candidate.record().receipts_root == recorded.receipts_root {
                anchor = Some(candidate);
                break;
            }
        }
    }
    let Some(anchor) = anchor else {
        return Err(not_journaled);
    };
    let index = usize::try_from(slot.index).unwrap_or(usize::MAX);
    let (Some(receipt), Some(merkle)) = (receipts.get(index), tree.prove(index)) else {
        return Err(SettleError::Inconsistent {
            subnet: slot.subnet,
            epoch: slot.epoch,
            reason: format!("no leaf {index} for receipt {id}"),
        }
        .into());
    };
    Ok(InclusionProof {
        version: INCLUSION_PROOF_VERSION,
        receipt: receipt.to_bytes()?,
        leaf_index: slot.index,
        merkle,
        anchor: anchor.to_bytes().to_vec(),
    })
}
