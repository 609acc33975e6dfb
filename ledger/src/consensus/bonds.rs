//! Bonds and dividends, both variants of spec 2.3 step 11.
//!
//! *Legacy* bonds are column-normalised shares of each miner, moved toward this epoch's
//! stake-weighted weights by a fixed EMA, and validators earn by their share. *Yuma 3* bonds are
//! per-entry proportions in [0, 1] that move toward the validator's own weight (optionally with a
//! per-entry "liquid" alpha), and stake enters the dividend directly. Both are written as the
//! chain's sparse path computes them, including its quirks (see the Gotchas in the spec).

use super::fixed_math::{I32F32, exp_safe};
use super::sparse::{self, Sparse};

/// Everything the bond step reads.
#[derive(Debug)]
pub struct BondInputs<'a> {
    /// Number of UIDs (columns).
    pub n: usize,
    /// Previous bonds as stored, `u16` values read as integers, registration mask applied.
    pub prev_bonds_u16: &'a [Vec<(u16, u16)>],
    /// `W̃`: weights for bonds (penalty applied).
    pub weights_for_bonds: &'a Sparse,
    /// Normalised active stake.
    pub active_stake: &'a [I32F32],
    /// Normalised incentive.
    pub incentive: &'a [I32F32],
    /// Consensus per column.
    pub consensus: &'a [I32F32],
    /// Fixed EMA alpha, `1 − BMA/10⁶`.
    pub alpha: I32F32,
}

/// Liquid alpha settings, already converted to fixed point.
#[derive(Debug, Clone, Copy)]
pub struct LiquidAlpha {
    /// Lowest alpha, `alpha_low_u16 / 65535`.
    pub low: I32F32,
    /// Highest alpha, `alpha_high_u16 / 65535`.
    pub high: I32F32,
    /// Sigmoid steepness as stored (slope = steepness / 100).
    pub steepness: I32F32,
}

/// The new bond matrix (in the form the chain stores it, still fixed point) and the dividends.
#[derive(Debug)]
pub struct BondOutputs {
    /// Bonds to store: legacy column max-upscaled, Yuma 3 as EMA'd proportions.
    pub bonds_to_store: Sparse,
    /// Normalised dividends per UID.
    pub dividends: Vec<I32F32>,
}

/// Legacy Yuma: `B = colnorm(prev)`, `ΔB = colnorm(W̃ ∘ S)`, `B' = colnorm(α·ΔB + (1−α)·B)`,
/// `D = normalize(B'·I)`; stored column max-upscaled.
pub fn legacy(inp: &BondInputs<'_>) -> BondOutputs {
    let mut bonds: Sparse = inp
        .prev_bonds_u16
        .iter()
        .map(|row| row.iter().map(|&(j, b)| (j, I32F32::from_u16(b))).collect())
        .collect();
    sparse::col_normalize(&mut bonds, inp.n);
    let mut delta = sparse::row_hadamard(inp.weights_for_bonds, inp.active_stake);
    sparse::col_normalize(&mut delta, inp.n);
    let mut ema = sparse::ema_rows(&delta, &bonds, inp.alpha, inp.n);
    sparse::col_normalize(&mut ema, inp.n);
    let mut dividends = sparse::matmul_transpose(&ema, inp.incentive);
    sparse::normalize(&mut dividends);
    sparse::col_max_upscale(&mut ema, inp.n);
    BondOutputs {
        bonds_to_store: ema,
        dividends,
    }
}

