#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Churn: 200 embedding queries from a [`MarketClient`] (6 at a time) while miners are killed with
//! SIGKILL and restarted at random.
//!
//! The mesh: an `agora-bootstrap` and six `agora serve` miners on 127.0.0.1, each serving MiniLM
//! only, each with a wallet (plaintext hotkey: a restart keeps its peer id) and its own receipt
//! store, on a fixed port (a restart comes back on the same address). Two killer threads each pick
//! a random miner that is up, kill it, leave it down for a random moment and restart it on the same
//! wallet and store: up to a third of the miners (2 of 6) are down at any time, and any miner may be
//! hit.
//!
//! Promises checked:
//! - at least 99% of the queries are answered (through the client's failover);
//! - the client's store holds exactly one countersigned receipt per answered query, and none for
//!   the others (one receipt per query id);
//! - each answering provider's store holds the receipt of every query it answered: the
//!   countersigned receipt when the client's countersignature (sent in the background after the
//!   answer) reached it, and at least its own signed half when it was killed first. The count of
//!   half-only receipts is at most the client's count of unacknowledged countersignatures. Once all
//!   miners are back up, the client's outbox (which retries unacknowledged countersignatures with
//!   backoff) empties without the test sending anything, and afterwards every provider holds the
//!   countersigned receipt of every query it answered;
//! - over all providers, each answered query has exactly one countersigned receipt (no provider
//!   was paid twice, no two providers paid for one query), and every store audits clean.
//!
//! The counts are printed. No timing thresholds. `AGORA_TEST_SEED` repeats a run's random choices.

mod common;

use agora::market::client::{ClientConfig, MarketClient, MarketError, Settled};
use agora_ledger::store::{ListFilter, ReceiptStore, ReceiptWriter, StoredReceipt};
use agora_overlay::{Config, PeerId};
use agora_protocols::{EmbedInput, EmbedOutput, SecretKey, Task};
use common::{Rng, Served, free_port, new_wallet, start_bootstrap, start_serve};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL: &str = "all-minilm-l6-v2";
const MINERS: usize = 6;
/// Killer threads: each keeps at most one miner down, so at most a third are down at once.
const KILLERS: usize = 2;
const QUERIES: usize = 200;
const CONCURRENCY: usize = 6;

struct Miner {
    name: String,
    port: u16,
    receipts: PathBuf,
    peer: PeerId,
    /// `None` while it is down.
    served: Option<Served>,
}

