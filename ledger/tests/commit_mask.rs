#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Commit-reveal's anti-sniping mask as the epoch interface takes it: `state.live_commit_block`
//! (spec 2.3 step 5). A validator whose oldest live weight commit predates a uid's registration
//! gives that uid nothing, whatever its stored weights say; without a live commit (`null`, or
//! the field left out as with commit-reveal off) the weights count as before.

use agora_ledger::consensus::{EpochError, EpochInput, EpochParams, EpochState, run_epoch};

/// Validator uid 0 (registered at block 1, the only stake and permit) weights uid 1 (registered
/// at block 1) and uid 2 (registered at block 10) equally; its weights were set at block 20.
fn input(live_commit_block: Vec<Option<u64>>) -> EpochInput {
    EpochInput {
        params: EpochParams {
            n: 3,
            tempo: 10,
            activity_cutoff_blocks: 138,
            kappa_u16: 32767,
            bonds_penalty_u16: 65535,
            bonds_moving_average: 900_000,
            max_allowed_validators: 3,
            stake_threshold: 0,
            rao_emission: 1_000_000,
            yuma3: true,
            liquid_alpha: false,
            alpha_low_u16: None,
            alpha_high_u16: None,
            alpha_sigmoid_steepness: None,
            owner_uid: None,
        },
        state: EpochState {
            current_block: 21,
            last_mechanism_step_block: 11,
            stake: vec![10_000, 0, 0],
            block_at_registration: vec![1, 1, 10],
            last_update: vec![20, 1, 10],
            validator_permit: vec![true, false, false],
            weights: vec![vec![(1, 65535), (2, 65535)], vec![], vec![]],
            bonds: vec![vec![], vec![], vec![]],
            live_commit_block,
        },
    }
}

#[test]
fn a_validator_with_an_old_live_commit_gives_a_newly_registered_miner_nothing() {
    // Committed at block 5, before uid 2 registered (block 10) but after uid 1 did (block 1).
    let out = run_epoch(&input(vec![Some(5), None, None])).unwrap();
    assert_eq!(out.incentive_u16[2], 0, "the sniped uid gets no incentive");
    assert_eq!(out.consensus_u16[2], 0);
    assert_eq!(out.server_emission[2], 0);
    // The weight on the older uid 1 stays: its row is now all uid 1's.
    assert_eq!(out.incentive_u16[1], 65535);
}

#[test]
fn without_a_live_commit_the_new_miner_is_paid() {
    for commits in [vec![None, None, None], Vec::new()] {
        let out = run_epoch(&input(commits.clone())).unwrap();
        assert_eq!(
            out.incentive_u16[1], out.incentive_u16[2],
            "{commits:?}: equal weights, equal incentive"
        );
        assert!(out.incentive_u16[2] > 30_000, "{commits:?}: {out:?}");
    }
    // `null` everywhere and the field left out are the same input.
    assert_eq!(
        run_epoch(&input(vec![None, None, None])).unwrap(),
        run_epoch(&input(Vec::new())).unwrap()
    );
}

#[test]
fn a_commit_in_the_registration_block_does_not_mask() {
    // The chain drops W[i][j] only when commit_block < block_at_registration[j].
    let at = run_epoch(&input(vec![Some(10), None, None])).unwrap();
    let none = run_epoch(&input(Vec::new())).unwrap();
    assert_eq!(at, none);
    let before = run_epoch(&input(vec![Some(9), None, None])).unwrap();
    assert_eq!(before.incentive_u16[2], 0);
}

#[test]
fn only_the_committing_validators_row_is_masked() {
    // A live commit on a uid that sets no weights (uid 2) changes nothing.
    let out = run_epoch(&input(vec![None, None, Some(0)])).unwrap();
    assert_eq!(out, run_epoch(&input(Vec::new())).unwrap());
}

#[test]
fn live_commit_block_of_the_wrong_length_is_refused() {
    let err = run_epoch(&input(vec![Some(5), None])).unwrap_err();
    assert_eq!(
        err,
        EpochError::WrongLength {
            field: "live_commit_block",
            len: 2,
            n: 3
        }
    );
    assert!(
        err.to_string()
            .contains("state.live_commit_block has 2 entries")
    );
}

#[test]
fn the_json_field_is_optional_and_takes_null() {
    let mut json = serde_json::to_value(input(Vec::new())).unwrap();
    assert!(
        json["state"].get("live_commit_block").is_none(),
        "an empty field is not written, so old outputs of the interface stay as they were"
    );
    json["state"]["live_commit_block"] = serde_json::json!([5, null, null]);
    let parsed: EpochInput = serde_json::from_value(json).unwrap();
    assert_eq!(parsed, input(vec![Some(5), None, None]));
}
