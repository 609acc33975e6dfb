//! Epoch settlement: folding one subnet's epoch into an [`AnchorRecord`].
//!
//! Three things are folded, each into a Merkle root ([`agora_protocols::merkle`]):
//!
//! - **receipts**: every countersigned receipt of the subnet in the node's receipt store that no
//!   earlier anchor covered, ordered by receipt id; a leaf is [`receipt_leaf`] of the receipt's
//!   canonical bytes (body and both signatures), so the anchor commits to the countersigned receipt,
//!   not only to its body. Provider-only halves wait for a later epoch. Which receipts an epoch
//!   covered is written to the store ([`ReceiptStore::record_anchor`]) before the record is signed,
//!   so building the same epoch again folds the same leaves, and a receipt is never in two anchors.
//! - **weights**: the weight rows set or revealed in the epoch (see [`EpochWindow`]), by uid; a
//!   leaf is [`WeightsLeaf::hash`].
//! - **consensus**: the result of the epoch's Yuma run, one [`ConsensusLeaf`] per uid.
//!
//! The ledger side is read from the state *just before* the epoch's last block: applying that
//! block's start-of-block steps to a copy runs the epoch exactly as every node runs it, and its
//! result is read before any transaction of that block can change a neuron. So the caller passes
//! the state at height `end_block - 1` ([`replay_to`] makes it from a log).

use super::journal::{Journal, JournalError};
use super::record::{ANCHOR_VERSION, AnchorError, AnchorRecord, SignedAnchor};
use crate::log::{GENESIS_PREV_HASH, ReplayError, TxLog, catch_up_until};
use crate::state::{BlockError, LedgerState};
use crate::store::{AnchoredEpoch, ReceiptStore, StoreError, StoredReceipt};
use agora_protocols::codec::{self, CodecError};
use agora_protocols::{ContentId, MerkleTree, PublicKey, Receipt, SecretKey};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Derive-key context of a receipt leaf.
pub const RECEIPT_LEAF_CONTEXT: &str = "agora 2026-11 anchor receipt leaf v1";
/// Derive-key context of a weights leaf.
pub const WEIGHTS_LEAF_CONTEXT: &str = "agora 2026-11 anchor weights leaf v1";
/// Derive-key context of a consensus leaf.
pub const CONSENSUS_LEAF_CONTEXT: &str = "agora 2026-11 anchor consensus leaf v1";

/// Why an epoch could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The receipt store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal failed or refused.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The record could not be signed.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    /// A leaf could not be encoded.
    #[error("cannot encode a leaf: {0}")]
    Codec(#[from] CodecError),
    /// The ledger has no such subnet.
    #[error("the ledger has no subnet {0}")]
    UnknownSubnet(u16),
    /// The epoch ends before the ledger's first block.
    #[error("subnet {subnet} has no epoch {epoch}: it would end before block 1")]
    NoSuchEpoch {
        /// The subnet.
        subnet: u16,
        /// The epoch.
        epoch: u64,
    },
    /// The state given is not the one just before the epoch's last block.
    #[error(
        "settling subnet {subnet} epoch {epoch} needs the state at height {expected} \
         (just before the epoch's last block), not {got}"
    )]
    WrongHeight {
        /// The subnet.
        subnet: u16,
        /// The epoch.
        epoch: u64,
        /// `end_block - 1`.
        expected: u64,
        /// The state's height.
        got: u64,
    },
    /// The ledger has not reached the epoch's end yet.
    #[error("subnet {subnet} epoch {epoch} ends at block {end_block}; the ledger is at {height}")]
    NotEnded {
        /// The subnet.
        subnet: u16,
        /// The epoch.
        epoch: u64,
        /// Its last block.
        end_block: u64,
        /// The ledger's height.
        height: u64,
    },
    /// The epoch's block could not be applied.
    #[error("running the epoch: {0}")]
    Block(#[from] BlockError),
    /// Reading the log failed.
    #[error("reading the ledger log: {0}")]
    Log(String),
    /// The receipts' prices add up past `u64::MAX`.
    #[error("the epoch's receipts add up past the largest total")]
    Overflow,
    /// The store's record of an anchored epoch does not match its receipts any more.
    #[error("subnet {subnet} epoch {epoch}: {reason}")]
    Inconsistent {
        /// The subnet.
        subnet: u16,
        /// The epoch.
        epoch: u64,
        /// What differs.
        reason: String,
    },
}

