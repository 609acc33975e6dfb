//! The committed contract artifact (`contracts/artifacts/AgoraLedger.json`, which the Rust
//! bindings are generated from) is exactly what the Solidity source compiles to with the pinned
//! solcjs (installed by `scripts/setup-tools`): nobody can change one without the other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_source_compiles_to_the_committed_artifact() {
    let tools = Command::new(repo().join("scripts/setup-tools"))
        .arg("--print")
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/setup-tools runs");
    let text = String::from_utf8_lossy(&tools.stdout).to_string();
    let solcjs = text
        .lines()
        .find_map(|l| l.strip_prefix("SOLCJS="))
        .map(PathBuf::from)
        .expect("setup-tools prints SOLCJS=");
    assert!(
        solcjs.exists(),
        "solcjs missing at {}: run scripts/setup-tools",
        solcjs.display()
    );
    // .../node_modules/solc/solc.js -> .../node_modules
    let node_modules = solcjs
        .parent()
        .and_then(Path::parent)
        .expect("node_modules");
    let out = Command::new("node")
        .arg(repo().join("contracts/compile.js"))
        .env("NODE_PATH", node_modules)
        .output()
        .expect("node runs (install Node.js)");
    assert!(
        out.status.success(),
        "compile.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(repo().join("contracts/artifacts/AgoraLedger.json")).unwrap();
    assert!(
        out.stdout == committed,
        "contracts/artifacts/AgoraLedger.json is stale: regenerate it with \
         `NODE_PATH=~/.cache/agora/tools/node_modules node contracts/compile.js > contracts/artifacts/AgoraLedger.json`"
    );
}

#[test]
fn the_contract_size_limit_is_the_ledgers() {
    let source = std::fs::read_to_string(repo().join("contracts/AgoraLedger.sol")).unwrap();
    let limit = agora_ledger::state::tx::MAX_TX_LEN + agora_ledger::state::tx::TX_ENVELOPE_OVERHEAD;
    assert!(
        source.contains(&format!("MAX_TRANSACTION_BYTES = {limit};")),
        "the contract's MAX_TRANSACTION_BYTES must be {limit}"
    );
    assert!(source.contains(&format!(
        "MAX_ANCHOR_BYTES = {};",
        agora_ledger::chain::MAX_ANCHOR_RECORD_LEN
    )));
}
