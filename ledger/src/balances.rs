//! Balances from a genesis allocation and the countersigned receipts.
//!
//! Until the ledger log carries transfers and settlement, a balance is what the genesis file gave a
//! key, minus what it paid as a client, plus what it earned as a provider. Only receipts signed by
//! both sides move money: a provider's half is a claim, not a payment. The computation is pure and
//! deterministic, so every node that holds the same receipts gets the same balances.
//!
//! Amounts are integers in units of 1e-9 token ([`UNITS_PER_TOKEN`]), the chain's 9 decimals.

use agora_protocols::keys::KeyError;
use agora_protocols::{ContentId, PublicKey, Receipt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Units in one token: amounts have 9 decimals.
pub const UNITS_PER_TOKEN: u64 = 1_000_000_000;
/// Largest genesis file [`Genesis::load`] reads: a bound on memory for a file from anywhere.
pub const MAX_GENESIS_FILE: u64 = 16 * 1024 * 1024;

/// `units` as a decimal token amount with all 9 decimals, e.g. `1.250000000`.
pub fn format_units(units: u64) -> String {
    format!("{}.{:09}", units / UNITS_PER_TOKEN, units % UNITS_PER_TOKEN)
}

/// Why balances could not be loaded or computed.
#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    /// The genesis file could not be read or written.
    #[error("genesis file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The genesis file is larger than [`MAX_GENESIS_FILE`].
    #[error("genesis file {path} is over the {MAX_GENESIS_FILE}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The genesis text is not the expected JSON.
    #[error("genesis is not valid: {0}")]
    Parse(serde_json::Error),
    /// The genesis file is not the expected JSON.
    #[error("genesis file {path} is not valid: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// serde_json's reason (it names the line and column).
        source: serde_json::Error,
    },
    /// An account key in the genesis file is not a public key.
    #[error("genesis account {key:?} is not a hotkey public key: {reason}")]
    BadKey {
        /// The key as written.
        key: String,
        /// Why it was refused.
        reason: KeyError,
    },
    /// The same key appears twice in the genesis file (spelled differently, e.g. in upper case).
    #[error("genesis account {0} appears more than once")]
    DuplicateKey(String),
    /// The genesis total passes `u64::MAX` units.
    #[error("genesis allocations add up to more than {} units", u64::MAX)]
    GenesisOverflow,
    /// A receipt would take its client below zero.
    #[error(
        "receipt {receipt} overdraws client {client}: balance {} is below the price {}",
        format_units(*balance),
        format_units(*price)
    )]
    Overdrawn {
        /// The receipt that could not be paid.
        receipt: ContentId,
        /// The client (boxed: a key is large next to the other variants).
        client: Box<PublicKey>,
        /// The client's balance before this receipt.
        balance: u64,
        /// The receipt's price.
        price: u64,
    },
    /// A provider's earnings or a running total would pass `u64::MAX` units.
    #[error("receipt {0} would overflow an account")]
    Overflow(ContentId),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    accounts: BTreeMap<String, u64>,
}

/// The starting allocation: units per hotkey.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Genesis {
    accounts: BTreeMap<PublicKey, u64>,
}

impl Genesis {
    /// A genesis from a map of allocations. Fails if they add up to more than `u64::MAX`, so
    /// that no later sum over accounts can overflow from genesis alone.
    pub fn new(accounts: BTreeMap<PublicKey, u64>) -> Result<Self, BalanceError> {
        accounts
            .values()
            .try_fold(0u64, |sum, v| sum.checked_add(*v))
            .ok_or(BalanceError::GenesisOverflow)?;
        Ok(Self { accounts })
    }

