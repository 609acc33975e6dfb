//! Yuma Consensus, bit for bit as the Bittensor chain (subtensor) computes it.
//!
//! Agora settles reputation and rewards with the chain's own math so that operators can check our
//! numbers against the chain's tests (`spec/consensus.md`). The whole epoch is one pure function,
//! [`run_epoch`]: an [`EpochInput`] (subnet parameters and per-UID state, in the chain's storage
//! units) in, an [`EpochOutput`] (what the chain would persist) out. All arithmetic is `I32F32`
//! with the chain's rounding ([`fixed_math`]); the sparse steps keep the chain's entry order and
//! quirks ([`sparse`], [`bonds`]).
//!
//! ```
//! use agora_ledger::consensus::{EpochInput, run_epoch};
//! let input: EpochInput = serde_json::from_str(r#"{
//!   "params": {"n": 2, "tempo": 360, "activity_cutoff_blocks": 5000, "kappa_u16": 32767,
//!              "bonds_penalty_u16": 65535, "bonds_moving_average": 900000,
//!              "max_allowed_validators": 1, "stake_threshold": 0, "rao_emission": 1000,
//!              "yuma3": true, "liquid_alpha": false},
//!   "state": {"current_block": 10, "stake": [100, 0], "block_at_registration": [0, 0],
//!             "last_update": [5, 0], "validator_permit": [true, false],
//!             "weights": [[[1, 65535]], []], "bonds": [[], []]}
//! }"#).unwrap();
//! let out = run_epoch(&input).unwrap();
//! assert_eq!(out.incentive_u16, vec![0, 65535]); // the miner gets all the incentive
//! assert_eq!(out.validator_permit, vec![true, false]);
//! ```

pub mod bonds;
pub mod epoch;
pub mod fixed_math;
mod regression;
pub mod samples;
pub mod sparse;
pub mod types;

pub use epoch::{EpochScratch, run_epoch, run_epoch_with, validate};
pub use types::{EpochError, EpochInput, EpochOutput, EpochParams, EpochState};