impl SettleError {
    /// A replay's failure as a settlement's: a refused block stays itself, the rest is the log's.
    fn from_replay<E: std::error::Error + 'static>(e: ReplayError<E>) -> Self {
        match e {
            ReplayError::Block(e) => Self::Block(e),
            ReplayError::Codec(e) => Self::Codec(e),
            other => Self::Log(other.to_string()),
        }
    }
}

/// The Merkle leaf of a countersigned receipt: blake3 derive-key under [`RECEIPT_LEAF_CONTEXT`]
/// over the receipt's canonical bytes (`Receipt::to_bytes`: body, both signatures).
pub fn receipt_leaf(receipt_bytes: &[u8]) -> [u8; 32] {
    ContentId::derive(RECEIPT_LEAF_CONTEXT, receipt_bytes).0
}

/// One weight set revealed (or set directly) in the epoch, as the consensus run read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsLeaf {
    /// The setter's uid.
    pub uid: u16,
    /// The setter's hotkey.
    pub hotkey: PublicKey,
    /// Block the weights were revealed or set.
    pub stored_at: u64,
    /// The row as stored: (uid, weight) sorted by uid, max-upscaled to 65535.
    pub weights: Vec<(u16, u16)>,
}

impl WeightsLeaf {
    /// The leaf: blake3 derive-key under [`WEIGHTS_LEAF_CONTEXT`] over the canonical encoding.
    pub fn hash(&self) -> Result<[u8; 32], CodecError> {
        Ok(ContentId::derive(WEIGHTS_LEAF_CONTEXT, &codec::encode(self)?).0)
    }
}

/// One uid's consensus result for the epoch, in the units the ledger stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusLeaf {
    /// The uid.
    pub uid: u16,
    /// Its hotkey.
    pub hotkey: PublicKey,
    /// Total stake on the hotkey when the epoch ran.
    pub stake: u64,
    /// Consensus, `u16` proportion.
    pub consensus_u16: u16,
    /// Incentive, `u16` proportion.
    pub incentive_u16: u16,
    /// Dividends, `u16` proportion.
    pub dividends_u16: u16,
    /// Validator trust, `u16` proportion.
    pub validator_trust_u16: u16,
    /// Stake weight, `u16` proportion.
    pub stake_weight_u16: u16,
    /// Units emitted to it by this epoch.
    pub emission: u64,
    /// Validator permit computed by this epoch.
    pub validator_permit: bool,
    /// Whether it was active.
    pub active: bool,
}

impl ConsensusLeaf {
    /// The leaf: blake3 derive-key under [`CONSENSUS_LEAF_CONTEXT`] over the canonical encoding.
    pub fn hash(&self) -> Result<[u8; 32], CodecError> {
        Ok(ContentId::derive(CONSENSUS_LEAF_CONTEXT, &codec::encode(self)?).0)
    }
}

/// The blocks of one subnet's epoch.
///
/// Epoch `E` of subnet `S` with tempo `T` ends at the block where its consensus runs:
/// `end_block = E·(T+1) + T − (S+1)` (the block `b` with `Subnet::epoch_index(b) = E` and
/// `Subnet::is_epoch_block(b)`). Its weights window is the `T+1` blocks from the previous run's
/// block to the block before this run, `[end_block − T − 1, end_block − 1]`: exactly the weight
/// sets this run reads for the first time (a reveal in a run's own block, after it ran, counts for
/// the next). Consecutive windows neither overlap nor leave gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochWindow {
    /// The subnet.
    pub subnet: u16,
    /// The epoch.
    pub epoch: u64,
    /// First block of the weights window.
    pub weights_from: u64,
    /// The block the epoch's consensus runs at.
    pub end_block: u64,
}

