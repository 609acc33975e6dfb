//! `I32F32` fixed point with the exact rounding of the chain's `substrate-fixed` 0.6 types.
//!
//! Bit-compatibility with subtensor depends on every rounding step, so the type is ours, with each
//! operation written out against the integer it stands for (`bits / 2^32`):
//!
//! * multiplication keeps the full 128-bit product and shifts right arithmetically: **floor**;
//! * division computes `(a << 32) / b` with integer division: **truncation toward zero**; the chain's
//!   `safe_div` gives 0 when `b` is zero or the quotient does not fit;
//! * additions are exact integer adds (saturating here, where the chain's ranges never reach);
//! * conversion to an integer is **floor**, saturating at the target's bounds.
//!
//! Nothing here panics: every operation has a defined result for every input.

use std::fmt;

/// Number of fractional bits of [`I32F32`].
pub const FRAC_BITS: u32 = 32;

const FRAC_MASK: i64 = (1 << FRAC_BITS) - 1;

/// A signed fixed-point number with 32 integer and 32 fractional bits, stored as `bits / 2^32`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct I32F32(i64);

impl fmt::Debug for I32F32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Decimal first for humans, bits second because the bits are what must match the chain.
        write!(f, "{:.10}({:#x})", self.to_f64(), self.0)
    }
}

impl I32F32 {
    /// 0.
    pub const ZERO: Self = Self(0);
    /// 1.
    pub const ONE: Self = Self(1 << FRAC_BITS);
    /// 0.5, exact.
    pub const HALF: Self = Self(1 << (FRAC_BITS - 1));
    /// Largest value, `2^31 - 2^-32`.
    pub const MAX: Self = Self(i64::MAX);
    /// Smallest value, `-2^31`.
    pub const MIN: Self = Self(i64::MIN);
    /// 65535 as a number: the scale of every on-chain `u16` proportion.
    pub const U16_MAX: Self = Self((u16::MAX as i64) << FRAC_BITS);

    /// The value whose raw representation is `bits`.
    pub const fn from_bits(bits: i64) -> Self {
        Self(bits)
    }

    /// The raw representation, `value * 2^32`.
    pub const fn to_bits(self) -> i64 {
        self.0
    }

    /// An integer, exactly.
    pub const fn from_u16(x: u16) -> Self {
        Self((x as i64) << FRAC_BITS)
    }

    /// An integer, exactly.
    pub const fn from_i32(x: i32) -> Self {
        Self((x as i64) << FRAC_BITS)
    }

    /// An integer, saturating at [`I32F32::MAX`] (`saturating_from_num`).
    pub fn saturating_from_u64(x: u64) -> Self {
        if x > i32::MAX as u64 {
            Self::MAX
        } else {
            Self((x as i64) << FRAC_BITS)
        }
    }

