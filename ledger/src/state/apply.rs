//! Applying a block: the start-of-block steps (burn decay, emission, epochs) then each transaction
//! in order.
//!
//! Every handler checks everything it needs *before* writing anything, so a refused transaction
//! leaves the state exactly as it was (nonce included): refusals are then a pure function of the
//! transaction and the state, the same on every node.

use super::tx::{Call, Role, Transaction, TxError, decode_tx, verify_binding_proof};
use super::{HotkeyInfo, LedgerState, Neuron, Subnet, WeightCommit};
use crate::balances::UNITS_PER_TOKEN;
use agora_protocols::{PublicKey, Signed};
use std::collections::BTreeMap;
use thiserror::Error;

/// Why a whole block was refused (individual transactions are refused with [`TxError`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    /// Blocks must be applied one after another, without gaps: per-block steps (burn decay,
    /// emission, epochs) depend on every height being visited.
    #[error("block height {got} does not follow the state's height {expected} - 1")]
    Height {
        /// The height the state expects next.
        expected: u64,
        /// The height given.
        got: u64,
    },
}

/// Applies one block to a copy of `state`: the pure form of [`LedgerState::apply_block`].
pub fn apply_block(
    state: &LedgerState,
    height: u64,
    txs: &[Signed<Transaction>],
) -> Result<(LedgerState, Vec<Result<(), TxError>>), BlockError> {
    let mut next = state.clone();
    let results = next.apply_block(height, txs)?;
    Ok((next, results))
}

/// Applies one block of raw envelope bytes (as the log carries them) to a copy of `state`: the
/// pure form of [`LedgerState::apply_block_bytes`].
pub fn apply_block_bytes<B: AsRef<[u8]>>(
    state: &LedgerState,
    height: u64,
    txs: &[B],
) -> Result<(LedgerState, Vec<Result<(), TxError>>), BlockError> {
    let mut next = state.clone();
    let results = next.apply_block_bytes(height, txs)?;
    Ok((next, results))
}

/// `x · num / den`, floored, in 128 bits (`den > 0`).
pub(super) fn mul_div(x: u64, num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    u64::try_from(u128::from(x) * u128::from(num) / u128::from(den)).unwrap_or(u64::MAX)
}

/// The chain's weight storage: sorted by uid, max-upscaled so the largest is 65535 (rounded half
/// away from zero, spec 2.1), after checking lengths, range and duplicates.
fn weight_row(n: usize, uids: &[u16], weights: &[u16]) -> Result<Vec<(u16, u16)>, TxError> {
    if uids.len() != weights.len() {
        return Err(TxError::BadWeights(format!(
            "{} uids but {} weights",
            uids.len(),
            weights.len()
        )));
    }
    if uids.is_empty() || uids.len() > n {
        return Err(TxError::BadWeights(format!(
            "{} entries for a subnet of {n} uids",
            uids.len()
        )));
    }
    let mut row: Vec<(u16, u16)> = uids.iter().copied().zip(weights.iter().copied()).collect();
    row.sort_unstable_by_key(|(uid, _)| *uid);
    for pair in row.windows(2) {
        if let [a, b] = pair
            && a.0 == b.0
        {
            return Err(TxError::BadWeights(format!("uid {} appears twice", a.0)));
        }
    }
    if let Some((uid, _)) = row.iter().find(|(uid, _)| usize::from(*uid) >= n) {
        return Err(TxError::BadWeights(format!(
            "uid {uid} does not exist (subnet has {n})"
        )));
    }
    let max = u64::from(row.iter().map(|(_, w)| *w).max().unwrap_or(0));
    if max > 0 {
        for (_, w) in &mut row {
            let scaled = (u64::from(*w) * 65_535 * 2 + max) / (2 * max);
            *w = u16::try_from(scaled).unwrap_or(u16::MAX);
        }
    }
    Ok(row)
}

impl LedgerState {
    /// Applies block `height` (which must be `self.height() + 1`): first the start-of-block steps
    /// the chain runs before extrinsics (burn price decay, emission, the epochs due), then each
    /// transaction in order. Returns one result per transaction; a refused one changed nothing.
    /// On a height error nothing changes.
    pub fn apply_block(
        &mut self,
        height: u64,
        txs: &[Signed<Transaction>],
    ) -> Result<Vec<Result<(), TxError>>, BlockError> {
        self.begin_block(height)?;
        Ok(txs.iter().map(|tx| self.apply_tx(tx)).collect())
    }