/// The window of `subnet`'s `epoch`, from the subnet's tempo in `state`.
pub fn epoch_window(
    state: &LedgerState,
    subnet: u16,
    epoch: u64,
) -> Result<EpochWindow, SettleError> {
    let s = state
        .subnet(subnet)
        .ok_or(SettleError::UnknownSubnet(subnet))?;
    let tempo = u64::from(s.hyperparameters.tempo);
    let no_such = SettleError::NoSuchEpoch { subnet, epoch };
    let end_block = epoch
        .checked_mul(tempo + 1)
        .and_then(|b| b.checked_add(tempo))
        .and_then(|b| b.checked_sub(u64::from(subnet) + 1))
        .filter(|b| *b >= 1)
        .ok_or(no_such)?;
    Ok(EpochWindow {
        subnet,
        epoch,
        weights_from: end_block.saturating_sub(tempo + 1),
        end_block,
    })
}

/// The ledger side of an epoch: its weights and consensus leaves and their roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochSummary {
    /// The epoch's blocks.
    pub window: EpochWindow,
    /// Weight sets of the window, by uid.
    pub weights: Vec<WeightsLeaf>,
    /// Consensus result, by uid.
    pub consensus: Vec<ConsensusLeaf>,
    /// Merkle root over the weights leaves.
    pub weights_root: [u8; 32],
    /// Merkle root over the consensus leaves.
    pub consensus_root: [u8; 32],
    /// Sum of the consensus leaves' emission.
    pub emission: u64,
}

impl EpochSummary {
    /// Runs `subnet`'s `epoch` on a copy of `state_before_end` (the state at height
    /// `end_block - 1`) and folds its weights and result.
    pub fn compute(
        state_before_end: &LedgerState,
        subnet: u16,
        epoch: u64,
    ) -> Result<Self, SettleError> {
        let window = epoch_window(state_before_end, subnet, epoch)?;
        let expected = window.end_block - 1;
        if state_before_end.height() != expected {
            return Err(SettleError::WrongHeight {
                subnet,
                epoch,
                expected,
                got: state_before_end.height(),
            });
        }
        let before = state_before_end
            .subnet(subnet)
            .ok_or(SettleError::UnknownSubnet(subnet))?;
        let mut weights = Vec::new();
        for n in &before.neurons {
            let stored_at = n.weights_stored_at.unwrap_or(0);
            if !n.weights.is_empty() && stored_at >= window.weights_from {
                weights.push(WeightsLeaf {
                    uid: n.uid,
                    hotkey: n.hotkey,
                    stored_at,
                    weights: n.weights.clone(),
                });
            }
        }
        // The epoch block's start-of-block steps alone: the same run every node makes.
        let mut ran = state_before_end.clone();
        ran.apply_block_bytes::<&[u8]>(window.end_block, &[])?;
        let after = ran
            .subnet(subnet)
            .ok_or(SettleError::UnknownSubnet(subnet))?;
        if after.last_epoch_block != window.end_block {
            return Err(SettleError::Inconsistent {
                subnet,
                epoch,
                reason: format!("no consensus ran at block {}", window.end_block),
            });
        }
        let mut consensus = Vec::with_capacity(after.neurons.len());
        let mut emission = 0u64;
        for n in &after.neurons {
            emission = emission
                .checked_add(n.emission)
                .ok_or(SettleError::Overflow)?;
            consensus.push(ConsensusLeaf {
                uid: n.uid,
                hotkey: n.hotkey,
                stake: state_before_end.hotkey_stake(&n.hotkey),
                consensus_u16: n.consensus_u16,
                incentive_u16: n.incentive_u16,
                dividends_u16: n.dividends_u16,
                validator_trust_u16: n.validator_trust_u16,
                stake_weight_u16: n.stake_weight_u16,
                emission: n.emission,
                validator_permit: n.validator_permit,
                active: n.active,
            });
        }
        let weights_root = MerkleTree::new(
            weights
                .iter()
                .map(WeightsLeaf::hash)
                .collect::<Result<_, _>>()?,
        )
        .root();
        let consensus_root = MerkleTree::new(
            consensus
                .iter()
                .map(ConsensusLeaf::hash)
                .collect::<Result<_, _>>()?,
        )
        .root();
        Ok(Self {
            window,
            weights,
            consensus,
            weights_root,
            consensus_root,
            emission,
        })
    }
}

