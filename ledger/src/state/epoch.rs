//! The start-of-block steps: registration burn decay, emission accrual and the epochs due.
//!
//! Emission (spec 3): each block mints `block_emission(total_issuance)` (halving with issuance,
//! never past the cap), shared equally among subnets (Agora has no per-subnet alpha prices to
//! weight the shares by), each share split by [`emission::split_alpha_out`] into the owner cut and
//! the participants' part. Both accrue in the subnet and are paid at its epoch: participants by
//! Yuma's server and validator emission ([`consensus::run_epoch`]), the owner cut to the owner's
//! free balance.

use super::LedgerState;
use super::apply::{mul_div, split_expired};
use crate::consensus::{self, EpochInput, EpochOutput, EpochParams, EpochState};
use crate::emission::{self, TOTAL_SUPPLY};
use agora_protocols::PublicKey;
use std::collections::BTreeMap;

const ONE_Q32: u64 = 1 << 32;
const HALF_Q32: u64 = 1 << 31;

/// `floor(value · factor)` for a Q32 factor, saturating.
fn mul_by_q32(value: u64, factor_q32: u64) -> u64 {
    u64::try_from((u128::from(value) * u128::from(factor_q32)) >> 32).unwrap_or(u64::MAX)
}

/// `base ^ exp` in Q32 by squaring, each product floored.
fn pow_q32(base_q32: u64, exp: u16) -> u64 {
    let mut result = ONE_Q32;
    let mut factor = base_q32;
    let mut power = u32::from(exp);
    while power > 0 {
        if power & 1 == 1 {
            result = mul_by_q32(result, factor);
        }
        power >>= 1;
        if power > 0 {
            factor = mul_by_q32(factor, factor);
        }
    }
    result
}

