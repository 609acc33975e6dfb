//! The emission schedule (spec section 3), as the chain computes it
//! (`ST:pallets/subtensor/src/coinbase/block_emission.rs`, `run_coinbase.rs::emit_to_subnets`).
//!
//! Emission halves with *issuance*, not with block height: 1 token per block until half the
//! 21,000,000 cap is issued, then 0.5 until three quarters, and so on, reaching 0 at the cap. The
//! same schedule applies to TAO and to each subnet's alpha. Each block's alpha for participants is
//! split: the owner cut first (≈ 18 %), then half of the rest to miners and half to validators, of
//! which a root share goes to root stakers.
//!
//! Arithmetic is `I96F32`/`U96F32` (128-bit, 32 fractional bits) with the chain's rounding
//! (multiplication floors, division truncates), so amounts match the chain to the rao.

use thiserror::Error;

/// Rao per token (9 decimals).
pub const RAO_PER_TAO: u64 = 1_000_000_000;
/// Hard cap: 21,000,000 tokens (`TotalSupply`).
pub const TOTAL_SUPPLY: u64 = 21_000_000 * RAO_PER_TAO;
/// Emission per block before any halving (`DefaultBlockEmission`): 1 token.
pub const DEFAULT_BLOCK_EMISSION: u64 = RAO_PER_TAO;
/// 12-second blocks.
pub const BLOCKS_PER_DAY: u64 = 7_200;
/// Default subnet owner cut, `u16` proportion: 11796/65535 ≈ 18 % (`SubtensorInitialSubnetOwnerCut`).
pub const DEFAULT_OWNER_CUT_U16: u16 = 11_796;

const FRAC: u32 = 32;
const ONE: u128 = 1 << FRAC;

/// `floor(a · b)` for unsigned 32-fractional-bit values, with a full 256-bit product, saturating.
fn mul_fx(a: u128, b: u128) -> u128 {
    if let Some(p) = a.checked_mul(b) {
        return p >> FRAC;
    }
    let mask = u128::from(u64::MAX);
    let (ah, al, bh, bl) = (a >> 64, a & mask, b >> 64, b & mask);
    let lo = al * bl;
    let mid1 = ah * bl;
    let mid2 = al * bh;
    let hi = ah * bh;
    // Sum the 256-bit product as (high, low) words.
    let (mid, mid_carry) = mid1.overflowing_add(mid2);
    let (low, c1) = lo.overflowing_add(mid << 64);
    let high = hi
        .saturating_add(mid >> 64)
        .saturating_add(if mid_carry { 1 << 64 } else { 0 })
        .saturating_add(u128::from(c1));
    if high >> FRAC != 0 {
        return u128::MAX;
    }
    (high << (128 - FRAC)) | (low >> FRAC)
}

/// `trunc(a / b)` for unsigned 32-fractional-bit values; `None` on a zero divisor or overflow.
fn div_fx(a: u128, b: u128) -> Option<u128> {
    if b == 0 {
        return None;
    }
    if a >> (128 - FRAC) == 0 {
        return Some((a << FRAC) / b);
    }
    // (a << 32) / b = (a / b) << 32 + ((a % b) << 32) / b, exact while the remainder term fits.
    let q = a / b;
    let r = a % b;
    if q >> (128 - FRAC) != 0 || r >> (128 - FRAC) != 0 {
        return None;
    }
    Some((q << FRAC) + (r << FRAC) / b)
}

/// Integer part of the chain's fixed-point `log2` of `x >= 1` (`transcendental::log2_inner`):
/// halve until below 2, each halving **rounding** its last bit up, counting the halvings.
fn floor_log2_chain(mut x: u128) -> u32 {
    let mut count = 0;
    while x >= 2 * ONE {
        count += 1;
        x = (x >> 1) + (x & 1);
    }
    count
}