/// The receipts side of an epoch: which receipts, in leaf order, and their tree.
#[derive(Debug, Clone)]
pub struct ReceiptFold {
    /// Receipt ids in leaf order.
    pub ids: Vec<ContentId>,
    /// The tree over their leaves.
    pub tree: MerkleTree,
    /// Sum of their prices.
    pub total_paid: u64,
    /// Whether this call recorded the epoch in the store (false: it was recorded before).
    pub newly_recorded: bool,
}

/// The receipt of `id` from the store, which must be countersigned.
fn full_receipt(store: &ReceiptStore, id: &ContentId) -> Result<Receipt, SettleError> {
    match store.get(id)? {
        Some(StoredReceipt::Full(r)) => Ok(r),
        Some(StoredReceipt::Half(_)) => Err(StoreError::NotAnchorable {
            id: *id,
            reason: "not countersigned",
        }
        .into()),
        None => Err(StoreError::NotAnchorable {
            id: *id,
            reason: "not in the store",
        }
        .into()),
    }
}

/// The receipts an already anchored epoch covered, their tree rebuilt from the store and checked
/// against what was recorded.
pub fn anchored_receipts(
    store: &ReceiptStore,
    subnet: u16,
    epoch: u64,
) -> Result<Option<(Vec<Receipt>, MerkleTree, AnchoredEpoch)>, SettleError> {
    let Some(recorded) = store.anchored_epoch(subnet, epoch)? else {
        return Ok(None);
    };
    let ids = store.anchored_ids(subnet, epoch)?;
    let mut receipts = Vec::with_capacity(ids.len());
    let mut leaves = Vec::with_capacity(ids.len());
    let mut total = 0u64;
    for id in &ids {
        let r = full_receipt(store, id)?;
        leaves.push(receipt_leaf(&r.to_bytes()?));
        total = total
            .checked_add(r.body().price)
            .ok_or(SettleError::Overflow)?;
        receipts.push(r);
    }
    let tree = MerkleTree::new(leaves);
    let found = (tree.len() as u64, total, tree.root());
    if found
        != (
            recorded.receipt_count,
            recorded.total_paid,
            recorded.receipts_root,
        )
    {
        return Err(SettleError::Inconsistent {
            subnet,
            epoch,
            reason: "the anchored receipts no longer match the recorded root and totals".into(),
        });
    }
    Ok(Some((receipts, tree, recorded)))
}

/// Folds `subnet`'s `epoch` receipts: the recorded set when the epoch was folded before,
/// otherwise every countersigned receipt of the subnet not yet anchored, recorded durably here.
pub fn fold_receipts(
    store: &ReceiptStore,
    subnet: u16,
    epoch: u64,
) -> Result<ReceiptFold, SettleError> {
    if let Some((receipts, tree, recorded)) = anchored_receipts(store, subnet, epoch)? {
        return Ok(ReceiptFold {
            ids: receipts.iter().map(Receipt::id).collect(),
            tree,
            total_paid: recorded.total_paid,
            newly_recorded: false,
        });
    }
    let mut found: Vec<(ContentId, [u8; 32], u64)> = Vec::new();
    store.for_each_unanchored(subnet, |r| {
        found.push((r.id(), receipt_leaf(&r.to_bytes()?), r.body().price));
        Ok(())
    })?;
    found.sort_unstable_by_key(|(id, _, _)| *id);
    let mut total_paid = 0u64;
    for (_, _, price) in &found {
        total_paid = total_paid
            .checked_add(*price)
            .ok_or(SettleError::Overflow)?;
    }
    let ids: Vec<ContentId> = found.iter().map(|(id, _, _)| *id).collect();
    let tree = MerkleTree::new(found.into_iter().map(|(_, leaf, _)| leaf).collect());
    let summary = AnchoredEpoch {
        receipt_count: ids.len() as u64,
        total_paid,
        receipts_root: tree.root(),
    };
    let newly_recorded = store.record_anchor(subnet, epoch, &ids, &summary)?;
    Ok(ReceiptFold {
        ids,
        tree,
        total_paid,
        newly_recorded,
    })
}

