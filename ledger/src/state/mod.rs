//! The ledger state machine: balances, hotkey ownership, stake and delegation, subnets, neurons,
//! weights and epochs, as one pure, deterministic function of (state, height, ordered signed
//! transactions).
//!
//! Strangers agree on the ledger by agreeing on the *order* of transactions (a chain or the local
//! log, [`crate::log`]) and each computing the state themselves with [`apply_block`]. So nothing here
//! may depend on anything but its inputs: maps are `BTreeMap`s (no hash order leaks), arithmetic is
//! checked integers, and every refusal is a typed [`TxError`] that depends only on the transaction
//! and the state. [`LedgerState::state_root`] commits to the whole state, so two nodes can compare
//! one hash instead of their databases.
//!
//! Money model. Agora runs one token, not the chain's per-subnet alpha pools: stake is plain token
//! per (coldkey, hotkey) and counts on every subnet the hotkey is registered on, as it did on the
//! chain before dynamic TAO. Invariant, checked by the tests: free balances + stake + emission
//! pending in subnets = total issuance, and issuance never passes the 21,000,000-token cap.
//! Registration burns and subnet lock costs are *recycled* (spec 3): they lower issuance, so
//! emission may mint them again.

mod apply;
mod epoch;
pub mod genesis;
pub mod hyper;
pub mod tx;

pub use apply::{BlockError, apply_block, apply_block_bytes};
pub use genesis::{GenesisError, GenesisSubnet, LedgerGenesis};
pub use hyper::{HyperError, Hyperparameters, LedgerParams, MAX_ALLOWED_UIDS, MIN_ALLOWED_UIDS};
pub use tx::{
    Call, MAX_SALT_LEN, MAX_TX_LEN, Role, TX_DOMAIN, Transaction, TxError, decode_tx,
    hotkey_binding_proof, sign_tx, weights_commit_hash,
};

use agora_protocols::PublicKey;
use agora_protocols::codec::{self, CodecError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A 32-byte blake3 commitment to a whole [`LedgerState`].
pub type StateRoot = [u8; 32];

/// A hotkey's standing: who owns it and what take it charges its delegators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotkeyInfo {
    /// The owning coldkey.
    pub owner: PublicKey,
    /// Share of delegated dividends the owner keeps, `u16` proportion.
    pub take_u16: u16,
    /// Block of the last take increase (rate-limited), or of the association.
    pub take_changed_at: u64,
}

/// Most unrevealed weight commits one hotkey may hold on one subnet (the chain's hard-coded 10 in
/// `subnets/weights.rs::internal_commit_weights`, error `TooManyUnrevealedCommits`). Expired
/// commits do not count: they are purged before the check.
pub const MAX_UNREVEALED_COMMITS: usize = 10;

/// One unrevealed weight commit: an entry of the chain's `WeightCommits` queue, which holds
/// `(hash, commit_epoch, commit_block)`; the reveal epoch is `commit_epoch + reveal_period_epochs`
/// (stored here already added, since an Agora subnet's hyperparameters never change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightCommit {
    /// blake3 of (hotkey, netuid, uids, weights, salt).
    pub hash: [u8; 32],
    /// Block the commit was made: the anti-sniping mask compares it with registration blocks.
    pub block: u64,
    /// The only epoch ([`Subnet::weights_epoch`]) in which it may be revealed; after it, the
    /// commit has expired.
    pub reveal_epoch: u64,
}

/// One UID of a subnet, with the last epoch's results (the metagraph row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neuron {
    /// The UID (its index in [`Subnet::neurons`]).
    pub uid: u16,
    /// The hotkey occupying it.
    pub hotkey: PublicKey,
    /// Block its current occupant registered.
    pub registered_at: u64,
    /// The chain's `LastUpdate`: block of its registration, its last weight set or its last
    /// commit (a reveal does not move it). The weights rate limit counts from it, and the epoch
    /// reads it for activity and the outdated-weight mask.
    pub last_update: u64,
    /// Block its current weight row was stored, by a weight set or a reveal (`None`: never). The
    /// epoch's settlement anchors the rows stored within the epoch.
    pub weights_stored_at: Option<u64>,
    /// Weight row as stored: sorted by uid, max-upscaled to 65535.
    pub weights: Vec<(u16, u16)>,
    /// Bond row from the last epoch.
    pub bonds: Vec<(u16, u16)>,
    /// Validator permit from the last epoch.
    pub validator_permit: bool,
    /// Set weights within the activity cutoff at the last epoch.
    pub active: bool,
    /// Last epoch's consensus, `u16` proportion.
    pub consensus_u16: u16,
    /// Last epoch's incentive, `u16` proportion.
    pub incentive_u16: u16,
    /// Last epoch's dividends, `u16` proportion.
    pub dividends_u16: u16,
    /// Last epoch's validator trust, `u16` proportion.
    pub validator_trust_u16: u16,
    /// Last epoch's stake weight, `u16` proportion.
    pub stake_weight_u16: u16,
    /// Units emitted to it at the last epoch; pruning removes the lowest.
    pub emission: u64,
}

