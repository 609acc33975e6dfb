//! Subnet hyperparameters and ledger-wide parameters, with the spec's defaults (`spec/consensus.md`
//! sections 2.2, 4 and 5; where the spec is silent, the chain's runtime value, named below).
//!
//! Every value is checked once, when a subnet is created or the genesis is read, so that the state
//! machine and the epoch can use them without further checks.

use crate::balances::UNITS_PER_TOKEN;
use crate::consensus::types::{
    DEFAULT_ALPHA_HIGH_U16, DEFAULT_ALPHA_LOW_U16, DEFAULT_ALPHA_SIGMOID_STEEPNESS,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most UIDs a subnet may hold (runtime default `MaxAllowedUids`, spec 4).
pub const MAX_ALLOWED_UIDS: u16 = 256;
/// Fewest UIDs an owner may cap a subnet at (`MinAllowedUids`, spec 4).
pub const MIN_ALLOWED_UIDS: u16 = 64;

/// A subnet's hyperparameters. Missing JSON fields take the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hyperparameters {
    /// Blocks per epoch (`Tempo`, default 360).
    pub tempo: u16,
    /// UID capacity, 64..=256 (`MaxAllowedUids`, new subnets 256).
    pub max_allowed_uids: u16,
    /// Blocks a new UID cannot be pruned (`ImmunityPeriod`, new subnets 5000).
    pub immunity_period: u16,
    /// Activity cutoff as a factor of tempo, milli (`ActivityCutoffFactorMilli`, 13 889 → 5 000
    /// blocks at tempo 360).
    pub activity_cutoff_factor_milli: u32,
    /// Consensus majority, `u16` proportion (`Kappa`, 32767).
    pub kappa_u16: u16,
    /// `BondsPenalty`, `u16` proportion (65535 = 1).
    pub bonds_penalty_u16: u16,
    /// `BondsMovingAverage`, ppm (900 000).
    pub bonds_moving_average: u64,
    /// Validator permits per epoch (`MaxAllowedValidators`, runtime 128).
    pub max_allowed_validators: u16,
    /// Stake below which a UID's stake counts as zero (`StakeThreshold`, runtime 0).
    pub stake_threshold: u64,
    /// Yuma 3 bonds (new subnets: on).
    pub yuma3: bool,
    /// Liquid alpha (off).
    pub liquid_alpha: bool,
    /// Liquid alpha bounds and steepness (chain defaults 0.7 / 0.9 / 1000).
    pub alpha_low_u16: u16,
    /// See [`Self::alpha_low_u16`].
    pub alpha_high_u16: u16,
    /// See [`Self::alpha_low_u16`].
    pub alpha_sigmoid_steepness: i16,
    /// Weights go through commit then reveal (chain default: on).
    pub commit_reveal_enabled: bool,
    /// A commit made in epoch `e` is revealed in epoch `e + reveal_period_epochs` and expires
    /// after it (`RevealPeriodEpochs`, 1; epochs as `Subnet::weights_epoch` counts them).
    pub reveal_period_epochs: u64,
    /// Blocks between two weight sets or commits of one hotkey (`WeightsSetRateLimit`, 100).
    pub weights_set_rate_limit: u64,
    /// Burn price floor (`MinBurn`, 0.0005 token).
    pub min_burn: u64,
    /// Burn price ceiling (`MaxBurn`, 100 tokens).
    pub max_burn: u64,
    /// Blocks for the burn price to halve (`BurnHalfLife`, 360).
    pub burn_half_life: u16,
    /// Burn price multiplier per registration, milli (`BurnIncreaseMult` 1.26 → 1260), applied at
    /// once, so the next registration in the same block pays the raised price. This is the only
    /// brake on registrations: the chain dropped its `MaxRegistrationsPerBlock` and per-interval
    /// caps on subnets (`registration.rs::do_register`, commit 89aedf6df, March 2026), so there is
    /// no registration-count hyperparameter.
    pub burn_increase_mult_milli: u32,
    /// How many of the owner's earliest registered hotkeys are never pruned
    /// (`ImmuneOwnerUidsLimit`, 1, at most 10).
    pub immune_owner_uids_limit: u16,
    /// Pruning prefers non-immune UIDs only while more than this many exist (`MinNonImmuneUids`,
    /// 10).
    pub min_non_immune_uids: u16,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            tempo: 360,
            max_allowed_uids: MAX_ALLOWED_UIDS,
            immunity_period: 5000,
            activity_cutoff_factor_milli: 13_889,
            kappa_u16: 32_767,
            bonds_penalty_u16: u16::MAX,
            bonds_moving_average: 900_000,
            max_allowed_validators: 128,
            stake_threshold: 0,
            yuma3: true,
            liquid_alpha: false,
            alpha_low_u16: DEFAULT_ALPHA_LOW_U16,
            alpha_high_u16: DEFAULT_ALPHA_HIGH_U16,
            alpha_sigmoid_steepness: DEFAULT_ALPHA_SIGMOID_STEEPNESS,
            commit_reveal_enabled: true,
            reveal_period_epochs: 1,
            weights_set_rate_limit: 100,
            min_burn: UNITS_PER_TOKEN / 2000,
            max_burn: 100 * UNITS_PER_TOKEN,
            burn_half_life: 360,
            burn_increase_mult_milli: 1260,
            immune_owner_uids_limit: 1,
            min_non_immune_uids: 10,
        }
    }
}

