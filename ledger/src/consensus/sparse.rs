//! Sparse-matrix steps of the epoch, each with the chain's semantics (`ST:.../epoch/math.rs`):
//! the same order of operations, the same entries kept or dropped, the same rounding.
//!
//! A matrix is a [`Csr`]: flat arrays of columns and values with one offset per row, rows in the
//! order the chain would hold them. At chain scale (a million weights) one flat buffer per matrix,
//! carried through several steps, costs a fraction of one `Vec` per row rebuilt at every step:
//! fresh memory is paid for in page faults, and per-row vectors in allocator calls. Column indices
//! are below `n` (the input was validated), and every helper still reads through `get` so that a
//! broken invariant degrades to a wrong number, never a panic.

use super::fixed_math::{Divider, I32F32, sum};
use rayon::prelude::*;

/// A sparse matrix in compressed rows: row `i` holds `cols[start[i]..start[i + 1]]` with the values
/// at the same positions, in the order they were pushed.
///
/// Each row also records whether its columns strictly increase: sorted rows let the steps below
/// merge and look up instead of scattering into dense scratch rows, and the chain's cursor walks
/// (which behave differently on unsorted rows) reduce to plain lookups.
#[derive(Debug, Clone)]
pub struct Csr<T> {
    start: Vec<usize>,
    /// Entries in use: `cols` and `vals` may be longer, holding a previous epoch's entries that
    /// are overwritten rather than zeroed again (see [`Csr::fill_rows`]).
    len: usize,
    cols: Vec<u16>,
    vals: Vec<T>,
    sorted: Vec<bool>,
    /// Whether the row being built is sorted so far, and the smallest column that keeps it so.
    open_sorted: bool,
    open_next: u32,
}

impl<T: Copy> Default for Csr<T> {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl<T: Copy> Csr<T> {
    /// An empty matrix with room for `rows` rows and `entries` entries.
    pub fn with_capacity(rows: usize, entries: usize) -> Self {
        let mut start = Vec::with_capacity(rows + 1);
        start.push(0);
        Self {
            start,
            len: 0,
            cols: Vec::with_capacity(entries),
            vals: Vec::with_capacity(entries),
            sorted: Vec::with_capacity(rows),
            open_sorted: true,
            open_next: 0,
        }
    }

    /// Appends an entry to the row being built.
    #[inline]
    pub fn push(&mut self, j: u16, v: T) {
        self.open_sorted &= u32::from(j) >= self.open_next;
        self.open_next = u32::from(j) + 1;
        match (self.cols.get_mut(self.len), self.vals.get_mut(self.len)) {
            (Some(c), Some(x)) => {
                *c = j;
                *x = v;
            }
            _ => {
                self.cols.truncate(self.len);
                self.vals.truncate(self.len);
                self.cols.push(j);
                self.vals.push(v);
            }
        }
        self.len += 1;
    }

    /// Closes the row being built (possibly empty).
    pub fn end_row(&mut self) {
        self.start.push(self.len);
        self.sorted.push(self.open_sorted);
        self.open_sorted = true;
        self.open_next = 0;
    }

    /// Number of closed rows.
    pub fn rows(&self) -> usize {
        self.sorted.len()
    }

    /// Number of entries.
    pub fn nnz(&self) -> usize {
        self.len
    }

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        let a = self.start.get(i).copied().unwrap_or(0);
        let b = self.start.get(i + 1).copied().unwrap_or(a);
        a..b
    }

    /// Row `i`'s columns and values (empty past the last row).
    pub fn row(&self, i: usize) -> (&[u16], &[T]) {
        let r = self.range(i);
        (
            self.cols.get(r.clone()).unwrap_or_default(),
            self.vals.get(r).unwrap_or_default(),
        )
    }

    /// Row `i`'s columns, and its values to change in place.
    pub fn row_mut(&mut self, i: usize) -> (&[u16], &mut [T]) {
        let r = self.range(i);
        (
            self.cols.get(r.clone()).unwrap_or_default(),
            self.vals.get_mut(r).unwrap_or_default(),
        )
    }

