//! Bonds and dividends, both variants of spec 2.3 step 11.
//!
//! *Legacy* bonds are column-normalised shares of each miner, moved toward this epoch's
//! stake-weighted weights by a fixed EMA, and validators earn by their share. *Yuma 3* bonds are
//! per-entry proportions in [0, 1] that move toward the validator's own weight (optionally with a
//! per-entry "liquid" alpha), and stake enters the dividend directly. Both are written as the
//! chain's sparse path computes them, including its quirks (see the Gotchas in the spec).
//!
//! The chain builds each intermediate matrix in full (the previous bonds as fixed point, their
//! column-normalised copy, `W̃ ∘ S` and its normalised copy, the EMA and its normalised copy). Here
//! the previous bonds stay `u16`, normalisations are applied as entries are read, column sums are
//! gathered while a matrix is written, and the bonds to store are converted in the last pass that
//! reads them: at most one new matrix per epoch (legacy and liquid alpha keep their EMA; Yuma 3
//! with a fixed alpha computes it twice instead), and fewer passes over a million entries.

use super::fixed_math::{Divider, I32F32, exp_safe, exp_safe4};
use super::sparse::{self, Csr, RowSink};
use rayon::prelude::*;

/// Column sums of stored `u16` bonds read as integers, saturating like the chain's fixed-point
/// sum (all terms are non-negative, so saturating once at the end is the same). Runs of rows on
/// several cores; integer sums do not depend on the order.
fn u16_col_sums(m: &Csr<u16>, n: usize) -> Vec<I32F32> {
    let sums = m
        .row_runs()
        .into_par_iter()
        .map(|run| {
            let mut sums = vec![0u64; n];
            for i in run {
                let (cols, vals) = m.row(i);
                for (&j, &b) in cols.iter().zip(vals) {
                    if let Some(s) = sums.get_mut(usize::from(j)) {
                        *s += u64::from(b);
                    }
                }
            }
            sums
        })
        .reduce(
            || vec![0u64; n],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );
    sums.into_iter()
        .map(|s| {
            i64::try_from(s)
                .ok()
                .and_then(|s| s.checked_mul(1 << 32))
                .map_or(I32F32::MAX, I32F32::from_bits)
        })
        .collect()
}

/// Stored bonds: each value `floor(b · 65535)`, rows of UIDs without a new permit cleared.
pub type StoredBonds = Vec<Vec<(u16, u16)>>;

/// Everything the bond step reads.
#[derive(Debug)]
pub struct BondInputs<'a> {
    /// Number of UIDs (columns).
    pub n: usize,
    /// Previous bonds as stored, `u16` values, registration mask applied.
    pub prev_bonds_u16: &'a Csr<u16>,
    /// `W̃`: weights for bonds (penalty applied). Mutable: the legacy step reuses its buffer.
    pub weights_for_bonds: &'a mut Csr<I32F32>,
    /// Where legacy and liquid-alpha bonds are written before they are stored (the buffer is
    /// reused between epochs; Yuma 3 with a fixed alpha needs none).
    pub ema: &'a mut Csr<I32F32>,
    /// Normalised active stake.
    pub active_stake: &'a [I32F32],
    /// Normalised incentive.
    pub incentive: &'a [I32F32],
    /// Consensus per column.
    pub consensus: &'a [I32F32],
    /// Fixed EMA alpha, `1 − BMA/10⁶`.
    pub alpha: I32F32,
    /// The permits computed this epoch: only these rows' bonds are stored.
    pub new_permit: &'a [bool],
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

/// The new bonds as the chain stores them, and the dividends.
#[derive(Debug)]
pub struct BondOutputs {
    /// Bonds to store: legacy column max-upscaled, Yuma 3 as EMA'd proportions, both as `u16`
    /// proportions, converted in the step's last pass over them.
    pub bonds_to_store: StoredBonds,
    /// Normalised dividends per UID.
    pub dividends: Vec<I32F32>,
}

/// A matrix written by [`write_positive`], with its column sums.
struct WithColSums<'m> {
    m: &'m mut Csr<I32F32>,
    col_sums: Vec<I32F32>,
}

