//! One Yuma Consensus epoch as a pure function, step for step as the chain's sparse production
//! path (`ST:pallets/subtensor/src/epoch/run_epoch.rs::epoch_mechanism`); step numbers refer to
//! spec 2.3.

use super::bonds::{self, BondInputs, LiquidAlpha};
use super::fixed_math::{Divider, I32F32, ema_alpha_from_ppm, normalized_u64_to_i32f32};
use super::sparse::{self, Csr, RowSink};
use super::types::{
    DEFAULT_ALPHA_HIGH_U16, DEFAULT_ALPHA_LOW_U16, DEFAULT_ALPHA_SIGMOID_STEEPNESS, EpochError,
    EpochInput, EpochOutput, EpochState, MAX_UIDS,
};

/// Checks every length, uid and range the epoch relies on, so that the math never meets an index
/// it cannot use. Returns `n` as a `usize`.
///
/// [`run_epoch`] makes the same checks in the same order (so it reports the same error), but
/// checks each stored row as it first reads it: at chain scale the matrices are tens of megabytes,
/// and a separate pass over them costs as much as a step of the epoch.
pub fn validate(input: &EpochInput) -> Result<usize, EpochError> {
    let n = validate_shape(input)?;
    let mut rows = RowCheck::new(n);
    for (field, matrix) in [
        ("weights", &input.state.weights),
        ("bonds", &input.state.bonds),
    ] {
        for (row, entries) in matrix.iter().enumerate() {
            rows.check(field, row, entries)?;
        }
    }
    validate_stake(&input.state)?;
    Ok(n)
}

/// The checks that need no pass over the matrices: `n`, every vector's length (the optional
/// `live_commit_block` may also be empty), the owner.
fn validate_shape(input: &EpochInput) -> Result<usize, EpochError> {
    let p = &input.params;
    let s = &input.state;
    if p.n > MAX_UIDS {
        return Err(EpochError::TooManyUids { n: p.n });
    }
    let n = p.n as usize;
    let lengths = [
        ("stake", s.stake.len()),
        ("block_at_registration", s.block_at_registration.len()),
        ("last_update", s.last_update.len()),
        ("validator_permit", s.validator_permit.len()),
        ("weights", s.weights.len()),
        ("bonds", s.bonds.len()),
    ];
    for (field, len) in lengths {
        if len != n {
            return Err(EpochError::WrongLength { field, len, n: p.n });
        }
    }
    // Optional: empty means no live commits (commit-reveal off), otherwise one per UID.
    let commits = s.live_commit_block.len();
    if commits != 0 && commits != n {
        return Err(EpochError::WrongLength {
            field: "live_commit_block",
            len: commits,
            n: p.n,
        });
    }
    if let Some(uid) = p.owner_uid
        && uid >= p.n
    {
        let last = i128::from(p.n) - 1;
        return Err(EpochError::OwnerOutOfRange { uid, last });
    }
    Ok(n)
}

/// Total stake must fit the chain's `I64F64` stake vector.
fn validate_stake(s: &EpochState) -> Result<(), EpochError> {
    let total: u128 = s.stake.iter().map(|&x| u128::from(x)).sum();
    if total > i64::MAX as u128 {
        return Err(EpochError::StakeOverflow {
            total,
            max: i64::MAX,
        });
    }
    Ok(())
}

/// Checks stored rows: every uid below `n`, none twice.
struct RowCheck {
    n: u64,
    seen: Vec<bool>,
}

impl RowCheck {
    fn new(n: usize) -> Self {
        Self {
            n: n as u64,
            seen: vec![false; n],
        }
    }

    fn check(
        &mut self,
        field: &'static str,
        row: usize,
        entries: &[(u64, u16)],
    ) -> Result<(), EpochError> {
        self.check_increasing(field, row, entries, strictly_increasing(entries))
    }

    /// [`RowCheck::check`] for a row already read, `increasing` telling whether its uids
    /// strictly increase: strictly increasing uids cannot repeat, and are all in range when the
    /// last one is, so one comparison per entry (made while the row was read) replaces two passes
    /// through a dense marker row.
    fn check_increasing(
        &mut self,
        field: &'static str,
        row: usize,
        entries: &[(u64, u16)],
        increasing: bool,
    ) -> Result<(), EpochError> {
        if increasing && entries.last().is_none_or(|&(uid, _)| uid < self.n) {
            return Ok(());
        }
        let last = i128::from(self.n) - 1;
        let mut result = Ok(());
        for &(uid, _) in entries {
            let slot = usize::try_from(uid).ok().and_then(|u| self.seen.get_mut(u));
            match slot {
                None => {
                    result = Err(EpochError::UidOutOfRange {
                        field,
                        row,
                        uid,
                        last,
                    });
                    break;
                }
                Some(true) => {
                    result = Err(EpochError::DuplicateUid { field, row, uid });
                    break;
                }
                Some(slot) => *slot = true,
            }
        }
        for &(uid, _) in entries {
            if let Some(slot) = usize::try_from(uid).ok().and_then(|u| self.seen.get_mut(u)) {
                *slot = false;
            }
        }
        result
    }
}

