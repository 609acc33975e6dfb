//! Anchors: each epoch, a node folds one subnet's receipts, weight reveals and consensus result
//! into Merkle roots and signs them as one [`AnchorRecord`]; the record goes to a chain (by the
//! chain client, which stores [`SignedAnchor::hash`] per (anchorer, subnet, epoch)) and to the
//! node's local hash-chained [`Journal`]. Any anchored receipt can then be proven
//! ([`InclusionProof`]) to anyone holding the journal or reading the chain.
//!
//! - [`record`]: the record, its signed envelope and its hash;
//! - [`mod@settle`]: the fold of an epoch into a record;
//! - [`journal`]: the append-only journal file;
//! - [`proof`]: inclusion proofs and their verification.

pub mod journal;
pub mod proof;
pub mod record;
pub mod settle;

pub use journal::{Journal, JournalEntry, JournalError};
pub use proof::{InclusionProof, ProofError, ProveError, VerifiedInclusion, prove};
pub use record::{AnchorError, AnchorRecord, MAX_SIGNED_ANCHOR_LEN, SignedAnchor, record_hash};
pub use settle::{
    ConsensusLeaf, EpochSummary, EpochWindow, SettleError, Settled, Settlement, WeightsLeaf,
    build_anchor, epoch_window, fold_receipts, receipt_leaf, replay_to, settle,
};