/// Writes `rows` rows into `m` (emptied first) on several cores: row `i` holds at most
/// `max_len(i)` entries, put by `f(state, i, row)` (each run of rows has its own `state`, from
/// `init`). Only positive entries are kept; their column sums, gathered per run and then added
/// (positive terms: the order does not change the bits), are the next step's divisors.
fn write_positive<'m, S>(
    m: &'m mut Csr<I32F32>,
    rows: usize,
    n: usize,
    max_len: impl Fn(usize) -> usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &mut Positive<'_, '_>) + Sync,
) -> WithColSums<'m>
where
    S: Send,
{
    let runs = m.fill_rows(
        rows,
        max_len,
        || (init(), vec![I32F32::ZERO; n]),
        |(state, col_sums), i, row| f(state, i, &mut Positive { row, col_sums }),
    );
    let col_sums = runs
        .into_iter()
        .map(|(_, sums)| sums)
        .reduce(add_columns)
        .unwrap_or_else(|| vec![I32F32::ZERO; n]);
    WithColSums { m, col_sums }
}

/// Writes one row of an EMA: every EMA keeps only positive entries, and their column sums are
/// the next step's divisors.
struct Positive<'s, 'r> {
    row: &'s mut RowSink<'r, I32F32>,
    col_sums: &'s mut [I32F32],
}

impl Positive<'_, '_> {
    /// Appends `(j, v)` when `v` is positive.
    #[inline]
    fn put(&mut self, j: u16, v: I32F32) {
        if v > I32F32::ZERO {
            self.row.push(j, v);
            if let Some(s) = self.col_sums.get_mut(usize::from(j)) {
                *s = s.saturating_add(v);
            }
        }
    }
}

/// Legacy Yuma: `B = colnorm(prev)`, `ΔB = colnorm(W̃ ∘ S)`, `B' = colnorm(α·ΔB + (1−α)·B)`,
/// `D = normalize(B'·I)`; stored column max-upscaled.
pub fn legacy(inp: BondInputs<'_>) -> BondOutputs {
    let n = inp.n;
    let bond_dividers = sparse::column_dividers(&u16_col_sums(inp.prev_bonds_u16, n));
    // `row_hadamard_sparse` (every entry kept, even where the product is 0), in the buffer of
    // the weights for bonds, which nothing reads afterwards. Products of non-negative values:
    // the runs' column sums add up to the chain's.
    let delta = inp.weights_for_bonds;
    let delta_sums = delta
        .compact_rows(
            || vec![I32F32::ZERO; n],
            |sums, i, cols, vals| {
                let scale = inp.active_stake.get(i).copied().unwrap_or_default();
                for (&j, v) in cols.iter().zip(vals.iter_mut()) {
                    *v = v.saturating_mul(scale);
                    if let Some(s) = sums.get_mut(usize::from(j)) {
                        *s = s.saturating_add(*v);
                    }
                }
                cols.len()
            },
        )
        .into_iter()
        .reduce(add_columns)
        .unwrap_or_else(|| vec![I32F32::ZERO; n]);
    let delta_dividers = sparse::column_dividers(&delta_sums);
    let ema = ema_rows(
        delta,
        |j, v| divide(&delta_dividers, j, v),
        inp.prev_bonds_u16,
        |j, b| divide(&bond_dividers, j, I32F32::from_u16(b)),
        inp.alpha,
        n,
        inp.ema,
    );
    // Column-normalise in place, with the dividend row sums and the column maxima on the way
    // (per run of rows: the maxima, and its rows' dividends).
    let ema_dividers = sparse::column_dividers(&ema.col_sums);
    let runs = ema.m.compact_rows(
        || (vec![I32F32::ZERO; n], Vec::new()),
        |(col_max, dividends), _, cols, vals| {
            let mut d = I32F32::ZERO;
            for (&j, v) in cols.iter().zip(vals.iter_mut()) {
                *v = divide(&ema_dividers, j, *v);
                let jj = usize::from(j);
                let inc = inp.incentive.get(jj).copied().unwrap_or_default();
                d = d.saturating_add(inc.saturating_mul(*v));
                if let Some(c) = col_max.get_mut(jj)
                    && *c < *v
                {
                    *c = *v;
                }
            }
            dividends.push(d);
            cols.len()
        },
    );
    let mut col_max = vec![I32F32::ZERO; n];
    let mut dividends = Vec::with_capacity(ema.m.rows());
    for (run_max, run_dividends) in runs {
        for (c, x) in col_max.iter_mut().zip(run_max) {
            *c = (*c).max(x);
        }
        dividends.extend(run_dividends);
    }
    sparse::normalize(&mut dividends);
    // `inplace_col_max_upscale_sparse`: the largest bond per column becomes 1.
    let max_dividers = sparse::column_dividers(&col_max);
    BondOutputs {
        bonds_to_store: store(ema.m, inp.new_permit, |j, v| divide(&max_dividers, j, v)),
        dividends,
    }
}