    /// [`Self::apply_block`] over raw envelope bytes: each is decoded and its signature checked
    /// here, so a forged or garbled entry in the log is refused ([`TxError::BadSignature`],
    /// [`TxError::Malformed`]) the same way on every node.
    pub fn apply_block_bytes<B: AsRef<[u8]>>(
        &mut self,
        height: u64,
        txs: &[B],
    ) -> Result<Vec<Result<(), TxError>>, BlockError> {
        self.begin_block(height)?;
        Ok(txs
            .iter()
            .map(|bytes| decode_tx(bytes.as_ref()).and_then(|tx| self.apply_tx(&tx)))
            .collect())
    }

    fn begin_block(&mut self, height: u64) -> Result<(), BlockError> {
        let expected = self.height.saturating_add(1);
        if height != expected {
            return Err(BlockError::Height {
                expected,
                got: height,
            });
        }
        self.height = height;
        self.decay_burns();
        self.accrue_emission();
        self.run_due_epochs();
        Ok(())
    }

    /// Applies one verified transaction at the current height (the last block begun).
    pub fn apply_tx(&mut self, tx: &Signed<Transaction>) -> Result<(), TxError> {
        let signer = tx.signer();
        let t = tx.value();
        let needed = t.call.role();
        if t.role != needed {
            return Err(TxError::WrongRole {
                call: t.call.name(),
                needed,
                declared: t.role,
            });
        }
        let is_hotkey = self.hotkeys.contains_key(&signer);
        match t.role {
            Role::Coldkey if is_hotkey => return Err(TxError::SignerIsHotkey),
            Role::Hotkey if !is_hotkey => return Err(TxError::SignerNotHotkey),
            _ => {}
        }
        if let Some(last) = self.nonces.get(&signer).copied()
            && t.nonce <= last
        {
            return Err(TxError::StaleNonce { got: t.nonce, last });
        }
        self.apply_call(&signer, &t.call)?;
        self.nonces.insert(signer, t.nonce);
        Ok(())
    }

    fn apply_call(&mut self, signer: &PublicKey, call: &Call) -> Result<(), TxError> {
        match call {
            Call::Transfer { to, amount } => self.transfer(signer, to, *amount),
            Call::AssociateHotkey { hotkey, proof } => self.associate(signer, hotkey, proof),
            Call::AddStake { hotkey, amount } => self.add_stake(signer, hotkey, *amount),
            Call::RemoveStake { hotkey, amount } => self.remove_stake(signer, hotkey, *amount),
            Call::SetTake { hotkey, take_u16 } => self.set_take(signer, hotkey, *take_u16),
            Call::CreateSubnet {
                hyperparameters,
                owner_hotkey,
            } => self.create_subnet(signer, hyperparameters.clone(), *owner_hotkey),
            Call::Register { netuid, hotkey } => self.register(signer, *netuid, hotkey),
            Call::SetWeights {
                netuid,
                uids,
                weights,
            } => self.set_weights(signer, *netuid, uids, weights),
            Call::CommitWeights {
                netuid,
                commit_hash,
            } => self.commit_weights(signer, *netuid, *commit_hash),
            Call::RevealWeights {
                netuid,
                uids,
                weights,
                salt,
            } => self.reveal_weights(signer, *netuid, uids, weights, salt),
        }
    }

    /// Sets a free balance, keeping no zero entries (so the state root does not depend on
    /// whether an account once held money).
    pub(super) fn set_balance(&mut self, key: &PublicKey, value: u64) {
        if value == 0 {
            self.balances.remove(key);
        } else {
            self.balances.insert(*key, value);
        }
    }

    /// Sets one stake entry and the hotkey's total, keeping no zero entries.
    pub(super) fn set_stake(&mut self, coldkey: &PublicKey, hotkey: &PublicKey, value: u64) {
        let old = self.stake(coldkey, hotkey);
        let total = self
            .hotkey_stake(hotkey)
            .saturating_sub(old)
            .saturating_add(value);
        if total == 0 {
            self.hotkey_stake.remove(hotkey);
        } else {
            self.hotkey_stake.insert(*hotkey, total);
        }
        let inner = self.stakes.entry(*hotkey).or_default();
        if value == 0 {
            inner.remove(coldkey);
        } else {
            inner.insert(*coldkey, value);
        }
        if inner.is_empty() {
            self.stakes.remove(hotkey);
        }
    }