impl Neuron {
    fn new(uid: u16, hotkey: PublicKey, block: u64) -> Self {
        Self {
            uid,
            hotkey,
            registered_at: block,
            last_update: block,
            weights_stored_at: None,
            weights: Vec::new(),
            bonds: Vec::new(),
            validator_permit: false,
            active: false,
            consensus_u16: 0,
            incentive_u16: 0,
            dividends_u16: 0,
            validator_trust_u16: 0,
            stake_weight_u16: 0,
            emission: 0,
        }
    }
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// Its id (1.. ; 0 is the chain's root network and is never used).
    pub netuid: u16,
    /// The owning coldkey: receives the owner cut.
    pub owner: PublicKey,
    /// The owner's hotkey on this subnet, if named.
    pub owner_hotkey: Option<PublicKey>,
    /// Hyperparameters.
    pub hyperparameters: Hyperparameters,
    /// Block it was created.
    pub created_at: u64,
    /// Current registration burn price, units.
    pub burn: u64,
    /// Emission accrued for participants since the last epoch, paid at the next.
    pub pending_emission: u64,
    /// Owner cut accrued since the last epoch.
    pub pending_owner_cut: u64,
    /// Block of the last epoch (0: never).
    pub last_epoch_block: u64,
    /// Epochs run.
    pub epochs: u64,
    /// Neurons by uid.
    pub neurons: Vec<Neuron>,
    /// UID of each registered hotkey.
    pub uids: BTreeMap<PublicKey, u16>,
    /// Unrevealed weight commits per hotkey, oldest first, at most [`MAX_UNREVEALED_COMMITS`]
    /// live ones each; no empty entries. Keyed by hotkey, not uid, as the chain's
    /// `WeightCommits[(netuid, hotkey)]`: a pruned hotkey's commits stay until they expire (and may
    /// still be revealed if it registers again in time); the epoch drops the queues of
    /// unregistered hotkeys once every commit in them has expired, which keeps the map bounded.
    pub weight_commits: BTreeMap<PublicKey, Vec<WeightCommit>>,
}

impl Subnet {
    /// The epoch index of `block` for this subnet, the chain's legacy modulo formula
    /// `(block + netuid + 1) / (tempo + 1)`: it advances on the block *after* an epoch block.
    /// Anchoring windows count epochs with it; weight commits use [`Self::weights_epoch`].
    pub fn epoch_index(&self, block: u64) -> u64 {
        let tempo = u64::from(self.hyperparameters.tempo);
        block.saturating_add(u64::from(self.netuid) + 1) / (tempo + 1)
    }

    /// Whether the epoch runs at `block`: the chain's `blocks_until_next_epoch == 0`, staggered
    /// by netuid so subnets do not all run at once.
    pub fn is_epoch_block(&self, block: u64) -> bool {
        let tempo = u64::from(self.hyperparameters.tempo);
        block.saturating_add(u64::from(self.netuid) + 1) % (tempo + 1) == tempo
    }

    /// The epoch a weight commit or reveal made in `block` belongs to: the chain's
    /// `current_epoch_with_lookahead` (`subnets/weights.rs`), which counts the epochs run so far,
    /// the one run at the start of `block` included (epochs run before a block's transactions,
    /// here as on the chain). That is [`Self::epoch_index`] of the *next* block: the two differ
    /// only on an epoch block, where a transaction already belongs to the new epoch.
    pub fn weights_epoch(&self, block: u64) -> u64 {
        self.epoch_index(block.saturating_add(1))
    }