    /// Whether row `i`'s columns strictly increase.
    pub fn is_sorted(&self, i: usize) -> bool {
        self.sorted.get(i).copied().unwrap_or(true)
    }

    /// Runs of consecutive rows holding about the same number of entries, a few per core: the
    /// unit of work when a step takes its rows on several cores. Runs follow row order, so
    /// results collected run by run are in row order.
    pub fn row_runs(&self) -> Vec<std::ops::Range<usize>> {
        let rows = self.rows();
        let target = (self.len / (RUNS_PER_CORE * rayon::current_num_threads())).max(1);
        let mut runs = Vec::new();
        let mut first = 0;
        for i in 0..rows {
            let taken = self.start.get(i + 1).copied().unwrap_or(0)
                - self.start.get(first).copied().unwrap_or(0);
            if taken >= target || i + 1 == rows {
                runs.push(first..i + 1);
                first = i + 1;
            }
        }
        runs
    }

    /// Rewrites every row in place, on several cores: `f(state, i, cols, vals)` may change values
    /// and move the entries it keeps to the front of the row, keeping their order, and returns how
    /// many it kept. Each run of [`Csr::row_runs`] has a state of its own, from `init`, for what
    /// the caller gathers on the way; rows are then closed up (when nothing is dropped nothing
    /// moves). Returns the runs' states in row order.
    pub fn compact_rows<A: Send>(
        &mut self,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, usize, &mut [u16], &mut [T]) -> usize + Sync,
    ) -> Vec<A>
    where
        T: Send + Sync,
    {
        self.rewrite_runs(init, |state, i, was_sorted, cols, vals| {
            let kept = f(state, i, cols, vals).min(cols.len());
            // What is left of a sorted row is sorted; an unsorted one is looked at again.
            let sorted = was_sorted
                || cols
                    .get(..kept)
                    .is_some_and(|k| k.windows(2).all(|w| matches!(w, [x, y] if x < y)));
            (kept, sorted)
        })
    }

    /// Replaces the matrix with `rows` rows written on several cores: row `i` holds at most
    /// `max_len(i)` entries, written by `f(state, i, sink)`. Each run of rows has a state of its
    /// own, from `init`; every row is written into room for its longest, and rows are closed up
    /// afterwards. Returns the runs' states in row order.
    pub fn fill_rows<A: Send>(
        &mut self,
        rows: usize,
        max_len: impl Fn(usize) -> usize,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, usize, &mut RowSink<'_, T>) + Sync,
    ) -> Vec<A>
    where
        T: Default + Send + Sync,
    {
        self.start.clear();
        self.start.reserve(rows + 1);
        self.start.push(0);
        let mut total = 0;
        for i in 0..rows {
            total += max_len(i);
            self.start.push(total);
        }
        // Grows (zero-filling) only past what earlier epochs already initialised.
        if self.cols.len() < total {
            self.cols.resize(total, 0);
        }
        if self.vals.len() < total {
            self.vals.resize(total, T::default());
        }
        self.len = total;
        self.sorted.clear();
        self.sorted.resize(rows, true);
        self.open_sorted = true;
        self.open_next = 0;
        self.rewrite_runs(init, |state, i, _, cols, vals| {
            let mut sink = RowSink { cols, vals, len: 0 };
            f(state, i, &mut sink);
            let len = sink.len;
            // Checked once the row is written, in one branch-free pass over a row in cache.
            let written = sink.cols.get(..len).unwrap_or_default();
            let sorted = written
                .iter()
                .zip(written.get(1..).unwrap_or_default())
                .fold(true, |ok, (a, b)| ok & (a < b));
            (len, sorted)
        })
    }

    /// The engine of [`Csr::compact_rows`] and [`Csr::fill_rows`]: hands each run of rows, on
    /// its own core, its rows' entries (`row(state, i, was_sorted, cols, vals)` returns how many
    /// of them it kept at the front and whether they are sorted), closes up each run, then the
    /// runs.
    fn rewrite_runs<A: Send>(
        &mut self,
        init: impl Fn() -> A + Sync,
        row: impl Fn(&mut A, usize, bool, &mut [u16], &mut [T]) -> (usize, bool) + Sync,
    ) -> Vec<A>
    where
        T: Send + Sync,
    {
        let runs = self.row_runs();
        let len = self.len.min(self.cols.len()).min(self.vals.len());
        let (start, sorted) = (&self.start, &self.sorted);
        let entry = |i: usize| start.get(i).copied().unwrap_or(0).min(len);
        let bases: Vec<usize> = runs.iter().map(|run| entry(run.start)).collect();
        // Each run's entries, as slices of their own.
        let mut pieces = Vec::with_capacity(runs.len());
        let mut cols = self.cols.get_mut(..len).unwrap_or_default();
        let mut vals = self.vals.get_mut(..len).unwrap_or_default();
        let mut at = 0;
        for run in &runs {
            let end = entry(run.end).max(at);
            let (c, rest_c) = std::mem::take(&mut cols)
                .split_at_mut_checked(end - at)
                .unwrap_or_default();
            let (v, rest_v) = std::mem::take(&mut vals)
                .split_at_mut_checked(end - at)
                .unwrap_or_default();
            (cols, vals) = (rest_c, rest_v);
            pieces.push((run.clone(), at, c, v));
            at = end;
        }
        // Per run: its state, and per row how many entries it kept and whether they are sorted.
        let done: Vec<(A, Vec<(usize, bool)>)> = pieces
            .into_par_iter()
            .map(|(run, base, c, v)| {
                let mut state = init();
                let mut kept_rows = Vec::with_capacity(run.len());
                let mut write = 0;
                for i in run {
                    let (a, b) = (
                        entry(i).saturating_sub(base),
                        entry(i + 1).saturating_sub(base),
                    );
                    let was_sorted = sorted.get(i).copied().unwrap_or(true);
                    let (kept, is_sorted) = match (c.get_mut(a..b), v.get_mut(a..b)) {
                        (Some(rc), Some(rv)) => row(&mut state, i, was_sorted, rc, rv),
                        _ => (0, true),
                    };
                    let kept = kept.min(b - a);
                    if write != a {
                        c.copy_within(a..a + kept, write);
                        v.copy_within(a..a + kept, write);
                    }
                    kept_rows.push((kept, is_sorted));
                    write += kept;
                }
                (state, kept_rows)
            })
            .collect();
        // Close up the runs, in order.
        let mut states = Vec::with_capacity(done.len());
        let mut write = 0;
        let mut i = 0;
        for (&base, (state, kept_rows)) in bases.iter().zip(done) {
            let kept: usize = kept_rows.iter().map(|&(k, _)| k).sum();
            if write != base && base + kept <= len {
                self.cols.copy_within(base..base + kept, write);
                self.vals.copy_within(base..base + kept, write);
            }
            for (k, is_sorted) in kept_rows {
                write += k;
                if let Some(s) = self.start.get_mut(i + 1) {
                    *s = write;
                }
                if let Some(s) = self.sorted.get_mut(i) {
                    *s = is_sorted;
                }
                i += 1;
            }
            states.push(state);
        }
        self.len = write;
        states
    }

    /// Sorts row `i` by column (rows hold a column at most once, so the order is total).
    pub fn sort_row(&mut self, i: usize) {
        let r = self.range(i);
        let (Some(cols), Some(vals)) = (self.cols.get_mut(r.clone()), self.vals.get_mut(r)) else {
            return;
        };
        let mut pairs: Vec<(u16, T)> = cols.iter().copied().zip(vals.iter().copied()).collect();
        pairs.sort_by_key(|&(j, _)| j);
        for ((c, x), (j, v)) in cols.iter_mut().zip(vals.iter_mut()).zip(pairs) {
            *c = j;
            *x = v;
        }
        if let Some(s) = self.sorted.get_mut(i) {
            *s = cols.windows(2).all(|w| matches!(w, [a, b] if a < b));
        }
    }

    /// One `Vec` per row (tests compare these).
    pub fn to_rows(&self) -> Vec<Vec<(u16, T)>> {
        (0..self.rows())
            .map(|i| {
                let (c, v) = self.row(i);
                c.iter().copied().zip(v.iter().copied()).collect()
            })
            .collect()
    }

    /// A matrix from one `Vec` per row.
    pub fn from_rows(rows: &[Vec<(u16, T)>]) -> Self {
        let mut m = Self::with_capacity(rows.len(), rows.iter().map(Vec::len).sum());
        for row in rows {
            for &(j, v) in row {
                m.push(j, v);
            }
            m.end_row();
        }
        m
    }
}