    /// Approximate value, for messages and tests only: never on the bit-exact path.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / (1u64 << FRAC_BITS) as f64
    }

    /// Exact sum, saturating at the bounds.
    #[must_use]
    pub const fn saturating_add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }

    /// Exact difference, saturating at the bounds.
    #[must_use]
    pub const fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }

    /// `floor(a * b)`, `None` when it does not fit (`checked_mul`).
    #[must_use]
    pub fn checked_mul(self, rhs: Self) -> Option<Self> {
        let prod = i128::from(self.0) * i128::from(rhs.0);
        // Arithmetic shift of a signed value is floor division by 2^32.
        i64::try_from(prod >> FRAC_BITS).ok().map(Self)
    }

    /// `floor(a * b)`, saturating by the sign of the product on overflow (`saturating_mul`).
    #[must_use]
    pub fn saturating_mul(self, rhs: Self) -> Self {
        // Fast path: both operands non-negative and below 2^32 (every proportion in [0, 1] and
        // every u16 weight scaled by a proportion) keep the product inside u64.
        if (self.0 as u64 | rhs.0 as u64) >> 32 == 0 {
            return Self((((self.0 as u64) * (rhs.0 as u64)) >> FRAC_BITS) as i64);
        }
        self.checked_mul(rhs)
            .unwrap_or(if (self.0 < 0) != (rhs.0 < 0) {
                Self::MIN
            } else {
                Self::MAX
            })
    }

    /// `trunc(a / b)`, `None` when `b` is zero or the quotient does not fit (`checked_div`).
    #[must_use]
    pub fn checked_div(self, rhs: Self) -> Option<Self> {
        if rhs.0 == 0 {
            return None;
        }
        if rhs.0 & FRAC_MASK == 0 {
            // An integer divisor k: (a·2^32) / (k·2^32) is exactly a / k, so one 64-bit division
            // (truncating, like the wide one) gives the same quotient.
            return self.0.checked_div(rhs.0 >> FRAC_BITS).map(Self);
        }
        if self.0 >= 0 && rhs.0 > 0 {
            // Dividing both by a common power of two leaves the exact quotient (and so its floor)
            // unchanged, and often lets the 96-bit numerator fit a 64-bit division.
            let shift = self.0.trailing_zeros().min(rhs.0.trailing_zeros()).min(63);
            let (a, b) = ((self.0 as u64) >> shift, (rhs.0 as u64) >> shift);
            if a >> 32 == 0 {
                let q = (a << FRAC_BITS) / b;
                return i64::try_from(q).ok().map(Self);
            }
        }
        // i64::MIN << 32 fits in i128; the only i128 overflow would be MIN / -1, impossible here
        // because the numerator is a multiple of 2^32 and its magnitude is at most 2^95.
        let q = (i128::from(self.0) << FRAC_BITS) / i128::from(rhs.0);
        i64::try_from(q).ok().map(Self)
    }

    /// [`I32F32::checked_div`], through one 64-bit division for 1 divided by a value of at least
    /// 1 (the sigmoid of liquid alpha and the reciprocal in `exp`).
    #[must_use]
    pub fn checked_div_fast(self, rhs: Self) -> Option<Self> {
        if self == Self::ONE
            && let Ok(d) = u64::try_from(rhs.0)
            && d >= 1 << FRAC_BITS
        {
            // 1 / d is 2^64 / d in bits. floor((2^64 - 1) / d) is the same number unless d divides
            // 2^64, that is unless d is a power of two, when it is one less. The quotient is at
            // most 2^32.
            let q = u64::MAX / d + u64::from(d.is_power_of_two());
            return Some(Self(q as i64));
        }
        self.checked_div(rhs)
    }

    /// The chain's `safe_div`: `trunc(a / b)`, or 0 on a zero divisor or overflow.
    #[must_use]
    pub fn safe_div(self, rhs: Self) -> Self {
        self.checked_div(rhs).unwrap_or(Self::ZERO)
    }

    /// `trunc(a / b)`, saturating by the sign of the quotient on overflow (`saturating_div`).
    ///
    /// The chain panics on a zero divisor; its callers never pass one. Here a zero divisor
    /// saturates like an overflow so that no input can panic.
    #[must_use]
    pub fn saturating_div(self, rhs: Self) -> Self {
        self.checked_div(rhs)
            .unwrap_or(if (self.0 < 0) != (rhs.0 < 0) {
                Self::MIN
            } else {
                Self::MAX
            })
    }

    /// Floor to an integer, saturating into `u16` (`saturating_to_num::<u16>`).
    pub fn saturating_to_u16(self) -> u16 {
        let int = self.0 >> FRAC_BITS;
        int.clamp(0, i64::from(u16::MAX)) as u16
    }

    /// `floor(x * 65535)` saturated into `u16`: how the chain stores a proportion
    /// (`fixed_proportion_to_u16`).
    pub fn proportion_to_u16(self) -> u16 {
        // Fast path for proportions in [0, 1] (every stored bond): `floor(bits · 65535 · 2^32 /
        // 2^32)` is `bits · 65535 >> 32`, which fits a u64, and the integer part is at most 65535.
        if let Ok(bits) = u64::try_from(self.0)
            && bits <= 1 << FRAC_BITS
        {
            return ((bits * u64::from(u16::MAX)) >> FRAC_BITS) as u16;
        }
        self.saturating_mul(Self::U16_MAX).saturating_to_u16()
    }

    /// `x / 65535` for a stored `u16` proportion (`u16_proportion_to_fixed`), truncated.
    pub fn from_u16_proportion(x: u16) -> Self {
        // `safe_div` by the integer 65535 is `(x · 2^32) / 65535` truncated (see `checked_div`);
        // written with the constant so it compiles to a multiply, once per stored bond.
        Self(((x as i64) << FRAC_BITS) / (u16::MAX as i64))
    }

    /// `min(max(self, low), high)` in the chain's order: `self.min(high).max(low)`.
    #[must_use]
    pub fn clamp_chain(self, low: Self, high: Self) -> Self {
        self.min(high).max(low)
    }
}