/// The rows to store: `value(j, v)` as a `u16` proportion for rows with a new permit, empty rows
/// for the rest.
fn store(
    m: &Csr<I32F32>,
    permits: &[bool],
    value: impl Fn(u16, I32F32) -> I32F32 + Sync,
) -> StoredBonds {
    (0..m.rows())
        .into_par_iter()
        .map(|i| {
            let (cols, vals) = m.row(i);
            if !permits.get(i).copied().unwrap_or(false) {
                return Vec::new();
            }
            cols.iter()
                .zip(vals)
                .map(|(&j, &v)| (j, value(j, v).proportion_to_u16()))
                .collect()
        })
        .collect()
}

/// `v` divided by column `j`'s divider, or `v` where the column has none (a zero divisor).
#[inline]
fn divide(dividers: &[Option<Divider>], j: u16, v: I32F32) -> I32F32 {
    match dividers.get(usize::from(j)) {
        Some(Some(div)) => div.safe_div(v),
        _ => v,
    }
}

/// Yuma 3: bonds are proportions `b/65535`, EMA'd per entry toward `W̃` (fixed alpha over the union
/// of columns, or liquid alpha over the weight row's columns only, capped at 1), then
/// `D = normalize(S ∘ rowsum(colnorm(B) · I))`. The column-normalised copy is never built: each
/// entry is divided as the row sums read it.
pub fn yuma3(inp: BondInputs<'_>, liquid: Option<LiquidAlpha>) -> BondOutputs {
    let (w, prev, n) = (&*inp.weights_for_bonds, inp.prev_bonds_u16, inp.n);
    let any_consensus = inp.consensus.iter().any(|&c| c != I32F32::ZERO);
    let finish = Yuma3Finish::new(&inp);
    // The new bonds are written once, with their column sums (the divisors of the dividends'
    // column normalisation), then read back row by row on every core.
    let ema = match liquid {
        Some(la) if any_consensus => liquid_ema(w, prev, inp.consensus, la, n, inp.ema),
        _ => ema_rows(
            w,
            |_, v| v,
            prev,
            |_, b| I32F32::from_u16_proportion(b),
            inp.alpha,
            n,
            inp.ema,
        ),
    };
    let dividers = sparse::column_dividers(&ema.col_sums);
    let m = &*ema.m;
    let rows: Vec<(I32F32, Vec<(u16, u16)>)> = (0..m.rows())
        .into_par_iter()
        .map(|i| {
            let (cols, vals) = m.row(i);
            finish.row(i, &dividers, cols.len(), |row| {
                for (&j, &b) in cols.iter().zip(vals) {
                    row.add(j, b);
                }
            })
        })
        .collect();
    Yuma3Finish::outputs(rows)
}

/// Column sums added entry by entry (both the same length).
fn add_columns(mut a: Vec<I32F32>, b: Vec<I32F32>) -> Vec<I32F32> {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(y);
    }
    a
}

/// The last pass of Yuma 3, fed the new bonds row by row: `D = normalize(S ∘ rowsum(colnorm(B)
/// · I))`, each entry divided by its column sum as it is read (the normalised copy is never
/// built), and the rows to store, converted while the row is at hand.
struct Yuma3Finish<'a> {
    incentive: &'a [I32F32],
    active_stake: &'a [I32F32],
    new_permit: &'a [bool],
}