/// Writes one row of a [`Csr`]; see [`Csr::fill_rows`].
#[derive(Debug)]
pub struct RowSink<'a, T> {
    cols: &'a mut [u16],
    vals: &'a mut [T],
    len: usize,
}

impl<T> RowSink<'_, T> {
    /// Appends `(j, v)`; entries past the row's announced length are dropped (never happens when
    /// the caller's bound is right).
    #[inline(always)]
    pub fn push(&mut self, j: u16, v: T) {
        if let (Some(c), Some(x)) = (self.cols.get_mut(self.len), self.vals.get_mut(self.len)) {
            *c = j;
            *x = v;
            self.len += 1;
        }
    }

    /// The values written so far, to change in place.
    pub fn values_mut(&mut self) -> &mut [T] {
        self.vals.get_mut(..self.len).unwrap_or_default()
    }
}

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

/// One divider per column for `inplace_col_normalize_sparse` and friends: `None` where the
/// divisor is 0 (those entries are left as they are).
pub fn column_dividers(divisors: &[I32F32]) -> Vec<Option<Divider>> {
    divisors
        .iter()
        .map(|&d| (d != I32F32::ZERO).then(|| Divider::new(d)))
        .collect()
}

/// Steps 7-10 over the weight matrix in one pass: clip each weight to its column's consensus,
/// sum what survives per row (validator trust) and per column weighted by stake (incentive, not
/// yet normalised), and turn the weights into the weights for bonds in place.
///
/// The chain builds the clipped matrix (`col_clip_sparse`, which drops entries clipped to 0), then
/// `row_sum_sparse`, `matmul_sparse` and `interpolate_sparse(W, clipped, β)`; every one of them
/// reads the same entries, so one pass gives the same sums. Weights for bonds are `W` itself for
/// `β = 0`, the clipped matrix (in the stored order) for `β = 1`, and otherwise
/// `W + β·(clipped − W)` over `W`'s columns (clipped ones hold a subset), positive entries only,
/// in column order.
pub fn clip_score_and_blend(
    w: &mut Csr<I32F32>,
    consensus: &[I32F32],
    stake: &[I32F32],
    beta: I32F32,
    n: usize,
) -> (Vec<I32F32>, Vec<I32F32>) {
    // Per run of rows: its incentive sums and its rows' trust. Every term of an incentive sum is
    // a non-negative product, so the runs' sums added together are the chain's sum, bit for bit.
    let runs = w.compact_rows(
        || (vec![I32F32::ZERO; n], Vec::new()),
        |(incentive, trust), i, cols, vals| {
            let scale = stake.get(i).copied();
            let mut row_trust = I32F32::ZERO;
            let mut kept = 0;
            for k in 0..cols.len() {
                let (Some(&j), Some(&v)) = (cols.get(k), vals.get(k)) else {
                    break;
                };
                let th = consensus.get(usize::from(j)).copied().unwrap_or_default();
                let clipped = if th < v {
                    (th > I32F32::ZERO).then_some(th)
                } else {
                    Some(v)
                };
                if let Some(c) = clipped {
                    row_trust = row_trust.saturating_add(c);
                    if let (Some(s), Some(o)) = (scale, incentive.get_mut(usize::from(j))) {
                        *o = o.saturating_add(s.saturating_mul(c));
                    }
                }
                let for_bonds = if beta == I32F32::ZERO {
                    Some(v)
                } else if beta == I32F32::ONE {
                    clipped
                } else {
                    let c = clipped.unwrap_or_default();
                    let interp = v.saturating_add(beta.saturating_mul(c.saturating_sub(v)));
                    (interp > I32F32::ZERO).then_some(interp)
                };
                if let Some(x) = for_bonds {
                    if let (Some(cj), Some(xv)) = (cols.get_mut(kept), vals.get_mut(kept)) {
                        *cj = j;
                        *xv = x;
                    }
                    kept += 1;
                }
            }
            trust.push(row_trust);
            kept
        },
    );
    let mut trust = Vec::with_capacity(w.rows());
    let mut incentive = vec![I32F32::ZERO; n];
    for (run_incentive, run_trust) in runs {
        trust.extend(run_trust);
        for (total, x) in incentive.iter_mut().zip(run_incentive) {
            *total = total.saturating_add(x);
        }
    }
    if beta != I32F32::ZERO && beta != I32F32::ONE {
        for i in 0..w.rows() {
            if !w.is_sorted(i) {
                w.sort_row(i);
            }
        }
    }
    (trust, incentive)
}