/// Yuma 3: bonds are proportions `b/65535`, EMA'd per entry toward `W̃` (fixed alpha over the union
/// of columns, or liquid alpha over the weight row's columns only, capped at 1), then
/// `D = normalize(S ∘ rowsum(colnorm(B) · I))`.
pub fn yuma3(inp: &BondInputs<'_>, liquid: Option<LiquidAlpha>) -> BondOutputs {
    let bonds: Sparse = inp
        .prev_bonds_u16
        .iter()
        .map(|row| {
            row.iter()
                .map(|&(j, b)| (j, I32F32::from_u16_proportion(b)))
                .collect()
        })
        .collect();
    let any_consensus = inp.consensus.iter().any(|&c| c != I32F32::ZERO);
    let ema = match liquid {
        Some(la) if any_consensus => liquid_ema(inp, &bonds, la),
        _ => sparse::ema_rows(inp.weights_for_bonds, &bonds, inp.alpha, inp.n),
    };
    let mut ema_norm = ema.clone();
    sparse::col_normalize(&mut ema_norm, inp.n);
    let per_validator: Vec<I32F32> = ema_norm
        .iter()
        .map(|row| {
            row.iter().fold(I32F32::ZERO, |acc, &(j, b)| {
                let inc = inp
                    .incentive
                    .get(usize::from(j))
                    .copied()
                    .unwrap_or_default();
                acc.saturating_add(b.saturating_mul(inc))
            })
        })
        .collect();
    // `vec_mul` uses checked_mul: an overflowing product becomes 0, not a saturated value.
    let mut dividends: Vec<I32F32> = per_validator
        .iter()
        .zip(inp.active_stake)
        .map(|(&t, &s)| t.checked_mul(s).unwrap_or_default())
        .collect();
    sparse::normalize(&mut dividends);
    BondOutputs {
        bonds_to_store: ema,
        dividends,
    }
}

/// The chain's `alpha_sigmoid`: how fast bond (i, j) follows weight (i, j).
///
/// `x` is how far the weight sits above consensus when the validator is buying (weight >= bond),
/// or how far the bond sits above the weight when selling; alpha grows from `low` to `high` along a
/// sigmoid of `x − 0.5` with slope `steepness/100`.
pub fn alpha_sigmoid(consensus: I32F32, weight: I32F32, bond: I32F32, la: LiquidAlpha) -> I32F32 {
    let diff_buy = weight
        .saturating_sub(consensus)
        .clamp_chain(I32F32::ZERO, I32F32::ONE);
    let diff_sell = bond
        .saturating_sub(weight)
        .clamp_chain(I32F32::ZERO, I32F32::ONE);
    let combined = if weight >= bond { diff_buy } else { diff_sell };
    let exponent = la
        .steepness
        .saturating_div(I32F32::from_i32(-100))
        .saturating_mul(combined.saturating_sub(I32F32::HALF));
    let sigmoid = I32F32::ONE.saturating_div(I32F32::ONE.saturating_add(exp_safe(exponent)));
    let alpha = la
        .low
        .saturating_add(sigmoid.saturating_mul(la.high.saturating_sub(la.low)));
    alpha.clamp_chain(la.low, la.high)
}

/// Marks where a row's `(uid, value)` walk, as the chain does it, finds each column.
///
/// `compute_liquid_alpha_values_sparse` walks columns `j = 0..n` with a cursor per row that skips
/// entries with a smaller uid and takes an entry with an equal uid. For rows sorted by uid that is
/// a plain lookup; for unsorted rows some entries are never seen. This reproduces the walk for any
/// row, writing the value found at column `j` into `found[j]` (columns not written read as 0).
fn chain_walk(row: &[(u16, I32F32)], n: usize, found: &mut [I32F32], written: &mut Vec<u16>) {
    let sorted = row.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0));
    if sorted {
        for &(j, v) in row {
            if usize::from(j) < n
                && let Some(x) = found.get_mut(usize::from(j))
            {
                *x = v;
                written.push(j);
            }
        }
        return;
    }
    let mut it = row.iter().peekable();
    for j in 0..n {
        while let Some(&&(i, v)) = it.peek() {
            if usize::from(i) < j {
                it.next();
            } else {
                if usize::from(i) == j
                    && let Some(x) = found.get_mut(j)
                {
                    *x = v;
                    written.push(i);
                }
                break;
            }
        }
        if it.peek().is_none() {
            break;
        }
    }
}

