#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `agora anchor` and `agora receipts prove` end to end: the real binary, a real local ledger with a
//! subnet and a registered hotkey, real signed receipts in a receipt store; settle an epoch into the
//! journal, prove a receipt, verify the proof, and see tampered or unknown proofs refused.

mod common;

use agora_ledger::store::ReceiptStore;
use agora_protocols::{ProviderReceipt, Receipt, SecretKey};
use common::{agora_in as agora, agora_ok as ok};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn half(n: u64, price: u64) -> ProviderReceipt {
    common::signed_half(
        &SecretKey::from_seed(&[1; 32]),
        &SecretKey::from_seed(&[2; 32]),
        1,
        n,
        price,
    )
}

fn full(n: u64, price: u64) -> Receipt {
    half(n, price)
        .countersign(&SecretKey::from_seed(&[1; 32]))
        .unwrap()
}

fn paths<'a>(dir: &'a Path, args: &[&'a str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.push("--journal".into());
    all.push(dir.join("anchors.journal").to_str().unwrap().into());
    // Only the commands that read receipts take the store.
    if args.first() == Some(&"receipts") || args.get(1) == Some(&"settle") {
        all.push("--receipts".into());
        all.push(dir.join("receipts.redb").to_str().unwrap().into());
    }
    all
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let all = paths(dir, args);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    agora(dir, &refs)
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "agora {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn settle_prove_and_verify_on_a_real_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (alice, alice_hot) = common::new_wallet(&dir.join("wallets"), "alice");
    ok(
        dir,
        &["ledger", "init", "--account", &format!("{alice}=1000")],
    );
    let signer = ["--wallet", "alice", "--password-env", "COLD_PW"];
    ok(dir, &[&["subnet", "create"][..], &signer].concat());
    ok(dir, &[&["register", "--subnet", "1"][..], &signer].concat());
    // Subnet 1 at tempo 360: epoch 1 runs at block 719.
    ok(dir, &["ledger", "seal", "--blocks", "720"]);

    let paid: Vec<Receipt> = (0..5).map(|n| full(n, 1000 + n)).collect();
    let waiting = half(99, 5);
    {
        let store = ReceiptStore::open(&dir.join("receipts.redb")).unwrap();
        for r in &paid {
            store.put_receipt(r).unwrap();
        }
        store.put_provider_half(&waiting).unwrap();
    }

    // An epoch that has not ended is refused with the block it ends at.
    let out = run(
        dir,
        &[
            "anchor", "settle", "--subnet", "1", "--epoch", "9", "--wallet", "alice",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ends at block"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let settle = [
        "anchor", "settle", "--subnet", "1", "--epoch", "1", "--wallet", "alice", "--json",
    ];
    let record: Value = serde_json::from_str(&run_ok(dir, &settle)).unwrap();
    assert_eq!(record["receipt_count"], 5, "{record}");
    assert_eq!(record["total_paid"], (0..5).map(|n| 1000 + n).sum::<u64>());
    assert_eq!(record["anchorer"], alice_hot);
    assert_eq!(record["appended"], true);
    assert_eq!(record["prev_hash"], "0".repeat(64));
    // Again: the same record, not appended twice.
    let again: Value = serde_json::from_str(&run_ok(dir, &settle)).unwrap();
    assert_eq!(again["hash"], record["hash"]);
    assert_eq!(again["appended"], false);

    let listed = run_ok(dir, &["anchor", "list", "--json"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let shown: Value =
        serde_json::from_str(&run_ok(dir, &["anchor", "show", "1/1", "--json"])).unwrap();
    assert_eq!(shown["hash"], record["hash"]);
    let by_hash: Value = serde_json::from_str(&run_ok(
        dir,
        &["anchor", "show", record["hash"].as_str().unwrap(), "--json"],
    ))
    .unwrap();
    assert_eq!(by_hash["envelope"], record["envelope"]);

    // Prove a receipt (by a short prefix) and verify the proof from a file and from stdin.
    let id = paid[2].id().to_hex();
    let proof = run_ok(dir, &["receipts", "prove", &id[..12]]);
    let text: Value = serde_json::from_str(proof.trim()).unwrap();
    assert_eq!(text["receipt_id"], id);
    assert_eq!(text["anchor_hash"], record["hash"]);
    let proof_file = dir.join("proof.json");
    std::fs::write(&proof_file, &proof).unwrap();
    let valid = run_ok(dir, &["anchor", "verify", proof_file.to_str().unwrap()]);
    assert!(valid.starts_with("valid"), "{valid}");

    let all = paths(dir, &["anchor", "verify", "-"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(&all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(proof.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());

    // A tampered proof: exit 1 with the reason.
    let hex = text["proof"].as_str().unwrap();
    let mid = hex.len() / 3;
    let flipped = if &hex[mid..=mid] == "0" { "1" } else { "0" };
    let tampered = format!(
        "{{\"format\":\"agora-inclusion-proof\",\"proof\":\"{}{flipped}{}\"}}",
        &hex[..mid],
        &hex[mid + 1..]
    );
    std::fs::write(&proof_file, tampered).unwrap();
    let out = run(dir, &["anchor", "verify", proof_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("invalid"));

    // A valid proof against a journal that does not hold its anchor: invalid.
    std::fs::write(&proof_file, &proof).unwrap();
    let other = dir.join("other.journal");
    agora_ledger::anchor::Journal::open(&other).unwrap();
    let out = agora(
        dir,
        &[
            "anchor",
            "verify",
            proof_file.to_str().unwrap(),
            "--journal",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not in the journal"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The provider-only half waits: no proof yet, with a clear error.
    let out = run(dir, &["receipts", "prove", &waiting.id().to_hex()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not anchored yet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
