//! A fingerprint of [`run_epoch`](super::run_epoch)'s output over a fixed set of pseudo-random
//! inputs, recorded from the straightforward per-row implementation before the epoch was
//! restructured for speed (flat buffers, fused passes, memoised liquid alpha).
//!
//! The sample vectors check a few dozen chain cases and the property tests check invariants; this
//! checks that every bit of every output is what it was, over thousands of epochs that reach the
//! corners the fast paths special-case: unsorted rows, explicit zeros, ties in the median, zero
//! and tiny stakes, an owner, both bond variants, liquid alpha with any steepness, and bonds
//! carried from epoch to epoch so they are as dense as the weights.

#![cfg(test)]

use super::types::{EpochInput, EpochParams, EpochState};

/// xorshift64: a fixed sequence, so the fingerprint is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, k: u64) -> u64 {
        self.next() % k.max(1)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    /// A `u16`, often one of the values that make ties and edge cases.
    fn weight(&mut self) -> u16 {
        match self.below(6) {
            0 => 0,
            1 => u16::MAX,
            2 => [1, 2, 32767, 32768, 65534][self.below(5) as usize],
            3 => (self.below(8) * 8191) as u16,
            _ => self.next() as u16,
        }
    }
}

/// A row over `n` uids with each uid at most once, sometimes scrambled.
fn row(rng: &mut Rng, n: u64, density: u64) -> Vec<(u64, u16)> {
    let mut v: Vec<(u64, u16)> = (0..n)
        .filter(|_| rng.below(100) < density)
        .map(|j| (j, 0))
        .collect();
    for e in v.iter_mut() {
        e.1 = rng.weight();
    }
    if v.len() > 1 && rng.chance(3) {
        let k = rng.below(v.len() as u64) as usize;
        v.rotate_left(k);
        if rng.chance(2) {
            v.reverse();
        }
    }
    v
}

fn input(rng: &mut Rng, n: u64, validators: u64) -> EpochInput {
    let len = n as usize;
    let density = [100, 90, 50, 10][rng.below(4) as usize];
    let (lo, hi) = (rng.next() as u16, rng.next() as u16);
    let steepness = match rng.below(4) {
        0 => None,
        1 => Some(1000),
        2 => Some(rng.below(200) as i16 - 100),
        _ => Some(rng.next() as i16),
    };
    let params = EpochParams {
        n,
        tempo: 1 + rng.below(20),
        activity_cutoff_blocks: [5000, 10, 0][rng.below(3) as usize],
        kappa_u16: if rng.chance(2) {
            32767
        } else {
            rng.next() as u16
        },
        bonds_penalty_u16: [65535, 0, 32767, rng.next() as u16][rng.below(4) as usize],
        bonds_moving_average: [900_000, 0, 1_000_000, rng.below(1_200_000)][rng.below(4) as usize],
        max_allowed_validators: if rng.chance(4) {
            rng.below(n + 2)
        } else {
            validators
        },
        stake_threshold: if rng.chance(4) { rng.below(100) } else { 0 },
        rao_emission: 1 + rng.below(2_000_000_000_000),
        yuma3: rng.chance(2),
        liquid_alpha: rng.chance(2),
        alpha_low_u16: (!rng.chance(4)).then_some(lo.min(hi)),
        alpha_high_u16: (!rng.chance(4)).then_some(lo.max(hi)),
        alpha_sigmoid_steepness: steepness,
        owner_uid: rng.chance(4).then(|| rng.below(n)),
    };
    let is_validator = |i: u64| i < validators;
    let state = EpochState {
        current_block: 40 + rng.below(20),
        last_mechanism_step_block: if rng.chance(2) { 0 } else { 30 },
        stake: (0..n)
            .map(|i| match rng.below(8) {
                0 => 0,
                1 => rng.below(100),
                2 => 1_000_000_000,
                _ if is_validator(i) => 1 + rng.below(1_000_000_000_000),
                _ => rng.below(1_000_000),
            })
            .collect(),
        block_at_registration: (0..n)
            .map(|_| if rng.chance(5) { rng.below(60) } else { 1 })
            .collect(),
        last_update: (0..n)
            .map(|_| if rng.chance(5) { rng.below(60) } else { 39 })
            .collect(),
        validator_permit: (0..n).map(|i| is_validator(i) != rng.chance(10)).collect(),
        weights: (0..n)
            .map(|i| {
                if is_validator(i) || rng.chance(8) {
                    row(rng, n, density)
                } else {
                    Vec::new()
                }
            })
            .collect(),
        bonds: (0..n)
            .map(|i| {
                if is_validator(i) && rng.chance(2) {
                    row(rng, n, density)
                } else {
                    Vec::new()
                }
            })
            .collect(),
        // Left out, as the fingerprint was recorded before the field existed.
        live_commit_block: Vec::new(),
    };
    debug_assert_eq!(state.stake.len(), len);
    EpochInput { params, state }
}

