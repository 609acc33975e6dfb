#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `agora receipts` end to end: the real binary on a store this test fills.

use agora_ledger::balances::{Genesis, UNITS_PER_TOKEN};
use agora_ledger::store::ReceiptStore;
use agora_protocols::{ContentId, ProviderReceipt, Receipt, ReceiptBody, SecretKey, Task};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn half(client: &SecretKey, provider: &SecretKey, n: u64, price: u64) -> ProviderReceipt {
    let body = ReceiptBody {
        version: agora_protocols::receipt::RECEIPT_VERSION,
        query_id: ContentId::of_payload(&n.to_le_bytes()),
        subnet: 3,
        task: if n.is_multiple_of(2) {
            Task::Embed
        } else {
            Task::Generate
        },
        model: "all-minilm-l6-v2".to_string(),
        input_hash: ContentId::of_payload(b"input"),
        output_hash: ContentId::of_payload(b"output"),
        price,
        client: client.public(),
        provider: provider.public(),
        nonce: n,
        requested_at_ms: 1_700_000_000_000,
        answered_at_ms: 1_700_000_000_040,
    };
    ProviderReceipt::sign(body, provider).unwrap()
}

fn full(client: &SecretKey, provider: &SecretKey, n: u64, price: u64) -> Receipt {
    half(client, provider, n, price)
        .countersign(client)
        .unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: PathBuf,
    genesis: PathBuf,
    alice: SecretKey,
    bob: SecretKey,
    carol: SecretKey,
    settled: Receipt,
    pending_half: ProviderReceipt,
    paid: Vec<Receipt>,
}

/// alice and bob buy from carol: three countersigned receipts (one settled) and one half.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("receipts.redb");
    let genesis_path = dir.path().join("genesis.json");
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let settled = full(&alice, &carol, 1, UNITS_PER_TOKEN / 4);
    let r2 = full(&alice, &carol, 2, UNITS_PER_TOKEN);
    let r3 = full(&bob, &carol, 3, 500);
    let pending_half = half(&bob, &carol, 4, 700);
    {
        let store = ReceiptStore::open(&store_path).unwrap();
        for r in [&settled, &r2, &r3] {
            store.put_receipt(r).unwrap();
        }
        store.put_provider_half(&pending_half).unwrap();
        store.mark_settled(&[settled.id()]).unwrap();
    }
    let genesis = Genesis::new(
        [(alice.public(), 2 * UNITS_PER_TOKEN), (bob.public(), 1_000)]
            .into_iter()
            .collect(),
    )
    .unwrap();
    genesis.save(&genesis_path).unwrap();
    Fixture {
        _dir: dir,
        store: store_path,
        genesis: genesis_path,
        alice,
        bob,
        carol,
        paid: vec![settled.clone(), r2, r3],
        settled,
        pending_half,
    }
}

fn agora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(args)
        .env_remove("AGORA_RECEIPTS")
        .output()
        .unwrap()
}

fn with_store<'a>(store: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(["--store", store.to_str().unwrap()]);
    all
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn list_shows_a_table_newest_first() {
    let f = fixture();
    let text = stdout(&agora(&with_store(&f.store, &["receipts", "list"])));
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("id"), "{text}");
    assert!(lines[0].contains("countersigned") && lines[0].contains("settled"));
    // Newest first: the half was stored last.
    assert!(lines[1].starts_with(&f.pending_half.id().short()), "{text}");
    assert!(lines[1].contains(" no "), "{}", lines[1]);
    assert!(lines[1].contains("0.000000700"));
    let settled_line = lines[4];
    assert!(settled_line.starts_with(&f.settled.id().short()));
    assert!(settled_line.contains("0.250000000"));
    assert!(settled_line.trim_end().ends_with("yes"), "{settled_line}");
    assert!(settled_line.contains(&f.alice.public().to_hex()[..8]));
    assert!(settled_line.contains(&f.carol.public().to_hex()[..8]));
}

#[test]
fn list_filters_and_writes_json_lines() {
    let f = fixture();
    let all = json_lines(&stdout(&agora(&with_store(
        &f.store,
        &["receipts", "list", "--json"],
    ))));
    assert_eq!(all.len(), 4);
    assert_eq!(all[0]["id"], f.pending_half.id().to_hex());
    assert_eq!(all[0]["countersigned"], false);
    assert_eq!(all[3]["settled"], true);
    assert_eq!(all[3]["price"], UNITS_PER_TOKEN / 4);
    assert_eq!(all[3]["client"], f.alice.public().to_hex());

    let bob = f.bob.public().to_hex();
    let of_bob = json_lines(&stdout(&agora(&with_store(
        &f.store,
        &["receipts", "list", "--json", "--party", &bob],
    ))));
    assert_eq!(of_bob.len(), 2);
    assert!(of_bob.iter().all(|r| r["client"] == bob.as_str()));

    let unsettled = json_lines(&stdout(&agora(&with_store(
        &f.store,
        &["receipts", "list", "--json", "--unsettled", "--limit", "2"],
    ))));
    assert_eq!(unsettled.len(), 2);
    assert!(unsettled.iter().all(|r| r["settled"] == false));

    // The store path from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["receipts", "list", "--json"])
        .env("AGORA_RECEIPTS", &f.store)
        .output()
        .unwrap();
    assert_eq!(json_lines(&stdout(&out)).len(), 4);

    let bad = agora(&with_store(
        &f.store,
        &["receipts", "list", "--party", "nothex"],
    ));
    assert!(!bad.status.success());
}

