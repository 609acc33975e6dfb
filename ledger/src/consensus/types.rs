//! The JSON interface of `agora consensus epoch` (spec `consensus.md`, "The interface"), and the
//! validation that turns a parsed input into one the math can trust.
//!
//! Field names and units are the spec's, so that a file written for the chain's numbers reads the
//! same here. Everything the math later indexes by (row counts, uids) is checked once, up front, so
//! the epoch itself can use plain slices without any path to a panic.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most UIDs one epoch accepts: uids are `u16` on chain, so `n <= 65535`.
pub const MAX_UIDS: u64 = u16::MAX as u64;

/// Chain defaults for liquid alpha (`DefaultAlphaValues`: 0.7 / 0.9; runtime steepness 1000), used
/// when `liquid_alpha` is on and the optional fields are left out.
pub const DEFAULT_ALPHA_LOW_U16: u16 = 45_875;
/// See [`DEFAULT_ALPHA_LOW_U16`].
pub const DEFAULT_ALPHA_HIGH_U16: u16 = 58_982;
/// See [`DEFAULT_ALPHA_LOW_U16`].
pub const DEFAULT_ALPHA_SIGMOID_STEEPNESS: i16 = 1000;

/// One epoch's input: the subnet parameters and the state the chain would read from storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInput {
    /// Subnet hyperparameters.
    pub params: EpochParams,
    /// Per-UID state at the start of the epoch.
    pub state: EpochState,
}

/// Subnet hyperparameters (spec 2.2), each in the unit the chain stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochParams {
    /// Number of UIDs; every per-UID vector has this length.
    pub n: u64,
    /// Blocks per epoch; only used to find the last epoch's block for the bond registration mask.
    pub tempo: u64,
    /// A UID is inactive when `last_update + activity_cutoff_blocks < current_block`.
    pub activity_cutoff_blocks: u64,
    /// Consensus majority, `u16` proportion (32767 ≈ 0.5).
    pub kappa_u16: u16,
    /// Share of clipped weight in the weights used for bonds, `u16` proportion (65535 = 1).
    pub bonds_penalty_u16: u16,
    /// EMA memory in parts per million (900 000: bonds move 10 % per epoch).
    pub bonds_moving_average: u64,
    /// How many UIDs get a validator permit (top stake).
    pub max_allowed_validators: u64,
    /// Raw stake below which a UID's stake counts as 0 (the owner is exempt).
    pub stake_threshold: u64,
    /// Rao paid out by this epoch.
    pub rao_emission: u64,
    /// Yuma 3 bonds (true) or legacy bonds (false).
    pub yuma3: bool,
    /// Per-entry liquid alpha for the Yuma 3 bond EMA.
    pub liquid_alpha: bool,
    /// Liquid alpha lower bound, `u16` proportion; chain default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_low_u16: Option<u16>,
    /// Liquid alpha upper bound, `u16` proportion; chain default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_high_u16: Option<u16>,
    /// Liquid alpha sigmoid steepness (slope = steepness / 100); chain default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_sigmoid_steepness: Option<i16>,
    /// The subnet owner's UID, if the owner hotkey is registered: it always holds a permit, its
    /// stake is never thresholded and its self-weight is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_uid: Option<u64>,
}

/// One stored sparse row: `(uid, value)` pairs as the chain keeps them.
pub type SparseRow = Vec<(u64, u16)>;