/// Runs `epochs` epochs from `inp`, each carrying the last one's bonds and permits, and feeds
/// every output (or error) into `hasher`.
///
/// Every other epoch runs in `scratch`, buffers left by earlier epochs of any size, so the
/// fingerprint also checks that nothing leaks from one epoch into the next.
fn chain(
    inp: &mut EpochInput,
    epochs: usize,
    hasher: &mut blake3::Hasher,
    scratch: &mut super::EpochScratch,
) {
    for e in 0..epochs {
        let out = if e % 2 == 0 {
            super::run_epoch_with(inp, scratch)
        } else {
            super::run_epoch(inp)
        };
        match out {
            Ok(out) => {
                let bytes = serde_json::to_vec(&out).unwrap_or_default();
                hasher.update(&bytes);
                inp.state.bonds = out
                    .bonds
                    .iter()
                    .map(|r| r.iter().map(|&(j, v)| (u64::from(j), v)).collect())
                    .collect();
                inp.state.validator_permit = out.validator_permit;
                inp.state.current_block += inp.params.tempo;
            }
            Err(e) => {
                hasher.update(e.to_string().as_bytes());
                return;
            }
        }
    }
}

/// The fingerprint recorded from the per-row implementation (commit before the flat rewrite).
const FINGERPRINT: &str = "6ee30500e12048906a687e7ac6bdef092d052abd06901aaad4f75f127f472d2c";

#[test]
fn outputs_are_bit_for_bit_those_of_the_reference_implementation() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut hasher = blake3::Hasher::new();
    let mut scratch = super::EpochScratch::default();
    for _ in 0..4000 {
        let n = 1 + rng.below(24);
        let validators = 1 + rng.below(n);
        let mut inp = input(&mut rng, n, validators);
        chain(&mut inp, 3, &mut hasher, &mut scratch);
    }
    for _ in 0..40 {
        let n = 100 + rng.below(200);
        let validators = 1 + rng.below(64);
        let mut inp = input(&mut rng, n, validators);
        chain(&mut inp, 3, &mut hasher, &mut scratch);
    }
    let got = hasher.finalize().to_hex().to_string();
    assert_eq!(got, FINGERPRINT, "an epoch output changed");
}

#[test]
fn the_epoch_refuses_exactly_what_validate_refuses() {
    // `run_epoch` checks rows as it reads them; with several defects at once it must still name
    // the one `validate` names first.
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut refused = 0;
    for _ in 0..3000 {
        let n = 1 + rng.below(12);
        let validators = 1 + rng.below(n);
        let mut inp = input(&mut rng, n, validators);
        for _ in 0..rng.below(4) {
            let s = &mut inp.state;
            let i = rng.below(n) as usize;
            match rng.below(5) {
                0 => s.weights[i].push((n + rng.below(3), 1)),
                1 => s.bonds[i].push((n + rng.below(3), 1)),
                2 => {
                    if let Some(&e) = s.weights[i].first() {
                        s.weights[i].push(e);
                    }
                }
                3 => {
                    if let Some(&e) = s.bonds[i].last() {
                        s.bonds[i].insert(0, e);
                    }
                }
                _ => s.stake[i] = u64::MAX / 2,
            }
        }
        let want = super::validate(&inp).err();
        refused += usize::from(want.is_some());
        assert_eq!(super::run_epoch(&inp).err(), want);
    }
    assert!(refused > 1000, "only {refused} inputs were refused");
}

#[test]
fn an_empty_subnet_runs_to_empty_outputs() {
    let mut rng = Rng(7);
    let mut inp = input(&mut rng, 1, 1);
    let s = &mut inp.state;
    inp.params.n = 0;
    inp.params.owner_uid = None;
    for v in [
        &mut s.stake,
        &mut s.block_at_registration,
        &mut s.last_update,
    ] {
        v.clear();
    }
    s.validator_permit.clear();
    s.weights.clear();
    s.bonds.clear();
    let out = super::run_epoch(&inp).map_err(|e| e.to_string());
    assert!(out.is_ok_and(|o| o.consensus_u16.is_empty() && o.bonds.is_empty()));
}
