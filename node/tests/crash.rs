#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Crash safety: a provider process (`agora serve`, the real MiniLM model, a wallet whose hotkey is
//! stored in plaintext so every restart has the same peer id) is killed with SIGKILL at random
//! moments, 50 times, while a client in this test keeps sending embedding queries from several
//! tasks and settling every answer it gets.
//!
//! Promises checked after every kill, on the store file the dead process left:
//! - it opens (`ReceiptStore::open`, which checks every page) and `audit()` is clean (every row
//!   decodes and verifies, the unpaid totals match the rows);
//! - every receipt the provider acknowledged is in it: for each answer the client received, the
//!   provider's signed half (or the full receipt that replaced it); for each settlement the provider
//!   acknowledged, the countersigned receipt itself;
//! - no row is ever lost: the row count never goes down from one kill to the next.
//!
//! Settlements the provider never acknowledged (it died first) are sent again after the restart, as
//! a client should, and must then be acknowledged and stored.
//!
//! `AGORA_CRASH_KILLS` changes the number of kills; `AGORA_TEST_SEED` repeats a run's random delays.

mod common;

use agora_ledger::store::{ReceiptStore, StoredReceipt};
use agora_overlay::{Client, Config, PeerId, now_ms};
use agora_protocols::{
    ContentId, EmbedInput, Payload, ProviderReceipt, QueryRequest, Receipt, SecretKey, Signed, Task,
};
use common::{Rng, free_port, new_wallet, start_serve};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL: &str = "all-minilm-l6-v2";
/// Tasks sending queries at once.
const WORKERS: usize = 4;

/// What the provider acknowledged, as the client saw it.
#[derive(Default)]
struct Acked {
    /// Answers received: the provider's signed half of each.
    halves: Vec<ProviderReceipt>,
    /// Settlements the provider acknowledged.
    settled: Vec<Receipt>,
    /// Countersigned receipts whose settlement was not acknowledged (sent again after a restart).
    unsettled: Vec<Receipt>,
    /// Queries that got no answer (the provider died or was down): not charged, nothing to find.
    failed: u64,
}

fn request(key: &SecretKey, nonce: u64, text: &str) -> Signed<QueryRequest> {
    let mut id = key.public().to_bytes().to_vec();
    id.extend_from_slice(&nonce.to_le_bytes());
    Signed::sign(
        QueryRequest {
            query_id: ContentId::of_payload(&id),
            subnet: 1,
            task: Task::Embed,
            model: MODEL.to_string(),
            input: EmbedInput {
                texts: vec![text.to_string()],
            }
            .to_bytes()
            .unwrap(),
            max_price: 1_000_000,
            nonce,
            sent_at_ms: now_ms(),
            deadline_ms: now_ms() + 30_000,
        },
        key,
    )
    .unwrap()
}

/// One client task: query, record the answer, countersign, settle, record the acknowledgement.
async fn worker(
    client: Client,
    key: SecretKey,
    peer: PeerId,
    nonces: Arc<AtomicU64>,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let nonce = nonces.fetch_add(1, Ordering::Relaxed);
        let q = request(&key, nonce, &format!("sentence {nonce} about receipts"));
        let answer =
            match tokio::time::timeout(Duration::from_secs(20), client.query(peer, q)).await {
                Ok(Ok(answer)) => answer,
                _ => {
                    acked.lock().unwrap().failed += 1;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    continue;
                }
            };
        acked.lock().unwrap().halves.push(answer.receipt.clone());
        let receipt = answer.receipt.countersign(&key).unwrap();
        match tokio::time::timeout(
            Duration::from_secs(10),
            client.settle(peer, receipt.clone()),
        )
        .await
        {
            Ok(Ok(_)) => acked.lock().unwrap().settled.push(receipt),
            _ => acked.lock().unwrap().unsettled.push(receipt),
        }
    }
}

/// Opens the dead provider's store and checks it against everything acknowledged so far.
fn check_store(path: &std::path::Path, acked: &Acked, round: usize) -> u64 {
    let store = ReceiptStore::open(path)
        .unwrap_or_else(|e| panic!("kill {round}: the store does not open: {e}"));
    let audit = store.audit().unwrap();
    assert!(
        audit.is_clean(),
        "kill {round}: audit found bad rows {:?} and unpaid mismatches {:?}",
        audit.bad,
        audit.unpaid_mismatches
    );
    for half in &acked.halves {
        let found = store.get(&half.id()).unwrap();
        assert!(
            found.is_some(),
            "kill {round}: an answered query's receipt {} is not in the store",
            half.id()
        );
        assert_eq!(found.unwrap().body(), half.body());
    }
    for receipt in &acked.settled {
        match store.get(&receipt.id()).unwrap() {
            Some(StoredReceipt::Full(stored)) => assert_eq!(&stored, receipt),
            other => panic!(
                "kill {round}: acknowledged settlement {} stored as {other:?}",
                receipt.id()
            ),
        }
    }
    store.count().unwrap()
}

