//! One Yuma Consensus epoch at chain scale, as a ratio to a single pass that only sums the weights.
//!
//! n = 4096 UIDs, 256 validators each weighting all 4096 UIDs (1,048,576 stored weights), bonds
//! carried from a warm-up epoch so they are as dense as the weights. Both timings come from the
//! same run, so the ratio is what to compare across machines (DESIGN.md, "Targets").
//!
//! Each epoch is timed twice: `run_epoch` (fresh buffers, as a one-off caller runs it) and
//! `run_epoch_with` in an `EpochScratch` kept from the previous epoch (as a node running epoch
//! after epoch would): the difference is the cost of mapping fresh memory for the matrices.
//!
//! Two baselines, because the sum pass is so short that where its input sits decides its time:
//! *hot*, the pass repeated back to back, reading the weights from cache; and *cold*, the pass and
//! the epoch each timed right after 1 GiB of other memory was written, so both start with the
//! weights in main memory, as an epoch does on a node (weights are written when validators set
//! them, blocks before the epoch reads them). The epoch's own working set is larger than this
//! machine's share of cache, so it reads its input from memory either way.
//!
//! Run with `cargo bench -p agora-ledger --bench yuma_epoch`; prints a markdown table.

use agora_ledger::consensus::{
    EpochInput, EpochParams, EpochScratch, EpochState, run_epoch, run_epoch_with,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const N: u64 = 4096;
const VALIDATORS: u64 = 256;

/// Deterministic pseudo-random numbers (64-bit LCG, high bits), so every run sees the same input.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }
}

fn input(yuma3: bool, liquid_alpha: bool) -> EpochInput {
    let mut rng = Lcg(42);
    let n = N as usize;
    let weights: Vec<Vec<(u64, u16)>> = (0..N)
        .map(|i| {
            if i < VALIDATORS {
                // Row max-upscaled as stored: the largest entry is 65535.
                let mut row: Vec<(u64, u16)> =
                    (0..N).map(|j| (j, (rng.next() % 65_535) as u16)).collect();
                if let Some(first) = row.first_mut() {
                    first.1 = 65_535;
                }
                row
            } else {
                Vec::new()
            }
        })
        .collect();
    let stake = (0..N)
        .map(|i| {
            if i < VALIDATORS {
                1_000_000_000 + rng.next() % 1_000_000_000_000
            } else {
                0
            }
        })
        .collect();
    EpochInput {
        params: EpochParams {
            n: N,
            tempo: 360,
            activity_cutoff_blocks: 5000,
            kappa_u16: 32767,
            bonds_penalty_u16: 65535,
            bonds_moving_average: 900_000,
            max_allowed_validators: VALIDATORS,
            stake_threshold: 0,
            rao_emission: 1_000_000_000,
            yuma3,
            liquid_alpha,
            alpha_low_u16: None,
            alpha_high_u16: None,
            alpha_sigmoid_steepness: None,
            owner_uid: None,
        },
        state: EpochState {
            current_block: 10_000,
            last_mechanism_step_block: 0,
            stake,
            block_at_registration: vec![1; n],
            last_update: vec![9_990; n],
            validator_permit: (0..N).map(|i| i < VALIDATORS).collect(),
            weights,
            bonds: vec![Vec::new(); n],
            live_commit_block: Vec::new(),
        },
    }
}

/// The baseline: one pass over every stored weight, summing the values.
fn sum_weights(inp: &EpochInput) -> u64 {
    inp.state
        .weights
        .iter()
        .flat_map(|row| row.iter())
        .map(|&(_, w)| u64::from(w))
        .sum()
}

/// CPU time the process has used, all its threads (the epoch's worker threads too), in clock ticks
/// (`utime + stime` of `/proc/self/stat`). Unlike wall time it does not count time spent waiting
/// for a core, and it adds up the time of every core the epoch used: the work, not how fast it
/// got done. The tick length cancels out of a ratio.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks per run over `runs` runs.
fn cpu_per_run<T>(runs: usize, mut f: impl FnMut() -> T) -> Option<f64> {
    let start = cpu_ticks()?;
    for _ in 0..runs {
        black_box(f());
    }
    let used = cpu_ticks()?.checked_sub(start)?;
    Some(used as f64 / runs as f64)
}

/// Writes 1 GiB of memory (more than any cache here), so that what is timed next finds its input
/// in main memory.
struct Evictor {
    buffer: Vec<u8>,
    round: u8,
}