fn serve_args(boot: &str) -> Vec<String> {
    [
        "--bootstrap",
        boot,
        "--model",
        MODEL,
        "--price",
        &format!("{MODEL}=1000"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start(miner_name: &str, wallets: &Path, receipts: &Path, port: u16, args: &[String]) -> Served {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_serve(miner_name, wallets, receipts, port, &args)
}

fn all_receipts(path: &Path) -> Vec<StoredReceipt> {
    receipts_of(&ReceiptStore::open(path).unwrap())
}

/// Every receipt in `store`, after checking that it audits clean.
fn receipts_of(store: &ReceiptStore) -> Vec<StoredReceipt> {
    let audit = store.audit().unwrap();
    assert!(
        audit.is_clean(),
        "{}: bad rows {:?}, unpaid mismatches {:?}",
        store.path().display(),
        audit.bad,
        audit.unpaid_mismatches
    );
    store
        .list(&ListFilter {
            limit: 10_000,
            ..ListFilter::default()
        })
        .unwrap()
}

#[test]
fn queries_are_answered_through_churn_with_one_receipt_on_each_side() {
    let rng = Arc::new(Mutex::new(Rng::from_env()));
    let tmp = tempfile::tempdir().unwrap();
    let wallets = tmp.path().join("wallets");
    let (_boot, boot_addr) = start_bootstrap(tmp.path());
    let args = serve_args(&boot_addr);

    // Six miners, started in parallel.
    let miners: Vec<Miner> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..MINERS)
            .map(|i| {
                let (wallets, args, dir) = (&wallets, &args, tmp.path());
                s.spawn(move || {
                    let name = format!("miner{i}");
                    new_wallet(wallets, &name);
                    let port = free_port();
                    let receipts = dir.join(format!("{name}.redb"));
                    let served = start(&name, wallets, &receipts, port, args);
                    Miner {
                        name,
                        port,
                        receipts,
                        peer: served.peer,
                        served: Some(served),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let names: HashMap<PeerId, String> = miners.iter().map(|m| (m.peer, m.name.clone())).collect();
    let miners: Arc<Vec<Mutex<Miner>>> = Arc::new(miners.into_iter().map(Mutex::new).collect());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = SecretKey::generate();
    let client_store_path = tmp.path().join("client.redb");
    let store = ReceiptStore::open(&client_store_path).unwrap();
    let writer = ReceiptWriter::spawn(store.clone(), 64);
    let client = rt.block_on(async {
        let (overlay, mut events) = agora_overlay::spawn(
            &key,
            Config {
                bootstrap: vec![boot_addr.parse().unwrap()],
                ..Config::loopback()
            },
            None,
        )
        .unwrap();
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        MarketClient::new(
            key.clone(),
            overlay,
            store,
            writer.clone(),
            ClientConfig {
                deadline: Duration::from_secs(60),
                max_attempts: MINERS,
                settle_timeout: Duration::from_secs(5),
                ..ClientConfig::default()
            },
        )
    });
    rt.block_on(async {
        let end = Instant::now() + common::DEADLINE;
        loop {
            if let Ok(ranked) = client.ranked_providers(Task::Embed, MODEL).await
                && ranked.len() >= MINERS
            {
                break;
            }
            assert!(Instant::now() < end, "never saw all {MINERS} miners");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // The killers: each picks a miner that is up, kills it, waits, restarts it on the same wallet,
    // store and port.
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killers: Vec<_> = (0..KILLERS)
        .map(|_| {
            let (miners, rng, done, kills) = (
                Arc::clone(&miners),
                Arc::clone(&rng),
                Arc::clone(&done),
                Arc::clone(&kills),
            );
            let (wallets, args) = (wallets.clone(), args.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let up_for = rng.lock().unwrap().millis(300, 2000);
                    std::thread::sleep(up_for);
                    let pick = rng.lock().unwrap().below(MINERS as u64) as usize;
                    // Taken out of its slot so the other killer cannot pick it while it is down.
                    let victim = {
                        let mut m = miners[pick].lock().unwrap();
                        m.served
                            .take()
                            .map(|s| (s, m.name.clone(), m.receipts.clone(), m.port))
                    };
                    let Some((mut served, name, receipts, port)) = victim else {
                        continue;
                    };
                    served.proc.signal("KILL");
                    let _ = served.proc.child.wait();
                    drop(served);
                    kills.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(rng.lock().unwrap().millis(0, 1000));
                    let back = start(&name, &wallets, &receipts, port, &args);
                    miners[pick].lock().unwrap().served = Some(back);
                }
            })
        })
        .collect();

    // The queries: CONCURRENCY tasks take the next query number until all are sent.
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    type Outcome = (usize, Result<Settled<EmbedOutput>, MarketError>);
    let outcomes: Vec<Outcome> = rt.block_on(async {
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (client, next, rng) = (client.clone(), Arc::clone(&next), Arc::clone(&rng));
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= QUERIES {
                            return out;
                        }
                        let input = EmbedInput {
                            texts: vec![format!("query {n}: miners come and go, receipts stay")],
                        };
                        out.push((n, client.embed(MODEL, &input).await));
                        // Spread the queries over the churn.
                        let pause = rng.lock().unwrap().millis(200, 1000);
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    for k in killers {
        k.join().unwrap();
    }
    let kills = kills.load(Ordering::Relaxed);

    let mut answered: Vec<&Settled<EmbedOutput>> = Vec::new();
    let mut failed = Vec::new();
    for (n, outcome) in &outcomes {
        match outcome {
            Ok(settled) => answered.push(settled),
            Err(e) => failed.push(format!("query {n}: {e}")),
        }
    }
    let failovers = answered
        .iter()
        .filter(|s| !s.failed_attempts.is_empty())
        .count();
    // Countersignatures travel in the background: wait for each to be acknowledged or time out.
    let unacknowledged = rt.block_on(client.flush_settlements(Duration::from_secs(60)));
    let names_of = |peer: &PeerId| names[peer].clone();

    // Every miner is up (the killers restart before they stop). Stop them all and look at what
    // each holds of the queries it answered.
    let stop_all = || {
        for m in miners.iter() {
            if let Some(mut s) = m.lock().unwrap().served.take() {
                s.proc.terminate();
            }
        }
    };
    let provider_view = || -> HashMap<PeerId, Vec<StoredReceipt>> {
        miners
            .iter()
            .map(|m| {
                let m = m.lock().unwrap();
                (m.peer, all_receipts(&m.receipts))
            })
            .collect()
    };
    stop_all();
    let before = provider_view();
    let mut only_half = 0;
    for s in &answered {
        let found = before[&s.provider]
            .iter()
            .find(|r| r.id() == s.receipt.id())
            .unwrap_or_else(|| {
                panic!(
                    "{} answered query {} but holds no receipt of it",
                    names_of(&s.provider),
                    s.receipt.body().query_id
                )
            });
        if !found.is_countersigned() {
            only_half += 1;
        }
    }
    assert!(
        only_half <= unacknowledged as usize,
        "{only_half} providers hold only a half, but only {unacknowledged} countersignatures \
         went unacknowledged"
    );

    // Back up.
    std::thread::scope(|s| {
        for m in miners.iter() {
            let (wallets, args) = (&wallets, &args);
            s.spawn(move || {
                let (name, receipts, port) = {
                    let m = m.lock().unwrap();
                    (m.name.clone(), m.receipts.clone(), m.port)
                };
                let served = start(&name, wallets, &receipts, port, args);
                m.lock().unwrap().served = Some(served);
            });
        }
    });
    // Nothing is sent again by the test: the client's outbox retries every countersignature its
    // provider has not acknowledged, and now every provider is back.
    let outbox_before = client.outbox_len();
    let left = rt.block_on(client.drain_outbox(common::DEADLINE));
    assert_eq!(
        left, 0,
        "countersignatures still unacknowledged after the providers came back"
    );
    rt.block_on(writer.close());
    stop_all();

    // The client's side: exactly one countersigned receipt per answered query, none otherwise.
    let client_receipts = receipts_of(client.store());
    assert!(client_receipts.iter().all(StoredReceipt::is_countersigned));
    assert_eq!(
        client_receipts.len(),
        answered.len(),
        "one client receipt per answered query"
    );
    let client_queries: HashSet<_> = client_receipts.iter().map(|r| r.body().query_id).collect();
    assert_eq!(client_queries.len(), client_receipts.len(), "one per query");
    for s in &answered {
        assert!(
            client_receipts.iter().any(|r| r.id() == s.receipt.id()),
            "the client's receipt of an answered query is missing"
        );
    }

    // The providers' side.
    let mut full_per_query: BTreeMap<_, usize> = BTreeMap::new();
    let mut orphan_halves = 0;
    let mut rows = 0;
    let by_peer = provider_view();
    for stored in by_peer.values() {
        rows += stored.len();
        for r in stored {
            if r.is_countersigned() {
                *full_per_query.entry(r.body().query_id).or_insert(0) += 1;
            } else if !client_queries.contains(&r.body().query_id) {
                // An answer the client never got (the provider answered after it moved on).
                orphan_halves += 1;
            }
        }
    }
    let mut per_provider: BTreeMap<String, usize> = BTreeMap::new();
    for s in &answered {
        let stored = &by_peer[&s.provider];
        let found = stored
            .iter()
            .find(|r| r.id() == s.receipt.id())
            .unwrap_or_else(|| {
                panic!(
                    "{} answered query {} but holds no receipt of it",
                    names_of(&s.provider),
                    s.receipt.body().query_id
                )
            });
        assert!(
            found.is_countersigned(),
            "{} holds only its half of a settled query",
            names_of(&s.provider)
        );
        assert_eq!(found.as_receipt(), Some(&s.receipt));
        *per_provider.entry(names_of(&s.provider)).or_insert(0) += 1;
    }
    for (query, n) in &full_per_query {
        assert!(
            client_queries.contains(query),
            "a paid receipt for a query the client never paid"
        );
        assert_eq!(
            *n, 1,
            "query {query} has {n} countersigned receipts at providers"
        );
    }
    assert_eq!(full_per_query.len(), answered.len());

    println!(
        "churn: {QUERIES} queries ({CONCURRENCY} at a time) in {:.1} s with {kills} SIGKILLs and \
         restarts among {MINERS} miners (at most {KILLERS} down at once): {} answered ({:.1}%), {} \
         after failover, {} failed; client store {} countersigned receipts; {unacknowledged} \
         countersignatures not acknowledged by their provider (killed before it got them); after \
         the run, {only_half} answering providers held only their signed half, the rest the \
         countersigned receipt; {outbox_before} waited in the client's outbox, which delivered \
         them once the providers were back; then provider \
         stores {rows} rows, exactly one countersigned receipt per answered query; \
         {orphan_halves} provider halves for answers the client never received; answers per \
         miner {per_provider:?}",
        elapsed.as_secs_f64(),
        answered.len(),
        100.0 * answered.len() as f64 / QUERIES as f64,
        failovers,
        failed.len(),
        client_receipts.len(),
    );
    for f in &failed {
        println!("  failed {f}");
    }
    assert!(
        answered.len() * 100 >= QUERIES * 99,
        "only {} of {QUERIES} answered: {failed:?}",
        answered.len()
    );
    assert!(kills > 0, "no miner was killed during the queries");
}