/// Whether a row's uids strictly increase. No early exit: a branch-free pass over the pairs is
/// cheaper on the long rows where it matters.
fn strictly_increasing(entries: &[(u64, u16)]) -> bool {
    entries
        .iter()
        .zip(entries.get(1..).unwrap_or_default())
        .fold(true, |ok, (a, b)| ok & (a.0 < b.0))
}

/// Step 5's weight matrix: rows of validators with a previous permit, without self-weights (the
/// owner's kept), without weights set before the target registered and, with commit-reveal's
/// anti-sniping mask, without weights of a validator holding a live commit older than the
/// target's registration; each row divided by its sum (`inplace_row_normalize_sparse`), built
/// straight into one flat buffer, runs of rows on several cores. Every stored row is checked as
/// it is read; the first bad row in row order is the one reported, as [`validate`] reports it.
fn masked_weights(
    s: &EpochState,
    prev_permit: &[bool],
    owner: Option<usize>,
    w: &mut Csr<I32F32>,
) -> Result<(), EpochError> {
    let n = s.weights.len();
    let permitted = |i: usize| prev_permit.get(i).copied().unwrap_or(false);
    let stored = |i: usize| s.weights.get(i).map(Vec::as_slice).unwrap_or_default();
    let runs = w.fill_rows(
        n,
        |i| if permitted(i) { stored(i).len() } else { 0 },
        || (RowCheck::new(n), Ok(())),
        |(check, result), i, out| {
            let row = stored(i);
            if result.is_err() {
                // This run already has its first error.
            } else if !permitted(i) {
                *result = check.check("weights", i, row);
            } else {
                let increasing = masked_weight_row(s, owner, i, row, out);
                *result = check.check_increasing("weights", i, row, increasing);
            }
        },
    );
    runs.into_iter().try_for_each(|(_, result)| result)
}

/// One row of [`masked_weights`] into `out`; returns whether its uids strictly increase.
///
/// The masks, in the chain's order (`epoch_mechanism`), all before the row is normalised: the
/// diagonal, then outdated weights (`last_update[i] <= block_at_registration[j]`), then, when
/// `i` has a live commit, the commit-reveal mask (`live_commit_block[i] <
/// block_at_registration[j]`). The chain marks "no live commit" as `u64::MAX`, which no
/// registration block exceeds; so does this.
#[inline]
fn masked_weight_row(
    s: &EpochState,
    owner: Option<usize>,
    i: usize,
    row: &[(u64, u16)],
    out: &mut RowSink<'_, I32F32>,
) -> bool {
    let updated = s.last_update.get(i).copied().unwrap_or(0);
    let committed = s
        .live_commit_block
        .get(i)
        .copied()
        .flatten()
        .unwrap_or(u64::MAX);
    // Both masks compare the target's registration block: kept when it is below the row's last
    // update (outdated mask) and not above the live commit (anti-sniping), one comparison.
    let registered_before = updated.min(committed.saturating_add(1));
    // The chain sums the row in I32F32 (saturating); the values are integers, so an integer sum
    // saturated once at the end is the same number.
    let mut total = 0u64;
    let mut increasing = true;
    let mut next_uid = 0u64;
    for &(j, v) in row {
        increasing &= j >= next_uid;
        next_uid = j.saturating_add(1);
        let Ok(j16) = u16::try_from(j) else {
            continue;
        };
        let ju = usize::from(j16);
        let registered = s.block_at_registration.get(ju).copied().unwrap_or(0);
        let keep = (ju != i || Some(i) == owner) && registered < registered_before;
        if keep {
            out.push(j16, I32F32::from_u16(v));
            total += u64::from(v);
        }
    }
    let total = i64::try_from(total)
        .ok()
        .and_then(|t| t.checked_mul(1 << 32))
        .map_or(I32F32::MAX, I32F32::from_bits);
    if total > I32F32::ZERO {
        let div = Divider::new(total);
        for v in out.values_mut() {
            *v = div.safe_div(*v);
        }
    }
    increasing
}