/// An anchor built for an epoch, with what went into it.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The signed record.
    pub anchor: SignedAnchor,
    /// Its receipts.
    pub receipts: ReceiptFold,
    /// Its weights and consensus.
    pub summary: EpochSummary,
}

/// Builds and signs the anchor of `subnet`'s `epoch` with the anchorer's hotkey `key`, chained to
/// `prev_hash`. `state_before_end` is the ledger at height `end_block - 1` ([`replay_to`]).
/// Deterministic: the same store, state, key and `prev_hash` give the same envelope bytes
/// (ed25519 signatures are deterministic), so building an epoch twice yields the same record.
pub fn build_anchor(
    store: &ReceiptStore,
    state_before_end: &LedgerState,
    subnet: u16,
    epoch: u64,
    key: &SecretKey,
    prev_hash: [u8; 32],
) -> Result<Settled, SettleError> {
    // The ledger side first: an epoch that cannot be summarised must not claim any receipts.
    let summary = EpochSummary::compute(state_before_end, subnet, epoch)?;
    let receipts = fold_receipts(store, subnet, epoch)?;
    let record = AnchorRecord {
        version: ANCHOR_VERSION,
        subnet,
        epoch,
        anchorer: key.public(),
        receipts_root: receipts.tree.root(),
        receipt_count: receipts.tree.len() as u64,
        total_paid: receipts.total_paid,
        weights_root: summary.weights_root,
        consensus_root: summary.consensus_root,
        emission: summary.emission,
        prev_hash,
    };
    Ok(Settled {
        anchor: SignedAnchor::sign(record, key)?,
        receipts,
        summary,
    })
}

/// What [`settle`] did.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The record, as it is in the journal.
    pub anchor: SignedAnchor,
    /// Whether this call appended it (false: the journal already had it).
    pub appended: bool,
}

/// Settles `subnet`'s `epoch` into `journal`: builds the anchor chained to the anchorer's last
/// journal record and appends it, or returns the record already journaled for it. The receipts are
/// recorded in the store before the journal append, so a crash in between is repaired by settling
/// again (the same receipts fold again).
pub fn settle(
    store: &ReceiptStore,
    state_before_end: &LedgerState,
    subnet: u16,
    epoch: u64,
    key: &SecretKey,
    journal: &mut Journal,
) -> Result<Settlement, SettleError> {
    if let Some(anchor) = journal.get(&key.public(), subnet, epoch)? {
        return Ok(Settlement {
            anchor,
            appended: false,
        });
    }
    let prev_hash = journal.head(&key.public());
    let built = build_anchor(store, state_before_end, subnet, epoch, key, prev_hash)?;
    journal.append(&built.anchor)?;
    Ok(Settlement {
        anchor: built.anchor,
        appended: true,
    })
}

/// Replays `log` onto `genesis` up to and including block `height` (and no further), checking that
/// each block chains to the one before. Fails if the log is shorter.
pub fn replay_to<L: TxLog>(
    log: &mut L,
    genesis: LedgerState,
    height: u64,
) -> Result<LedgerState, SettleError> {
    let mut state = genesis;
    catch_up_until(log, &mut state, GENESIS_PREV_HASH, 256, height, |_| {})
        .map_err(SettleError::from_replay)?;
    if state.height() < height {
        return Err(SettleError::Log(format!(
            "the log ends at block {}, before block {height}",
            state.height()
        )));
    }
    Ok(state)
}