/// The stake-weighted `minority` quantile of `score`, exactly as `math.rs::weighted_median`
/// returns it, without its partition search.
///
/// The chain picks the middle element (in index order) as pivot, moves to the lower part when
/// `minority < lo + stake(< pivot)`, to the upper part when `hi − stake(> pivot) ≤ minority`, and
/// otherwise returns the pivot, starting from `lo = 0`, `hi = Σ stake`. Keeping ties with the pivot
/// out of both parts means every partition holds all entries whose score lies in a range of
/// distinct values, with `lo` and `hi` the stake below it and up to its top. So the search always
/// ends on the same value, whatever the pivots: the smallest score `v` whose cumulative stake
/// `C(≤ v)` exceeds `minority`, or the largest score when none does (when one distinct value is
/// left the search returns it, and each step keeps the answer inside the part it moves to). The
/// sums are exact: the stakes are normalised, so no partial sum comes near saturation.
///
/// That value is found by bucketing the scores by their top bits between the column's minimum and
/// maximum, summing stake per bucket, and resolving only the bucket where the cumulative stake
/// crosses `minority`: a few linear passes over the column instead of a chain of partitions.
fn weighted_quantile(
    score: &[I32F32],
    stake: &[I32F32],
    minority: I32F32,
    candidates: &mut Vec<(i64, i64)>,
) -> I32F32 {
    const BUCKET_BITS: u32 = 6;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for s in score {
        lo = lo.min(s.to_bits());
        hi = hi.max(s.to_bits());
    }
    if lo >= hi {
        // One distinct value (or none: the chain returns 0 for an empty column).
        return if score.is_empty() {
            I32F32::ZERO
        } else {
            I32F32::from_bits(lo)
        };
    }
    let span = hi.wrapping_sub(lo) as u64;
    let shift = (u64::BITS - span.leading_zeros()).saturating_sub(BUCKET_BITS);
    let bucket = |s: i64| ((s.wrapping_sub(lo) as u64) >> shift) as usize;
    // Stakes are normalised (each at most 1, that is 2^32 bits, at most 65535 voters): every sum
    // fits an i64 with room to spare.
    let mut mass = [0i64; 1 << BUCKET_BITS];
    for (s, st) in score.iter().zip(stake) {
        if let Some(m) = mass.get_mut(bucket(s.to_bits())) {
            *m += st.to_bits();
        }
    }
    let minority = minority.to_bits();
    let mut below = 0i64;
    let mut crossing = None;
    for (b, &m) in mass.iter().enumerate() {
        if below + m > minority {
            crossing = Some(b);
            break;
        }
        below += m;
    }
    let Some(b) = crossing else {
        return I32F32::from_bits(hi);
    };
    candidates.clear();
    candidates.extend(
        score
            .iter()
            .zip(stake)
            .filter(|(s, _)| bucket(s.to_bits()) == b)
            .map(|(s, st)| (s.to_bits(), st.to_bits())),
    );
    candidates.sort_unstable();
    let mut k = 0;
    while let Some(&(v, _)) = candidates.get(k) {
        while let Some(&(u, st)) = candidates.get(k)
            && u == v
        {
            below += st;
            k += 1;
        }
        if below > minority {
            return I32F32::from_bits(v);
        }
    }
    // Unreachable: the bucket's stake crosses `minority`. Fall back to the largest score.
    I32F32::from_bits(hi)
}