/// One row of [`Yuma3Finish`].
struct Yuma3Row<'a> {
    dividers: &'a [Option<Divider>],
    incentive: &'a [I32F32],
    per_validator: I32F32,
    stored: Option<Vec<(u16, u16)>>,
}

impl Yuma3Row<'_> {
    /// Called once per bond entry from two loops: always inlined, or the call costs more than
    /// the work.
    #[inline(always)]
    fn add(&mut self, j: u16, b: I32F32) {
        let inc = self
            .incentive
            .get(usize::from(j))
            .copied()
            .unwrap_or_default();
        let share = divide(self.dividers, j, b);
        self.per_validator = self.per_validator.saturating_add(share.saturating_mul(inc));
        if let Some(stored) = self.stored.as_mut() {
            stored.push((j, b.proportion_to_u16()));
        }
    }
}

impl<'a> Yuma3Finish<'a> {
    fn new(inp: &BondInputs<'a>) -> Self {
        Self {
            incentive: inp.incentive,
            active_stake: inp.active_stake,
            new_permit: inp.new_permit,
        }
    }

    /// Row `i`'s dividend (before normalisation) and its bonds to store, from the entries
    /// `fill` adds (at most `max_len`).
    fn row(
        &self,
        i: usize,
        dividers: &[Option<Divider>],
        max_len: usize,
        fill: impl FnOnce(&mut Yuma3Row<'_>),
    ) -> (I32F32, Vec<(u16, u16)>) {
        let permit = self.new_permit.get(i).copied().unwrap_or(false);
        let mut row = Yuma3Row {
            dividers,
            incentive: self.incentive,
            per_validator: I32F32::ZERO,
            stored: permit.then(|| Vec::with_capacity(max_len)),
        };
        fill(&mut row);
        let stake = self.active_stake.get(i).copied().unwrap_or_default();
        // `vec_mul` uses checked_mul: an overflowing product becomes 0, not a saturated value.
        (
            row.per_validator.checked_mul(stake).unwrap_or_default(),
            row.stored.unwrap_or_default(),
        )
    }

    fn outputs(rows: Vec<(I32F32, Vec<(u16, u16)>)>) -> BondOutputs {
        let (mut dividends, bonds_to_store): (Vec<I32F32>, StoredBonds) = rows.into_iter().unzip();
        sparse::normalize(&mut dividends);
        BondOutputs {
            bonds_to_store,
            dividends,
        }
    }
}

/// `α·new + (1−α)·old` per entry over the union of columns of a row of `new` and the same row of
/// the previous bonds, positive results in column order (one row of `mat_ema_sparse`).
/// `new_value` and `old_value` turn a stored entry into the value the EMA reads (a normalised
/// share, a `u16` proportion), so neither normalised matrix is built.
struct FixedEma<N, O> {
    alpha: I32F32,
    one_minus_alpha: I32F32,
    new_value: N,
    old_value: O,
    n: usize,
    /// For rows that are not sorted: a dense row accumulating both, and the columns it touched.
    dense: Vec<Option<I32F32>>,
    touched: Vec<u16>,
}

impl<N, O> FixedEma<N, O>
where
    N: Fn(u16, I32F32) -> I32F32,
    O: Fn(u16, u16) -> I32F32,
{
    fn new(alpha: I32F32, new_value: N, old_value: O, n: usize) -> Self {
        Self {
            alpha,
            one_minus_alpha: I32F32::ONE.saturating_sub(alpha),
            new_value,
            old_value,
            n,
            dense: Vec::new(),
            touched: Vec::new(),
        }
    }

    /// Emits row `i`'s positive entries, in ascending column order.
    #[inline]
    fn row(
        &mut self,
        new: &Csr<I32F32>,
        old: &Csr<u16>,
        i: usize,
        mut emit: impl FnMut(u16, I32F32),
    ) {
        let (ncols, nvals) = new.row(i);
        let (ocols, ovals) = old.row(i);
        let (alpha, one_minus_alpha) = (self.alpha, self.one_minus_alpha);
        let (new_value, old_value) = (&self.new_value, &self.old_value);
        let mut put = |j: u16, v: I32F32| {
            if v > I32F32::ZERO {
                emit(j, v);
            }
        };
        if new.is_sorted(i) && old.is_sorted(i) {
            // Both rows sorted: a merge, the same sums in the same order
            // (`0 + α·new + (1−α)·old`), the same entries in ascending column order.
            let mut b = 0;
            for (&j, &v) in ncols.iter().zip(nvals) {
                while let (Some(&oj), Some(&ov)) = (ocols.get(b), ovals.get(b))
                    && oj < j
                {
                    put(oj, one_minus_alpha.saturating_mul(old_value(oj, ov)));
                    b += 1;
                }
                let x = alpha.saturating_mul(new_value(j, v));
                match (ocols.get(b), ovals.get(b)) {
                    (Some(&oj), Some(&ov)) if oj == j => {
                        b += 1;
                        let y = one_minus_alpha.saturating_mul(old_value(oj, ov));
                        put(j, x.saturating_add(y));
                    }
                    _ => put(j, x),
                }
            }
            for (&oj, &ov) in ocols.iter().zip(ovals).skip(b) {
                put(oj, one_minus_alpha.saturating_mul(old_value(oj, ov)));
            }
            return;
        }
        if self.dense.len() < self.n {
            self.dense = vec![None; self.n];
        }
        let terms = ncols
            .iter()
            .zip(nvals)
            .map(|(&j, &v)| (j, alpha.saturating_mul(new_value(j, v))))
            .chain(
                ocols
                    .iter()
                    .zip(ovals)
                    .map(|(&j, &b)| (j, one_minus_alpha.saturating_mul(old_value(j, b)))),
            );
        for (j, x) in terms {
            if let Some(slot) = self.dense.get_mut(usize::from(j)) {
                let sum = slot.unwrap_or_else(|| {
                    self.touched.push(j);
                    I32F32::ZERO
                });
                *slot = Some(sum.saturating_add(x));
            }
        }
        self.touched.sort_unstable();
        for &j in &self.touched {
            if let Some(slot) = self.dense.get_mut(usize::from(j)) {
                put(j, slot.take().unwrap_or_default());
            }
        }
        self.touched.clear();
    }
}

/// The fixed-alpha EMA of every row, written into `out` with its column sums.
fn ema_rows<'m>(
    new: &Csr<I32F32>,
    new_value: impl Fn(u16, I32F32) -> I32F32 + Sync,
    old: &Csr<u16>,
    old_value: impl Fn(u16, u16) -> I32F32 + Sync,
    alpha: I32F32,
    n: usize,
    out: &'m mut Csr<I32F32>,
) -> WithColSums<'m> {
    write_positive(
        out,
        new.rows(),
        n,
        |i| new.row(i).0.len() + old.row(i).0.len(),
        || FixedEma::new(alpha, &new_value, &old_value, n),
        |ema, i, out| ema.row(new, old, i, |j, v| out.put(j, v)),
    )
}

