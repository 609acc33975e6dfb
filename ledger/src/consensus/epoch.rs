//! One Yuma Consensus epoch as a pure function, step for step as the chain's sparse production
//! path (`ST:pallets/subtensor/src/epoch/run_epoch.rs::epoch_mechanism`); step numbers refer to
//! spec 2.3.

use super::bonds::{self, BondInputs, LiquidAlpha};
use super::fixed_math::{I32F32, ema_alpha_from_ppm, normalized_u64_to_i32f32};
use super::sparse::{self, Sparse};
use super::types::{
    DEFAULT_ALPHA_HIGH_U16, DEFAULT_ALPHA_LOW_U16, DEFAULT_ALPHA_SIGMOID_STEEPNESS, EpochError,
    EpochInput, EpochOutput, MAX_UIDS, SparseRow,
};

/// Checks every length, uid and range the epoch relies on, so that the math never meets an index
/// it cannot use. Returns `n` as a `usize`.
pub fn validate(input: &EpochInput) -> Result<usize, EpochError> {
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
    let last = i128::from(p.n) - 1;
    if let Some(uid) = p.owner_uid
        && uid >= p.n
    {
        return Err(EpochError::OwnerOutOfRange { uid, last });
    }
    let mut seen = vec![false; n];
    for (field, rows) in [("weights", &s.weights), ("bonds", &s.bonds)] {
        for (row, entries) in rows.iter().enumerate() {
            for &(uid, _) in entries {
                let slot = usize::try_from(uid).ok().and_then(|u| seen.get_mut(u));
                match slot {
                    None => {
                        return Err(EpochError::UidOutOfRange {
                            field,
                            row,
                            uid,
                            last,
                        });
                    }
                    Some(true) => return Err(EpochError::DuplicateUid { field, row, uid }),
                    Some(slot) => *slot = true,
                }
            }
            for &(uid, _) in entries {
                if let Some(slot) = usize::try_from(uid).ok().and_then(|u| seen.get_mut(u)) {
                    *slot = false;
                }
            }
        }
    }
    let total: u128 = s.stake.iter().map(|&x| u128::from(x)).sum();
    if total > i64::MAX as u128 {
        return Err(EpochError::StakeOverflow {
            total,
            max: i64::MAX,
        });
    }
    Ok(n)
}

/// Stored rows with uids narrowed to `u16` (validated below `n <= 65535`).
fn narrow(rows: &[SparseRow]) -> Vec<Vec<(u16, u16)>> {
    rows.iter()
        .map(|row| {
            row.iter()
                .filter_map(|&(j, v)| u16::try_from(j).ok().map(|j| (j, v)))
                .collect()
        })
        .collect()
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

/// Runs one epoch. The input is validated first; nothing after that can fail or panic.
pub fn run_epoch(input: &EpochInput) -> Result<EpochOutput, EpochError> {
    let n = validate(input)?;
    let p = &input.params;
    let s = &input.state;
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

    // 5. Weights: permit rows, diagonal (owner kept), outdated, then row-normalise.
    let mut weights: Sparse = s
        .weights
        .iter()
        .enumerate()
        .map(|(i, row)| {
            if !prev_permit.get(i).copied().unwrap_or(false) {
                return Vec::new();
            }
            let updated = s.last_update.get(i).copied().unwrap_or(0);
            row.iter()
                .filter_map(|&(j, v)| {
                    // Validated: j < n <= 65535.
                    let j16 = u16::try_from(j).ok()?;
                    let j = usize::from(j16);
                    let keep = (j != i || Some(i) == owner)
                        && updated > s.block_at_registration.get(j).copied().unwrap_or(0);
                    keep.then(|| (j16, I32F32::from_u16(v)))
                })
                .collect()
        })
        .collect();
    sparse::row_normalize(&mut weights);

    // 6-8. Consensus, clipping, validator trust.
    let kappa = I32F32::from_u16_proportion(p.kappa_u16);
    let consensus = sparse::weighted_median_cols(&active_stake, &weights, n, kappa);
    let clipped = sparse::col_clip(&weights, &consensus);
    let validator_trust = sparse::row_sums(&clipped);

    // 9. Incentive.
    let mut incentive = sparse::matmul(&clipped, &active_stake, n);
    sparse::normalize(&mut incentive);

    // 10. Weights for bonds.
    let beta = I32F32::from_u16_proportion(p.bonds_penalty_u16);
    let weights_for_bonds = sparse::interpolate(&weights, &clipped, n, beta);

    // 11. Bonds and dividends. Bonds on miners registered since the last epoch are dropped.
    let last_tempo = if s.last_mechanism_step_block == 0 {
        s.current_block.saturating_sub(p.tempo)
    } else {
        s.last_mechanism_step_block.saturating_add(1)
    };
    let mut prev_bonds = narrow(&s.bonds);
    for row in prev_bonds.iter_mut() {
        row.retain(|&(j, _)| {
            last_tempo
                > s.block_at_registration
                    .get(usize::from(j))
                    .copied()
                    .unwrap_or(0)
        });
    }
    let bond_inputs = BondInputs {
        n,
        prev_bonds_u16: &prev_bonds,
        weights_for_bonds: &weights_for_bonds,
        active_stake: &active_stake,
        incentive: &incentive,
        consensus: &consensus,
        alpha: ema_alpha_from_ppm(p.bonds_moving_average),
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
        bonds::yuma3(&bond_inputs, liquid)
    } else {
        bonds::legacy(&bond_inputs)
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

    // 13. Persisted outputs. Bonds are stored for permitted validators and cleared otherwise.
    let to_u16 = |v: &[I32F32]| -> Vec<u16> { v.iter().map(|x| x.proportion_to_u16()).collect() };
    let bonds_out = bond_out
        .bonds_to_store
        .iter()
        .zip(&new_permit)
        .map(|(row, &permit)| {
            if permit {
                row.iter()
                    .map(|&(j, b)| (j, b.proportion_to_u16()))
                    .collect()
            } else {
                Vec::new()
            }
        })
        .collect();

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
        bonds: bonds_out,
    })
}
