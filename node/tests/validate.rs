//! A validator on real processes: a local ledger whose subnet has a 10-block tempo, commit-reveal on
//! (reveal one epoch after the commit) and a 200 ms block clock (`agora ledger run`); a bootstrap;
//! two honest miners and one that corrupts every embedding (`agora serve --fault wrong-embeddings`);
//! one staked validator (`agora validate`). Two epochs after the validator's first reveal, the faulty
//! miner's incentive is 0 and each honest miner's is above 0, as `agora metagraph --json` shows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{DEADLINE, Proc, agora_ok as ok, free_port, new_wallet, start_bootstrap, start_serve};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const MODEL: &str = "all-minilm-l6-v2";

fn height(dir: &Path) -> u64 {
    let v: Value = serde_json::from_str(&ok(dir, &["ledger", "status", "--json"])).unwrap();
    v["height"].as_u64().unwrap()
}

fn incentives(dir: &Path) -> Vec<(String, u64)> {
    let rows: Value =
        serde_json::from_str(&ok(dir, &["metagraph", "--subnet", "1", "--json"])).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["hotkey"].as_str().unwrap().to_string(),
                r["incentive_u16"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_validator_takes_a_faulty_miners_incentive_away() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wallets = dir.join("wallets");
    let names = ["val", "honest1", "honest2", "faulty"];
    let keys: Vec<(String, String)> = names.iter().map(|n| new_wallet(&wallets, n)).collect();

    // Subnet 1 at genesis, owned by the validator's coldkey: tempo 10 (an epoch every 11 blocks),
    // commit-reveal with a one-epoch reveal period, a 5-block weights rate limit.
    let accounts: serde_json::Map<String, Value> = keys
        .iter()
        .map(|(cold, _)| (cold.clone(), json!(1_000_000_000_000u64)))
        .collect();
    let genesis = json!({
        "accounts": accounts,
        "subnets": [{
            "owner": keys[0].0,
            "hyperparameters": {
                "tempo": 10,
                "commit_reveal_enabled": true,
                "reveal_period_epochs": 1,
                "weights_set_rate_limit": 5
            }
        }]
    });
    std::fs::write(dir.join("genesis.json"), genesis.to_string()).unwrap();
    for name in names {
        ok(
            dir,
            &[
                "register",
                "--wallet",
                name,
                "--subnet",
                "1",
                "--password-env",
                "COLD_PW",
            ],
        );
    }
    ok(
        dir,
        &[
            "stake",
            "add",
            "--wallet",
            "val",
            "--amount",
            "100",
            "--password-env",
            "COLD_PW",
        ],
    );

    // The clock: a block every 200 ms from now on.
    let log = dir.join("ledger.log");
    let genesis_path = dir.join("genesis.json");
    let ledger_flags = [
        "--ledger-log",
        log.to_str().unwrap(),
        "--ledger-genesis",
        genesis_path.to_str().unwrap(),
    ];
    let mut clock_args = vec!["ledger", "run", "--block-time", "200"];
    clock_args.extend_from_slice(&ledger_flags);
    let clock = Proc::start("clock", Path::new(env!("CARGO_BIN_EXE_agora")), &clock_args);
    clock.wait_for("its first line", |l| l.starts_with("sealing").then_some(()));

    let (_boot, boot_addr) = start_bootstrap(dir);
    let miner_flags = ["--bootstrap", &boot_addr, "--model", MODEL, "--subnet", "1"];
    let mut miners = Vec::new();
    for name in &names[1..] {
        let mut extra: Vec<&str> = miner_flags.to_vec();
        if *name == "faulty" {
            extra.extend_from_slice(&["--fault", "wrong-embeddings"]);
        }
        let receipts = dir.join(format!("{name}.redb"));
        miners.push(start_serve(name, &wallets, &receipts, free_port(), &extra));
    }

    let receipts = dir.join("val.redb");
    let state_dir = dir.join("validator");
    let mut val_args = vec![
        "validate",
        "--wallet-path",
        wallets.to_str().unwrap(),
        "--wallet",
        "val",
        "--loopback",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bootstrap",
        &boot_addr,
        "--subnet",
        "1",
        "--receipts",
        receipts.to_str().unwrap(),
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--deadline-ms",
        "20000",
        "--round-interval-ms",
        "500",
    ];
    val_args.extend_from_slice(&ledger_flags);
    let validator = Proc::start(
        "validator",
        Path::new(env!("CARGO_BIN_EXE_agora")),
        &val_args,
    );
    let revealed_at: u64 = validator.wait_for("a reveal", |l| {
        eprintln!("validator: {l}");
        l.strip_prefix("revealed weights on subnet 1 at block ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|h| h.parse().ok())
    });

    // Two full epochs (11 blocks each) after the reveal, the epochs have used its weights.
    let end = Instant::now() + DEADLINE;
    while height(dir) < revealed_at + 2 * 11 {
        assert!(Instant::now() < end, "the ledger stopped advancing");
        std::thread::sleep(Duration::from_millis(300));
    }
    let rows = incentives(dir);
    let incentive = |hot: &str| {
        rows.iter()
            .find(|(h, _)| h == hot)
            .map(|(_, i)| *i)
            .unwrap_or_else(|| panic!("{hot} is not in the metagraph {rows:?}"))
    };
    let (honest1, honest2, faulty) = (
        incentive(&keys[1].1),
        incentive(&keys[2].1),
        incentive(&keys[3].1),
    );
    eprintln!("incentives: honest {honest1}, {honest2}; faulty {faulty}");
    assert!(honest1 > 0 && honest2 > 0, "honest miners earn: {rows:?}");
    assert_eq!(faulty, 0, "the faulty miner earns nothing: {rows:?}");
    drop(miners);
}