/// The chain's `alpha_sigmoid`: how fast bond (i, j) follows weight (i, j).
///
/// `x` is how far the weight sits above consensus when the validator is buying (weight >= bond),
/// or how far the bond sits above the weight when selling; alpha grows from `low` to `high` along a
/// sigmoid of `x − 0.5` with slope `steepness/100`.
pub fn alpha_sigmoid(consensus: I32F32, weight: I32F32, bond: I32F32, la: LiquidAlpha) -> I32F32 {
    AlphaCurve::new(la).alpha(consensus, weight, bond)
}

/// [`alpha_sigmoid`] for one epoch's settings, remembering its value where inputs repeat.
///
/// Alpha depends on the entry only through `x`, which is clamped to [0, 1]: every buy at or below
/// consensus has `x = 0` exactly, and with a full bonds penalty (`β = 1`) the weights for bonds
/// never exceed consensus, so at chain scale most entries (in the 4096-UID benchmark, all of
/// them) share that one input. Its alpha, and the one at `x = 1`, are computed once; the chain's
/// 30-term `exp` runs only for inputs strictly between. Same input, same bits.
#[derive(Debug, Clone, Copy)]
struct AlphaCurve {
    la: LiquidAlpha,
    slope: I32F32,
    at_zero: I32F32,
    at_one: I32F32,
}