/// `floor(n / d)` for `u64` values through a precomputed reciprocal `m = floor((2^64 − 1) / d)`:
/// the estimate `n·m >> 64` is never above the quotient and at most two below, so two correction
/// steps make it exact. A multiply is several times cheaper than a division.
#[derive(Debug, Clone, Copy)]
struct Reciprocal {
    d: u64,
    m: u64,
}

impl Reciprocal {
    fn new(d: u64) -> Option<Self> {
        (d != 0).then(|| Self { d, m: u64::MAX / d })
    }

    #[inline]
    fn div(self, n: u64) -> u64 {
        let q = ((u128::from(n) * u128::from(self.m)) >> 64) as u64;
        // Two corrections, unconditionally: a data-dependent loop here mispredicts often enough
        // to cost more than the arithmetic (normalising a million weights runs this a million
        // times). `q <= n / d`, so `q * d <= n` and nothing wraps.
        let r = n - q * self.d;
        let c1 = u64::from(r >= self.d);
        let (q, r) = (q + c1, r - c1 * self.d);
        q + u64::from(r >= self.d)
    }
}

/// Many divisions by one divisor, each exactly [`I32F32::safe_div`]: normalising a row or a column
/// divides every entry by the same sum, and this keeps those divisions off the slow 128-bit path
/// for the common cases (a proportion below 1, or integer-valued entries and divisor).
#[derive(Debug, Clone, Copy)]
pub struct Divider {
    divisor: I32F32,
    /// Reciprocal of the divisor's bits, for numerators below 2^32 (values below 1).
    by_bits: Option<Reciprocal>,
    /// Reciprocal of the divisor's integer part when it has no fractional bits.
    by_int: Option<Reciprocal>,
}

impl Divider {
    /// Prepares division by `divisor`.
    pub fn new(divisor: I32F32) -> Self {
        let bits = divisor.to_bits();
        let positive = u64::try_from(bits).ok().filter(|&b| b > 0);
        Self {
            divisor,
            by_bits: positive.and_then(Reciprocal::new),
            by_int: positive
                .filter(|&b| b & FRAC_MASK as u64 == 0)
                .and_then(|b| Reciprocal::new(b >> FRAC_BITS)),
        }
    }

    /// `x.safe_div(divisor)`, bit for bit.
    #[inline]
    pub fn safe_div(&self, x: I32F32) -> I32F32 {
        let bits = x.to_bits();
        if let Ok(a) = u64::try_from(bits) {
            if let (Some(r), true) = (self.by_int, bits & FRAC_MASK == 0) {
                // a = A·2^32 and the divisor is k·2^32: (A·2^64)/(k·2^32) = a / k exactly.
                let q = r.div(a);
                return i64::try_from(q).map_or(I32F32::ZERO, I32F32::from_bits);
            }
            if let (Some(r), true) = (self.by_bits, a >> FRAC_BITS == 0) {
                let q = r.div(a << FRAC_BITS);
                return i64::try_from(q).map_or(I32F32::ZERO, I32F32::from_bits);
            }
        }
        self.slow(x)
    }

    /// Everything off the fast paths (negative values, values above 1 over a fractional
    /// divisor): rare, and kept out of line so the fast paths inline into the loops.
    #[cold]
    #[inline(never)]
    fn slow(&self, x: I32F32) -> I32F32 {
        x.safe_div(self.divisor)
    }
}

/// Exact sum of a slice, saturating (the chain's `iter().sum()`; its operands never overflow).
pub fn sum(xs: &[I32F32]) -> I32F32 {
    xs.iter()
        .fold(I32F32::ZERO, |acc, &x| acc.saturating_add(x))
}

