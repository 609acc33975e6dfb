//! Sparse-matrix steps of the epoch, each with the chain's semantics (`ST:.../epoch/math.rs`):
//! the same order of operations, the same entries kept or dropped, the same rounding.
//!
//! A matrix is one `Vec<(column, value)>` per row, in the order the chain would hold it. Column
//! indices are below `n` (the input was validated), and every helper still reads through `get`
//! so that a broken invariant degrades to a wrong number, never a panic.

use super::fixed_math::{Divider, I32F32, sum};

/// One row per UID, `(column uid, value)` pairs.
pub type Sparse = Vec<Vec<(u16, I32F32)>>;

/// Normalise to sum 1; an all-zero vector stays as it is (`inplace_normalize`).
pub fn normalize(x: &mut [I32F32]) {
    let total = sum(x);
    if total == I32F32::ZERO {
        return;
    }
    let div = Divider::new(total);
    for v in x.iter_mut() {
        *v = div.safe_div(*v);
    }
}

/// Divide each row by its sum when the sum is positive (`inplace_row_normalize_sparse`).
pub fn row_normalize(m: &mut Sparse) {
    for row in m.iter_mut() {
        let total = row
            .iter()
            .fold(I32F32::ZERO, |acc, &(_, v)| acc.saturating_add(v));
        if total > I32F32::ZERO {
            let div = Divider::new(total);
            for (_, v) in row.iter_mut() {
                *v = div.safe_div(*v);
            }
        }
    }
}

/// Row sums (`row_sum_sparse`).
pub fn row_sums(m: &Sparse) -> Vec<I32F32> {
    m.iter()
        .map(|row| {
            row.iter()
                .fold(I32F32::ZERO, |acc, &(_, v)| acc.saturating_add(v))
        })
        .collect()
}

/// Divide each entry by its column sum where that sum is non-zero (`inplace_col_normalize_sparse`).
pub fn col_normalize(m: &mut Sparse, n: usize) {
    let mut col_sum = vec![I32F32::ZERO; n];
    for row in m.iter() {
        for &(j, v) in row {
            if let Some(s) = col_sum.get_mut(usize::from(j)) {
                *s = s.saturating_add(v);
            }
        }
    }
    divide_columns(m, &col_sum);
}

/// Divides each entry by its column's divisor where that divisor is non-zero.
fn divide_columns(m: &mut Sparse, divisors: &[I32F32]) {
    let dividers: Vec<Option<Divider>> = divisors
        .iter()
        .map(|&d| (d != I32F32::ZERO).then(|| Divider::new(d)))
        .collect();
    for row in m.iter_mut() {
        for (j, v) in row.iter_mut() {
            if let Some(Some(div)) = dividers.get(usize::from(*j)) {
                *v = div.safe_div(*v);
            }
        }
    }
}

/// Divide each entry by its column maximum where that maximum is non-zero
/// (`inplace_col_max_upscale_sparse`): the largest bond per column becomes 1.
pub fn col_max_upscale(m: &mut Sparse, n: usize) {
    let mut col_max = vec![I32F32::ZERO; n];
    for row in m.iter() {
        for &(j, v) in row {
            if let Some(c) = col_max.get_mut(usize::from(j))
                && *c < v
            {
                *c = v;
            }
        }
    }
    divide_columns(m, &col_max);
}

/// `min(W_ij, C_j)`, dropping entries whose clip value is 0 (`col_clip_sparse`).
pub fn col_clip(m: &Sparse, threshold: &[I32F32]) -> Sparse {
    m.iter()
        .map(|row| {
            row.iter()
                .filter_map(|&(j, v)| {
                    let th = threshold.get(usize::from(j)).copied().unwrap_or_default();
                    if th < v {
                        (th > I32F32::ZERO).then_some((j, th))
                    } else {
                        Some((j, v))
                    }
                })
                .collect()
        })
        .collect()
}

/// `r_j = Σ_i s_i · m_ij` (`matmul_sparse`).
pub fn matmul(m: &Sparse, vector: &[I32F32], n: usize) -> Vec<I32F32> {
    let mut out = vec![I32F32::ZERO; n];
    for (row, &scale) in m.iter().zip(vector) {
        for &(j, v) in row {
            if let Some(o) = out.get_mut(usize::from(j)) {
                *o = o.saturating_add(scale.saturating_mul(v));
            }
        }
    }
    out
}

