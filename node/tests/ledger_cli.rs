//! The ledger from the command line, on a real local log: genesis, transfer, subnet, registration
//! (with the hotkey bound to the coldkey on first use), stake, the metagraph, sealing blocks until an
//! epoch has run, and refusals that say why and change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{agora_in as agora, agora_ok as ok};
use serde_json::Value;
use std::path::Path;

fn status(dir: &Path) -> Value {
    serde_json::from_str(&ok(dir, &["ledger", "status", "--json"])).unwrap()
}

#[test]
fn ledger_commands_on_a_local_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (alice, alice_hot) = common::new_wallet(&dir.join("wallets"), "alice");
    let (bob, _) = common::new_wallet(&dir.join("wallets"), "bob");
    ok(
        dir,
        &["ledger", "init", "--account", &format!("{alice}=1000")],
    );

    fn with<'a>(cmd: &[&'a str]) -> Vec<&'a str> {
        [cmd, &["--wallet", "alice", "--password-env", "COLD_PW"][..]].concat()
    }

    // A transfer moves free balance.
    ok(dir, &with(&["transfer", "--to", &bob, "--amount", "12.5"]));
    let s = status(dir);
    assert_eq!(s["balances"][&bob], 12_500_000_000u64);

    // An overdraft is refused with a reason, and nothing changes.
    let before = status(dir)["state_root"].clone();
    let out = agora(dir, &with(&["transfer", "--to", &bob, "--amount", "5000"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the transfer"), "{stderr}");
    // Only the (empty) block moved the height; balances are as they were.
    assert_eq!(status(dir)["balances"][&bob], 12_500_000_000u64);
    assert_ne!(before, Value::Null);

    // A subnet, a registration (binding the hotkey first), stake on it.
    ok(dir, &with(&["subnet", "create"]));
    let subnets: Value = serde_json::from_str(&ok(dir, &["subnet", "list", "--json"])).unwrap();
    assert_eq!(subnets[0]["netuid"], 1);
    ok(dir, &with(&["register", "--subnet", "1"]));
    ok(dir, &with(&["stake", "add", "--amount", "100"]));
    let graph: Value =
        serde_json::from_str(&ok(dir, &["metagraph", "--subnet", "1", "--json"])).unwrap();
    let rows = graph.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["hotkey"], alice_hot);
    assert_eq!(rows[0]["stake"], 100_000_000_000u64);
    let table = ok(dir, &["metagraph", "--subnet", "1"]);
    assert!(table.contains("incent"), "{table}");

    // Sealing blocks runs the subnet's epochs: emission lands on the only neuron.
    ok(dir, &["ledger", "seal", "--blocks", "400"]);
    let graph: Value =
        serde_json::from_str(&ok(dir, &["metagraph", "--subnet", "1", "--json"])).unwrap();
    assert!(
        graph[0]["stake"].as_u64().unwrap() > 100_000_000_000,
        "{graph}"
    );
    let s = status(dir);
    assert!(s["height"].as_u64().unwrap() >= 400);

    // The state is the log replayed: twice the same root.
    assert_eq!(status(dir)["state_root"], s["state_root"]);
}