    fn debit_check(&self, key: &PublicKey, amount: u64) -> Result<u64, TxError> {
        let balance = self.balance(key);
        balance
            .checked_sub(amount)
            .ok_or(TxError::InsufficientBalance {
                balance,
                needed: amount,
            })
    }

    fn owned_hotkey(&self, coldkey: &PublicKey, hotkey: &PublicKey) -> Result<(), TxError> {
        match self.hotkeys.get(hotkey) {
            None => Err(TxError::UnknownHotkey(Box::new(*hotkey))),
            Some(info) if info.owner != *coldkey => Err(TxError::NotHotkeyOwner(Box::new(*hotkey))),
            Some(_) => Ok(()),
        }
    }

    fn transfer(&mut self, from: &PublicKey, to: &PublicKey, amount: u64) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        if self.hotkeys.contains_key(to) {
            return Err(TxError::RecipientIsHotkey(Box::new(*to)));
        }
        let left = self.debit_check(from, amount)?;
        if from == to {
            return Ok(());
        }
        let credited = self
            .balance(to)
            .checked_add(amount)
            .ok_or(TxError::Overflow)?;
        self.set_balance(from, left);
        self.set_balance(to, credited);
        Ok(())
    }

    fn associate(
        &mut self,
        coldkey: &PublicKey,
        hotkey: &PublicKey,
        proof: &agora_protocols::Signature,
    ) -> Result<(), TxError> {
        if hotkey == coldkey {
            return Err(TxError::SelfAssociation);
        }
        if !verify_binding_proof(hotkey, coldkey, proof) {
            return Err(TxError::BadBindingProof);
        }
        if self.hotkeys.contains_key(hotkey) {
            return Err(TxError::HotkeyAlreadyOwned(Box::new(*hotkey)));
        }
        if self.balances.contains_key(hotkey)
            || self.nonces.contains_key(hotkey)
            || self.owned.contains_key(hotkey)
        {
            return Err(TxError::KeyInUseAsColdkey(Box::new(*hotkey)));
        }
        self.hotkeys.insert(
            *hotkey,
            HotkeyInfo {
                owner: *coldkey,
                take_u16: self.params.max_take_u16,
                take_changed_at: self.height,
            },
        );
        self.owned.entry(*coldkey).or_default().push(*hotkey);
        Ok(())
    }

    fn add_stake(
        &mut self,
        coldkey: &PublicKey,
        hotkey: &PublicKey,
        amount: u64,
    ) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        if amount < self.params.min_stake {
            return Err(TxError::BelowMinStake {
                amount,
                min: self.params.min_stake,
            });
        }
        if !self.hotkeys.contains_key(hotkey) {
            return Err(TxError::UnknownHotkey(Box::new(*hotkey)));
        }
        let left = self.debit_check(coldkey, amount)?;
        let stake = self
            .stake(coldkey, hotkey)
            .checked_add(amount)
            .ok_or(TxError::Overflow)?;
        self.hotkey_stake(hotkey)
            .checked_add(amount)
            .ok_or(TxError::Overflow)?;
        self.set_balance(coldkey, left);
        self.set_stake(coldkey, hotkey, stake);
        Ok(())
    }

    fn remove_stake(
        &mut self,
        coldkey: &PublicKey,
        hotkey: &PublicKey,
        amount: u64,
    ) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        let stake = self.stake(coldkey, hotkey);
        let left = stake
            .checked_sub(amount)
            .ok_or(TxError::InsufficientStake {
                stake,
                needed: amount,
            })?;
        let balance = self
            .balance(coldkey)
            .checked_add(amount)
            .ok_or(TxError::Overflow)?;
        self.set_stake(coldkey, hotkey, left);
        self.set_balance(coldkey, balance);
        Ok(())
    }

    fn set_take(
        &mut self,
        coldkey: &PublicKey,
        hotkey: &PublicKey,
        take: u16,
    ) -> Result<(), TxError> {
        self.owned_hotkey(coldkey, hotkey)?;
        let max = self.params.max_take_u16;
        if take > max {
            return Err(TxError::TakeTooHigh { take, max });
        }
        let height = self.height;
        let limit = self.params.take_rate_limit;
        let info = self
            .hotkeys
            .get_mut(hotkey)
            .ok_or_else(|| TxError::UnknownHotkey(Box::new(*hotkey)))?;
        if take > info.take_u16 {
            let next = info.take_changed_at.saturating_add(limit);
            if height < next {
                return Err(TxError::TakeRateLimited { next });
            }
        }
        info.take_u16 = take;
        info.take_changed_at = height;
        Ok(())
    }

    fn create_subnet(
        &mut self,
        owner: &PublicKey,
        hyperparameters: Option<super::Hyperparameters>,
        owner_hotkey: Option<PublicKey>,
    ) -> Result<(), TxError> {
        let hyper = hyperparameters.unwrap_or_default();
        hyper.validate()?;
        let max = self.params.max_subnets;
        if self.subnets.len() >= usize::from(max) {
            return Err(TxError::TooManySubnets(max));
        }
        if let Some(hotkey) = &owner_hotkey {
            self.owned_hotkey(owner, hotkey)?;
        }
        let cost = self.params.subnet_lock_cost;
        let left = self.debit_check(owner, cost)?;
        let netuid = (1..=u16::MAX)
            .find(|n| !self.subnets.contains_key(n))
            .ok_or(TxError::TooManySubnets(max))?;
        self.set_balance(owner, left);
        self.total_issuance = self.total_issuance.saturating_sub(cost);
        let subnet = Subnet::new(netuid, *owner, owner_hotkey, hyper, self.height);
        self.subnets.insert(netuid, subnet);
        Ok(())
    }

    /// `do_register`: pays the current burn, takes a free uid or prunes one, then raises the burn
    /// for the next registration. No count limit per block or interval, as on the chain today.
    fn register(
        &mut self,
        coldkey: &PublicKey,
        netuid: u16,
        hotkey: &PublicKey,
    ) -> Result<(), TxError> {
        let subnet = self
            .subnets
            .get(&netuid)
            .ok_or(TxError::UnknownSubnet(netuid))?;
        self.owned_hotkey(coldkey, hotkey)?;
        if subnet.uids.contains_key(hotkey) {
            return Err(TxError::AlreadyRegistered(netuid));
        }
        let burn = subnet.burn;
        let left = self.debit_check(coldkey, burn)?;
        let height = self.height;
        let slot = if subnet.neurons.len() < usize::from(subnet.hyperparameters.max_allowed_uids) {
            None
        } else {
            Some(
                self.neuron_to_prune(subnet, height)
                    .ok_or(TxError::SubnetFull(netuid))?,
            )
        };
        self.set_balance(coldkey, left);
        self.total_issuance = self.total_issuance.saturating_sub(burn);
        let subnet = self
            .subnets
            .get_mut(&netuid)
            .ok_or(TxError::UnknownSubnet(netuid))?;
        match slot {
            None => {
                let uid = u16::try_from(subnet.neurons.len()).unwrap_or(u16::MAX);
                subnet.neurons.push(Neuron::new(uid, *hotkey, height));
                subnet.uids.insert(*hotkey, uid);
            }
            Some(uid) => subnet.replace_neuron(uid, *hotkey, height),
        }
        let h = &subnet.hyperparameters;
        let raised = mul_div(burn, u64::from(h.burn_increase_mult_milli), 1000);
        subnet.burn = raised.clamp(h.min_burn, h.max_burn);
        Ok(())
    }

    /// The UIDs the owner keeps forever: the named owner hotkey, plus the owner's
    /// `immune_owner_uids_limit` earliest-registered hotkeys (spec 4).
    fn owner_immortal(&self, subnet: &Subnet) -> Vec<u16> {
        let mut immortal: Vec<u16> = Vec::new();
        if let Some(uid) = subnet.owner_hotkey.and_then(|k| subnet.uids.get(&k)) {
            immortal.push(*uid);
        }
        let mut owners: Vec<&Neuron> = subnet
            .neurons
            .iter()
            .filter(|n| self.hotkeys.get(&n.hotkey).map(|i| i.owner) == Some(subnet.owner))
            .collect();
        owners.sort_by_key(|n| (n.registered_at, n.uid));
        immortal.extend(
            owners
                .iter()
                .take(usize::from(subnet.hyperparameters.immune_owner_uids_limit))
                .map(|n| n.uid),
        );
        immortal
    }

    /// `get_neuron_to_prune` (spec 4): skip owner-immortal UIDs; if more than
    /// `min_non_immune_uids` non-immune UIDs exist, the non-immune one with the lowest emission
    /// (ties: older registration, then lower uid), otherwise the lowest-emission immune one.
    fn neuron_to_prune(&self, subnet: &Subnet, height: u64) -> Option<u16> {
        let immortal = self.owner_immortal(subnet);
        let period = u64::from(subnet.hyperparameters.immunity_period);
        let (mut immune, mut mortal): (Vec<&Neuron>, Vec<&Neuron>) = subnet
            .neurons
            .iter()
            .filter(|n| !immortal.contains(&n.uid))
            .partition(|n| height.saturating_sub(n.registered_at) < period);
        let key = |n: &&Neuron| (n.emission, n.registered_at, n.uid);
        immune.sort_by_key(key);
        mortal.sort_by_key(key);
        let prefer_mortal = mortal.len() > usize::from(subnet.hyperparameters.min_non_immune_uids);
        let pick = if prefer_mortal {
            mortal.first()
        } else {
            immune.first().or(mortal.first())
        };
        pick.map(|n| n.uid)
    }

    fn weights_subnet(&self, hotkey: &PublicKey, netuid: u16) -> Result<(&Subnet, u16), TxError> {
        let subnet = self
            .subnets
            .get(&netuid)
            .ok_or(TxError::UnknownSubnet(netuid))?;
        let uid = *subnet
            .uids
            .get(hotkey)
            .ok_or(TxError::NotRegistered(netuid))?;
        Ok((subnet, uid))
    }

    /// `check_rate_limit`: `WeightsSetRateLimit` blocks since `LastUpdate` (registration, weight
    /// set or commit), so a neuron also waits that long after it registers; `LastUpdate` 0 (never
    /// set, the chain's storage default) passes.
    fn check_rate_limit(&self, subnet: &Subnet, uid: u16) -> Result<(), TxError> {
        let limit = subnet.hyperparameters.weights_set_rate_limit;
        if let Some(last) = subnet
            .neurons
            .get(usize::from(uid))
            .map(|n| n.last_update)
            .filter(|&last| last != 0)
        {
            let next = last.saturating_add(limit);
            if self.height < next {
                return Err(TxError::WeightsRateLimited { next });
            }
        }
        Ok(())
    }

    fn neuron_mut(&mut self, netuid: u16, uid: u16) -> Result<&mut Neuron, TxError> {
        self.subnets
            .get_mut(&netuid)
            .and_then(|s| s.neurons.get_mut(usize::from(uid)))
            .ok_or(TxError::NotRegistered(netuid))
    }

    fn set_weights(
        &mut self,
        hotkey: &PublicKey,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
    ) -> Result<(), TxError> {
        let (subnet, uid) = self.weights_subnet(hotkey, netuid)?;
        if subnet.hyperparameters.commit_reveal_enabled {
            return Err(TxError::CommitRevealRequired(netuid));
        }
        self.check_rate_limit(subnet, uid)?;
        let row = weight_row(subnet.neurons.len(), uids, weights)?;
        let height = self.height;
        let n = self.neuron_mut(netuid, uid)?;
        n.weights = row;
        n.last_update = height;
        n.weights_stored_at = Some(height);
        Ok(())
    }

    /// `do_commit_weights`: registered hotkey, commit-reveal on, rate limit; then the expired
    /// commits at the front of the hotkey's queue are purged and the commit is refused if
    /// [`super::MAX_UNREVEALED_COMMITS`] remain; else it is queued with its block and reveal epoch.
    fn commit_weights(
        &mut self,
        hotkey: &PublicKey,
        netuid: u16,
        hash: [u8; 32],
    ) -> Result<(), TxError> {
        let (subnet, uid) = self.weights_subnet(hotkey, netuid)?;
        if !subnet.hyperparameters.commit_reveal_enabled {
            return Err(TxError::CommitRevealDisabled(netuid));
        }
        self.check_rate_limit(subnet, uid)?;
        let height = self.height;
        let now = subnet.weights_epoch(height);
        let (_, live) = split_expired(subnet.weight_commits(hotkey), now);
        if live.len() >= super::MAX_UNREVEALED_COMMITS {
            return Err(TxError::TooManyUnrevealedCommits(netuid));
        }
        let mut queue = live.to_vec();
        queue.push(WeightCommit {
            hash,
            block: height,
            reveal_epoch: now.saturating_add(subnet.hyperparameters.reveal_period_epochs),
        });
        let subnet = self
            .subnets
            .get_mut(&netuid)
            .ok_or(TxError::UnknownSubnet(netuid))?;
        subnet.weight_commits.insert(*hotkey, queue);
        // The chain moves `LastUpdate` at the commit, not at the reveal.
        let n = self.neuron_mut(netuid, uid)?;
        n.last_update = height;
        Ok(())
    }

    /// `do_reveal_weights`: purge the expired commits at the front of the queue, find the commit
    /// by hash among the rest, require its reveal epoch to be now, then drop it *and every older
    /// commit* from the queue and store the weights. A hash that matches only an expired commit is
    /// [`TxError::RevealTooLate`]. Reveals are not rate-limited (the commit was).
    fn reveal_weights(
        &mut self,
        hotkey: &PublicKey,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        salt: &[u8],
    ) -> Result<(), TxError> {
        if salt.len() > super::MAX_SALT_LEN {
            return Err(TxError::SaltTooLong(salt.len()));
        }
        let (subnet, uid) = self.weights_subnet(hotkey, netuid)?;
        if !subnet.hyperparameters.commit_reveal_enabled {
            return Err(TxError::CommitRevealDisabled(netuid));
        }
        let now = subnet.weights_epoch(self.height);
        let (expired, live) = split_expired(subnet.weight_commits(hotkey), now);
        let hash = super::weights_commit_hash(hotkey, netuid, uids, weights, salt)
            .map_err(|e| TxError::Malformed(e.to_string()))?;
        let Some(position) = live.iter().position(|c| c.hash == hash) else {
            if let Some(old) = expired.iter().rev().find(|c| c.hash == hash) {
                return Err(TxError::RevealTooLate {
                    reveal_epoch: old.reveal_epoch,
                    now,
                });
            }
            return Err(if live.is_empty() {
                TxError::NoCommit(netuid)
            } else {
                TxError::CommitMismatch
            });
        };
        let reveal_epoch = live[position].reveal_epoch;
        if now != reveal_epoch {
            // Live commits have `now <= reveal_epoch`, so this one is early.
            return Err(TxError::RevealTooEarly { reveal_epoch, now });
        }
        let row = weight_row(subnet.neurons.len(), uids, weights)?;
        let rest = live[position + 1..].to_vec();
        let height = self.height;
        let subnet = self
            .subnets
            .get_mut(&netuid)
            .ok_or(TxError::UnknownSubnet(netuid))?;
        if rest.is_empty() {
            subnet.weight_commits.remove(hotkey);
        } else {
            subnet.weight_commits.insert(*hotkey, rest);
        }
        let n = self.neuron_mut(netuid, uid)?;
        n.weights = row;
        n.weights_stored_at = Some(height);
        Ok(())
    }
}