/// Consensus per column: the stake-weighted `(1 − κ)` quantile of the weights of validators with
/// positive stake, their stake renormalised among themselves (`weighted_median_col_sparse`).
pub fn weighted_median_cols(
    stake: &[I32F32],
    weights: &Csr<I32F32>,
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
    let voters: Vec<usize> = stake
        .iter()
        .enumerate()
        .filter(|(_, s)| **s > I32F32::ZERO)
        .map(|(i, _)| i)
        .collect();

    // Each voter's row sorted by column: a copy only where the stored row is not. Rows hold a uid
    // at most once, so the order within a row does not change which value a column sees.
    let mut sorted_copies = Csr::with_capacity(0, 0);
    let mut copy_of = vec![None; voters.len()];
    for (v, &i) in voters.iter().enumerate() {
        if !weights.is_sorted(i) {
            let (c, x) = weights.row(i);
            let mut pairs: Vec<(u16, I32F32)> = c.iter().copied().zip(x.iter().copied()).collect();
            pairs.sort_unstable_by_key(|&(j, _)| j);
            for (j, x) in pairs {
                sorted_copies.push(j, x);
            }
            sorted_copies.end_row();
            if let Some(slot) = copy_of.get_mut(v) {
                *slot = Some(sorted_copies.rows() - 1);
            }
        }
    }
    let rows: Vec<(&[u16], &[I32F32])> = voters
        .iter()
        .zip(&copy_of)
        .map(|(&i, copy)| match copy {
            Some(k) => sorted_copies.row(*k),
            None => weights.row(i),
        })
        .collect();

    // Columns are independent: each core takes a run of them, and the runs' medians are joined in
    // column order, so the result does not depend on how many cores there are.
    let runs: Vec<usize> = (0..n).step_by(MEDIAN_RUN).collect();
    let medians: Vec<Vec<I32F32>> = runs
        .par_iter()
        .map(|&c0| medians_of_columns(&rows, &use_stake, minority, c0, (c0 + MEDIAN_RUN).min(n)))
        .collect();
    medians.concat()
}