/// `d_i = Σ_j m_ij · v_j` (`matmul_transpose_sparse`).
pub fn matmul_transpose(m: &Sparse, vector: &[I32F32]) -> Vec<I32F32> {
    m.iter()
        .map(|row| {
            row.iter().fold(I32F32::ZERO, |acc, &(j, v)| {
                let x = vector.get(usize::from(j)).copied().unwrap_or_default();
                acc.saturating_add(x.saturating_mul(v))
            })
        })
        .collect()
}

/// `m_ij · s_i`, every entry kept (`row_hadamard_sparse`).
pub fn row_hadamard(m: &Sparse, vector: &[I32F32]) -> Sparse {
    m.iter()
        .zip(vector)
        .map(|(row, &scale)| {
            row.iter()
                .map(|&(j, v)| (j, v.saturating_mul(scale)))
                .collect()
        })
        .collect()
}

/// Drop entries `(i, j)` where `mask(i_value, vector[j])` (`vec_mask_sparse_matrix` and, with a
/// constant row value, `scalar_vec_mask_sparse_matrix`).
pub fn mask_by_column<F>(m: &mut Sparse, row_value: impl Fn(usize) -> u64, vector: &[u64], mask: F)
where
    F: Fn(u64, u64) -> bool,
{
    for (i, row) in m.iter_mut().enumerate() {
        let ri = row_value(i);
        row.retain(|&(j, _)| !mask(ri, vector.get(usize::from(j)).copied().unwrap_or(0)));
    }
}

/// Reusable buffers for [`ema_rows`] and friends: a dense row and the list of columns touched,
/// so each row costs its own entries, not `n`.
#[derive(Debug)]
pub struct DenseScratch {
    values: Vec<I32F32>,
    touched: Vec<u16>,
    seen: Vec<bool>,
}

impl DenseScratch {
    /// Buffers for rows of `n` columns.
    pub fn new(n: usize) -> Self {
        Self {
            values: vec![I32F32::ZERO; n],
            touched: Vec::new(),
            seen: vec![false; n],
        }
    }

    fn touch(&mut self, j: u16) {
        if let Some(s) = self.seen.get_mut(usize::from(j))
            && !*s
        {
            *s = true;
            self.touched.push(j);
        }
    }

    fn add(&mut self, j: u16, v: I32F32) {
        self.touch(j);
        if let Some(x) = self.values.get_mut(usize::from(j)) {
            *x = x.saturating_add(v);
        }
    }

    /// Emits `(j, value)` for touched columns in ascending order where `keep(value)`, and clears.
    fn drain_sorted(&mut self, keep: impl Fn(I32F32) -> bool) -> Vec<(u16, I32F32)> {
        self.touched.sort_unstable();
        let mut out = Vec::with_capacity(self.touched.len());
        for &j in &self.touched {
            let idx = usize::from(j);
            if let Some(v) = self.values.get_mut(idx) {
                if keep(*v) {
                    out.push((j, *v));
                }
                *v = I32F32::ZERO;
            }
            if let Some(s) = self.seen.get_mut(idx) {
                *s = false;
            }
        }
        self.touched.clear();
        out
    }
}

/// `α·new + (1−α)·old` per entry over the union of columns, keeping positive results in column
/// order (`mat_ema_sparse`).
pub fn ema_rows(new: &Sparse, old: &Sparse, alpha: I32F32, n: usize) -> Sparse {
    let one_minus_alpha = I32F32::ONE.saturating_sub(alpha);
    let mut scratch = DenseScratch::new(n);
    let empty = Vec::new();
    new.iter()
        .enumerate()
        .map(|(i, new_row)| {
            let old_row = old.get(i).unwrap_or(&empty);
            if is_strictly_sorted(new_row) && is_strictly_sorted(old_row) {
                return merge_ema(new_row, old_row, alpha, one_minus_alpha);
            }
            for &(j, v) in new_row {
                scratch.add(j, alpha.saturating_mul(v));
            }
            for &(j, v) in old.get(i).unwrap_or(&empty) {
                scratch.add(j, one_minus_alpha.saturating_mul(v));
            }
            scratch.drain_sorted(|v| v > I32F32::ZERO)
        })
        .collect()
}

