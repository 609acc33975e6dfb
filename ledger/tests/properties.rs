//! Properties of the epoch and the emission schedule over random inputs: no input the validator
//! accepts makes the math fail, and the outputs keep the invariants the spec states.

use agora_ledger::consensus::{EpochError, EpochInput, EpochParams, EpochState, run_epoch};
use agora_ledger::emission::{self, TOTAL_SUPPLY};
use proptest::prelude::*;

/// A sparse row over `n` uids: distinct uids, in ascending or scrambled order (the chain stores
/// rows in submission order, which need not be sorted).
fn row(n: u64) -> impl Strategy<Value = Vec<(u64, u16)>> {
    (
        prop::collection::btree_map(0..n, any::<u16>(), 0..=n as usize),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(m, scramble, seed)| {
            let mut v: Vec<(u64, u16)> = m.into_iter().collect();
            if scramble && v.len() > 1 {
                let k = (seed % v.len() as u64) as usize;
                v.rotate_left(k);
                if seed & 1 == 1 {
                    v.reverse();
                }
            }
            v
        })
}

fn input() -> impl Strategy<Value = EpochInput> {
    (1u64..10).prop_flat_map(|n| {
        let len = n as usize;
        let params = (
            (
                any::<u16>(),
                any::<u16>(),
                0u64..=1_200_000,
                0u64..=n + 2,
                0u64..50,
            ),
            (0u64..=2_000_000_000_000, any::<bool>(), any::<bool>()),
            (any::<u16>(), any::<u16>(), any::<i16>()),
            (prop::option::of(0..n), 1u64..20, 0u64..30),
        )
            .prop_map(
                move |(
                    (kappa, bp, bma, k, thr),
                    (rao, y3, la),
                    (lo, hi, st),
                    (owner, tempo, cut),
                )| {
                    EpochParams {
                        n,
                        tempo,
                        activity_cutoff_blocks: cut,
                        kappa_u16: kappa,
                        bonds_penalty_u16: bp,
                        bonds_moving_average: bma,
                        max_allowed_validators: k,
                        stake_threshold: thr,
                        rao_emission: rao,
                        yuma3: y3,
                        liquid_alpha: la,
                        alpha_low_u16: Some(lo.min(hi)),
                        alpha_high_u16: Some(lo.max(hi)),
                        alpha_sigmoid_steepness: Some(st),
                        owner_uid: owner,
                    }
                },
            );
        let state = (
            (20u64..60, 0u64..3),
            prop::collection::vec(
                prop_oneof![Just(0u64), 0u64..100, 0u64..1_000_000_000_000],
                len,
            ),
            prop::collection::vec(0u64..60, len),
            prop::collection::vec(0u64..60, len),
            prop::collection::vec(any::<bool>(), len),
            prop::collection::vec(row(n), len),
            prop::collection::vec(row(n), len),
        )
            .prop_map(|((block, lms), stake, reg, upd, permit, weights, bonds)| {
                EpochState {
                    current_block: block,
                    last_mechanism_step_block: if lms == 0 { 0 } else { block - lms },
                    stake,
                    block_at_registration: reg,
                    last_update: upd,
                    validator_permit: permit,
                    weights,
                    bonds,
                    live_commit_block: Vec::new(),
                }
            });
        (params, state).prop_map(|(params, state)| EpochInput { params, state })
    })
}