/// The consensus of columns `first..end`, from every voter's row sorted by column.
fn medians_of_columns(
    rows: &[(&[u16], &[I32F32])],
    use_stake: &[I32F32],
    minority: I32F32,
    first: usize,
    end: usize,
) -> Vec<I32F32> {
    // Transpose a block of columns at a time into a small column-major tile (one column's scores
    // contiguous), walking each voter's row forward with a cursor: rows are read in order, and the
    // tile stays in cache while the block's medians read it. Voters whose rows cover the whole
    // block are copied eight at a time, so each write fills a cache line of the tile.
    let voters = rows.len();
    // Each row's first entry in the run.
    let mut cursors: Vec<usize> = rows
        .iter()
        .map(|(cols, _)| cols.partition_point(|&j| usize::from(j) < first))
        .collect();
    let mut ends = vec![0usize; voters];
    let mut tile = vec![I32F32::ZERO; MEDIAN_BLOCK * voters];
    let mut candidates = Vec::new();
    let mut consensus = Vec::with_capacity(end - first);
    for c0 in (first..end).step_by(MEDIAN_BLOCK) {
        let width = MEDIAN_BLOCK.min(end - c0);
        for ((cols, _), (&k, end)) in rows.iter().zip(cursors.iter().zip(ends.iter_mut())) {
            let rest = cols.get(k..).unwrap_or_default();
            *end = k + rest
                .iter()
                .position(|&j| usize::from(j) >= c0 + width)
                .unwrap_or(rest.len());
        }
        // A voter's entries in the block (columns ascending, all in the block).
        let block = |u: usize| {
            let (cols, vals) = rows.get(u).copied().unwrap_or_default();
            let range = cursors.get(u).copied().unwrap_or(0)..ends.get(u).copied().unwrap_or(0);
            (
                cols.get(range.clone()).unwrap_or_default(),
                vals.get(range).unwrap_or_default(),
            )
        };
        let mut v = 0;
        while v < voters {
            let group = VOTER_GROUP.min(voters - v);
            let full = |u: usize| block(u).0.len() == width;
            if group == VOTER_GROUP && (v..v + group).all(full) {
                let src: [&[I32F32]; VOTER_GROUP] = std::array::from_fn(|t| block(v + t).1);
                for (c, column) in tile.chunks_exact_mut(voters).take(width).enumerate() {
                    if let Some(dst) = column.get_mut(v..v + group) {
                        for (d, s) in dst.iter_mut().zip(&src) {
                            *d = s.get(c).copied().unwrap_or_default();
                        }
                    }
                }
            } else {
                for u in v..v + group {
                    let (in_cols, in_vals) = block(u);
                    if in_cols.len() < width {
                        // Columns this voter does not weight score 0.
                        for slot in tile.iter_mut().skip(u).step_by(voters).take(width) {
                            *slot = I32F32::ZERO;
                        }
                    }
                    for (&j, &x) in in_cols.iter().zip(in_vals) {
                        let at = usize::from(j).checked_sub(c0).map(|c| c * voters + u);
                        if let Some(slot) = at.and_then(|at| tile.get_mut(at)) {
                            *slot = x;
                        }
                    }
                }
            }
            v += group;
        }
        cursors.copy_from_slice(&ends);
        for score in tile.chunks_exact(voters.max(1)).take(width) {
            consensus.push(weighted_quantile(
                score,
                use_stake,
                minority,
                &mut candidates,
            ));
        }
        if voters == 0 {
            consensus.extend(std::iter::repeat_n(I32F32::ZERO, width));
        }
    }
    consensus
}

