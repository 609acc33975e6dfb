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

/// CPU time this thread has used, in clock ticks (`utime + stime` of `/proc/thread-self/stat`).
/// Unlike wall time it does not count time spent waiting for a core, which on a shared machine can
/// dwarf a long computation while leaving a sub-millisecond one untouched. The tick length cancels
/// out of a ratio.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
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
    samples.sort_unstable();
    let best = samples.first().copied().unwrap_or_default();
    let median = samples.get(samples.len() / 2).copied().unwrap_or_default();
    (best, median)
}

fn main() {
    let weights_total: usize = input(false, false).state.weights.iter().map(Vec::len).sum();
    println!("n = {N}, validators = {VALIDATORS}, stored weights = {weights_total}");
    println!();
    println!(
        "| variant | epoch, fresh buffers: best (median) | epoch, reused buffers: best (median) | weight-sum pass: best (median) | wall ratio, best: fresh / reused | CPU-time ratio: fresh / reused |"
    );
    println!("|---|---|---|---|---|---|");
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
            println!("| {name} | input refused | | | | |");
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
        let (base_best, base_median) = time(101, || sum_weights(black_box(&inp)));
        let (best, median) = time(9, || run_epoch(black_box(&inp)));
        let (reused_best, reused_median) =
            time(9, || run_epoch_with(black_box(&inp), &mut scratch));
        let base_cpu = cpu_per_run(2001, || sum_weights(black_box(&inp)));
        let cpu_ratio = |epoch: Option<f64>| match (epoch, base_cpu) {
            (Some(e), Some(b)) if b > 0.0 => format!("{:.0}x", e / b),
            _ => "n/a".to_owned(),
        };
        let fresh_cpu = cpu_ratio(cpu_per_run(21, || run_epoch(black_box(&inp))));
        let reused_cpu = cpu_ratio(cpu_per_run(21, || {
            run_epoch_with(black_box(&inp), &mut scratch)
        }));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
        println!(
            "| {name} | {:.1} ms ({:.1} ms) | {:.1} ms ({:.1} ms) | {:.3} ms ({:.3} ms) | {:.0}x / {:.0}x | {fresh_cpu} / {reused_cpu} |",
            ms(best),
            ms(median),
            ms(reused_best),
            ms(reused_median),
            ms(base_best),
            ms(base_median),
            ratio(best, base_best),
            ratio(reused_best, base_best),
        );
    }
}
