//! `agora serve --settle` on a local ledger, as processes: the miner settles each end of its
//! subnet's epoch into its anchor journal, and the receipts it settles stop counting against the
//! client's credit there, so a client at its credit limit is served again after the next epoch.
//! (The same settlement on a chain, anchors sent to the contract and proven there, runs in the
//! demo test.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    Proc, agora_in, embed_query, free_port, ledger_with_registered_subnet, new_wallet,
    start_bootstrap, start_serve, try_embed_query,
};
use std::path::Path;

/// `settled epoch E of subnet 1: N receipts, P units paid, ...` as (E, N, P).
fn settled(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.strip_prefix("settled epoch ")?;
    let epoch = rest.split(' ').next()?.parse().ok()?;
    let counts = rest.split(": ").nth(1)?;
    let mut words = counts.split(' ');
    let receipts = words.next()?.parse().ok()?;
    let paid = words.nth(1)?.parse().ok()?;
    Some((epoch, receipts, paid))
}

#[test]
fn a_miner_settles_each_epoch_and_its_clients_credit_renews() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let wallets = dir.join("wallets");
    let (miner_cold, _) = new_wallet(&wallets, "miner");
    new_wallet(&wallets, "client");
    ledger_with_registered_subnet(dir, &[("miner", &miner_cold)]);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (log, genesis, journal) = (
        path(&dir.join("ledger.log")),
        path(&dir.join("genesis.json")),
        path(&dir.join("anchors.journal")),
    );
    let clock = Proc::start(
        "clock",
        Path::new(env!("CARGO_BIN_EXE_agora")),
        &[
            "ledger",
            "run",
            "--block-time",
            "100",
            "--ledger-log",
            &log,
            "--ledger-genesis",
            &genesis,
        ],
    );
    let (_boot, bootstrap) = start_bootstrap(dir);
    let miner = start_serve(
        "miner",
        &wallets,
        &dir.join("miner.redb"),
        free_port(),
        &[
            "--bootstrap",
            &bootstrap,
            "--model",
            "all-minilm-l6-v2",
            "--price",
            "600",
            "--credit-limit",
            "1000",
            "--settle",
            "--journal",
            &journal,
            "--ledger-log",
            &log,
            "--ledger-genesis",
            &genesis,
            "--http",
            "127.0.0.1:0",
        ],
    );
    // Settling runs from the start: the first epochs hold no receipts.
    let (first, receipts, _) = miner.proc.wait_for("a first settlement", settled);
    assert_eq!(receipts, 0);

    // With the block clock paused, no epoch ends: one query of 600 fits the 1000 of credit, a
    // second does not.
    clock.signal("STOP");
    let receipts = dir.join("client.redb");
    embed_query(dir, &bootstrap, &receipts, "paid once", &[]);
    let refused = try_embed_query(dir, &bootstrap, &receipts, "over the limit", &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a second query was served");
    assert!(stderr.contains("credit limit"), "{stderr}");

    // The clock runs again: the next epoch's end settles the receipt, and the client is served.
    clock.signal("CONT");
    let (epoch, receipts_settled, paid) = miner.proc.wait_for("the receipt settled", |l| {
        settled(l).filter(|(_, n, _)| *n > 0)
    });
    assert!(epoch > first);
    assert_eq!((receipts_settled, paid), (1, 600));
    embed_query(dir, &bootstrap, &receipts, "served again", &[]);

    // The journal holds the record, readable while the miner keeps appending.
    let listed = agora_in(dir, &["anchor", "list", "--journal", &journal, "--json"]);
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let record = records
        .iter()
        .find(|r| r["epoch"] == epoch)
        .unwrap_or_else(|| panic!("no record of epoch {epoch}: {records:?}"));
    assert_eq!(record["receipt_count"], 1);
    assert_eq!(record["total_paid"], 600);
    assert_eq!(record["subnet"], 1);

    // The miner's /metrics says how far it has settled.
    let (_, _, metrics) = common::http_get(
        miner.http.as_deref().unwrap(),
        "/metrics",
        "text/plain; version=0.0.4",
    );
    let last: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("agora_anchor_last_epoch "))
        .unwrap_or_else(|| panic!("no anchor gauge:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(last >= epoch as f64, "anchor_last_epoch {last} < {epoch}");
}