/// States a follower of the log keeps to settle from: each is the ledger just before one of a
/// subnet's epoch blocks (height `end_block - 1`), the state [`settle`] needs.
///
/// Settling from a kept state instead of [`replay_to`] makes an epoch's settlement cost
/// independent of the chain's age: a replay from genesis per epoch grows with the height, and the
/// total work with its square. A kept state is the follower's own state, reached by applying the
/// log's blocks in order from genesis exactly as [`replay_to`] does, so an anchor built from it is
/// the anchor built from [`replay_to`] at that height. States are keyed by height, not by epoch, so
/// a tempo change between keeping and settling can only miss (and fall back to a replay), never
/// hand over the wrong state.
///
/// At most `keep` states are held, the newest. A follower that settles the latest ended epoch after
/// each catch-up needs two: the ended epoch's, and the next one's when the catch-up stopped right
/// before the next epoch block.
#[derive(Debug, Clone)]
pub struct EpochSnapshots {
    subnet: u16,
    keep: usize,
    /// Epochs up to this one are settled: their states are not kept.
    settled_through: Option<u64>,
    /// Oldest first, heights increasing.
    states: VecDeque<LedgerState>,
}

impl EpochSnapshots {
    /// Keeps up to `keep` (at least one) states of `subnet`.
    pub fn new(subnet: u16, keep: usize) -> Self {
        let keep = keep.max(1);
        Self {
            subnet,
            keep,
            settled_through: None,
            states: VecDeque::with_capacity(keep),
        }
    }

    /// Epochs up to and including `epoch` are settled: drops their states and keeps none of them
    /// from now on (a restart replays from genesis through every settled epoch, and cloning the
    /// state at each of them would be wasted).
    pub fn settled_through(&mut self, epoch: u64) {
        self.settled_through = Some(self.settled_through.map_or(epoch, |e| e.max(epoch)));
        let subnet = self.subnet;
        self.states
            .retain(|s| Self::epoch_ending_after(s, subnet).is_some_and(|e| e > epoch));
    }

    /// The epoch whose consensus runs in the block after `state`, if the subnet exists and that
    /// block is one of its epoch blocks.
    fn epoch_ending_after(state: &LedgerState, subnet: u16) -> Option<u64> {
        let next = state.height().checked_add(1)?;
        let s = state.subnet(subnet)?;
        s.is_epoch_block(next).then(|| s.epoch_index(next))
    }

    /// Keeps a copy of `state` if the next block runs the subnet's epoch and that epoch is not
    /// settled yet, dropping the oldest state past `keep`; true if it kept one. Seeing the same
    /// height twice keeps it once.
    pub fn observe(&mut self, state: &LedgerState) -> bool {
        let Some(epoch) = Self::epoch_ending_after(state, self.subnet) else {
            return false;
        };
        if self.settled_through.is_some_and(|e| epoch <= e)
            || self
                .states
                .back()
                .is_some_and(|s| s.height() >= state.height())
        {
            return false;
        }
        if self.states.len() >= self.keep {
            self.states.pop_front();
        }
        self.states.push_back(state.clone());
        true
    }

    /// The kept state at `height`, if any.
    pub fn at(&self, height: u64) -> Option<&LedgerState> {
        self.states.iter().find(|s| s.height() == height)
    }

    /// The kept state to settle `window`'s epoch from (height `end_block - 1`), if any.
    pub fn before_end(&self, window: &EpochWindow) -> Option<&LedgerState> {
        self.at(window.end_block.checked_sub(1)?)
    }

    /// Heights of the kept states, oldest first.
    pub fn heights(&self) -> Vec<u64> {
        self.states.iter().map(LedgerState::height).collect()
    }
}

/// Brings `state` up to the log's last block like [`crate::log::catch_up`] (each block checked to
/// chain to the one before, `prev_hash` being the hash of the block `state` is at), showing
/// `snapshots` the state before the first block and after every block applied, so it keeps the
/// states to settle from on the way. Returns the new last block hash and the blocks applied.
pub fn catch_up_keeping<L: TxLog>(
    log: &mut L,
    state: &mut LedgerState,
    prev_hash: [u8; 32],
    batch: usize,
    snapshots: &mut EpochSnapshots,
) -> Result<([u8; 32], u64), SettleError> {
    let (hash, report) = catch_up_until(log, state, prev_hash, batch, u64::MAX, |s| {
        snapshots.observe(s);
    })
    .map_err(SettleError::from_replay)?;
    Ok((hash, report.blocks))
}