impl AlphaCurve {
    fn new(la: LiquidAlpha) -> Self {
        let slope = la.steepness.saturating_div(I32F32::from_i32(-100));
        let mut curve = Self {
            la,
            slope,
            at_zero: I32F32::ZERO,
            at_one: I32F32::ZERO,
        };
        curve.at_zero = curve.of_exp(exp_safe(curve.exponent(I32F32::ZERO)));
        curve.at_one = curve.of_exp(exp_safe(curve.exponent(I32F32::ONE)));
        curve
    }

    /// The input: how far the weight sits above consensus when buying (weight >= bond), or how
    /// far the bond sits above the weight when selling, clamped to [0, 1].
    fn x(consensus: I32F32, weight: I32F32, bond: I32F32) -> I32F32 {
        if weight >= bond {
            weight.saturating_sub(consensus)
        } else {
            bond.saturating_sub(weight)
        }
        .clamp_chain(I32F32::ZERO, I32F32::ONE)
    }

    fn exponent(&self, x: I32F32) -> I32F32 {
        self.slope.saturating_mul(x.saturating_sub(I32F32::HALF))
    }

    /// Alpha from `exp(exponent)`, step for step as the chain.
    fn of_exp(&self, e: I32F32) -> I32F32 {
        let la = self.la;
        // `saturating_div` by a value of at least 1 never saturates: it is `checked_div`.
        let one_plus = I32F32::ONE.saturating_add(e);
        let sigmoid = I32F32::ONE
            .checked_div_fast(one_plus)
            .unwrap_or_else(|| I32F32::ONE.saturating_div(one_plus));
        let alpha = la
            .low
            .saturating_add(sigmoid.saturating_mul(la.high.saturating_sub(la.low)));
        alpha.clamp_chain(la.low, la.high)
    }

    /// Alpha at a clamp bound, where inputs repeat.
    fn remembered(&self, x: I32F32) -> Option<I32F32> {
        if x == I32F32::ZERO {
            Some(self.at_zero)
        } else if x == I32F32::ONE {
            Some(self.at_one)
        } else {
            None
        }
    }

    fn alpha(&self, consensus: I32F32, weight: I32F32, bond: I32F32) -> I32F32 {
        let x = Self::x(consensus, weight, bond);
        self.remembered(x)
            .unwrap_or_else(|| self.of_exp(exp_safe(self.exponent(x))))
    }

