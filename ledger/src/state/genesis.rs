//! The ledger's genesis file: starting balances, ledger parameters and optional initial subnets.
//!
//! It extends the balances genesis ([`crate::balances::Genesis`], `{"accounts": {...}}`), which is
//! itself a valid ledger genesis, so one file seeds both the receipt balances and the ledger:
//!
//! ```json
//! {"accounts": {"<public key hex>": 1000000000000},
//!  "params": {"subnet_lock_cost": 100000000000},
//!  "subnets": [{"owner": "<public key hex>", "hyperparameters": {"tempo": 100}}]}
//! ```
//!
//! Everything is checked on load (keys, duplicate accounts, the supply cap, hyperparameter
//! ranges), so [`LedgerGenesis::to_state`] cannot fail.

use super::hyper::{HyperError, Hyperparameters, LedgerParams};
use super::{LedgerState, Subnet};
use crate::balances::{BalanceError, Genesis, MAX_GENESIS_FILE};
use crate::emission::TOTAL_SUPPLY;
use agora_protocols::PublicKey;
use agora_protocols::keys::KeyError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a ledger genesis was refused.
#[derive(Debug, Error)]
pub enum GenesisError {
    /// The file could not be read.
    #[error("genesis file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_GENESIS_FILE`].
    #[error("genesis file {0} is over the {MAX_GENESIS_FILE}-byte limit")]
    TooLarge(PathBuf),
    /// Not the expected JSON.
    #[error("genesis is not valid JSON for a ledger genesis: {0}")]
    Json(#[from] serde_json::Error),
    /// The accounts are invalid (bad key, duplicate, overflow).
    #[error(transparent)]
    Accounts(#[from] BalanceError),
    /// A subnet owner is not a public key.
    #[error("genesis subnet {index} owner {key:?}: {reason}")]
    BadOwner {
        /// Position in `subnets`.
        index: usize,
        /// The key as written.
        key: String,
        /// Why it was refused.
        reason: KeyError,
    },
    /// The allocations pass the 21,000,000-token supply cap.
    #[error("genesis allocates {total} units, over the supply cap of {TOTAL_SUPPLY}")]
    OverCap {
        /// The total.
        total: u64,
    },
    /// Invalid parameters or hyperparameters.
    #[error("genesis {what}: {source}")]
    Params {
        /// `params` or `subnets[i]`.
        what: String,
        /// The range error.
        source: HyperError,
    },
    /// More subnets than `params.max_subnets`.
    #[error("genesis has {count} subnets but params.max_subnets is {max}")]
    TooManySubnets {
        /// Subnets given.
        count: usize,
        /// The limit.
        max: u16,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    accounts: BTreeMap<String, u64>,
    #[serde(default)]
    params: LedgerParams,
    #[serde(default)]
    subnets: Vec<GenesisSubnetFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisSubnetFile {
    owner: String,
    #[serde(default)]
    hyperparameters: Hyperparameters,
}

/// An initial subnet: netuids are given in file order from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesisSubnet {
    /// The owning coldkey.
    pub owner: PublicKey,
    /// Its hyperparameters.
    pub hyperparameters: Hyperparameters,
}

/// A checked ledger genesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerGenesis {
    /// Starting free balances (the balances genesis).
    pub balances: Genesis,
    /// Ledger-wide parameters.
    pub params: LedgerParams,
    /// Initial subnets.
    pub subnets: Vec<GenesisSubnet>,
}

impl LedgerGenesis {
    /// A genesis from parts, checked as a file would be.
    pub fn new(
        balances: Genesis,
        params: LedgerParams,
        subnets: Vec<GenesisSubnet>,
    ) -> Result<Self, GenesisError> {
        let total = balances.total();
        if total > TOTAL_SUPPLY {
            return Err(GenesisError::OverCap { total });
        }
        params.validate().map_err(|source| GenesisError::Params {
            what: "params".into(),
            source,
        })?;
        if subnets.len() > usize::from(params.max_subnets) {
            return Err(GenesisError::TooManySubnets {
                count: subnets.len(),
                max: params.max_subnets,
            });
        }
        for (i, s) in subnets.iter().enumerate() {
            s.hyperparameters
                .validate()
                .map_err(|source| GenesisError::Params {
                    what: format!("subnets[{i}].hyperparameters"),
                    source,
                })?;
        }
        Ok(Self {
            balances,
            params,
            subnets,
        })
    }

    /// Parses the genesis JSON (see the module docs). Unknown fields are refused.
    pub fn from_json(text: &str) -> Result<Self, GenesisError> {
        let file: GenesisFile = serde_json::from_str(text)?;
        // The accounts go through the balances genesis parser, so both read keys the same way.
        let accounts = serde_json::json!({ "accounts": file.accounts }).to_string();
        let balances = Genesis::from_json(&accounts)?;
        let mut subnets = Vec::with_capacity(file.subnets.len());
        for (index, s) in file.subnets.into_iter().enumerate() {
            let owner = PublicKey::from_hex(&s.owner).map_err(|reason| GenesisError::BadOwner {
                index,
                key: s.owner.clone(),
                reason,
            })?;
            subnets.push(GenesisSubnet {
                owner,
                hyperparameters: s.hyperparameters,
            });
        }
        Self::new(balances, file.params, subnets)
    }

    /// Reads a genesis file of at most [`MAX_GENESIS_FILE`] bytes.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let io = |source| GenesisError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_GENESIS_FILE.saturating_add(1))
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_GENESIS_FILE {
            return Err(GenesisError::TooLarge(path.to_path_buf()));
        }
        Self::from_json(&text)
    }

    /// The genesis as JSON text (keys in lower-case hex), readable by [`Self::from_json`].
    pub fn to_json(&self) -> Result<String, GenesisError> {
        let file = GenesisFile {
            accounts: self
                .balances
                .accounts()
                .map(|(k, v)| (k.to_hex(), v))
                .collect(),
            params: self.params.clone(),
            subnets: self
                .subnets
                .iter()
                .map(|s| GenesisSubnetFile {
                    owner: s.owner.to_hex(),
                    hyperparameters: s.hyperparameters.clone(),
                })
                .collect(),
        };
        Ok(serde_json::to_string_pretty(&file)?)
    }

    /// The state at height 0: balances, issuance = their total, subnets numbered from 1.
    pub fn to_state(&self) -> LedgerState {
        let mut state = LedgerState::empty(self.params.clone());
        for (key, units) in self.balances.accounts() {
            state.set_balance(key, units);
        }
        state.total_issuance = self.balances.total();
        for (netuid, s) in (1u16..).zip(&self.subnets) {
            state.subnets.insert(
                netuid,
                Subnet::new(netuid, s.owner, None, s.hyperparameters.clone(), 0),
            );
        }
        state
    }
}