    /// Reads `{"accounts": {"<public key hex>": <units>, ...}}`. Unknown fields are refused, and
    /// errors name the key or the line that is wrong.
    pub fn load(path: &Path) -> Result<Self, BalanceError> {
        let io = |source| BalanceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // Read at most one byte past the limit: a file that grows while read is still bounded.
        let mut text = String::new();
        file.take(MAX_GENESIS_FILE.saturating_add(1))
            .read_to_string(&mut text)
            .map_err(io)?;
        if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_GENESIS_FILE {
            return Err(BalanceError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::from_json(&text).map_err(|e| match e {
            BalanceError::Parse(source) => BalanceError::Json {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Parses the genesis JSON text (see [`Self::load`]).
    pub fn from_json(text: &str) -> Result<Self, BalanceError> {
        let file: GenesisFile = serde_json::from_str(text).map_err(BalanceError::Parse)?;
        let mut accounts = BTreeMap::new();
        for (key, units) in file.accounts {
            let public = PublicKey::from_hex(&key).map_err(|reason| BalanceError::BadKey {
                key: key.clone(),
                reason,
            })?;
            if accounts.insert(public, units).is_some() {
                return Err(BalanceError::DuplicateKey(public.to_hex()));
            }
        }
        Self::new(accounts)
    }

    /// The genesis as JSON text, keys in lower-case hex, sorted.
    pub fn to_json(&self) -> String {
        let file = GenesisFile {
            accounts: self
                .accounts
                .iter()
                .map(|(k, v)| (k.to_hex(), *v))
                .collect(),
        };
        // A map of strings to integers always serializes.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Writes the genesis file: to a temporary file beside it, then renamed over, so a reader
    /// never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), BalanceError> {
        let io = |source| BalanceError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut text = self.to_json();
        text.push('\n');
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// What genesis gave `key` (0 if nothing).
    pub fn balance_of(&self, key: &PublicKey) -> u64 {
        self.accounts.get(key).copied().unwrap_or(0)
    }

    /// Every allocation, sorted by key.
    pub fn accounts(&self) -> impl Iterator<Item = (&PublicKey, u64)> {
        self.accounts.iter().map(|(k, v)| (k, *v))
    }

    /// Sum of all allocations (cannot overflow: checked by [`Self::new`]).
    pub fn total(&self) -> u64 {
        self.accounts
            .values()
            .fold(0u64, |sum, v| sum.saturating_add(*v))
    }
}

/// One key's money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// What genesis gave it.
    pub genesis: u64,
    /// What it paid as a client.
    pub paid: u64,
    /// What it earned as a provider.
    pub received: u64,
    /// `genesis - paid + received`.
    pub balance: u64,
}

/// Every account's money after applying the receipts to the genesis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balances {
    accounts: BTreeMap<PublicKey, Account>,
    receipts: u64,
}

impl Balances {
    /// Applies `receipts`, in order, to `genesis`: each client pays its receipt's price to the
    /// provider. A receipt id seen before is skipped, so a receipt stored twice is paid once.
    /// Receipts are taken as valid (a [`Receipt`] value carries checked signatures); a receipt
    /// its client cannot pay is an error naming it, since it means the receipts and the genesis
    /// do not belong together.
    pub fn compute<'a>(
        genesis: &Genesis,
        receipts: impl IntoIterator<Item = &'a Receipt>,
    ) -> Result<Balances, BalanceError> {
        let mut accounts: BTreeMap<PublicKey, Account> = genesis
            .accounts()
            .map(|(k, units)| {
                (
                    *k,
                    Account {
                        genesis: units,
                        balance: units,
                        ..Account::default()
                    },
                )
            })
            .collect();
        let mut seen = HashSet::new();
        for receipt in receipts {
            let id = receipt.id();
            if !seen.insert(id) {
                continue;
            }
            let body = receipt.body();
            let price = body.price;
            let client = accounts.entry(body.client).or_default();
            let Some(left) = client.balance.checked_sub(price) else {
                return Err(BalanceError::Overdrawn {
                    receipt: id,
                    client: Box::new(body.client),
                    balance: client.balance,
                    price,
                });
            };
            let paid = client
                .paid
                .checked_add(price)
                .ok_or(BalanceError::Overflow(id))?;
            let provider = accounts.get(&body.provider).copied().unwrap_or_default();
            let received = provider
                .received
                .checked_add(price)
                .ok_or(BalanceError::Overflow(id))?;
            let gained = provider
                .balance
                .checked_add(price)
                .ok_or(BalanceError::Overflow(id))?;
            // Both sides checked before either is written: a failed receipt changes nothing.
            let client = accounts.entry(body.client).or_default();
            client.balance = left;
            client.paid = paid;
            let provider = accounts.entry(body.provider).or_default();
            provider.received = received;
            provider.balance = gained;
        }
        Ok(Balances {
            accounts,
            receipts: u64::try_from(seen.len()).unwrap_or(u64::MAX),
        })
    }

    /// `key`'s account; all zero if it never appeared.
    pub fn get(&self, key: &PublicKey) -> Account {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    /// Every account that has appeared (in genesis or in a receipt), sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &Account)> {
        self.accounts.iter()
    }

    /// How many distinct receipts were applied.
    pub fn receipts_applied(&self) -> u64 {
        self.receipts
    }

    /// Sum of all balances: always the genesis total, since receipts only move money.
    pub fn total(&self) -> u64 {
        self.accounts
            .values()
            .fold(0u64, |sum, a| sum.saturating_add(a.balance))
    }
}

/// What one key paid and received over a set of receipts, without a genesis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Paid as a client.
    pub paid: u64,
    /// Earned as a provider.
    pub received: u64,
}

/// The money each key paid and received over `receipts`, counting each receipt id once. No
/// genesis and so no overdraft check: this is what can be said about receipts alone, e.g. by a
/// node that has no genesis file.
pub fn flows<'a>(
    receipts: impl IntoIterator<Item = &'a Receipt>,
) -> Result<BTreeMap<PublicKey, Flow>, BalanceError> {
    let mut out: BTreeMap<PublicKey, Flow> = BTreeMap::new();
    let mut seen = HashSet::new();
    for receipt in receipts {
        let id = receipt.id();
        if !seen.insert(id) {
            continue;
        }
        let body = receipt.body();
        let client = out.entry(body.client).or_default();
        client.paid = client
            .paid
            .checked_add(body.price)
            .ok_or(BalanceError::Overflow(id))?;
        let provider = out.entry(body.provider).or_default();
        provider.received = provider
            .received
            .checked_add(body.price)
            .ok_or(BalanceError::Overflow(id))?;
    }
    Ok(out)
}

impl<'a> IntoIterator for &'a Balances {
    type Item = (&'a PublicKey, &'a Account);
    type IntoIter = std::collections::btree_map::Iter<'a, PublicKey, Account>;
    fn into_iter(self) -> Self::IntoIter {
        self.accounts.iter()
    }
}