/// Sum of `u16` proportions that each normalised to sum 1 before flooring: at most 65535, and at
/// most one unit (plus the I32F32 truncation) short per entry.
fn assert_normalised_u16(name: &str, v: &[u16]) {
    let total: u64 = v.iter().map(|&x| u64::from(x)).sum();
    if total > 0 {
        let n = v.len() as u64;
        assert!(total <= 65_535, "{name} sums to {total}");
        assert!(
            total + n + 1 >= 65_535,
            "{name} sums to {total} over {n} uids"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_valid_inputs_keep_the_spec_invariants(inp in input()) {
        let out = run_epoch(&inp).expect("validated input runs");
        let n = inp.params.n as usize;
        let p = &inp.params;
        let s = &inp.state;
        for len in [
            out.consensus_u16.len(), out.incentive_u16.len(), out.dividends_u16.len(),
            out.validator_trust_u16.len(), out.stake_weight_u16.len(), out.emission.len(),
            out.server_emission.len(), out.validator_emission.len(),
            out.validator_permit.len(), out.active.len(), out.bonds.len(),
        ] {
            prop_assert_eq!(len, n);
        }

        assert_normalised_u16("incentive", &out.incentive_u16);
        assert_normalised_u16("dividends", &out.dividends_u16);
        assert_normalised_u16("stake_weight", &out.stake_weight_u16);

        // Active is exactly the cutoff rule.
        for i in 0..n {
            prop_assert_eq!(out.active[i], s.last_update[i] + p.activity_cutoff_blocks >= s.current_block);
        }

        // Permits: at most k by stake, plus the owner; never to zero stake except the owner.
        let owner = p.owner_uid.map(|o| o as usize);
        let counted = out.validator_permit.iter().enumerate()
            .filter(|&(i, &v)| v && Some(i) != owner).count() as u64;
        prop_assert!(counted <= p.max_allowed_validators);
        if let Some(o) = owner { prop_assert!(out.validator_permit[o]); }
        for i in 0..n {
            if out.validator_permit[i] && Some(i) != owner {
                prop_assert!(out.stake_weight_u16[i] > 0 || s.stake[i] > 0);
            }
        }

        // Emission: never more than the epoch pays; all of it (to rounding) when anyone has stake.
        let rao = p.rao_emission;
        let paid: u64 = out.emission.iter().sum();
        prop_assert!(paid <= rao, "paid {} of {}", paid, rao);
        let split: u64 = out.server_emission.iter().chain(&out.validator_emission).sum();
        prop_assert!(split <= rao, "split {} of {}", split, rao);
        let staked = (0..n).any(|i| s.stake[i] > 0 && (s.stake[i] >= p.stake_threshold || Some(i) == owner));
        if staked {
            // Each of n shares loses < 1 rao to flooring and < 2^-32 of rao to normalisation.
            let slack = (n as u64 + 1) + (rao >> 32) * (n as u64 + 1) + 1;
            prop_assert!(paid + slack >= rao, "paid {} of {}", paid, rao);
        }

        // Bonds: only permitted validators keep a row; rows name valid, distinct uids.
        for (i, row) in out.bonds.iter().enumerate() {
            if !out.validator_permit[i] { prop_assert!(row.is_empty()); }
            let mut seen = std::collections::BTreeSet::new();
            for &(j, _) in row {
                prop_assert!((j as usize) < n);
                prop_assert!(seen.insert(j));
            }
        }

        // Pure function: the same input gives the same output.
        prop_assert_eq!(run_epoch(&inp).expect("runs again"), out);
    }

    #[test]
    fn epochs_chain_through_their_own_outputs(inp in input()) {
        let mut inp = inp;
        for _ in 0..4 {
            let out = run_epoch(&inp).expect("validated input runs");
            inp.state.bonds = out.bonds.iter()
                .map(|r| r.iter().map(|&(j, v)| (u64::from(j), v)).collect()).collect();
            inp.state.validator_permit = out.validator_permit;
            inp.state.current_block += 1;
        }
    }

    #[test]
    fn issuance_never_passes_the_cap(start in 0u64..=TOTAL_SUPPLY, blocks in 1usize..2000) {
        let mut issuance = start;
        let mut last = emission::block_emission(issuance);
        for _ in 0..blocks {
            let (next, minted) = emission::mint_block(issuance);
            prop_assert!(next <= TOTAL_SUPPLY, "issuance {} passed the cap", next);
            prop_assert_eq!(minted, next - issuance);
            // Halving by issuance: emission never rises as issuance grows, and is 1 TAO >> k.
            prop_assert!(minted <= last);
            prop_assert!((0..64).any(|k| emission::DEFAULT_BLOCK_EMISSION >> k == minted));
            last = minted;
            issuance = next;
        }
    }

    #[test]
    fn one_block_from_anywhere_stays_under_the_cap(issuance in any::<u64>()) {
        let (next, minted) = emission::mint_block(issuance);
        if issuance <= TOTAL_SUPPLY {
            prop_assert!(next <= TOTAL_SUPPLY);
        } else {
            prop_assert_eq!(minted, 0);
        }
    }

    #[test]
    fn emission_split_never_pays_more_than_alpha_out(
        alpha in any::<u64>(), cut in any::<u16>(), enabled in any::<bool>(), root in 0u128..=(1u128 << 32)
    ) {
        let s = emission::split_alpha_out(alpha, cut, enabled, root).expect("root <= 1");
        let paid = u128::from(s.owner_cut) + u128::from(s.server) + u128::from(s.validator) + u128::from(s.root);
        prop_assert!(paid <= u128::from(alpha));
        prop_assert!(paid + 4 >= u128::from(alpha));
        // Miners get half of what the owner leaves, validators and root the other half.
        prop_assert!(s.server.abs_diff(s.validator + s.root) <= 2);
    }
}

fn small() -> EpochInput {
    EpochInput {
        params: EpochParams {
            n: 2,
            tempo: 10,
            activity_cutoff_blocks: 100,
            kappa_u16: 32767,
            bonds_penalty_u16: 65535,
            bonds_moving_average: 900_000,
            max_allowed_validators: 1,
            stake_threshold: 0,
            rao_emission: 1000,
            yuma3: false,
            liquid_alpha: false,
            alpha_low_u16: None,
            alpha_high_u16: None,
            alpha_sigmoid_steepness: None,
            owner_uid: None,
        },
        state: EpochState {
            current_block: 50,
            last_mechanism_step_block: 0,
            stake: vec![10, 0],
            block_at_registration: vec![0, 0],
            last_update: vec![40, 0],
            validator_permit: vec![true, false],
            weights: vec![vec![(1, 65535)], vec![]],
            bonds: vec![vec![], vec![]],
            live_commit_block: Vec::new(),
        },
    }
}

#[test]
fn validation_names_the_broken_field() {
    let mut i = small();
    i.state.last_update.pop();
    assert!(matches!(
        run_epoch(&i),
        Err(EpochError::WrongLength {
            field: "last_update",
            ..
        })
    ));

    let mut i = small();
    i.state.weights[0].push((2, 1));
    assert!(matches!(
        run_epoch(&i),
        Err(EpochError::UidOutOfRange {
            field: "weights",
            uid: 2,
            ..
        })
    ));

    let mut i = small();
    i.state.bonds[1] = vec![(0, 5), (0, 6)];
    assert!(matches!(
        run_epoch(&i),
        Err(EpochError::DuplicateUid {
            field: "bonds",
            row: 1,
            uid: 0
        })
    ));

    let mut i = small();
    i.params.n = 70_000;
    assert!(matches!(run_epoch(&i), Err(EpochError::TooManyUids { .. })));

    let mut i = small();
    i.state.stake = vec![u64::MAX, 1];
    assert!(matches!(
        run_epoch(&i),
        Err(EpochError::StakeOverflow { .. })
    ));

    let mut i = small();
    i.params.owner_uid = Some(2);
    assert!(matches!(
        run_epoch(&i),
        Err(EpochError::OwnerOutOfRange { .. })
    ));
}

#[test]
fn masks_remove_outdated_weights_and_self_weights() {
    // The validator's weight predates the miner's registration: nothing survives, so the
    // validator is paid by stake (the zero-weight fallback) and the miner gets nothing.
    let mut i = small();
    i.state.block_at_registration = vec![0, 45];
    let out = run_epoch(&i).expect("runs");
    assert_eq!(out.incentive_u16, vec![0, 0]);
    assert_eq!(out.emission, vec![1000, 0]);
    assert_eq!(out.validator_emission, vec![1000, 0]);

    // A self-weight counts only for the subnet owner.
    let mut i = small();
    i.state.weights = vec![vec![(0, 65535)], vec![]];
    assert_eq!(run_epoch(&i).expect("runs").incentive_u16, vec![0, 0]);
    i.params.owner_uid = Some(0);
    assert_eq!(run_epoch(&i).expect("runs").incentive_u16, vec![65535, 0]);
}

#[test]
fn inactive_validators_lose_their_say() {
    let mut i = small();
    i.state.current_block = 200; // 40 + 100 < 200: inactive
    let out = run_epoch(&i).expect("runs");
    assert_eq!(out.active, vec![false, false]);
    assert_eq!(out.consensus_u16, vec![0, 0]);
    // Nobody active: the fallback pays by raw stake.
    assert_eq!(out.emission, vec![1000, 0]);
}