/// `mat_ema_alpha_sparse` with the liquid alphas of `compute_liquid_alpha_values_sparse`, computed
/// only where they are read: old bonds are decayed by `1 − α_ij`, then for each entry of the new
/// (weights-for-bonds) row, in its order, `min(decayed + max(α_ij·w, 0), 1)` is kept when positive.
/// Bonds on columns absent from the new row are dropped, not decayed.
fn liquid_ema(inp: &BondInputs<'_>, bonds: &Sparse, la: LiquidAlpha) -> Sparse {
    let n = inp.n;
    let mut w_found = vec![I32F32::ZERO; n];
    let mut b_found = vec![I32F32::ZERO; n];
    let mut decayed = vec![I32F32::ZERO; n];
    let mut w_written = Vec::new();
    let mut b_written = Vec::new();
    let empty = Vec::new();
    let mut out = Vec::with_capacity(inp.weights_for_bonds.len());
    for (i, new_row) in inp.weights_for_bonds.iter().enumerate() {
        let old_row = bonds.get(i).unwrap_or(&empty);
        if new_row.is_empty() {
            // Nothing to keep: every output entry comes from the new row.
            out.push(Vec::new());
            continue;
        }
        chain_walk(new_row, n, &mut w_found, &mut w_written);
        chain_walk(old_row, n, &mut b_found, &mut b_written);
        let alpha_at = |j: usize| {
            let c = inp.consensus.get(j).copied().unwrap_or_default();
            let w = w_found.get(j).copied().unwrap_or_default();
            let b = b_found.get(j).copied().unwrap_or_default();
            alpha_sigmoid(c, w, b, la)
        };
        for &(j, old) in old_row {
            let a = alpha_at(usize::from(j));
            if let Some(d) = decayed.get_mut(usize::from(j)) {
                *d = I32F32::ONE.saturating_sub(a).saturating_mul(old);
            }
        }
        let mut row_out = Vec::with_capacity(new_row.len());
        for &(j, w) in new_row {
            let a = alpha_at(usize::from(j));
            let d = decayed.get(usize::from(j)).copied().unwrap_or_default();
            let inc = a.saturating_mul(w).max(I32F32::ZERO);
            let val = d.saturating_add(inc).min(I32F32::ONE);
            if val > I32F32::ZERO {
                row_out.push((j, val));
            }
        }
        out.push(row_out);
        for &(j, _) in old_row {
            if let Some(d) = decayed.get_mut(usize::from(j)) {
                *d = I32F32::ZERO;
            }
        }
        for (found, written) in [
            (&mut w_found, &mut w_written),
            (&mut b_found, &mut b_written),
        ] {
            for &j in written.iter() {
                if let Some(x) = found.get_mut(usize::from(j)) {
                    *x = I32F32::ZERO;
                }
            }
            written.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_walk_misses_entries_behind_the_cursor_in_unsorted_rows() {
        let v = |x: i32| I32F32::from_i32(x);
        let row = vec![(3u16, v(1)), (1u16, v(2)), (4u16, v(3))];
        let mut found = vec![I32F32::ZERO; 5];
        let mut written = Vec::new();
        chain_walk(&row, 5, &mut found, &mut written);
        // j=0..2 peek uid 3 (not < j, not equal); j=3 takes it; j=4 skips 3, skips 1, takes 4.
        assert_eq!(found, vec![v(0), v(0), v(0), v(1), v(3)]);
    }

    #[test]
    fn alpha_sigmoid_stays_within_bounds_and_rises_with_disagreement() {
        let la = LiquidAlpha {
            low: I32F32::from_u16_proportion(6553),
            high: I32F32::from_u16_proportion(19660),
            steepness: I32F32::from_i32(1000),
        };
        let c = I32F32::HALF;
        let agree = alpha_sigmoid(c, c, c, la);
        let far = alpha_sigmoid(I32F32::ZERO, I32F32::ONE, I32F32::ZERO, la);
        assert!(agree >= la.low && agree <= la.high);
        assert!(far >= la.low && far <= la.high);
        assert!(far > agree);
    }
}