/// Whether a row's columns strictly increase (sorted, no repeats).
pub fn is_strictly_sorted(row: &[(u16, I32F32)]) -> bool {
    row.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0))
}

/// [`ema_rows`] for one pair of sorted rows, as a merge: the same sums in the same order
/// (`0 + α·new + (1−α)·old`), the same positive entries in ascending column order.
fn merge_ema(
    new_row: &[(u16, I32F32)],
    old_row: &[(u16, I32F32)],
    alpha: I32F32,
    one_minus_alpha: I32F32,
) -> Vec<(u16, I32F32)> {
    let mut out = Vec::with_capacity(new_row.len().max(old_row.len()));
    let (mut a, mut b) = (new_row.iter().peekable(), old_row.iter().peekable());
    loop {
        let (j, val) = match (a.peek(), b.peek()) {
            (Some(&&(ja, va)), Some(&&(jb, vb))) if ja == jb => {
                a.next();
                b.next();
                let x = I32F32::ZERO.saturating_add(alpha.saturating_mul(va));
                (ja, x.saturating_add(one_minus_alpha.saturating_mul(vb)))
            }
            (Some(&&(ja, va)), Some(&&(jb, _))) if ja < jb => {
                a.next();
                (ja, I32F32::ZERO.saturating_add(alpha.saturating_mul(va)))
            }
            (Some(_), Some(&&(jb, vb))) | (None, Some(&&(jb, vb))) => {
                b.next();
                (
                    jb,
                    I32F32::ZERO.saturating_add(one_minus_alpha.saturating_mul(vb)),
                )
            }
            (Some(&&(ja, va)), None) => {
                a.next();
                (ja, I32F32::ZERO.saturating_add(alpha.saturating_mul(va)))
            }
            (None, None) => break,
        };
        if val > I32F32::ZERO {
            out.push((j, val));
        }
    }
    out
}

/// `m1 + ratio·(m2 − m1)` over the union of columns, keeping positive results in column order;
/// `ratio` 0 or 1 return a copy of `m1` or `m2` as they are (`interpolate_sparse`).
pub fn interpolate<'a>(
    m1: &'a Sparse,
    m2: &'a Sparse,
    n: usize,
    ratio: I32F32,
) -> std::borrow::Cow<'a, Sparse> {
    use std::borrow::Cow;
    if ratio == I32F32::ZERO {
        return Cow::Borrowed(m1);
    }
    if ratio == I32F32::ONE {
        return Cow::Borrowed(m2);
    }
    let mut a = DenseScratch::new(n);
    let mut b = vec![I32F32::ZERO; n];
    let empty = Vec::new();
    let rows = m1
        .iter()
        .enumerate()
        .map(|(i, row1)| {
            let row2 = m2.get(i).unwrap_or(&empty);
            // A later duplicate overwrites an earlier one in the chain's dense rows; rows are
            // validated duplicate-free, so assignment and addition agree.
            for &(j, v) in row1 {
                a.add(j, v);
            }
            for &(j, v) in row2 {
                a.touch(j);
                if let Some(x) = b.get_mut(usize::from(j)) {
                    *x = v;
                }
            }
            let mut merged = Vec::with_capacity(a.touched.len());
            a.touched.sort_unstable();
            for &j in &a.touched {
                let idx = usize::from(j);
                let v1 = a.values.get(idx).copied().unwrap_or_default();
                let v2 = b.get(idx).copied().unwrap_or_default();
                let interp = v1.saturating_add(ratio.saturating_mul(v2.saturating_sub(v1)));
                if interp > I32F32::ZERO {
                    merged.push((j, interp));
                }
                if let Some(x) = b.get_mut(idx) {
                    *x = I32F32::ZERO;
                }
            }
            let _ = a.drain_sorted(|_| false);
            merged
        })
        .collect();
    Cow::Owned(rows)
}