/// Block emission in rao for a given total issuance: `1 TAO × 2^−floor(log2(1 / (1 − I/21M)))`,
/// 0 at or past the cap (`get_block_emission_for_issuance`).
pub fn block_emission(issuance: u64) -> u64 {
    if issuance >= TOTAL_SUPPLY {
        return 0;
    }
    let issuance_fx = u128::from(issuance) << FRAC;
    let supply_fx = u128::from(TOTAL_SUPPLY) << FRAC;
    // All of these are in range for issuance < TOTAL_SUPPLY; a failure pays nothing, as the
    // chain's `Err` does.
    let Some(ratio) = div_fx(issuance_fx, supply_fx) else {
        return 0;
    };
    let Some(one_minus) = ONE.checked_sub(ratio) else {
        return 0;
    };
    let Some(inverse) = div_fx(ONE, one_minus) else {
        return 0;
    };
    let halvings = floor_log2_chain(inverse);
    // multiplier = 2^halvings in I96F32 (saturating at 2^95), percentage = 1 / multiplier.
    let multiplier = if halvings >= 95 {
        i128::MAX as u128
    } else {
        ONE << halvings
    };
    let percentage = div_fx(ONE, multiplier).unwrap_or(0);
    let emission = mul_fx(percentage, u128::from(DEFAULT_BLOCK_EMISSION) << FRAC) >> FRAC;
    u64::try_from(emission).unwrap_or(u64::MAX)
}

/// Mints one block: the new issuance and the amount minted. Issuance never passes the cap.
pub fn mint_block(issuance: u64) -> (u64, u64) {
    let minted = block_emission(issuance);
    (issuance.saturating_add(minted), minted)
}

/// Why an emission split was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EmissionError {
    /// The root proportion must be a proportion.
    #[error("root proportion {0:#x} (U96F32 bits) is above 1")]
    RootProportionAboveOne(u128),
}

/// One block's alpha for participants, split as `emit_to_subnets` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmissionSplit {
    /// Subnet owner's cut.
    pub owner_cut: u64,
    /// Miners' half of the rest (paid by incentive).
    pub server: u64,
    /// Validators' half of the rest, less the root share (paid by dividends).
    pub validator: u64,
    /// Root stakers' share of the validators' half.
    pub root: u64,
}

/// `root_proportion = w·root_tao / (w·root_tao + alpha_issuance)` as `U96F32` bits, with
/// `w = tao_weight / u64::MAX` (`block_step.rs::root_proportion`, `get_tao_weight`).
pub fn root_proportion(root_tao: u64, tao_weight: u64, alpha_issuance: u64) -> u128 {
    let w = div_fx(u128::from(tao_weight) << FRAC, u128::from(u64::MAX) << FRAC).unwrap_or(0);
    let weighted = mul_fx(u128::from(root_tao) << FRAC, w);
    div_fx(
        weighted,
        weighted.saturating_add(u128::from(alpha_issuance) << FRAC),
    )
    .unwrap_or(0)
}

