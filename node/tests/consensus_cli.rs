//! `agora consensus epoch` end to end: the real binary, JSON on stdin, JSON on stdout.
//!
//! Every case of the spec's sample file is replayed through the command (one process per epoch,
//! carrying bonds and permits between them), and malformed inputs must exit 2 with a message on
//! stderr and nothing on stdout.

use agora_ledger::consensus::{EpochOutput, samples};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Output, Stdio};

const SAMPLES: &str = include_str!("../../ledger/tests/data/yuma_samples.json");
/// Further cases from the chain's `tests/epoch.rs` (see `ledger/tests/chain_cases.rs`).
const CHAIN_CASES: &str = include_str!("../../ledger/tests/data/chain_cases.json");

fn agora_epoch(stdin: &[u8]) -> std::io::Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["consensus", "epoch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut pipe) = child.stdin.take() {
        // The command may exit before reading everything; a broken pipe is its business.
        let _ = pipe.write_all(stdin);
    }
    child.wait_with_output()
}

fn run_through_binary(input: &Value) -> Result<EpochOutput, String> {
    let out = agora_epoch(input.to_string().as_bytes()).map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8(out.stdout).map_err(|e| e.to_string())?;
    if text.lines().count() != 1 {
        return Err(format!("expected one line of JSON, got {text:?}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

#[test]
fn sample_cases_replayed_through_the_command_meet_their_expectations() {
    let summary = samples::replay_file(SAMPLES, |input| {
        run_through_binary(&serde_json::to_value(input).map_err(|e| e.to_string())?)
    })
    .expect("sample file is well formed");
    summary.eprint();
    assert!(summary.cases.len() >= 3, "expected several sample cases");
    assert!(
        summary.problems.is_empty(),
        "failing cases:\n{}",
        summary.problems.join("\n")
    );
}

#[test]
fn chain_cases_replayed_through_the_command_meet_their_expectations() {
    let summary = samples::replay_file(CHAIN_CASES, |input| {
        run_through_binary(&serde_json::to_value(input).map_err(|e| e.to_string())?)
    })
    .expect("chain case file is well formed");
    summary.eprint();
    assert!(summary.cases.len() >= 8, "expected many chain cases");
    assert!(
        summary.problems.is_empty(),
        "chain cases:\n{}",
        summary.problems.join("\n")
    );
}

/// A small valid input: uid 0 validates, uids 1 and 2 mine.
fn valid() -> Value {
    json!({
        "params": {
            "n": 3, "tempo": 360, "activity_cutoff_blocks": 5000, "kappa_u16": 32767,
            "bonds_penalty_u16": 65535, "bonds_moving_average": 900000,
            "max_allowed_validators": 2, "stake_threshold": 0, "rao_emission": 1000000000,
            "yuma3": false, "liquid_alpha": false
        },
        "state": {
            "current_block": 100, "stake": [1000, 0, 0],
            "block_at_registration": [0, 0, 0], "last_update": [90, 0, 0],
            "validator_permit": [true, false, false],
            "weights": [[[1, 65535], [2, 32767]], [], []],
            "bonds": [[], [], []]
        }
    })
}

#[test]
fn a_valid_input_gives_one_json_object_with_every_field() {
    let out = run_through_binary(&valid()).expect("valid input succeeds");
    assert_eq!(out.validator_permit, vec![true, false, false]);
    // Miners split the incentive 2:1 and the validator earns all dividends.
    assert_eq!(out.incentive_u16[0], 0);
    assert!(out.incentive_u16[1] > out.incentive_u16[2]);
    assert_eq!(out.dividends_u16, vec![65535, 0, 0]);
    let paid: u64 = out.emission.iter().sum();
    assert!(paid <= 1_000_000_000 && paid + 3 >= 1_000_000_000, "{paid}");
    assert_eq!(out.bonds.len(), 3);
}

fn assert_malformed(input: &[u8], stderr_mentions: &str) {
    let out = agora_epoch(input);
    assert!(out.is_ok(), "agora did not run: {out:?}");
    let Ok(out) = out else { return };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout for bad input");
    assert!(
        stderr.contains(stderr_mentions),
        "stderr should mention {stderr_mentions:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn not_json_exits_2() {
    assert_malformed(b"this is not json", "malformed input");
    assert_malformed(b"", "malformed input");
    assert_malformed(&[0xff, 0xfe, 0x00], "malformed input");
}

#[test]
fn missing_fields_exit_2() {
    let mut v = valid();
    v["state"].as_object_mut().expect("object").remove("stake");
    assert_malformed(v.to_string().as_bytes(), "stake");
    let mut v = valid();
    v.as_object_mut().expect("object").remove("params");
    assert_malformed(v.to_string().as_bytes(), "params");
    let mut v = valid();
    v["params"]
        .as_object_mut()
        .expect("object")
        .remove("kappa_u16");
    assert_malformed(v.to_string().as_bytes(), "kappa_u16");
}

#[test]
fn wrong_lengths_exit_2() {
    let mut v = valid();
    v["state"]["last_update"] = json!([90, 0]);
    assert_malformed(v.to_string().as_bytes(), "last_update");
    let mut v = valid();
    v["state"]["weights"] = json!([[], [], [], []]);
    assert_malformed(v.to_string().as_bytes(), "weights");
    let mut v = valid();
    v["state"]["live_commit_block"] = json!([5, null]);
    assert_malformed(v.to_string().as_bytes(), "live_commit_block");
    let mut v = valid();
    v["state"]["live_commit_block"] = json!([5, "x", null]);
    assert_malformed(v.to_string().as_bytes(), "malformed input");
}

/// Commit-reveal's anti-sniping input: uid 2 registered at block 50, after the validator's live
/// commit (block 10), so the validator's weight on it does not count; `null` (no live commit)
/// or leaving the field out leaves it counted.
#[test]
fn a_live_commit_older_than_a_registration_masks_the_weight_through_the_command() {
    let mut v = valid();
    v["state"]["block_at_registration"] = json!([0, 0, 50]);
    let unmasked = run_through_binary(&v).expect("valid input succeeds");
    assert!(unmasked.incentive_u16[2] > 0);
    v["state"]["live_commit_block"] = json!([null, null, null]);
    assert_eq!(run_through_binary(&v), Ok(unmasked));
    v["state"]["live_commit_block"] = json!([10, null, null]);
    let masked = run_through_binary(&v).expect("valid input succeeds");
    assert_eq!(masked.incentive_u16, vec![0, 65535, 0]);
}

#[test]
fn uids_out_of_range_or_repeated_exit_2() {
    let mut v = valid();
    v["state"]["weights"][0] = json!([[3, 65535]]);
    assert_malformed(v.to_string().as_bytes(), "uid 3");
    let mut v = valid();
    v["state"]["bonds"][1] = json!([[99, 1]]);
    assert_malformed(v.to_string().as_bytes(), "uid 99");
    let mut v = valid();
    v["state"]["weights"][0] = json!([[1, 1], [1, 2]]);
    assert_malformed(v.to_string().as_bytes(), "more than once");
    let mut v = valid();
    v["params"]["owner_uid"] = json!(7);
    assert_malformed(v.to_string().as_bytes(), "owner_uid");
}

#[test]
fn out_of_type_values_exit_2() {
    let mut v = valid();
    v["state"]["weights"][0] = json!([[1, 70000]]);
    assert_malformed(v.to_string().as_bytes(), "u16");
    let mut v = valid();
    v["state"]["stake"] = json!([-1, 0, 0]);
    assert_malformed(v.to_string().as_bytes(), "malformed input");
    let mut v = valid();
    v["state"]["stake"] = json!([u64::MAX, u64::MAX, 0]);
    assert_malformed(v.to_string().as_bytes(), "total stake");
}