/// Stored bonds with uids narrowed to `u16` (checked below `n <= 65535`), dropping bonds on
/// miners registered since the last epoch (`last_tempo <= block_at_registration`): a quarter of
/// the stored size, which the bond step then reads instead of the input. Runs of rows on several
/// cores, checked as [`masked_weights`] checks.
fn masked_bonds(s: &EpochState, last_tempo: u64, b: &mut Csr<u16>) -> Result<(), EpochError> {
    let n = s.bonds.len();
    let stored = |i: usize| s.bonds.get(i).map(Vec::as_slice).unwrap_or_default();
    let runs = b.fill_rows(
        n,
        |i| stored(i).len(),
        || (RowCheck::new(n), Ok(())),
        |(check, result), i, out| {
            if result.is_err() {
                return;
            }
            let row = stored(i);
            let mut increasing = true;
            let mut next_uid = 0u64;
            for &(j, v) in row {
                increasing &= j >= next_uid;
                next_uid = j.saturating_add(1);
                if let Ok(j16) = u16::try_from(j)
                    && last_tempo
                        > s.block_at_registration
                            .get(usize::from(j16))
                            .copied()
                            .unwrap_or(0)
                {
                    out.push(j16, v);
                }
            }
            *result = check.check_increasing("bonds", i, row, increasing);
        },
    );
    runs.into_iter().try_for_each(|(_, result)| result)
}

/// Top `k` by value among non-zero entries (`is_topk_nonzero`): a stable ascending sort, the
/// lowest `len − k` lose, so on a tie the higher index wins; with fewer than `k` entries every
/// non-zero one wins.
pub fn top_k_nonzero(values: &[I32F32], k: u64) -> Vec<bool> {
    let mut result: Vec<bool> = values.iter().map(|&v| v != I32F32::ZERO).collect();
    let len = values.len();
    let Ok(k) = usize::try_from(k) else {
        return result;
    };
    if len < k {
        return result;
    }
    let mut idx: Vec<usize> = (0..len).collect();
    idx.sort_by_key(|&i| values.get(i).copied().unwrap_or_default());
    for &i in idx.iter().take(len - k) {
        if let Some(r) = result.get_mut(i) {
            *r = false;
        }
    }
    result
}

