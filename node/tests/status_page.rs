//! The web status page in a real browser: a local ledger with subnet 1 and two registered miners, a
//! bootstrap, the two miners (`agora serve --http`, given the ledger) and one paid query. Debian's
//! headless Chromium loads the first miner's page; once its script has filled the page from the
//! live node's JSON endpoints, the metagraph table has one row per miner with its uid and hotkey,
//! and the node section shows the miner's peer id. A screenshot is saved under the test's target
//! tmp dir (its path is printed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    DEADLINE, free_port, ledger_with_registered_subnet, new_wallet, outside_tool, run_bounded,
    start_bootstrap, start_serve,
};
use std::path::Path;
use std::time::Instant;

const MODEL: &str = "all-minilm-l6-v2";

/// Chromium's headless flags, with a fresh profile in `profile`.
fn chromium_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
        "--window-size=1280,1600",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The `<table id="metagraph">` element of a dumped DOM.
fn metagraph_table(dom: &str) -> &str {
    let start = dom.find("id=\"metagraph\"").unwrap_or(dom.len());
    let rest = &dom[start..];
    &rest[..rest.find("</table>").unwrap_or(rest.len())]
}

#[test]
fn the_status_page_shows_the_live_metagraph_in_chromium() {
    let chromium = outside_tool("chromium", "CHROMIUM");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wallets = dir.join("wallets");
    let names = ["miner0", "miner1", "client"];
    let keys: Vec<(String, String)> = names.iter().map(|n| new_wallet(&wallets, n)).collect();
    let ledger: Vec<(&str, &str)> = names[..2]
        .iter()
        .zip(&keys)
        .map(|(n, (cold, _))| (*n, cold.as_str()))
        .collect();
    ledger_with_registered_subnet(dir, &ledger);

    let (_boot, boot_addr) = start_bootstrap(dir);
    let log = dir.join("ledger.log");
    let genesis = dir.join("genesis.json");
    let miner_flags = [
        "--bootstrap",
        &boot_addr,
        "--model",
        MODEL,
        "--subnet",
        "1",
        "--http",
        "127.0.0.1:0",
        "--ledger-log",
        log.to_str().unwrap(),
        "--ledger-genesis",
        genesis.to_str().unwrap(),
    ];
    let miners: Vec<_> = names[..2]
        .iter()
        .map(|name| {
            let receipts = dir.join(format!("{name}.redb"));
            start_serve(name, &wallets, &receipts, free_port(), &miner_flags)
        })
        .collect();
    let page = format!(
        "http://{}/",
        miners[0].http.clone().expect("an http address")
    );

    // A paid query to both miners, so recent queries and receipts have something to show.
    let receipts = dir.join("client.redb");
    common::embed_query(
        dir,
        &boot_addr,
        &receipts,
        "status page",
        &["--redundancy", "2"],
    );

    // Load the page until its script has filled the metagraph (a loaded machine may need more
    // than one try: the budget is Chromium's virtual time, not a deadline of ours).
    let end = Instant::now() + DEADLINE;
    let dom = loop {
        let profile = tempfile::tempdir().unwrap();
        let mut args = chromium_args(profile.path());
        args.extend(["--dump-dom".to_string(), page.clone()]);
        let out = run_bounded(&chromium, &args);
        let dom = String::from_utf8_lossy(&out.stdout).to_string();
        if metagraph_table(&dom).contains("data-hotkey=") {
            break dom;
        }
        assert!(
            Instant::now() < end,
            "the page never showed the metagraph ({}):\n{dom}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let table = metagraph_table(&dom);
    for (uid, (_, hotkey)) in keys[..2].iter().enumerate() {
        assert!(
            table.contains(&format!("data-uid=\"{uid}\" data-hotkey=\"{hotkey}\"")),
            "uid {uid} with hotkey {hotkey} in the metagraph table:\n{table}"
        );
        assert!(
            table.contains(&format!(">{hotkey}</td>")),
            "the hotkey is shown"
        );
    }
    assert!(
        dom.contains(&miners[0].peer.to_string()),
        "the node section shows the peer id"
    );
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the script finished a refresh"
    );

    // The screenshot, for a person to look at.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status_page.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let mut args = chromium_args(profile.path());
    args.extend([format!("--screenshot={}", shot.display()), page]);
    let out = run_bounded(&chromium, &args);
    assert!(
        shot.exists(),
        "chromium saved no screenshot ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("status page screenshot: {}", shot.display());
    eprintln!("status page screenshot: {}", shot.display());
}
