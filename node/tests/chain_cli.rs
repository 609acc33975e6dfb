#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The ledger on a real chain from the command line: anvil (mining a block a second), the
//! contract deployed with `agora chain deploy`, a subnet created and a hotkey registered through
//! the chain (outbox, send, wait until final, replay), two mirrors reaching the same state root,
//! an epoch settled and anchored on chain, and a receipt's proof verified against the chain alone.

mod common;

use agora_ledger::chain::anvil::{Anvil, DEV_KEYS, default_binary};
use agora_ledger::store::ReceiptStore;
use agora_protocols::SecretKey;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

struct Chain {
    anvil: Anvil,
    contract: String,
    start_block: String,
}

fn agora(dir: &Path, chain: &Chain, mirror: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(args)
        .env("AGORA_WALLET_PATH", dir.join("wallets"))
        .env("AGORA_LEDGER_LOG", dir.join(mirror).join("ledger.log"))
        .env("AGORA_LEDGER_GENESIS", dir.join("genesis.json"))
        .env("AGORA_CHAIN_RPC", chain.anvil.url())
        .env("AGORA_CHAIN_CONTRACT", &chain.contract)
        .env("AGORA_CHAIN_START_BLOCK", &chain.start_block)
        .env("AGORA_CHAIN_DEPTH", "2")
        .env("AGORA_CHAIN_ID", "31337")
        .env("AGORA_CHAIN_KEY", DEV_KEYS[1])
        .env("AGORA_CONFIG", "/dev/null")
        .env("COLD_PW", common::COLD_PW)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(dir: &Path, chain: &Chain, mirror: &str, args: &[&str]) -> String {
    let out = agora(dir, chain, mirror, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "agora {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_ledger_on_anvil_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let anvil = Anvil::start(
        &default_binary().unwrap(),
        dir,
        Some(std::time::Duration::from_secs(1)),
    )
    .unwrap();

    // Deploy.
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["chain", "deploy", "--chain-rpc", &anvil.url()])
        .env("AGORA_CHAIN_KEY", DEV_KEYS[0])
        .env("AGORA_CONFIG", "/dev/null")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let chain = Chain {
        contract: field("contract "),
        start_block: field("start-block "),
        anvil,
    };

    // A genesis, then a subnet and a registration, each through the chain.
    let (alice, alice_hot) = common::new_wallet(&dir.join("wallets"), "alice");
    ok(
        dir,
        &chain,
        "a",
        &["ledger", "init", "--account", &format!("{alice}=1000")],
    );
    let signer = ["--wallet", "alice", "--password-env", "COLD_PW"];
    let created = ok(
        dir,
        &chain,
        "a",
        &[&["subnet", "create"][..], &signer].concat(),
    );
    assert!(created.contains("accepted in block"), "{created}");
    let registered = ok(
        dir,
        &chain,
        "a",
        &[&["register", "--subnet", "1"][..], &signer].concat(),
    );
    assert!(registered.contains("accepted in block"), "{registered}");
    let metagraph = ok(dir, &chain, "a", &["metagraph", "--subnet", "1", "--json"]);
    assert!(metagraph.contains(&alice_hot), "{metagraph}");

    // Past the end of epoch 1 (block 719 of the ledger), instantly.
    rt().block_on(chain.anvil.mine(730)).unwrap();

    // Receipts, an epoch settled and anchored on chain.
    let client = SecretKey::from_seed(&[1; 32]);
    let provider = SecretKey::from_seed(&[2; 32]);
    let receipts: Vec<_> = (0..4)
        .map(|n| {
            common::signed_half(&client, &provider, 1, n, 100 + n)
                .countersign(&client)
                .unwrap()
        })
        .collect();
    {
        let store = ReceiptStore::open(&dir.join("receipts.redb")).unwrap();
        for r in &receipts {
            store.put_receipt(r).unwrap();
        }
    }
    let store = dir.join("receipts.redb");
    let journal = dir.join("anchors.journal");
    let store = store.to_str().unwrap();
    let journal = journal.to_str().unwrap();
    let settled = ok(
        dir,
        &chain,
        "a",
        &[
            "anchor",
            "settle",
            "--subnet",
            "1",
            "--epoch",
            "1",
            "--wallet",
            "alice",
            "--receipts",
            store,
            "--journal",
            journal,
        ],
    );
    assert!(settled.contains("sent to the chain"), "{settled}");

    // Prove a receipt and verify it against the chain alone (no journal).
    let id = receipts[1].id().to_hex();
    let proof = ok(
        dir,
        &chain,
        "a",
        &[
            "receipts",
            "prove",
            &id,
            "--receipts",
            store,
            "--journal",
            journal,
        ],
    );
    let proof_file = dir.join("proof.json");
    std::fs::write(&proof_file, &proof).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = agora(
            dir,
            &chain,
            "a",
            &["anchor", "verify", proof_file.to_str().unwrap()],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            assert!(text.contains("on chain in block"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never valid on chain: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // A proof whose anchor is not on chain: invalid, exit 1.
    let text: Value = serde_json::from_str(proof.trim()).unwrap();
    let hex = text["proof"].as_str().unwrap();
    let at = hex.len() - 10;
    let flipped = if &hex[at..=at] == "0" { "1" } else { "0" };
    std::fs::write(
        &proof_file,
        format!(
            "{{\"format\":\"agora-inclusion-proof\",\"proof\":\"{}{flipped}{}\"}}",
            &hex[..at],
            &hex[at + 1..]
        ),
    )
    .unwrap();
    let out = agora(
        dir,
        &chain,
        "a",
        &["anchor", "verify", proof_file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));

    // Stop the chain's clock; then a second mirror, built from scratch, has the same state root.
    rt().block_on(
        chain
            .anvil
            .request("evm_setIntervalMining", serde_json::json!([0])),
    )
    .unwrap();
    let status = |mirror: &str| -> Value {
        serde_json::from_str(&ok(dir, &chain, mirror, &["ledger", "status", "--json"])).unwrap()
    };
    let a = status("a");
    let b = status("b");
    assert_eq!(a["height"], b["height"]);
    assert_eq!(a["state_root"], b["state_root"]);
    assert!(a["height"].as_u64().unwrap() > 720, "{a}");
}