/// Rao for a proportion: `floor(x · rao)` computed as the chain's `I96F32` product, saturating
/// into `u64` (negative proportions pay 0).
fn rao_share(x: I32F32, rao: u64) -> u64 {
    let Ok(bits) = u64::try_from(x.to_bits()) else {
        return 0;
    };
    let v = (u128::from(bits) * u128::from(rao)) >> 32;
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The matrices one epoch works in: a million entries each at chain scale. Kept between epochs
/// by a caller that runs many (see [`run_epoch_with`]), they spare each epoch mapping tens of
/// megabytes of fresh memory, which costs as much as several of its steps.
#[derive(Debug, Default)]
pub struct EpochScratch {
    /// Weights, then weights for bonds (step 5 to step 11).
    weights: Csr<I32F32>,
    /// Previous bonds, `u16`, registration mask applied.
    bonds: Csr<u16>,
    /// Legacy and liquid-alpha bonds (fixed point) before they are stored.
    ema: Csr<I32F32>,
}

/// Runs one epoch. The input is refused exactly as [`validate`] refuses it (the same error for the
/// same input); nothing else can fail or panic.
pub fn run_epoch(input: &EpochInput) -> Result<EpochOutput, EpochError> {
    run_epoch_with(input, &mut EpochScratch::default())
}

/// [`run_epoch`] in buffers kept from an earlier epoch. The result does not depend on what the
/// buffers held.
pub fn run_epoch_with(
    input: &EpochInput,
    scratch: &mut EpochScratch,
) -> Result<EpochOutput, EpochError> {
    // The checks of `validate`, in its order: shape now, each matrix row as it is first read,
    // stake last.
    let n = validate_shape(input)?;
    let p = &input.params;
    let s = &input.state;
    let stake_check = validate_stake(s);
    let owner = p.owner_uid.and_then(|u| usize::try_from(u).ok());

    // 1. Activity.
    let active: Vec<bool> = s
        .last_update
        .iter()
        .map(|&u| u.saturating_add(p.activity_cutoff_blocks) >= s.current_block)
        .collect();

    // 2. Stake: threshold (owner exempt), then normalise in I64F64 and narrow.
    let filtered: Vec<u64> = s
        .stake
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if Some(i) != owner && x < p.stake_threshold {
                0
            } else {
                x
            }
        })
        .collect();
    let total: u64 = filtered.iter().fold(0u64, |a, &x| a.saturating_add(x));
    let stake: Vec<I32F32> = filtered
        .iter()
        .map(|&x| normalized_u64_to_i32f32(x, total))
        .collect();

    // 3. Permits: last epoch's filter this epoch's weights; new ones are the top-k by stake.
    let mut prev_permit = s.validator_permit.clone();
    let mut new_permit = top_k_nonzero(&stake, p.max_allowed_validators);
    if let Some(o) = owner {
        for permits in [&mut prev_permit, &mut new_permit] {
            if let Some(x) = permits.get_mut(o) {
                *x = true;
            }
        }
    }

    // 4. Active stake.
    let mut active_stake: Vec<I32F32> = stake
        .iter()
        .zip(active.iter().zip(&prev_permit))
        .map(|(&st, (&act, &perm))| if act && perm { st } else { I32F32::ZERO })
        .collect();
    sparse::normalize(&mut active_stake);

    // 5. Weights: permit rows, diagonal (owner kept), outdated, then row-normalise; the previous
    // bonds with the registration mask. Errors come in `validate`'s order: weights, bonds, stake.
    let last_tempo = if s.last_mechanism_step_block == 0 {
        s.current_block.saturating_sub(p.tempo)
    } else {
        s.last_mechanism_step_block.saturating_add(1)
    };
    let EpochScratch {
        weights,
        bonds: prev_bonds,
        ema,
    } = scratch;
    masked_weights(s, &prev_permit, owner, weights)?;
    masked_bonds(s, last_tempo, prev_bonds)?;
    stake_check?;

    // 6. Consensus.
    let kappa = I32F32::from_u16_proportion(p.kappa_u16);
    let consensus = sparse::weighted_median_cols(&active_stake, weights, n, kappa);

    // 7-10. Clipping, validator trust, incentive and weights for bonds, in one pass that turns
    // the weight buffer into the weights for bonds.
    let beta = I32F32::from_u16_proportion(p.bonds_penalty_u16);
    let (validator_trust, mut incentive) =
        sparse::clip_score_and_blend(weights, &consensus, &active_stake, beta, n);
    sparse::normalize(&mut incentive);

    // 11. Bonds and dividends (bonds on miners registered since the last epoch were dropped
    // above).
    let bond_inputs = BondInputs {
        n,
        prev_bonds_u16: prev_bonds,
        weights_for_bonds: weights,
        ema,
        active_stake: &active_stake,
        incentive: &incentive,
        consensus: &consensus,
        alpha: ema_alpha_from_ppm(p.bonds_moving_average),
        new_permit: &new_permit,
    };
    let bond_out = if p.yuma3 {
        let liquid = p.liquid_alpha.then(|| LiquidAlpha {
            low: I32F32::from_u16_proportion(p.alpha_low_u16.unwrap_or(DEFAULT_ALPHA_LOW_U16)),
            high: I32F32::from_u16_proportion(p.alpha_high_u16.unwrap_or(DEFAULT_ALPHA_HIGH_U16)),
            steepness: I32F32::from_i32(i32::from(
                p.alpha_sigmoid_steepness
                    .unwrap_or(DEFAULT_ALPHA_SIGMOID_STEEPNESS),
            )),
        });
        bonds::yuma3(bond_inputs, liquid)
    } else {
        bonds::legacy(bond_inputs)
    };
    let dividends = bond_out.dividends;

    // 12. Emission split.
    let combined: Vec<I32F32> = incentive
        .iter()
        .zip(&dividends)
        .map(|(&i, &d)| i.saturating_add(d))
        .collect();
    let emission_sum = super::fixed_math::sum(&combined);
    let mut norm_server = incentive.clone();
    let mut norm_validator = dividends.clone();
    let mut norm_combined = combined;
    if emission_sum != I32F32::ZERO {
        for v in norm_server.iter_mut().chain(norm_validator.iter_mut()) {
            *v = v.safe_div(emission_sum);
        }
    }
    sparse::normalize(&mut norm_combined);
    if emission_sum == I32F32::ZERO {
        // No usable weights: validators are paid by stake, active stake when there is any.
        let fallback = if super::fixed_math::sum(&active_stake) == I32F32::ZERO {
            &stake
        } else {
            &active_stake
        };
        norm_validator.clone_from(fallback);
        norm_combined.clone_from(fallback);
    }
    let rao =
        |v: &[I32F32]| -> Vec<u64> { v.iter().map(|&x| rao_share(x, p.rao_emission)).collect() };

    // 13. Persisted outputs (the bond step already cleared the rows of UIDs without a permit).
    let to_u16 = |v: &[I32F32]| -> Vec<u16> { v.iter().map(|x| x.proportion_to_u16()).collect() };
    Ok(EpochOutput {
        consensus_u16: to_u16(&consensus),
        incentive_u16: to_u16(&incentive),
        dividends_u16: to_u16(&dividends),
        validator_trust_u16: to_u16(&validator_trust),
        stake_weight_u16: to_u16(&stake),
        emission: rao(&norm_combined),
        server_emission: rao(&norm_server),
        validator_emission: rao(&norm_validator),
        validator_permit: new_permit,
        active,
        bonds: bond_out.bonds_to_store,
    })
}