    /// The unrevealed commits of `hotkey`, oldest first (expired ones included until the hotkey's
    /// next commit or reveal purges them, as on the chain).
    pub fn weight_commits(&self, hotkey: &PublicKey) -> &[WeightCommit] {
        self.weight_commits.get(hotkey).map_or(&[], Vec::as_slice)
    }

    /// The neuron of `hotkey`, if registered.
    pub fn neuron(&self, hotkey: &PublicKey) -> Option<&Neuron> {
        let uid = self.uids.get(hotkey)?;
        self.neurons.get(usize::from(*uid))
    }
}

/// One row of a subnet's metagraph: what `agora metagraph` prints, in the units the chain stores
/// (`u16` proportions, units of 1e-9 token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetagraphRow {
    /// UID.
    pub uid: u16,
    /// Hotkey, hex.
    pub hotkey: String,
    /// Owning coldkey, hex.
    pub coldkey: String,
    /// Total stake on the hotkey.
    pub stake: u64,
    /// Validator trust, `u16` proportion.
    pub validator_trust_u16: u16,
    /// Consensus, `u16` proportion.
    pub consensus_u16: u16,
    /// Incentive, `u16` proportion.
    pub incentive_u16: u16,
    /// Dividends, `u16` proportion.
    pub dividends_u16: u16,
    /// Emission at the last epoch.
    pub emission: u64,
    /// Active at the last epoch.
    pub active: bool,
    /// Validator permit.
    pub validator_permit: bool,
    /// Block of registration.
    pub registered_at: u64,
    /// The chain's `LastUpdate`: block of registration, last weight set or last commit.
    pub last_update: u64,
}

/// The whole ledger state after some height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    height: u64,
    params: LedgerParams,
    total_issuance: u64,
    balances: BTreeMap<PublicKey, u64>,
    nonces: BTreeMap<PublicKey, u64>,
    hotkeys: BTreeMap<PublicKey, HotkeyInfo>,
    /// Hotkeys owned per coldkey.
    owned: BTreeMap<PublicKey, Vec<PublicKey>>,
    /// Stake per hotkey, per coldkey: a hotkey's stakers are one inner map. No empty entries.
    stakes: BTreeMap<PublicKey, BTreeMap<PublicKey, u64>>,
    /// Sum of stake per hotkey.
    hotkey_stake: BTreeMap<PublicKey, u64>,
    subnets: BTreeMap<u16, Subnet>,
}

impl LedgerState {
    /// An empty ledger at height 0 with the given parameters.
    pub fn empty(params: LedgerParams) -> Self {
        Self {
            height: 0,
            params,
            total_issuance: 0,
            balances: BTreeMap::new(),
            nonces: BTreeMap::new(),
            hotkeys: BTreeMap::new(),
            owned: BTreeMap::new(),
            stakes: BTreeMap::new(),
            hotkey_stake: BTreeMap::new(),
            subnets: BTreeMap::new(),
        }
    }

    /// The last applied block height (0: genesis).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Ledger-wide parameters.
    pub fn params(&self) -> &LedgerParams {
        &self.params
    }

    /// Total units in existence: balances, stake and pending emission.
    pub fn total_issuance(&self) -> u64 {
        self.total_issuance
    }

    /// `key`'s free balance.
    pub fn balance(&self, key: &PublicKey) -> u64 {
        self.balances.get(key).copied().unwrap_or(0)
    }

    /// Every non-zero free balance.
    pub fn balances(&self) -> impl Iterator<Item = (&PublicKey, u64)> {
        self.balances.iter().map(|(k, v)| (k, *v))
    }

    /// `key`'s last accepted nonce, if it has signed anything.
    pub fn nonce(&self, key: &PublicKey) -> Option<u64> {
        self.nonces.get(key).copied()
    }

    /// The nonce to use for `key`'s next transaction.
    pub fn next_nonce(&self, key: &PublicKey) -> u64 {
        self.nonce(key).map_or(0, |n| n.saturating_add(1))
    }

    /// A hotkey's owner and take.
    pub fn hotkey(&self, hotkey: &PublicKey) -> Option<&HotkeyInfo> {
        self.hotkeys.get(hotkey)
    }

    /// The hotkeys a coldkey owns, in association order.
    pub fn owned_hotkeys(&self, coldkey: &PublicKey) -> &[PublicKey] {
        self.owned.get(coldkey).map_or(&[], Vec::as_slice)
    }