    /// Alpha for each of `xs` into `out`: the remembered values at the clamp bounds, the others
    /// through [`exp_safe4`], four at a time.
    fn alphas(&self, xs: &[I32F32], out: &mut Vec<I32F32>) {
        out.clear();
        out.extend(xs.iter().map(|&x| self.remembered(x).unwrap_or_default()));
        let mut pending = [0usize; 4];
        let mut count = 0;
        let flush = |pending: &[usize], out: &mut Vec<I32F32>| {
            if pending.is_empty() {
                return;
            }
            let mut lanes = [I32F32::HALF; 4];
            for (lane, &k) in lanes.iter_mut().zip(pending) {
                *lane = self.exponent(xs.get(k).copied().unwrap_or_default());
            }
            for (&k, e) in pending.iter().zip(exp_safe4(lanes)) {
                if let Some(a) = out.get_mut(k) {
                    *a = self.of_exp(e);
                }
            }
        };
        for (k, &x) in xs.iter().enumerate() {
            if self.remembered(x).is_none() {
                if let Some(p) = pending.get_mut(count) {
                    *p = k;
                }
                count += 1;
                if count == pending.len() {
                    flush(&pending, out);
                    count = 0;
                }
            }
        }
        flush(pending.get(..count).unwrap_or_default(), out);
    }
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
/// Bonds on columns absent from the new row are dropped, not decayed, so their alphas are never
/// computed, and each kept column's alpha is computed once.
fn liquid_ema<'m>(
    w: &Csr<I32F32>,
    prev: &Csr<u16>,
    consensus: &[I32F32],
    la: LiquidAlpha,
    n: usize,
    out: &'m mut Csr<I32F32>,
) -> WithColSums<'m> {
    let curve = AlphaCurve::new(la);
    write_positive(
        out,
        w.rows(),
        n,
        |i| w.row(i).0.len(),
        LiquidScratch::default,
        |scratch, i, out| {
            let (ncols, nvals) = w.row(i);
            if ncols.is_empty() {
                // Nothing to keep: every output entry comes from the new row.
                return;
            }
            let (ocols, ovals) = prev.row(i);
            let LiquidScratch {
                old_row,
                walk,
                olds,
                xs,
                alphas,
            } = scratch;
            olds.clear();
            xs.clear();
            if w.is_sorted(i) && prev.is_sorted(i) {
                // Both walks are plain lookups: merge the old row into the new one.
                let mut b = 0;
                for (&j, &wv) in ncols.iter().zip(nvals) {
                    while ocols.get(b).is_some_and(|&oj| oj < j) {
                        b += 1;
                    }
                    let old = match (ocols.get(b), ovals.get(b)) {
                        (Some(&oj), Some(&ov)) if oj == j => Some(I32F32::from_u16_proportion(ov)),
                        _ => None,
                    };
                    let c = consensus.get(usize::from(j)).copied().unwrap_or_default();
                    olds.push(old);
                    xs.push(AlphaCurve::x(c, wv, old.unwrap_or_default()));
                }
            } else {
                old_row.clear();
                old_row.extend(
                    ocols
                        .iter()
                        .zip(ovals)
                        .map(|(&j, &b)| (j, I32F32::from_u16_proportion(b))),
                );
                let walk = walk.get_or_insert_with(|| ChainWalk::new(n));
                walk.run((ncols, nvals), old_row, n);
                for &j in ncols {
                    let jj = usize::from(j);
                    let c = consensus.get(jj).copied().unwrap_or_default();
                    olds.push(walk.old_at(jj));
                    xs.push(AlphaCurve::x(c, walk.w_at(jj), walk.b_at(jj)));
                }
                walk.clear();
            }
            curve.alphas(xs, alphas);
            let entries = ncols.iter().zip(nvals).zip(olds.iter().zip(alphas.iter()));
            for ((&j, &wv), (&old, &a)) in entries {
                let decayed = old.map_or(I32F32::ZERO, |o| {
                    I32F32::ONE.saturating_sub(a).saturating_mul(o)
                });
                push_liquid(out, j, decayed, a, wv);
            }
        },
    )
}

/// What one core reuses from row to row in [`liquid_ema`]: per entry of the new row, the old
/// bond in its column, alpha's input, then alpha; and the dense scratch of unsorted rows.
#[derive(Debug, Default)]
struct LiquidScratch {
    old_row: Vec<(u16, I32F32)>,
    walk: Option<ChainWalk>,
    olds: Vec<Option<I32F32>>,
    xs: Vec<I32F32>,
    alphas: Vec<I32F32>,
}

/// One output entry of the liquid EMA: `min(decayed + max(α·w, 0), 1)`, kept when positive.
fn push_liquid(out: &mut Positive<'_, '_>, j: u16, decayed: I32F32, a: I32F32, w: I32F32) {
    let inc = a.saturating_mul(w).max(I32F32::ZERO);
    out.put(j, decayed.saturating_add(inc).min(I32F32::ONE));
}

/// Dense scratch for rows the chain's cursor walk reads differently from a lookup (unsorted rows):
/// what the walk found per column in the new and the old row, and each old entry by column.
#[derive(Debug)]
struct ChainWalk {
    w_found: Vec<I32F32>,
    b_found: Vec<I32F32>,
    old: Vec<Option<I32F32>>,
    w_written: Vec<u16>,
    b_written: Vec<u16>,
    old_written: Vec<u16>,
}