/// `e` as the chain's `exp` returns it for an input of exactly 1: the `I9F23` constant (e with 23
/// fractional bits, truncated) widened to 32 fractional bits.
const E_AS_I9F23_BITS: i64 = (0xADF8_5458_A2BB_4A9A_AFDC_5620_273D_3CF1_u128 >> 103) as i64;

/// `substrate_fixed::transcendental::exp` for `I32F32` in and out: `1 + x + x²/2! + …` with 30
/// terms (`i` from 2 to 31), each term `floor(term * x)` then truncated `/ i`; negative inputs
/// take the reciprocal of `exp(|x|)`. `None` where the chain returns `Err` (overflow).
///
/// Liquid alpha runs this once per bond entry whose input does not repeat, so it is written for
/// speed without changing a bit: the terms are non-negative, so the products and quotients are
/// taken as unsigned integers, the loop is unrolled so that each `/ i` is a division by a constant
/// (a multiply), and the reciprocal is a 64-bit division.
pub fn exp(x: I32F32) -> Option<I32F32> {
    if x == I32F32::ZERO {
        return Some(I32F32::ONE);
    }
    if x == I32F32::ONE {
        return Some(I32F32::from_bits(E_AS_I9F23_BITS << 9));
    }
    let neg = x < I32F32::ZERO;
    // |x| as an unsigned value; `checked_abs` fails only for the smallest value, as the chain's
    // negation does.
    let operand = u64::try_from(x.to_bits().checked_abs()?).ok()?;
    let mut result = operand
        .checked_add(I32F32::ONE.to_bits() as u64)
        .filter(|&r| r <= i64::MAX as u64)?;
    let mut term = operand;
    macro_rules! terms {
        ($($i:literal)*) => {$(
            // `checked_mul`: the floored product must fit an i64.
            let product = (u128::from(term) * u128::from(operand)) >> FRAC_BITS;
            if product > i64::MAX as u128 {
                return None;
            }
            term = product as u64 / $i;
            if term == 0 {
                // Every later term is 0·x/i = 0: the remaining ones add nothing.
                return exp_finish(result, neg);
            }
            result = result.checked_add(term).filter(|&r| r <= i64::MAX as u64)?;
        )*};
    }
    terms!(2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    exp_finish(result, neg)
}

/// The end of [`exp`]: the series' sum, or its reciprocal for a negative input.
fn exp_finish(result: u64, neg: bool) -> Option<I32F32> {
    let result = I32F32::from_bits(i64::try_from(result).ok()?);
    if neg {
        I32F32::ONE.checked_div_fast(result)
    } else {
        Some(result)
    }
}

/// The chain's `exp_safe`: input clamped to [-20, 20], overflow mapped to 0 (negative input) or
/// [`I32F32::MAX`].
pub fn exp_safe(x: I32F32) -> I32F32 {
    let limit = I32F32::from_i32(20);
    let safe = x.clamp(I32F32::ZERO.saturating_sub(limit), limit);
    exp(safe).unwrap_or(if safe <= I32F32::ZERO {
        I32F32::ZERO
    } else {
        I32F32::MAX
    })
}

/// [`exp_safe`] of four inputs at once, bit for bit.
///
/// One series is a chain of dependent multiply-divide steps, so a lone `exp` spends most of its
/// time waiting on the previous term; four independent series interleaved keep the multiplier
/// busy. Inside `exp_safe`'s range [-20, 20] no term, product or sum comes near 2^63 (the largest
/// term, 20^20/20!, is below 2^26, times 2^32, times an operand below 2^37), so the overflow checks
/// of [`exp`] never fire and are left out; a lane at 0 or 1 (special-cased constants) sends all
/// four through [`exp_safe`].
pub fn exp_safe4(xs: [I32F32; 4]) -> [I32F32; 4] {
    let limit = I32F32::from_i32(20);
    let safe = xs.map(|x| x.clamp(I32F32::ZERO.saturating_sub(limit), limit));
    if safe.iter().any(|&x| x == I32F32::ZERO || x == I32F32::ONE) {
        return xs.map(exp_safe);
    }
    let operand = safe.map(|x| x.to_bits().unsigned_abs());
    let mut result = operand.map(|o| o + (1u64 << FRAC_BITS));
    let mut term = operand;
    macro_rules! terms {
        ($($i:literal)*) => {$(
            let mut any = 0u64;
            for ((t, r), &o) in term.iter_mut().zip(result.iter_mut()).zip(&operand) {
                *t = ((u128::from(*t) * u128::from(o)) >> FRAC_BITS) as u64 / $i;
                *r += *t;
                any |= *t;
            }
            if any == 0 {
                // Every later term of every lane is 0.
                return exp4_finish(result, safe);
            }
        )*};
    }
    terms!(2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    exp4_finish(result, safe)
}

/// The end of [`exp_safe4`]: each lane's sum, or its reciprocal for a negative input.
fn exp4_finish(result: [u64; 4], safe: [I32F32; 4]) -> [I32F32; 4] {
    let mut out = [I32F32::ZERO; 4];
    for ((o, r), x) in out.iter_mut().zip(result).zip(safe) {
        let r = I32F32::from_bits(i64::try_from(r).unwrap_or(i64::MAX));
        *o = if x < I32F32::ZERO {
            I32F32::ONE.checked_div_fast(r).unwrap_or(I32F32::ZERO)
        } else {
            r
        };
    }
    out
}

/// A proportion of two `u64` amounts normalised the way the chain normalises stake: in `I64F64`
/// (`floor(x * 2^64 / total)`), then narrowed to `I32F32` by dropping 32 bits (floor). `total`
/// must not exceed `i64::MAX` (the `I64F64` integer range) and `x <= total`.
pub fn normalized_u64_to_i32f32(x: u64, total: u64) -> I32F32 {
    if total == 0 {
        return I32F32::ZERO;
    }
    let bits64 = (u128::from(x) << 64) / u128::from(total);
    // x <= total, so bits64 <= 2^64 and bits64 >> 32 <= 2^32: always fits.
    I32F32::from_bits((bits64 >> 32) as i64)
}

/// `bonds_moving_average` (ppm) to the EMA weight `alpha = 1 - bma / 10^6` as the chain computes
/// it: the ratio in `I64F64` (`saturating_from_num`, then truncated division), narrowed to
/// `I32F32` (floor, saturating), subtracted from 1 (saturating).
pub fn ema_alpha_from_ppm(bma: u64) -> I32F32 {
    let bma = bma.min(i64::MAX as u64);
    // I64F64 division: (bma·2^64 << 64) / (10^6·2^64) = floor(bma · 2^64 / 10^6).
    let ratio64 = (u128::from(bma) << 64) / 1_000_000u128;
    let narrowed = i64::try_from(ratio64 >> 32).unwrap_or(i64::MAX);
    I32F32::ONE.saturating_sub(I32F32::from_bits(narrowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(x: f64) -> I32F32 {
        I32F32::from_bits((x * (1u64 << 32) as f64).round() as i64)
    }

    #[test]
    fn mul_floors_toward_negative_infinity() {
        // 2^-32 * 0.5 = 2^-33: floors to 0 when positive, to -2^-32 when negative.
        let tiny = I32F32::from_bits(1);
        assert_eq!(tiny.saturating_mul(I32F32::HALF), I32F32::ZERO);
        let neg_tiny = I32F32::from_bits(-1);
        assert_eq!(neg_tiny.saturating_mul(I32F32::HALF), I32F32::from_bits(-1));
        // 3 * 2^-32 * 0.5 = 1.5 * 2^-32 -> 1 bit; negated -> -2 bits.
        assert_eq!(
            I32F32::from_bits(3).saturating_mul(I32F32::HALF).to_bits(),
            1
        );
        assert_eq!(
            I32F32::from_bits(-3).saturating_mul(I32F32::HALF).to_bits(),
            -2
        );
    }

    #[test]
    fn mul_saturates_by_sign() {
        let big = I32F32::from_i32(100_000);
        assert_eq!(big.saturating_mul(big), I32F32::MAX);
        assert_eq!(
            big.saturating_mul(I32F32::ZERO.saturating_sub(big)),
            I32F32::MIN
        );
        assert_eq!(big.checked_mul(big), None);
    }

    #[test]
    fn div_truncates_toward_zero() {
        // 1/3 = 0x0.55555555|5... truncates to 0x55555555 bits.
        let third = I32F32::ONE.safe_div(I32F32::from_i32(3));
        assert_eq!(third.to_bits(), 0x5555_5555);
        // -1/3 truncates toward zero: -0x55555555, not -0x55555556.
        let neg_third = I32F32::ZERO
            .saturating_sub(I32F32::ONE)
            .safe_div(I32F32::from_i32(3));
        assert_eq!(neg_third.to_bits(), -0x5555_5555);
        // 2/3 = 0xAAAAAAAA|A... truncates.
        assert_eq!(
            I32F32::from_i32(2).safe_div(I32F32::from_i32(3)).to_bits(),
            0xAAAA_AAAA
        );
    }

    #[test]
    fn div_fast_path_agrees_with_wide_path() {
        let cases = [
            (1i64, 3i64),
            (0xFFFF_FFFF, 0x1_0000_0000),
            (65535 << 32, 131070 << 32),
            (16383 << 32, 163_830 << 32),
            (0x1234_5678_9ABC, 0x0F00),
            (1 << 40, 3 << 20),
            (7, 1 << 62),
            (-(7 << 32) + 5, 2 << 32),
            (-12_345_678_901, 3 << 32),
            (i64::MIN, -(1 << 32)),
            (i64::MAX, 1 << 32),
            (i64::MAX, -(5 << 32)),
        ];
        for (a, b) in cases {
            let wide = i64::try_from((i128::from(a) << 32) / i128::from(b)).ok();
            let got = I32F32::from_bits(a)
                .checked_div(I32F32::from_bits(b))
                .map(I32F32::to_bits);
            assert_eq!(got, wide, "{a:#x} / {b:#x}");
        }
    }

    #[test]
    fn divider_agrees_with_safe_div() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let picks = |r: u64| -> i64 {
            match r % 5 {
                0 => (r >> 31) as i64,
                1 => (((r >> 8) % 65_536) << 32) as i64,
                2 => ((r >> 8) % (1 << 33)) as i64,
                3 => -(((r >> 8) % (1 << 40)) as i64),
                _ => (r >> 1) as i64,
            }
        };
        let mut divisors = vec![1i64, 2, 3, 1 << 32, 3 << 32, 65_535 << 32, i64::MAX, 0, -7];
        divisors.extend((0..200).map(|_| picks(next())));
        for &d in &divisors {
            let div = Divider::new(I32F32::from_bits(d));
            for _ in 0..2000 {
                let x = I32F32::from_bits(picks(next()));
                assert_eq!(
                    div.safe_div(x),
                    x.safe_div(I32F32::from_bits(d)),
                    "{x:?} / {d:#x}"
                );
            }
            for x in [0i64, 1, (1 << 32) - 1, 1 << 32, i64::MAX, 65_535 << 32] {
                let x = I32F32::from_bits(x);
                assert_eq!(
                    div.safe_div(x),
                    x.safe_div(I32F32::from_bits(d)),
                    "{x:?} / {d:#x}"
                );
            }
        }
    }

    #[test]
    fn safe_div_is_zero_on_zero_divisor_or_overflow() {
        assert_eq!(I32F32::ONE.safe_div(I32F32::ZERO), I32F32::ZERO);
        // 2^30 / 2^-32 = 2^62: does not fit 31 integer bits.
        assert_eq!(
            I32F32::from_i32(1 << 30).safe_div(I32F32::from_bits(1)),
            I32F32::ZERO
        );
        assert_eq!(I32F32::ONE.saturating_div(I32F32::ZERO), I32F32::MAX);
    }

    #[test]
    fn proportion_to_u16_fast_path_agrees_with_the_wide_product() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let wide = |v: I32F32| v.saturating_mul(I32F32::U16_MAX).saturating_to_u16();
        for bits in [
            0i64,
            1,
            65_535,
            65_536,
            (1 << 32) - 1,
            1 << 32,
            (1 << 32) + 1,
        ] {
            let v = I32F32::from_bits(bits);
            assert_eq!(v.proportion_to_u16(), wide(v), "{v:?}");
        }
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = I32F32::from_bits((x % ((1 << 32) + 1)) as i64);
            assert_eq!(v.proportion_to_u16(), wide(v), "{v:?}");
        }
    }

    #[test]
    fn u16_proportion_is_the_chain_division() {
        for x in 0..=u16::MAX {
            assert_eq!(
                I32F32::from_u16_proportion(x),
                I32F32::from_u16(x).safe_div(I32F32::U16_MAX)
            );
        }
    }

    #[test]
    fn u16_proportions_round_trip_by_floor() {
        assert_eq!(I32F32::ONE.proportion_to_u16(), 65535);
        assert_eq!(I32F32::HALF.proportion_to_u16(), 32767);
        assert_eq!(
            I32F32::ZERO.saturating_sub(I32F32::ONE).proportion_to_u16(),
            0
        );
        assert_eq!(I32F32::from_i32(2).proportion_to_u16(), 65535);
        // kappa default 32767/65535 = 0.49999237..., truncated.
        let kappa = I32F32::from_u16_proportion(32767);
        assert_eq!(kappa.to_bits(), (32767u64 << 32).div_euclid(65535) as i64);
        assert_eq!(I32F32::from_u16_proportion(65535), I32F32::ONE);
        // A stored proportion read back and stored again may lose one unit (both steps floor).
        for x in [0u16, 1, 2, 1000, 32767, 65534, 65535] {
            let back = I32F32::from_u16_proportion(x).proportion_to_u16();
            assert!(back == x || back + 1 == x, "{x} -> {back}");
        }
    }

    #[test]
    fn stake_normalisation_floors_twice_like_i64f64_then_i32f32() {
        // 1/3 in I64F64 then narrowed = floor(2^32/3).
        assert_eq!(normalized_u64_to_i32f32(1, 3).to_bits(), 0x5555_5555);
        assert_eq!(normalized_u64_to_i32f32(5, 5), I32F32::ONE);
        assert_eq!(normalized_u64_to_i32f32(0, 0), I32F32::ZERO);
        let big = i64::MAX as u64;
        assert_eq!(
            normalized_u64_to_i32f32(big / 2, big).to_bits(),
            0x7FFF_FFFF
        );
    }

    #[test]
    fn ema_alpha_matches_one_minus_truncated_ratio() {
        // 900 000 ppm: 0.9 truncated to 32 bits = 0xE6666666, alpha = 2^32 - that.
        assert_eq!(
            ema_alpha_from_ppm(900_000).to_bits(),
            (1i64 << 32) - 0xE666_6666
        );
        assert_eq!(ema_alpha_from_ppm(0), I32F32::ONE);
        assert_eq!(ema_alpha_from_ppm(1_000_000), I32F32::ZERO);
    }

    /// The chain's `exp` as first written here, term by term in signed fixed point: the
    /// reference for the unrolled unsigned version.
    fn exp_reference(x: I32F32) -> Option<I32F32> {
        if x == I32F32::ZERO {
            return Some(I32F32::ONE);
        }
        if x == I32F32::ONE {
            return Some(I32F32::from_bits(E_AS_I9F23_BITS << 9));
        }
        let neg = x < I32F32::ZERO;
        let operand = if neg {
            I32F32::from_bits(x.to_bits().checked_neg()?)
        } else {
            x
        };
        let mut result = operand.to_bits().checked_add(I32F32::ONE.to_bits())?;
        let mut term = operand;
        for i in 2..FRAC_BITS {
            term = term.checked_mul(operand)?;
            term = term.checked_div(I32F32::from_i32(i as i32))?;
            if term == I32F32::ZERO {
                break;
            }
            result = result.checked_add(term.to_bits())?;
        }
        let result = I32F32::from_bits(result);
        if neg {
            I32F32::ONE.checked_div(result)
        } else {
            Some(result)
        }
    }

    #[test]
    fn exp_is_bit_for_bit_the_term_by_term_series() {
        let mut seed = 0x3C6E_F372_FE94_F82Bu64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut inputs: Vec<i64> = vec![
            0,
            1,
            -1,
            1 << 32,
            -(1 << 32),
            (1 << 32) - 1,
            (1 << 32) + 1,
            20 << 32,
            -(20 << 32),
            21 << 32,
            44 << 32,
            45 << 32,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        for _ in 0..200_000 {
            let r = next();
            inputs.push(match r % 4 {
                // Liquid alpha's range at the default steepness: [-5, 5], and a little around.
                0 => (r >> 20) as i64 % (20 << 32) - (10 << 32),
                1 => (r >> 24) as i64 % (1 << 34) - (1 << 33),
                2 => (r >> 16) as i64 % (50 << 32) - (25 << 32),
                _ => r as i64,
            });
        }
        for bits in inputs {
            let x = I32F32::from_bits(bits);
            assert_eq!(exp(x), exp_reference(x), "exp({x:?})");
        }
    }

    #[test]
    fn four_lane_exp_is_four_scalar_exps() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let special = [
            0i64,
            1 << 32,
            20 << 32,
            -(20 << 32),
            21 << 32,
            -(30 << 32),
            1,
            -1,
        ];
        for _ in 0..100_000 {
            let xs: [I32F32; 4] = std::array::from_fn(|_| {
                let r = next();
                I32F32::from_bits(match r % 8 {
                    0 => special[(r >> 8) as usize % special.len()],
                    1 => r as i64,
                    _ => (r >> 20) as i64 % (42 << 32) - (21 << 32),
                })
            });
            assert_eq!(exp_safe4(xs), xs.map(exp_safe), "{xs:?}");
        }
    }

    #[test]
    fn one_over_a_value_of_at_least_one_is_checked_div() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut divisors: Vec<i64> = vec![
            1 << 32,
            (1 << 32) + 1,
            1 << 33,
            1 << 62,
            i64::MAX,
            3 << 32,
            0,
            -1,
            1,
            (1 << 32) - 1,
            i64::MIN,
        ];
        divisors.extend((0..100_000).map(|_| (next() >> 1) as i64));
        divisors.extend((0..100_000).map(|_| (1 << 32) + (next() >> 30) as i64));
        for d in divisors {
            let d = I32F32::from_bits(d);
            assert_eq!(
                I32F32::ONE.checked_div_fast(d),
                I32F32::ONE.checked_div(d),
                "1 / {d:?}"
            );
        }
    }

    #[test]
    fn exp_matches_reference_values_closely_and_special_cases_exactly() {
        assert_eq!(exp(I32F32::ZERO), Some(I32F32::ONE));
        // exp(1) is the I9F23 constant: e truncated to 23 fractional bits.
        let e1 = exp(I32F32::ONE).unwrap_or_default();
        assert_eq!(e1.to_bits() & 0x1FF, 0);
        assert!((e1.to_f64() - std::f64::consts::E).abs() < 2.0f64.powi(-22));
        // The chain stops after the x^31/31! term, so far from 0 it is the truncated series, not
        // e^x, that must match: exp(20) is 481 239 357.67…, not 485 165 195.4….
        let truncated_series = |x: f64| {
            let (mut term, mut total) = (1.0f64, 1.0f64);
            for i in 1..32 {
                term *= x / f64::from(i);
                total += term;
            }
            total
        };
        for x in [-20.0, -5.0, -1.0, -0.5, 0.25, 2.0, 5.0, 10.0, 20.0] {
            let got = exp(f(x)).unwrap_or_default().to_f64();
            let want = if x < 0.0 {
                1.0 / truncated_series(-x)
            } else {
                truncated_series(x)
            };
            assert!(
                (got - want).abs() <= want * 1e-6 + 1e-8,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!((exp(f(20.0)).unwrap_or_default().to_f64() - 481_239_357.674).abs() < 0.01);
        assert_eq!(
            exp_safe(I32F32::from_i32(100)),
            exp_safe(I32F32::from_i32(20))
        );
        assert_eq!(
            exp_safe(I32F32::from_i32(-100)),
            exp_safe(I32F32::from_i32(-20))
        );
    }
}