/// Reusable buffers for [`weighted_median`]: `(score, stake)` pairs, kept in index order.
#[derive(Debug, Default)]
struct MedianScratch {
    current: Vec<(I32F32, I32F32)>,
    lower: Vec<(I32F32, I32F32)>,
    upper: Vec<(I32F32, I32F32)>,
}

/// Stake-weighted quantile by mid-pivot partition, step for step as `math.rs::weighted_median`:
/// the pivot is the middle of the current partition (in index order), ties with the pivot leave,
/// and the search goes to the lower or upper part depending on where `minority` falls. The
/// partitions hold `(score, stake)` pairs in the order the chain's index lists would, so the
/// pivots, and therefore the result, are the same.
fn weighted_median(
    stake: &[I32F32],
    score: &[I32F32],
    minority: I32F32,
    mut partition_lo: I32F32,
    mut partition_hi: I32F32,
    s: &mut MedianScratch,
) -> I32F32 {
    if stake.len() != score.len() {
        return I32F32::ZERO;
    }
    s.current.clear();
    s.current
        .extend(score.iter().copied().zip(stake.iter().copied()));
    let iteration_limit = stake.len();
    let mut iterations = 0usize;
    loop {
        let len = s.current.len();
        if len <= 1 {
            return s.current.first().map_or(I32F32::ZERO, |&(v, _)| v);
        }
        let pivot = s.current.get(len / 2).map_or(I32F32::ZERO, |&(v, _)| v);
        let mut lo_stake = I32F32::ZERO;
        let mut hi_stake = I32F32::ZERO;
        s.lower.clear();
        s.upper.clear();
        for &(v, st) in &s.current {
            if v < pivot {
                lo_stake = lo_stake.saturating_add(st);
                s.lower.push((v, st));
            } else if v > pivot {
                hi_stake = hi_stake.saturating_add(st);
                s.upper.push((v, st));
            }
        }
        if minority < partition_lo.saturating_add(lo_stake) && !s.lower.is_empty() {
            std::mem::swap(&mut s.current, &mut s.lower);
            partition_hi = partition_lo.saturating_add(lo_stake);
        } else if partition_hi.saturating_sub(hi_stake) <= minority && !s.upper.is_empty() {
            std::mem::swap(&mut s.current, &mut s.upper);
            partition_lo = partition_hi.saturating_sub(hi_stake);
        } else {
            return pivot;
        }
        iterations += 1;
        if iterations > iteration_limit {
            return I32F32::ZERO;
        }
    }
}