#[test]
fn show_prints_one_receipt_by_id_or_prefix() {
    let f = fixture();
    let r = &f.paid[1];
    let id = r.id().to_hex();
    let one: Value = serde_json::from_str(&stdout(&agora(&with_store(
        &f.store,
        &["receipts", "show", &id, "--json"],
    ))))
    .unwrap();
    assert_eq!(one["id"], id.as_str());
    assert_eq!(one["countersigned"], true);
    assert_eq!(one["model"], "all-minilm-l6-v2");
    assert_eq!(one["query_id"], r.body().query_id.to_hex());
    assert_eq!(one["client_signature"], r.client_signature().to_hex());
    let bytes = hex::decode(one["receipt_hex"].as_str().unwrap()).unwrap();
    assert_eq!(Receipt::from_bytes(&bytes).unwrap(), *r);

    let text = stdout(&agora(&with_store(
        &f.store,
        &["receipts", "show", &r.id().short()],
    )));
    assert!(text.contains(&id), "{text}");
    assert!(text.contains("provider_signature"), "{text}");

    let missing = agora(&with_store(
        &f.store,
        &["receipts", "show", &"ab".repeat(32)],
    ));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no receipt"));
}

#[test]
fn verify_checks_everything_and_prints_balances() {
    let f = fixture();
    let text = stdout(&agora(&with_store(&f.store, &["receipts", "verify"])));
    assert!(
        text.contains("4 receipts: 4 verified (3 countersigned, 1 provider halves), 0 failed"),
        "{text}"
    );

    let genesis = f.genesis.to_str().unwrap();
    let report: Value = serde_json::from_str(&stdout(&agora(&with_store(
        &f.store,
        &["receipts", "verify", "--genesis", genesis, "--json"],
    ))))
    .unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["countersigned"], 3);
    let balances = report["balances"].as_array().unwrap();
    let of = |k: &SecretKey| {
        balances
            .iter()
            .find(|b| b["key"] == k.public().to_hex().as_str())
            .unwrap()
            .clone()
    };
    // Only countersigned receipts move money; settled or not does not matter here.
    let alice_paid = UNITS_PER_TOKEN / 4 + UNITS_PER_TOKEN;
    assert_eq!(of(&f.alice)["paid"], alice_paid);
    assert_eq!(of(&f.alice)["balance"], 2 * UNITS_PER_TOKEN - alice_paid);
    assert_eq!(of(&f.bob)["balance"], 500);
    assert_eq!(of(&f.carol)["received"], alice_paid + 500);

    let table = stdout(&agora(&with_store(
        &f.store,
        &["receipts", "verify", "--genesis", genesis],
    )));
    eprintln!("{table}");
    assert!(table.contains(&f.carol.public().to_hex()), "{table}");
    assert!(table.contains("1.250000000"), "{table}");
}

#[test]
fn verify_fails_when_genesis_cannot_pay_for_the_receipts() {
    let f = fixture();
    let poor = f.genesis.with_file_name("poor.json");
    Genesis::default().save(&poor).unwrap();
    let out = agora(&with_store(
        &f.store,
        &["receipts", "verify", "--genesis", poor.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("overdraws"));
}

#[test]
fn a_damaged_or_missing_store_exits_1_with_a_message() {
    let f = fixture();
    // Flip a byte inside a stored receipt, in every copy of it in the file (copy-on-write leaves
    // old pages behind): the integrity check on open refuses the file.
    let mut bytes = std::fs::read(&f.store).unwrap();
    let needle = f.paid[2].to_bytes().unwrap();
    let copies: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_slice())
        .map(|(at, _)| at)
        .collect();
    assert!(!copies.is_empty());
    for at in copies {
        bytes[at + 20] ^= 0x01;
    }
    std::fs::write(&f.store, &bytes).unwrap();
    let out = agora(&with_store(&f.store, &["receipts", "verify"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stderr.is_empty());

    let missing = f.store.with_file_name("nope.redb");
    let out = agora(&with_store(&missing, &["receipts", "list"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no receipt store"));
    assert!(!missing.exists(), "listing must not create a store");
}