/// Voters copied together into the median's tile: eight `I32F32` are one cache line.
const VOTER_GROUP: usize = 8;

/// Runs of rows per core when a step takes its rows on several cores ([`Csr::row_runs`]): more
/// than one, so that a core slowed by other work does not hold the step up.
const RUNS_PER_CORE: usize = 4;

/// Columns transposed at a time for the median: 32 columns of 256 voters is a 64 KiB tile.
const MEDIAN_BLOCK: usize = 32;

/// Columns one core takes at a time for the median: several tiles, so that finding each row's
/// start in the run (a binary search per voter) is small against the work.
const MEDIAN_RUN: usize = 8 * MEDIAN_BLOCK;

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(x: f64) -> I32F32 {
        I32F32::from_bits((x * 4_294_967_296.0).round() as i64)
    }

    type Rows = Vec<Vec<(u16, I32F32)>>;

    fn median(stake: &[I32F32], rows: &Rows, n: usize, kappa: I32F32) -> Vec<I32F32> {
        weighted_median_cols(stake, &Csr::from_rows(rows), n, kappa)
    }

    #[test]
    fn median_is_largest_weight_supported_by_kappa() {
        // Three equal voters scoring 0.1, 0.5, 0.9: the median is 0.5.
        let stake = vec![fx(1.0 / 3.0); 3];
        let w: Rows = vec![vec![(0, fx(0.1))], vec![(0, fx(0.5))], vec![(0, fx(0.9))]];
        let c = median(&stake, &w, 1, I32F32::from_u16_proportion(32767));
        assert_eq!(c, vec![fx(0.5)]);
        // A 0.8 majority voting 0.9 wins.
        let stake = vec![fx(0.1), fx(0.1), fx(0.8)];
        let c = median(&stake, &w, 1, I32F32::from_u16_proportion(32767));
        assert_eq!(c, vec![fx(0.9)]);
    }

    /// The chain's partition search written plainly over an index list, the way the spec
    /// describes it: an independent check of the bucketed quantile used above.
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
        for round in 0..6000 {
            let voters = (next() % if round % 2 == 0 { 9 } else { 200 }) as usize;
            let n = 1 + (next() % 5) as usize;
            // Few distinct values so ties are common, or spread values so buckets split; some
            // stakes tiny enough to normalise to 0.
            let spread = next() % 3;
            let stake: Vec<I32F32> = (0..voters)
                .map(|_| match next() % 4 {
                    0 => I32F32::ZERO,
                    1 => I32F32::from_bits(1),
                    _ => I32F32::from_bits((next() % 1000) as i64 * 1_000_000),
                })
                .collect();
            let mut weights: Rows = Vec::with_capacity(voters);
            for _ in 0..voters {
                let mut row = Vec::new();
                for j in 0..n as u16 {
                    if next() % 3 != 0 {
                        let bits = match spread {
                            0 => (next() % 4) as i64 * 0x4000_0000,
                            1 => (next() % (1 << 33)) as i64,
                            _ => (next() % 70) as i64 * 0x100_0000 + (next() % 3) as i64,
                        };
                        row.push((j, I32F32::from_bits(bits)));
                    }
                }
                if next() % 4 == 0 {
                    row.reverse();
                }
                weights.push(row);
            }
            let kappa = I32F32::from_u16_proportion((next() % 65536) as u16);
            let got = median(&stake, &weights, n, kappa);

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
        let sorted: Rows = vec![
            vec![(0, fx(0.1)), (1, fx(0.6)), (2, fx(0.3))],
            vec![(1, fx(0.2)), (2, fx(0.8))],
            vec![(0, fx(0.7)), (2, fx(0.3))],
        ];
        let mut shuffled = sorted.clone();
        for row in shuffled.iter_mut() {
            row.reverse();
        }
        let kappa = I32F32::from_u16_proportion(32767);
        let a = median(&stake, &sorted, 3, kappa);
        assert_eq!(a, median(&stake, &shuffled, 3, kappa));
        // Column 2: 0.3 (stake 0.7 together) vs 0.8 (0.3): the median is 0.3.
        assert_eq!(a[2], fx(0.3));
    }

    #[test]
    fn clip_drops_entries_clipped_to_zero_and_keeps_the_rest_in_order() {
        let mut w = Csr::from_rows(&[vec![(1, fx(0.5)), (0, fx(0.5))]]);
        let (trust, incentive) = clip_score_and_blend(
            &mut w,
            &[fx(0.25), I32F32::ZERO],
            &[I32F32::ONE],
            I32F32::ONE,
            2,
        );
        assert_eq!(w.to_rows(), vec![vec![(0, fx(0.25))]]);
        assert_eq!(trust, vec![fx(0.25)]);
        assert_eq!(incentive, vec![fx(0.25), I32F32::ZERO]);
    }

    #[test]
    fn blending_keeps_endpoints_verbatim_and_sorts_in_between() {
        let rows = vec![vec![(1, fx(0.5)), (0, fx(0.5))]];
        let consensus = [fx(0.25), fx(1.0)];
        let blend = |beta: I32F32| {
            let mut w = Csr::from_rows(&rows);
            clip_score_and_blend(&mut w, &consensus, &[I32F32::ONE], beta, 2);
            w.to_rows()
        };
        assert_eq!(blend(I32F32::ZERO), rows);
        assert_eq!(blend(I32F32::ONE), vec![vec![(1, fx(0.5)), (0, fx(0.25))]]);
        assert_eq!(
            blend(I32F32::HALF),
            vec![vec![(0, fx(0.375)), (1, fx(0.5))]]
        );
    }

    #[test]
    fn compact_rows_closes_up_rows_and_tracks_order() {
        let mut m = Csr::from_rows(&[
            vec![(3, 1u16), (1, 2), (4, 3)],
            vec![],
            vec![(0, 4), (2, 5)],
        ]);
        assert!(!m.is_sorted(0));
        m.compact_rows(
            || (),
            |(), _, cols, vals| {
                let mut kept = 0;
                for k in 0..cols.len() {
                    if cols[k] != 1 {
                        cols[kept] = cols[k];
                        vals[kept] = vals[k] * 10;
                        kept += 1;
                    }
                }
                kept
            },
        );
        assert_eq!(
            m.to_rows(),
            vec![vec![(3, 10), (4, 30)], vec![], vec![(0, 40), (2, 50)]]
        );
        assert!(m.is_sorted(0) && m.is_sorted(2));
        assert_eq!(m.nnz(), 4);
    }
}