/// Why hyperparameters or ledger parameters were refused; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum HyperError {
    /// A value outside its allowed range.
    #[error("{field} = {value} is outside {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i128,
        /// Lowest allowed.
        min: i128,
        /// Highest allowed.
        max: i128,
    },
    /// Two values in the wrong order.
    #[error("{low} must not be above {high}")]
    Order {
        /// The field that must be lower.
        low: &'static str,
        /// The field that must be higher.
        high: &'static str,
    },
}

fn range(field: &'static str, value: i128, min: i128, max: i128) -> Result<(), HyperError> {
    if value < min || value > max {
        return Err(HyperError::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}

impl Hyperparameters {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), HyperError> {
        range("tempo", self.tempo.into(), 1, i128::from(u16::MAX - 1))?;
        range(
            "max_allowed_uids",
            self.max_allowed_uids.into(),
            MIN_ALLOWED_UIDS.into(),
            MAX_ALLOWED_UIDS.into(),
        )?;
        range(
            "max_allowed_validators",
            self.max_allowed_validators.into(),
            1,
            MAX_ALLOWED_UIDS.into(),
        )?;
        range(
            "activity_cutoff_factor_milli",
            self.activity_cutoff_factor_milli.into(),
            0,
            10_000_000,
        )?;
        range(
            "bonds_moving_average",
            self.bonds_moving_average.into(),
            0,
            1_000_000,
        )?;
        range("alpha_low_u16", self.alpha_low_u16.into(), 1638, 65535)?;
        if self.alpha_low_u16 > self.alpha_high_u16 {
            return Err(HyperError::Order {
                low: "alpha_low_u16",
                high: "alpha_high_u16",
            });
        }
        range(
            "reveal_period_epochs",
            self.reveal_period_epochs.into(),
            1,
            100,
        )?;
        range(
            "weights_set_rate_limit",
            self.weights_set_rate_limit.into(),
            0,
            1_000_000,
        )?;
        range("min_burn", self.min_burn.into(), 1, u64::MAX.into())?;
        if self.min_burn > self.max_burn {
            return Err(HyperError::Order {
                low: "min_burn",
                high: "max_burn",
            });
        }
        range(
            "burn_increase_mult_milli",
            self.burn_increase_mult_milli.into(),
            1000,
            10_000,
        )?;
        range(
            "immune_owner_uids_limit",
            self.immune_owner_uids_limit.into(),
            0,
            10,
        )?;
        range(
            "min_non_immune_uids",
            self.min_non_immune_uids.into(),
            0,
            i128::from(self.max_allowed_uids) - 1,
        )?;
        Ok(())
    }

    /// `max(ActivityCutoffFactorMilli × tempo / 1000, 1)` blocks (spec 2.3 step 1).
    pub fn activity_cutoff_blocks(&self) -> u64 {
        (u64::from(self.activity_cutoff_factor_milli) * u64::from(self.tempo) / 1000).max(1)
    }
}

/// Parameters of the whole ledger, fixed at genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerParams {
    /// Units burned (recycled) to create a subnet. The spec gives no lock cost; 100 tokens keeps
    /// subnet creation from being free spam.
    pub subnet_lock_cost: u64,
    /// Most subnets (the chain's `SubnetLimit`, 128).
    pub max_subnets: u16,
    /// Smallest stake operation (`DefaultMinStake`, 0.002 token).
    pub min_stake: u64,
    /// Subnet owner cut of emission, `u16` proportion (`SubnetOwnerCut`, ≈ 18 %).
    pub owner_cut_u16: u16,
    /// Highest delegate take and the take of a new hotkey (11 796 ≈ 18 %).
    pub max_take_u16: u16,
    /// Blocks between two take increases (`TxDelegateTakeRateLimit`, 216 000).
    pub take_rate_limit: u64,
}

impl Default for LedgerParams {
    fn default() -> Self {
        Self {
            subnet_lock_cost: 100 * UNITS_PER_TOKEN,
            max_subnets: 128,
            min_stake: 2 * UNITS_PER_TOKEN / 1000,
            owner_cut_u16: crate::emission::DEFAULT_OWNER_CUT_U16,
            max_take_u16: 11_796,
            take_rate_limit: 216_000,
        }
    }
}

impl LedgerParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), HyperError> {
        range("max_subnets", self.max_subnets.into(), 1, 65_534)?;
        Ok(())
    }
}