    /// Stake of `coldkey` on `hotkey`.
    pub fn stake(&self, coldkey: &PublicKey, hotkey: &PublicKey) -> u64 {
        self.stakes
            .get(hotkey)
            .and_then(|m| m.get(coldkey))
            .copied()
            .unwrap_or(0)
    }

    /// Total stake on `hotkey`, all coldkeys together.
    pub fn hotkey_stake(&self, hotkey: &PublicKey) -> u64 {
        self.hotkey_stake.get(hotkey).copied().unwrap_or(0)
    }

    /// Every (coldkey, stake) on `hotkey`, by coldkey.
    pub fn stakers(&self, hotkey: &PublicKey) -> impl Iterator<Item = (&PublicKey, u64)> {
        self.stakes
            .get(hotkey)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k, *v)))
    }

    /// A subnet.
    pub fn subnet(&self, netuid: u16) -> Option<&Subnet> {
        self.subnets.get(&netuid)
    }

    /// Every subnet, by netuid.
    pub fn subnets(&self) -> impl Iterator<Item = &Subnet> {
        self.subnets.values()
    }

    /// The metagraph of a subnet, by uid.
    pub fn metagraph(&self, netuid: u16) -> Option<Vec<MetagraphRow>> {
        let s = self.subnets.get(&netuid)?;
        Some(
            s.neurons
                .iter()
                .map(|n| MetagraphRow {
                    uid: n.uid,
                    hotkey: n.hotkey.to_hex(),
                    coldkey: self
                        .hotkeys
                        .get(&n.hotkey)
                        .map(|i| i.owner.to_hex())
                        .unwrap_or_default(),
                    stake: self.hotkey_stake(&n.hotkey),
                    validator_trust_u16: n.validator_trust_u16,
                    consensus_u16: n.consensus_u16,
                    incentive_u16: n.incentive_u16,
                    dividends_u16: n.dividends_u16,
                    emission: n.emission,
                    active: n.active,
                    validator_permit: n.validator_permit,
                    registered_at: n.registered_at,
                    last_update: n.last_update,
                })
                .collect(),
        )
    }

    /// Sum of free balances, stake and pending emission: equals [`Self::total_issuance`] in every
    /// reachable state (a check for tests and audits; `None` on overflow, which cannot happen
    /// below the supply cap).
    pub fn total_held(&self) -> Option<u64> {
        let mut sum = 0u64;
        let stakes = self.stakes.values().flat_map(BTreeMap::values);
        for v in self.balances.values().chain(stakes) {
            sum = sum.checked_add(*v)?;
        }
        for s in self.subnets.values() {
            sum = sum
                .checked_add(s.pending_emission)?
                .checked_add(s.pending_owner_cut)?;
        }
        Some(sum)
    }

    /// blake3 commitment to the whole state over its canonical encoding (fixed-width bincode of
    /// each component in `BTreeMap` order), domain-separated. Each entry is encoded on its own,
    /// so the root of a large state needs no single large buffer.
    pub fn state_root(&self) -> Result<StateRoot, CodecError> {
        let mut h = blake3::Hasher::new();
        h.update(b"agora/ledger/state-root/v1\0");
        h.update(&codec::encode(&(
            self.height,
            &self.params,
            self.total_issuance,
        ))?);
        hash_map(&mut h, &self.balances)?;
        hash_map(&mut h, &self.nonces)?;
        hash_map(&mut h, &self.hotkeys)?;
        hash_map(&mut h, &self.owned)?;
        hash_map(&mut h, &self.stakes)?;
        hash_map(&mut h, &self.hotkey_stake)?;
        hash_map(&mut h, &self.subnets)?;
        Ok(*h.finalize().as_bytes())
    }

    /// [`Self::state_root`] as lower-case hex.
    pub fn state_root_hex(&self) -> Result<String, CodecError> {
        Ok(self
            .state_root()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

fn hash_map<K: Serialize, V: Serialize>(
    h: &mut blake3::Hasher,
    map: &BTreeMap<K, V>,
) -> Result<(), CodecError> {
    h.update(&(map.len() as u64).to_le_bytes());
    for entry in map {
        h.update(&codec::encode(&entry)?);
    }
    Ok(())
}