/// Splits a commit queue (oldest first) into its expired front and the live rest at epoch `now`:
/// a commit has expired once `now` is past its reveal epoch (the chain's `is_commit_expired`).
/// Reveal epochs never decrease along a queue, so the expired commits are always a prefix.
pub(super) fn split_expired(
    queue: &[WeightCommit],
    now: u64,
) -> (&[WeightCommit], &[WeightCommit]) {
    let live_from = queue
        .iter()
        .position(|c| c.reveal_epoch >= now)
        .unwrap_or(queue.len());
    queue.split_at(live_from)
}

impl Subnet {
    /// A new subnet; its burn price starts at 1 token within the subnet's bounds (spec 4).
    pub(super) fn new(
        netuid: u16,
        owner: PublicKey,
        owner_hotkey: Option<PublicKey>,
        hyperparameters: super::Hyperparameters,
        height: u64,
    ) -> Self {
        let burn = UNITS_PER_TOKEN.clamp(hyperparameters.min_burn, hyperparameters.max_burn);
        Self {
            netuid,
            owner,
            owner_hotkey,
            hyperparameters,
            created_at: height,
            burn,
            pending_emission: 0,
            pending_owner_cut: 0,
            last_epoch_block: 0,
            epochs: 0,
            neurons: Vec::new(),
            uids: BTreeMap::new(),
            weight_commits: BTreeMap::new(),
        }
    }

    /// `replace_neuron` (spec 4): the newcomer takes the uid with nothing of its predecessor's
    /// (weights, bonds, permit, results), and every other weight on the uid drops to 0. The
    /// predecessor's weight commits stay keyed by its hotkey, as on the chain, until they expire.
    fn replace_neuron(&mut self, uid: u16, hotkey: PublicKey, height: u64) {
        let Some(slot) = self.neurons.get_mut(usize::from(uid)) else {
            return;
        };
        let old = std::mem::replace(slot, Neuron::new(uid, hotkey, height));
        self.uids.remove(&old.hotkey);
        self.uids.insert(hotkey, uid);
        for n in &mut self.neurons {
            for (dest, w) in &mut n.weights {
                if *dest == uid {
                    *w = 0;
                }
            }
        }
    }
}