/// Consensus per column: the stake-weighted `(1 − κ)` quantile of the weights of validators with
/// positive stake, their stake renormalised among themselves (`weighted_median_col_sparse`).
pub fn weighted_median_cols(
    stake: &[I32F32],
    weights: &Sparse,
    n: usize,
    majority: I32F32,
) -> Vec<I32F32> {
    let mut use_stake: Vec<I32F32> = stake
        .iter()
        .copied()
        .filter(|&s| s > I32F32::ZERO)
        .collect();
    normalize(&mut use_stake);
    let stake_sum = sum(&use_stake);
    let minority = stake_sum.saturating_sub(majority);
    let voters = use_stake.len();

    // Each voter's row, sorted by column (a copy only where the stored row is not). Rows hold a
    // uid at most once, so order within a row does not change which value a column sees.
    let rows: Vec<std::borrow::Cow<'_, [(u16, I32F32)]>> = stake
        .iter()
        .zip(weights)
        .filter(|(s, _)| **s > I32F32::ZERO)
        .map(|(_, row)| {
            if row.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)) {
                std::borrow::Cow::Borrowed(row.as_slice())
            } else {
                let mut sorted = row.clone();
                sorted.sort_unstable_by_key(|&(j, _)| j);
                std::borrow::Cow::Owned(sorted)
            }
        })
        .collect();

    // Walk the columns in order with one cursor per voter, filling that column's scores.
    let mut cursors = vec![0usize; voters];
    let mut score = vec![I32F32::ZERO; voters];
    let mut scratch = MedianScratch::default();
    (0..n)
        .map(|c| {
            let mut any = false;
            for ((row, cursor), cell) in rows.iter().zip(cursors.iter_mut()).zip(score.iter_mut()) {
                match row.get(*cursor) {
                    Some(&(j, v)) if usize::from(j) == c => {
                        *cell = v;
                        *cursor += 1;
                        any |= v != I32F32::ZERO;
                    }
                    _ => *cell = I32F32::ZERO,
                }
            }
            if !any {
                // Every voter scores 0: the partition search returns its pivot, 0.
                return I32F32::ZERO;
            }
            weighted_median(
                &use_stake,
                &score,
                minority,
                I32F32::ZERO,
                stake_sum,
                &mut scratch,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(x: f64) -> I32F32 {
        I32F32::from_bits((x * 4_294_967_296.0).round() as i64)
    }

    #[test]
    fn median_is_largest_weight_supported_by_kappa() {
        // Three equal voters scoring 0.1, 0.5, 0.9: the median is 0.5.
        let stake = vec![fx(1.0 / 3.0); 3];
        let w: Sparse = vec![vec![(0, fx(0.1))], vec![(0, fx(0.5))], vec![(0, fx(0.9))]];
        let c = weighted_median_cols(&stake, &w, 1, I32F32::from_u16_proportion(32767));
        assert_eq!(c, vec![fx(0.5)]);
        // A 0.8 majority voting 0.9 wins.
        let stake = vec![fx(0.1), fx(0.1), fx(0.8)];
        let c = weighted_median_cols(&stake, &w, 1, I32F32::from_u16_proportion(32767));
        assert_eq!(c, vec![fx(0.9)]);
    }

    /// The partition search written plainly over an index list, the way the spec describes it:
    /// an independent check of the pair-based version used above.
    fn reference_median(
        stake: &[I32F32],
        score: &[I32F32],
        minority: I32F32,
        hi: I32F32,
    ) -> I32F32 {
        let mut current: Vec<usize> = (0..stake.len()).collect();
        let (mut lo, mut hi) = (I32F32::ZERO, hi);
        for _ in 0..=stake.len() {
            if current.is_empty() {
                return I32F32::ZERO;
            }
            if current.len() == 1 {
                return score[current[0]];
            }
            let pivot = score[current[current.len() / 2]];
            let lower: Vec<usize> = current
                .iter()
                .copied()
                .filter(|&i| score[i] < pivot)
                .collect();
            let upper: Vec<usize> = current
                .iter()
                .copied()
                .filter(|&i| score[i] > pivot)
                .collect();
            let lo_stake = lower
                .iter()
                .fold(I32F32::ZERO, |a, &i| a.saturating_add(stake[i]));
            let hi_stake = upper
                .iter()
                .fold(I32F32::ZERO, |a, &i| a.saturating_add(stake[i]));
            if minority < lo.saturating_add(lo_stake) && !lower.is_empty() {
                hi = lo.saturating_add(lo_stake);
                current = lower;
            } else if hi.saturating_sub(hi_stake) <= minority && !upper.is_empty() {
                lo = hi.saturating_sub(hi_stake);
                current = upper;
            } else {
                return pivot;
            }
        }
        I32F32::ZERO
    }

    #[test]
    fn median_matches_the_plain_partition_search() {
        let mut seed = 0x853C_49E6_748F_EA9Bu64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let voters = (next() % 9) as usize;
            let n = 1 + (next() % 5) as usize;
            // Few distinct values so ties are common; some stakes tiny enough to normalise to 0.
            let stake: Vec<I32F32> = (0..voters)
                .map(|_| match next() % 4 {
                    0 => I32F32::ZERO,
                    1 => I32F32::from_bits(1),
                    _ => I32F32::from_bits((next() % 1000) as i64 * 1_000_000),
                })
                .collect();
            let mut weights: Sparse = Vec::with_capacity(voters);
            for _ in 0..voters {
                let mut row = Vec::new();
                for j in 0..n as u16 {
                    if next() % 3 != 0 {
                        row.push((j, I32F32::from_bits((next() % 4) as i64 * 0x4000_0000)));
                    }
                }
                weights.push(row);
            }
            let kappa = I32F32::from_u16_proportion((next() % 65536) as u16);
            let got = weighted_median_cols(&stake, &weights, n, kappa);

            let mut use_stake: Vec<I32F32> = stake
                .iter()
                .copied()
                .filter(|&s| s > I32F32::ZERO)
                .collect();
            normalize(&mut use_stake);
            let total = sum(&use_stake);
            let minority = total.saturating_sub(kappa);
            for (c, &g) in got.iter().enumerate() {
                let col: Vec<I32F32> = stake
                    .iter()
                    .zip(&weights)
                    .filter(|(s, _)| **s > I32F32::ZERO)
                    .map(|(_, row)| {
                        row.iter()
                            .find(|(j, _)| usize::from(*j) == c)
                            .map_or(I32F32::ZERO, |e| e.1)
                    })
                    .collect();
                assert_eq!(
                    g,
                    reference_median(&use_stake, &col, minority, total),
                    "column {c}"
                );
            }
        }
    }

    #[test]
    fn median_ignores_the_order_of_entries_within_a_row() {
        let stake = vec![fx(0.2), fx(0.3), fx(0.5)];
        let sorted: Sparse = vec![
            vec![(0, fx(0.1)), (1, fx(0.6)), (2, fx(0.3))],
            vec![(1, fx(0.2)), (2, fx(0.8))],
            vec![(0, fx(0.7)), (2, fx(0.3))],
        ];
        let mut shuffled = sorted.clone();
        for row in shuffled.iter_mut() {
            row.reverse();
        }
        let kappa = I32F32::from_u16_proportion(32767);
        let a = weighted_median_cols(&stake, &sorted, 3, kappa);
        assert_eq!(a, weighted_median_cols(&stake, &shuffled, 3, kappa));
        // Column 2: 0.3 (stake 0.7 together) vs 0.8 (0.3): the median is 0.3.
        assert_eq!(a[2], fx(0.3));
    }

    #[test]
    fn clip_drops_entries_clipped_to_zero() {
        let w: Sparse = vec![vec![(0, fx(0.5)), (1, fx(0.5))]];
        let clipped = col_clip(&w, &[fx(0.25), I32F32::ZERO]);
        assert_eq!(clipped, vec![vec![(0, fx(0.25))]]);
    }

    #[test]
    fn ema_rows_unions_columns_in_order() {
        let new: Sparse = vec![vec![(2, I32F32::ONE)]];
        let old: Sparse = vec![vec![(0, I32F32::ONE)]];
        let out = ema_rows(&new, &old, I32F32::HALF, 3);
        assert_eq!(out, vec![vec![(0, I32F32::HALF), (2, I32F32::HALF)]]);
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
            let mut rows = [Vec::new(), Vec::new()];
            for row in rows.iter_mut() {
                for j in 0..n as u16 {
                    if next() % 2 == 0 {
                        row.push((j, I32F32::from_bits((next() % (1 << 33)) as i64)));
                    }
                }
            }
            let alpha = I32F32::from_bits((next() % (1 << 32)) as i64);
            let merged = ema_rows(&vec![rows[0].clone()], &vec![rows[1].clone()], alpha, n);
            // Reversing the rows forces the dense path; its output is in column order too.
            let mut reversed = rows.clone();
            reversed.iter_mut().for_each(|r| r.reverse());
            let dense = ema_rows(
                &vec![reversed[0].clone()],
                &vec![reversed[1].clone()],
                alpha,
                n,
            );
            if rows[0].len() > 1 || rows[1].len() > 1 {
                assert_eq!(merged, dense);
            }
        }
    }

    #[test]
    fn interpolate_keeps_endpoints_verbatim() {
        let a: Sparse = vec![vec![(1, fx(0.5)), (0, fx(0.5))]];
        let b: Sparse = vec![vec![(0, fx(0.25))]];
        assert_eq!(*interpolate(&a, &b, 2, I32F32::ZERO), a);
        assert_eq!(*interpolate(&a, &b, 2, I32F32::ONE), b);
        let mid = interpolate(&a, &b, 2, I32F32::HALF);
        assert_eq!(*mid, vec![vec![(0, fx(0.375)), (1, fx(0.25))]]);
    }
}