/// Per-UID state at the start of an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochState {
    /// The block the epoch runs at.
    pub current_block: u64,
    /// Block of the last epoch step, 0 if never stepped (then `current_block - tempo` is used).
    #[serde(default)]
    pub last_mechanism_step_block: u64,
    /// Raw stake per UID (alpha rao, plus weighted root stake).
    pub stake: Vec<u64>,
    /// Block at which each UID's current occupant registered.
    pub block_at_registration: Vec<u64>,
    /// Block of each UID's last weight set.
    pub last_update: Vec<u64>,
    /// Permits from the previous epoch: they decide whose weights count in this one.
    pub validator_permit: Vec<bool>,
    /// Weight rows as stored (row max-upscaled to 65535, explicit zeros kept).
    pub weights: Vec<SparseRow>,
    /// Bond rows as stored by the previous epoch.
    pub bonds: Vec<SparseRow>,
    /// Commit-reveal's anti-sniping input (spec 2.3 step 5): per UID, the block of its oldest
    /// weight commit that has not expired at this epoch, or `null` when it has none. The epoch
    /// ignores `weights[i][j]` when `live_commit_block[i]` is earlier than
    /// `block_at_registration[j]`: a validator that committed before `j` registered must not
    /// point weights at the newcomer until that commit is revealed or expires. Empty (or left
    /// out) means no UID has a live commit, as when commit-reveal is off; otherwise one entry
    /// per UID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_commit_block: Vec<Option<u64>>,
}

/// One epoch's result: what the chain persists, in its storage units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochOutput {
    /// Stake-weighted median weight per UID, `u16` proportion.
    pub consensus_u16: Vec<u16>,
    /// Miner reward share, `u16` proportion.
    pub incentive_u16: Vec<u16>,
    /// Validator reward share, `u16` proportion.
    pub dividends_u16: Vec<u16>,
    /// Share of each validator's weight that survived clipping, `u16` proportion.
    pub validator_trust_u16: Vec<u16>,
    /// Normalised (thresholded) stake, `u16` proportion.
    pub stake_weight_u16: Vec<u16>,
    /// Rao per UID: normalised (incentive + dividends) of `rao_emission`.
    pub emission: Vec<u64>,
    /// Rao per UID paid as miner.
    pub server_emission: Vec<u64>,
    /// Rao per UID paid as validator.
    pub validator_emission: Vec<u64>,
    /// Permits computed in this epoch, to feed into the next one.
    pub validator_permit: Vec<bool>,
    /// Whether each UID set weights within the activity cutoff.
    pub active: Vec<bool>,
    /// Bond rows to store for the next epoch.
    pub bonds: Vec<Vec<(u16, u16)>>,
}

/// Why an epoch input was refused. Every variant names the field to fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EpochError {
    /// `n` is past the `u16` uid space.
    #[error("params.n = {n} is more than the {MAX_UIDS} UIDs a subnet can hold")]
    TooManyUids {
        /// The `n` given.
        n: u64,
    },
    /// A per-UID vector does not have `n` entries.
    #[error("state.{field} has {len} entries but params.n is {n}: give exactly one per UID")]
    WrongLength {
        /// Which vector.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The expected length.
        n: u64,
    },
    /// A sparse row names a uid that does not exist.
    #[error("state.{field}[{row}] refers to uid {uid}, but uids run from 0 to n-1 = {last}")]
    UidOutOfRange {
        /// `weights` or `bonds`.
        field: &'static str,
        /// The row (source uid).
        row: usize,
        /// The offending destination uid.
        uid: u64,
        /// `n - 1`.
        last: i128,
    },
    /// A sparse row names the same uid twice (the chain rejects duplicate uids).
    #[error("state.{field}[{row}] lists uid {uid} more than once")]
    DuplicateUid {
        /// `weights` or `bonds`.
        field: &'static str,
        /// The row (source uid).
        row: usize,
        /// The repeated uid.
        uid: u64,
    },
    /// The owner uid does not exist.
    #[error("params.owner_uid = {uid} but uids run from 0 to n-1 = {last}")]
    OwnerOutOfRange {
        /// The owner uid given.
        uid: u64,
        /// `n - 1`.
        last: i128,
    },
    /// Total stake is past what the chain's `I64F64` stake vector can hold.
    #[error("total stake {total} rao is more than {max} (the chain's I64F64 stake range)")]
    StakeOverflow {
        /// The sum of all stake, as a wide integer.
        total: u128,
        /// `i64::MAX`.
        max: i64,
    },
}
