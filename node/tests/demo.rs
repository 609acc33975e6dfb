//! `agora demo`, the README's main job, runs end to end: a local chain (anvil) ordering the
//! ledger, a bootstrap, three miners, a validator and a client as processes on 127.0.0.1, real
//! models, every query paid, receipted, anchored on chain and proven, every process stopped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use std::process::Command;

#[test]
fn the_demo_runs_a_mesh_of_processes_and_settles_every_query() {
    // The demo finds agora-bootstrap beside the agora binary.
    common::bootstrap_binary();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .args([
            "--sentence",
            "One sentence to embed.",
            "--sentence",
            "Zwei.",
        ])
        .args(["--prompt", "Say hello."])
        .output()
        .expect("the agora binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("3 queries answered, paid and receipted by both sides"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "the client holds 3 receipts signed by both sides; the miners hold 3 of them"
        ),
        "{stdout}"
    );
    // Each miner settled its epochs on chain; every receipt proves against an anchor there.
    for miner in ["miner-1", "miner-2", "miner-3"] {
        assert!(
            stdout.contains(&format!("{miner}: epoch ")) && stdout.contains("anchored on chain"),
            "{stdout}"
        );
    }
    assert!(stdout.contains("3 of 3 receipts proven"), "{stdout}");
    // Six processes followed the contract into their own mirrors and agree on the state.
    assert!(
        stdout.contains("6 mirrors, each followed independently, agree at height"),
        "{stdout}"
    );
    // Two embeddings at 0.002 and one chat at 0.05: the client paid 0.054 of its 100.
    let client_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("client ") && l.contains("genesis"))
        .unwrap_or_else(|| panic!("no client balance line:\n{stdout}"));
    assert!(client_line.contains(" 99.946000000 "), "{client_line}");
    // The validator scored every miner: Yuma gave each an incentive.
    assert!(
        stdout.contains(
            "Metagraph of subnet 1 (Yuma consensus over the validator's revealed weights)"
        ),
        "{stdout}"
    );
    for miner in ["miner-1", "miner-2", "miner-3"] {
        let row = stdout
            .lines()
            .find(|l| {
                let mut words = l.split_whitespace();
                words.next().is_some_and(|uid| uid.parse::<u16>().is_ok())
                    && words.next() == Some(miner)
            })
            .unwrap_or_else(|| panic!("no metagraph row for {miner}:\n{stdout}"));
        let incentive: f64 = row.split_whitespace().nth(5).unwrap().parse().unwrap();
        assert!(incentive > 0.0, "{row}");
    }
    // The wallets it made are real key files: an encrypted coldkey and a hotkey per wallet.
    for name in ["client", "validator", "miner-1", "miner-2", "miner-3"] {
        assert!(
            dir.path().join(name).join("coldkey").is_file(),
            "{name} coldkey"
        );
        assert!(
            dir.path()
                .join(name)
                .join("hotkeys")
                .join("default")
                .is_file(),
            "{name} hotkey"
        );
    }
    // No process of the demo outlives it: the miners' stores open (redb locks a file in use).
    for name in ["client", "miner-1", "miner-2", "miner-3"] {
        agora_ledger::store::ReceiptStore::open(&dir.path().join(format!("{name}.redb")))
            .unwrap_or_else(|e| panic!("{name}'s store: {e}"));
    }
}