impl ChainWalk {
    fn new(n: usize) -> Self {
        Self {
            w_found: vec![I32F32::ZERO; n],
            b_found: vec![I32F32::ZERO; n],
            old: vec![None; n],
            w_written: Vec::new(),
            b_written: Vec::new(),
            old_written: Vec::new(),
        }
    }

    fn run(&mut self, new: (&[u16], &[I32F32]), old_props: &[(u16, I32F32)], n: usize) {
        let new_pairs: Vec<(u16, I32F32)> =
            new.0.iter().copied().zip(new.1.iter().copied()).collect();
        chain_walk(&new_pairs, n, &mut self.w_found, &mut self.w_written);
        chain_walk(old_props, n, &mut self.b_found, &mut self.b_written);
        for &(j, o) in old_props {
            if let Some(slot) = self.old.get_mut(usize::from(j)) {
                *slot = Some(o);
                self.old_written.push(j);
            }
        }
    }

    fn w_at(&self, j: usize) -> I32F32 {
        self.w_found.get(j).copied().unwrap_or_default()
    }

    fn b_at(&self, j: usize) -> I32F32 {
        self.b_found.get(j).copied().unwrap_or_default()
    }

    fn old_at(&self, j: usize) -> Option<I32F32> {
        self.old.get(j).copied().flatten()
    }

    fn clear(&mut self) {
        for (found, written) in [
            (&mut self.w_found, &mut self.w_written),
            (&mut self.b_found, &mut self.b_written),
        ] {
            for &j in written.iter() {
                if let Some(x) = found.get_mut(usize::from(j)) {
                    *x = I32F32::ZERO;
                }
            }
            written.clear();
        }
        for &j in &self.old_written {
            if let Some(x) = self.old.get_mut(usize::from(j)) {
                *x = None;
            }
        }
        self.old_written.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_rows_unions_columns_in_order() {
        let new = Csr::from_rows(&[vec![(2, I32F32::ONE)]]);
        let old = Csr::from_rows(&[vec![(0, 1u16)]]);
        let mut buf = Csr::default();
        let out = ema_rows(
            &new,
            |_, v| v,
            &old,
            |_, b| I32F32::from_u16(b),
            I32F32::HALF,
            3,
            &mut buf,
        );
        assert_eq!(
            out.m.to_rows(),
            vec![vec![(0, I32F32::HALF), (2, I32F32::HALF)]]
        );
        assert_eq!(out.col_sums, vec![I32F32::HALF, I32F32::ZERO, I32F32::HALF]);
    }

    #[test]
    fn ema_merge_matches_the_dense_accumulation() {
        let mut seed = 0x1234_5678_9ABC_DEF1u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let n = 1 + (next() % 12) as usize;
            let mut new_row = Vec::new();
            let mut old_row = Vec::new();
            for j in 0..n as u16 {
                if next() % 2 == 0 {
                    new_row.push((j, I32F32::from_bits((next() % (1 << 33)) as i64)));
                }
                if next() % 2 == 0 {
                    old_row.push((j, next() as u16));
                }
            }
            let alpha = I32F32::from_bits((next() % (1 << 32)) as i64);
            let ema = |a: &[(u16, I32F32)], b: &[(u16, u16)]| {
                let value = |_, b: u16| I32F32::from_bits(i64::from(b) * 70_001);
                let mut buf = Csr::default();
                let out = ema_rows(
                    &Csr::from_rows(&[a.to_vec()]),
                    |_, v| v,
                    &Csr::from_rows(&[b.to_vec()]),
                    value,
                    alpha,
                    n,
                    &mut buf,
                );
                (out.m.to_rows(), out.col_sums)
            };
            let merged = ema(&new_row, &old_row);
            // Reversing the rows forces the dense path; its output is in column order too.
            let mut new_rev = new_row.clone();
            new_rev.reverse();
            let mut old_rev = old_row.clone();
            old_rev.reverse();
            if new_row.len() > 1 || old_row.len() > 1 {
                assert_eq!(merged, ema(&new_rev, &old_rev));
            }
        }
    }

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