/// The per-block burn decay factor `f` with `f ^ half_life = 1/2`, found by bisection in Q32 as the
/// chain does (`utils/misc.rs::decay_factor_q32`), so prices match it to the unit.
pub fn decay_factor_q32(half_life: u16) -> u64 {
    if half_life == 0 {
        return ONE_Q32;
    }
    let (mut lo, mut hi) = (0u64, ONE_Q32);
    while lo.saturating_add(1) < hi {
        let mid = lo + ((hi - lo) >> 1);
        if pow_q32(mid, half_life) > HALF_Q32 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    lo
}

thread_local! {
    /// The epoch's working matrices, kept from one epoch to the next on the thread that applies
    /// blocks: at chain scale they are tens of megabytes, and mapping them fresh each epoch costs
    /// about a tenth of the epoch. The result does not depend on what they held.
    static EPOCH_SCRATCH: std::cell::RefCell<consensus::EpochScratch> =
        std::cell::RefCell::default();
}

impl LedgerState {
    /// Every subnet's burn price decays by its per-block factor, within [min_burn, max_burn].
    pub(super) fn decay_burns(&mut self) {
        let mut factors: BTreeMap<u16, u64> = BTreeMap::new();
        for s in self.subnets.values_mut() {
            let h = &s.hyperparameters;
            let f = *factors
                .entry(h.burn_half_life)
                .or_insert_with(|| decay_factor_q32(h.burn_half_life));
            s.burn = mul_by_q32(s.burn, f).clamp(h.min_burn, h.max_burn);
        }
    }

    /// Mints this block's emission into the subnets' pending pots.
    pub(super) fn accrue_emission(&mut self) {
        let count = self.subnets.len() as u64;
        if count == 0 {
            return;
        }
        let room = TOTAL_SUPPLY.saturating_sub(self.total_issuance);
        let total = emission::block_emission(self.total_issuance).min(room);
        let (base, extra) = (total / count, total % count);
        let cut = self.params.owner_cut_u16;
        let mut minted = 0u64;
        for (i, s) in self.subnets.values_mut().enumerate() {
            let share = base + u64::from((i as u64) < extra);
            let Ok(split) = emission::split_alpha_out(share, cut, true, 0) else {
                continue;
            };
            let participants = split.server.saturating_add(split.validator);
            s.pending_owner_cut = s.pending_owner_cut.saturating_add(split.owner_cut);
            s.pending_emission = s.pending_emission.saturating_add(participants);
            minted = minted
                .saturating_add(split.owner_cut)
                .saturating_add(participants);
        }
        self.total_issuance = self.total_issuance.saturating_add(minted);
    }

    pub(super) fn run_due_epochs(&mut self) {
        let height = self.height;
        let due: Vec<u16> = self
            .subnets
            .values()
            .filter(|s| s.is_epoch_block(height))
            .map(|s| s.netuid)
            .collect();
        for netuid in due {
            self.run_subnet_epoch(netuid);
        }
    }

    /// Commit-reveal's input to the epoch (spec 2.3 step 5, `epoch/run_epoch.rs`): with
    /// commit-reveal on, each neuron's *live commit block*, the block of the oldest commit in its
    /// queue that has not expired at this epoch (the epoch that runs now counts, as on the chain,
    /// where the epoch counter is advanced before the epoch reads the queues), or `None`. The
    /// epoch then drops `W[i][j]` when that block is earlier than `j`'s registration block, so a
    /// validator holding a commit made before `j` registered gives `j` nothing until the commit is
    /// revealed or expires ([`consensus::EpochState::live_commit_block`]). Empty with
    /// commit-reveal off: no mask at all, as on the chain.
    fn live_commit_blocks(&self, s: &super::Subnet) -> Vec<Option<u64>> {
        if !s.hyperparameters.commit_reveal_enabled {
            return Vec::new();
        }
        let now = s.weights_epoch(self.height);
        s.neurons
            .iter()
            .map(|n| {
                let (_, live) = split_expired(s.weight_commits(&n.hotkey), now);
                live.first().map(|c| c.block)
            })
            .collect()
    }

    fn epoch_input(&self, netuid: u16) -> Option<EpochInput> {
        let s = self.subnets.get(&netuid)?;
        let h = &s.hyperparameters;
        let row = |r: &[(u16, u16)]| r.iter().map(|(u, v)| (u64::from(*u), *v)).collect();
        Some(EpochInput {
            params: EpochParams {
                n: s.neurons.len() as u64,
                tempo: u64::from(h.tempo),
                activity_cutoff_blocks: h.activity_cutoff_blocks(),
                kappa_u16: h.kappa_u16,
                bonds_penalty_u16: h.bonds_penalty_u16,
                bonds_moving_average: h.bonds_moving_average,
                max_allowed_validators: u64::from(h.max_allowed_validators),
                stake_threshold: h.stake_threshold,
                rao_emission: s.pending_emission,
                yuma3: h.yuma3,
                liquid_alpha: h.liquid_alpha,
                alpha_low_u16: Some(h.alpha_low_u16),
                alpha_high_u16: Some(h.alpha_high_u16),
                alpha_sigmoid_steepness: Some(h.alpha_sigmoid_steepness),
                owner_uid: s
                    .owner_hotkey
                    .and_then(|k| s.uids.get(&k))
                    .map(|u| u64::from(*u)),
            },
            state: EpochState {
                current_block: self.height,
                last_mechanism_step_block: s.last_epoch_block,
                stake: s
                    .neurons
                    .iter()
                    .map(|n| self.hotkey_stake(&n.hotkey))
                    .collect(),
                block_at_registration: s.neurons.iter().map(|n| n.registered_at).collect(),
                last_update: s.neurons.iter().map(|n| n.last_update).collect(),
                validator_permit: s.neurons.iter().map(|n| n.validator_permit).collect(),
                weights: s.neurons.iter().map(|n| row(&n.weights)).collect(),
                bonds: s.neurons.iter().map(|n| row(&n.bonds)).collect(),
                live_commit_block: self.live_commit_blocks(s),
            },
        })
    }

    /// Who is paid what from one epoch's output, as stake credits per (hotkey, coldkey).
    /// Miner (server) emission goes to the hotkey's owner. Validator emission: the owner keeps its
    /// take, the rest is shared among the hotkey's stakers in proportion to stake (floored), the
    /// rounding remainder to the owner; with no stake, all to the owner.
    fn epoch_credits(
        &self,
        netuid: u16,
        out: &EpochOutput,
    ) -> Option<BTreeMap<(PublicKey, PublicKey), u64>> {
        let s = self.subnets.get(&netuid)?;
        let mut credits: BTreeMap<(PublicKey, PublicKey), u64> = BTreeMap::new();
        let mut add = |hotkey: PublicKey, coldkey: PublicKey, v: u64| -> Option<()> {
            if v > 0 {
                let e = credits.entry((hotkey, coldkey)).or_insert(0);
                *e = e.checked_add(v)?;
            }
            Some(())
        };
        for (i, n) in s.neurons.iter().enumerate() {
            let info = self.hotkeys.get(&n.hotkey)?;
            let server = out.server_emission.get(i).copied().unwrap_or(0);
            let validator = out.validator_emission.get(i).copied().unwrap_or(0);
            add(n.hotkey, info.owner, server)?;
            let total_stake = self.hotkey_stake(&n.hotkey);
            if total_stake == 0 {
                add(n.hotkey, info.owner, validator)?;
                continue;
            }
            let take = mul_div(validator, u64::from(info.take_u16), u64::from(u16::MAX));
            let rest = validator.saturating_sub(take);
            let mut shared = 0u64;
            for (coldkey, stake) in self.stakers(&n.hotkey) {
                let part = mul_div(rest, stake, total_stake);
                shared = shared.saturating_add(part);
                add(n.hotkey, *coldkey, part)?;
            }
            add(
                n.hotkey,
                info.owner,
                take.saturating_add(rest.saturating_sub(shared)),
            )?;
        }
        Some(credits)
    }

    /// Runs Yuma on one subnet, records the metagraph, pays emission and the owner cut. A failure
    /// (impossible on a state built by this module, whose rows are always valid) skips the payout
    /// and keeps the pots for the next epoch, identically on every node.
    fn run_subnet_epoch(&mut self, netuid: u16) {
        let height = self.height;
        self.pay_owner_cut(netuid);
        let output = self
            .epoch_input(netuid)
            .filter(|i| i.params.n > 0)
            .and_then(|input| {
                EPOCH_SCRATCH
                    .with_borrow_mut(|scratch| consensus::run_epoch_with(&input, scratch).ok())
            });
        let credits = output
            .as_ref()
            .and_then(|out| self.epoch_credits(netuid, out));
        let paid = credits
            .as_ref()
            .and_then(|c| c.values().try_fold(0u64, |a, v| a.checked_add(*v)));
        let Some(s) = self.subnets.get_mut(&netuid) else {
            return;
        };
        s.last_epoch_block = height;
        s.epochs = s.epochs.saturating_add(1);
        s.drop_dead_commits(height);
        let (Some(out), Some(credits), Some(paid)) = (output, credits, paid) else {
            return;
        };
        if paid > s.pending_emission {
            return;
        }
        s.pending_emission -= paid;
        for (i, n) in s.neurons.iter_mut().enumerate() {
            let get16 = |v: &[u16]| v.get(i).copied().unwrap_or(0);
            n.consensus_u16 = get16(&out.consensus_u16);
            n.incentive_u16 = get16(&out.incentive_u16);
            n.dividends_u16 = get16(&out.dividends_u16);
            n.validator_trust_u16 = get16(&out.validator_trust_u16);
            n.stake_weight_u16 = get16(&out.stake_weight_u16);
            n.emission = out.emission.get(i).copied().unwrap_or(0);
            n.validator_permit = out.validator_permit.get(i).copied().unwrap_or(false);
            n.active = out.active.get(i).copied().unwrap_or(false);
            n.bonds = out.bonds.get(i).cloned().unwrap_or_default();
        }
        for ((hotkey, coldkey), v) in credits {
            let stake = self.stake(&coldkey, &hotkey).saturating_add(v);
            self.set_stake(&coldkey, &hotkey, stake);
        }
    }

    /// Pays the accrued owner cut into the owner's free balance.
    fn pay_owner_cut(&mut self, netuid: u16) {
        let Some(s) = self.subnets.get(&netuid) else {
            return;
        };
        let (owner, cut) = (s.owner, s.pending_owner_cut);
        let Some(balance) = self.balance(&owner).checked_add(cut) else {
            return;
        };
        self.set_balance(&owner, balance);
        if let Some(s) = self.subnets.get_mut(&netuid) {
            s.pending_owner_cut = 0;
        }
    }
}

impl super::Subnet {
    /// Drops the commit queues of hotkeys no longer registered on the subnet once every commit in
    /// them has expired. Such a commit can never be revealed or count in the mask, so this only
    /// keeps the map bounded (the chain leaves them in storage); registered hotkeys keep their
    /// expired commits until their next commit or reveal purges them, as on the chain, so a late
    /// reveal still gets [`super::TxError::RevealTooLate`].
    fn drop_dead_commits(&mut self, height: u64) {
        let now = self.weights_epoch(height);
        let uids = &self.uids;
        self.weight_commits.retain(|hotkey, queue| {
            uids.contains_key(hotkey) || !split_expired(queue, now).1.is_empty()
        });
    }
}