impl Evictor {
    fn new() -> Self {
        Self {
            buffer: vec![0; 1 << 30],
            round: 0,
        }
    }

    fn evict(&mut self) {
        self.round = self.round.wrapping_add(1);
        for byte in self.buffer.iter_mut().step_by(64) {
            *byte = byte.wrapping_add(self.round);
        }
        black_box(&self.buffer);
    }

    /// Best and median of `runs` timings, each taken right after an eviction.
    fn time_cold<T>(&mut self, runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
        let mut samples: Vec<Duration> = (0..runs)
            .map(|_| {
                self.evict();
                let t = Instant::now();
                black_box(f());
                t.elapsed()
            })
            .collect();
        best_and_median(&mut samples)
    }
}

/// The best and the median of some timings.
fn best_and_median(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let best = samples.first().copied().unwrap_or_default();
    let median = samples.get(samples.len() / 2).copied().unwrap_or_default();
    (best, median)
}

/// Best and median of `runs` timings. The best is the steadier figure on a shared machine (other
/// work only ever adds time); the median shows the spread.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    best_and_median(&mut samples)
}

fn main() {
    let weights_total: usize = input(false, false).state.weights.iter().map(Vec::len).sum();
    println!(
        "n = {N}, validators = {VALIDATORS}, stored weights = {weights_total}, threads = {}",
        rayon::current_num_threads()
    );
    println!();
    println!(
        "| variant | epoch, reused buffers: best (median) | epoch, fresh buffers: best (median) | sum pass, hot: best (median) | ratio to hot pass | epoch, cold: best (median) | sum pass, cold: best (median) | ratio to cold pass | CPU-time ratio (hot pass) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut evictor = Evictor::new();
    for (name, yuma3, liquid, selling) in [
        ("legacy bonds", false, false, false),
        ("Yuma3", true, false, false),
        ("Yuma3 + liquid alpha", true, true, false),
        (
            "Yuma3 + liquid alpha, every bond above its weight",
            true,
            true,
            true,
        ),
    ] {
        let mut inp = input(yuma3, liquid);
        // Warm-up epoch: carry its bonds and permits so the timed epoch has dense bonds.
        let Ok(first) = run_epoch(&inp) else {
            println!("| {name} | input refused | | | | | | | |");
            continue;
        };
        inp.state.bonds = first
            .bonds
            .iter()
            .map(|r| r.iter().map(|&(j, v)| (u64::from(j), v)).collect())
            .collect();
        if selling {
            // Every validator sells: its bonds (all at 1) sit above its weights, so liquid alpha's
            // input `bond − weight` differs from entry to entry and nothing can be reused: the
            // chain's `exp` runs once per bond, a million times. (With the bench's full bonds
            // penalty, buying entries all share one input.)
            for row in inp.state.bonds.iter_mut() {
                for entry in row.iter_mut() {
                    entry.1 = u16::MAX;
                }
            }
        }
        inp.state.validator_permit = first.validator_permit;
        let mut scratch = EpochScratch::default();
        let hot_base = time(101, || sum_weights(black_box(&inp)));
        let fresh = time(9, || run_epoch(black_box(&inp)));
        let reused = time(15, || run_epoch_with(black_box(&inp), &mut scratch));
        let cold_base = evictor.time_cold(15, || sum_weights(black_box(&inp)));
        let cold = evictor.time_cold(15, || run_epoch_with(black_box(&inp), &mut scratch));
        let base_cpu = cpu_per_run(2001, || sum_weights(black_box(&inp)));
        let epoch_cpu = cpu_per_run(31, || run_epoch_with(black_box(&inp), &mut scratch));
        let cpu_ratio = match (epoch_cpu, base_cpu) {
            (Some(e), Some(b)) if b > 0.0 => format!("{:.0}x", e / b),
            _ => "n/a".to_owned(),
        };
        let ms = |(best, median): (Duration, Duration)| {
            format!(
                "{:.2} ms ({:.2} ms)",
                best.as_secs_f64() * 1e3,
                median.as_secs_f64() * 1e3
            )
        };
        let ratio = |a: (Duration, Duration), b: (Duration, Duration)| {
            a.0.as_secs_f64() / b.0.as_secs_f64().max(1e-12)
        };
        println!(
            "| {name} | {} | {} | {} | {:.1}x | {} | {} | {:.1}x | {cpu_ratio} |",
            ms(reused),
            ms(fresh),
            ms(hot_base),
            ratio(reused, hot_base),
            ms(cold),
            ms(cold_base),
            ratio(cold, cold_base),
        );
    }
}