/// Splits `alpha_out` rao: owner cut `alpha·cut/65535` (when enabled), then 50 % of the rest to
/// miners, the other 50 % to validators minus `root_proportion · rest · 0.5` for root stakers.
/// Each amount is floored to rao, as the chain's `tou64!` does.
pub fn split_alpha_out(
    alpha_out: u64,
    owner_cut_u16: u16,
    owner_cut_enabled: bool,
    root_proportion_bits: u128,
) -> Result<EmissionSplit, EmissionError> {
    if root_proportion_bits > ONE {
        return Err(EmissionError::RootProportionAboveOne(root_proportion_bits));
    }
    let half = ONE >> 1;
    let mut rest = u128::from(alpha_out) << FRAC;
    let mut owner = 0u128;
    if owner_cut_enabled {
        let cut = div_fx(
            u128::from(owner_cut_u16) << FRAC,
            u128::from(u16::MAX) << FRAC,
        )
        .unwrap_or(0);
        owner = mul_fx(rest, cut);
        rest = rest.saturating_sub(owner);
    }
    let root = mul_fx(mul_fx(root_proportion_bits, rest), half);
    let server = mul_fx(rest, half);
    let validator = rest.saturating_sub(server).saturating_sub(root);
    let to_rao = |x: u128| u64::try_from(x >> FRAC).unwrap_or(u64::MAX);
    Ok(EmissionSplit {
        owner_cut: to_rao(owner),
        server: to_rao(server),
        validator: to_rao(validator),
        root: to_rao(root),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halvings_follow_issuance() {
        assert_eq!(block_emission(0), 1_000_000_000);
        assert_eq!(block_emission(TOTAL_SUPPLY / 2 - 1), 1_000_000_000);
        assert_eq!(block_emission(TOTAL_SUPPLY / 2), 500_000_000);
        assert_eq!(block_emission(TOTAL_SUPPLY / 4 * 3), 250_000_000);
        assert_eq!(block_emission(15_750_000 * RAO_PER_TAO - 1), 500_000_000);
        assert_eq!(block_emission(18_375_000 * RAO_PER_TAO), 125_000_000);
        assert_eq!(block_emission(TOTAL_SUPPLY - 1), 0);
        assert_eq!(block_emission(TOTAL_SUPPLY), 0);
        assert_eq!(block_emission(u64::MAX), 0);
    }

    #[test]
    fn matches_float_formula_away_from_boundaries() {
        for tao in [
            1u64, 1_000, 5_000_000, 11_000_000, 16_000_000, 19_000_000, 20_900_000,
        ] {
            let i = tao * RAO_PER_TAO;
            let r = i as f64 / TOTAL_SUPPLY as f64;
            let k = (1.0 / (1.0 - r)).log2().floor();
            let want = (1e9 / 2f64.powf(k)).floor() as u64;
            assert_eq!(block_emission(i), want, "issuance {tao} TAO");
        }
    }

    #[test]
    fn chain_log2_rounds_halvings_up() {
        assert_eq!(floor_log2_chain(ONE), 0);
        assert_eq!(floor_log2_chain(2 * ONE - 1), 0);
        assert_eq!(floor_log2_chain(2 * ONE), 1);
        // Just below 4: the first halving rounds to exactly 2, so it counts as 2 halvings.
        assert_eq!(floor_log2_chain(4 * ONE - 1), 2);
    }

    #[test]
    fn wide_mul_and_div_agree_with_narrow_ones() {
        let a = (1u128 << 100) + 12345;
        let b = 3u128 << 31;
        // a·b overflows u128 but a·b >> 32 = a·1.5 fits.
        assert_eq!(mul_fx(a, b), a + (a >> 1));
        assert_eq!(div_fx(a, 2 * ONE), Some(a >> 1));
        assert_eq!(div_fx(ONE, 0), None);
    }

    #[test]
    fn split_pays_owner_then_halves() {
        let s = split_alpha_out(1_000_000_000, DEFAULT_OWNER_CUT_U16, true, 0).unwrap_or(
            EmissionSplit {
                owner_cut: 0,
                server: 0,
                validator: 0,
                root: 0,
            },
        );
        // 11796/65535 of 1e9, floored twice (ratio, then product).
        assert_eq!(s.owner_cut, 179_995_422);
        // Half of the rest *before* flooring: (1e9 - 179 995 422.6…) / 2 = 410 002 288.6…
        assert_eq!(s.server, 410_002_288);
        assert_eq!(s.validator, 410_002_288);
        // Each part is floored separately: together they fall short of the total by < 1 rao each.
        let paid = s.owner_cut + s.server + s.validator + s.root;
        assert!(paid <= 1_000_000_000 && paid + 3 >= 1_000_000_000, "{paid}");
        let no_cut = split_alpha_out(100, 0, false, ONE / 2).unwrap_or(s);
        assert_eq!((no_cut.server, no_cut.root, no_cut.validator), (50, 25, 25));
        assert!(split_alpha_out(1, 0, false, ONE + 1).is_err());
    }
}