#[test]
fn a_provider_killed_at_random_moments_loses_no_acknowledged_receipt() {
    let kills: usize = std::env::var("AGORA_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut rng = Rng::from_env();
    let tmp = tempfile::tempdir().unwrap();
    let wallets = tmp.path().join("wallets");
    new_wallet(&wallets, "miner");
    let store_path = tmp.path().join("miner.redb");
    let port = free_port();
    let price = format!("{MODEL}=1000");
    let serve_args = [
        "--model",
        MODEL,
        "--price",
        &price,
        // One client sends as fast as it can: the rate limit is not what is tested here.
        "--rate-limit",
        "100000",
    ];

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = SecretKey::generate();
    let client = rt.block_on(async {
        let (client, mut events) = agora_overlay::spawn(&key, Config::loopback(), None).unwrap();
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        client
    });
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let nonces = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let mut peer: Option<PeerId> = None;
    let mut workers = Vec::new();
    let mut last_count = 0;
    let mut resettled = 0;
    let mut alive_ms = Vec::new();

    for round in 1..=kills {
        let mut served = start_serve("miner", &wallets, &store_path, port, &serve_args);
        if let Some(p) = peer {
            assert_eq!(p, served.peer, "the same wallet gives the same peer id");
        }
        peer = Some(served.peer);
        let up = Instant::now();
        rt.block_on(common::connect_to(&client, served.peer, &served.listen));
        if workers.is_empty() {
            for _ in 0..WORKERS {
                workers.push(rt.spawn(worker(
                    client.clone(),
                    key.clone(),
                    served.peer,
                    Arc::clone(&nonces),
                    Arc::clone(&acked),
                    Arc::clone(&stop),
                )));
            }
        }
        // Settlements the last incarnation never acknowledged: send them again now.
        let pending = std::mem::take(&mut acked.lock().unwrap().unsettled);
        let p = served.peer;
        let retry = rt.block_on(async {
            let mut still = Vec::new();
            for receipt in pending {
                match client.settle(p, receipt.clone()).await {
                    Ok(_) => {
                        resettled += 1;
                        acked.lock().unwrap().settled.push(receipt);
                    }
                    Err(_) => still.push(receipt),
                }
            }
            still
        });
        acked.lock().unwrap().unsettled.extend(retry);
        // A random moment: often early (mid-startup of the traffic), sometimes after a while.
        let delay = if rng.below(4) == 0 {
            rng.millis(0, 100)
        } else {
            rng.millis(100, 1200)
        };
        std::thread::sleep(delay);
        served.proc.signal("KILL");
        let _ = served.proc.child.wait();
        alive_ms.push(up.elapsed().as_millis());
        drop(served);
        let snapshot = {
            let a = acked.lock().unwrap();
            Acked {
                halves: a.halves.clone(),
                settled: a.settled.clone(),
                unsettled: Vec::new(),
                failed: a.failed,
            }
        };
        let count = check_store(&store_path, &snapshot, round);
        assert!(
            count >= last_count,
            "kill {round}: the store went from {last_count} rows to {count}"
        );
        last_count = count;
        eprintln!(
            "kill {round:>2} after {:>4} ms: {count} rows; answers {} settled {} unsettled {}",
            delay.as_millis(),
            snapshot.halves.len(),
            snapshot.settled.len(),
            acked.lock().unwrap().unsettled.len()
        );
    }
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in workers {
            let _ = w.await;
        }
    });
    // Answers still in flight at the last kill may have arrived since: check once more, last.
    let a = acked.lock().unwrap();
    let count = check_store(&store_path, &a, kills + 1);
    println!(
        "crash: {kills} SIGKILLs in {:.0} s (provider up {} to {} ms per run); {} answers and {} \
         settlements acknowledged ({resettled} of them sent again after a restart), {} \
         settlements never acknowledged (provider died first; its half is stored), {} query \
         attempts failed while it was dying or down (nothing to find); {count} rows in the store \
         ({} halves of answers it stored but never delivered); 0 acknowledged receipts lost",
        started.elapsed().as_secs_f64(),
        alive_ms.iter().min().unwrap(),
        alive_ms.iter().max().unwrap(),
        a.halves.len(),
        a.settled.len(),
        a.unsettled.len(),
        a.failed,
        count.saturating_sub(a.halves.len() as u64),
    );
    assert!(!a.halves.is_empty(), "no query was ever answered");
    assert!(!a.settled.is_empty(), "no settlement was ever acknowledged");
}
