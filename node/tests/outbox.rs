#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The client's countersignature outbox: a provider that is down when the client countersigns its
//! answer receives the countersignature after it comes back, both when the client keeps running
//! (periodic retries with backoff) and when the client itself was stopped in between (the next
//! client on the same receipt store sends it at start).
//!
//! The provider is a real `agora serve` (MiniLM, a wallet whose hotkey is stored in plaintext so a
//! restart keeps its peer id, a fixed port). The client (a [`MarketClient`] in this process)
//! reaches it through a TCP relay in the test, which stops the provider with SIGSTOP the moment
//! the answer's bytes pass through it: the answer is already written, so the client gets it,
//! countersigns it and sends the countersignature to a provider that cannot take it. Then the
//! provider is killed (SIGKILL) and started again on the same store and port.
//!
//! Promises checked, for each of the two ways:
//! - while the provider is down, its store holds only its signed half of the answer, and the
//!   client's outbox holds the countersignature (for a stopped client: its outbox journal names
//!   it);
//! - after it is back, the client's outbox empties without the test sending anything, and the
//!   provider's store holds the countersigned receipt, exactly the client's.
//!
//! No timing thresholds.

mod common;

use agora::market::client::{ClientConfig, MarketClient};
use agora_ledger::store::{ReceiptStore, ReceiptWriter, StoredReceipt};
use agora_overlay::{Config, Multiaddr, PeerId};
use agora_protocols::{EmbedInput, Receipt, SecretKey};
use common::{Served, free_port, new_wallet, start_serve};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MODEL: &str = "all-minilm-l6-v2";
/// Texts in the query that is answered while the provider goes down: enough that its answer
/// (384 floats each) is larger than anything else the provider sends on the connection.
const TEXTS: usize = 32;
/// Bytes from the provider, once armed, after which the relay stops it (the answer is
/// 32 × 384 × 4 = 48 KiB; gossip, identify and pings are far smaller).
const ANSWER_BYTES: u64 = 32 * 1024;

/// A TCP relay to the provider's port that can stop the provider just after an answer.
struct Relay {
    port: u16,
    /// Stop the provider once this many bytes came from it after arming.
    armed: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
    /// The provider's pid.
    pid: Arc<AtomicU32>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Relay {
            port: listener.local_addr().unwrap().port(),
            armed: Arc::default(),
            seen: Arc::default(),
            pid: Arc::default(),
        };
        let (armed, seen, pid) = (
            Arc::clone(&relay.armed),
            Arc::clone(&relay.seen),
            Arc::clone(&relay.pid),
        );
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (a, b) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                std::thread::spawn(move || pipe(inbound, outbound, None));
                let tap = (Arc::clone(&armed), Arc::clone(&seen), Arc::clone(&pid));
                std::thread::spawn(move || pipe(b, a, Some(tap)));
            }
        });
        relay
    }

    fn addr(&self, peer: PeerId) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", self.port)
            .parse()
            .unwrap()
    }

    fn arm(&self, pid: u32) {
        self.pid.store(pid, Ordering::SeqCst);
        self.seen.store(0, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }
}

type Tap = (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU32>);

/// Copies `from` to `to`; with a tap, counts the bytes while armed and stops the provider when
/// they reach [`ANSWER_BYTES`] (before passing them on: they are written already).
fn pipe(mut from: TcpStream, mut to: TcpStream, tap: Option<Tap>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((armed, seen, pid)) = &tap
            && armed.load(Ordering::SeqCst)
            && seen.fetch_add(n as u64, Ordering::SeqCst) + n as u64 >= ANSWER_BYTES
        {
            armed.store(false, Ordering::SeqCst);
            // The client cannot countersign before it has the rest of the answer, which waits
            // here: let the provider finish writing it, then stop the provider.
            std::thread::sleep(Duration::from_millis(100));
            let status = std::process::Command::new("kill")
                .args(["-STOP", &pid.load(Ordering::SeqCst).to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

fn texts(tag: &str) -> EmbedInput {
    EmbedInput {
        texts: (0..TEXTS).map(|i| format!("{tag} text {i}")).collect(),
    }
}

/// A client on its own runtime (so that stopping it stops everything it runs).
struct Client {
    rt: tokio::runtime::Runtime,
    market: MarketClient,
}

fn client(key: &SecretKey, store: &ReceiptStore, provider: PeerId, relay: &Relay) -> Client {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let market = rt.block_on(async {
        // One connection per peer: once the one through the relay is up, no direct one can open
        // beside it (request-response spreads requests over every connection to a peer).
        let config = Config {
            max_established_per_peer: 1,
            ..Config::loopback()
        };
        let (overlay, mut events) = agora_overlay::spawn(key, config, None).unwrap();
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        // Through the relay. (Later redials use what the connection taught Kademlia: the
        // provider's own listen address.)
        overlay.dial(relay.addr(provider)).await.unwrap();
        MarketClient::new(
            key.clone(),
            overlay,
            store.clone(),
            ReceiptWriter::spawn(store.clone(), 16),
            ClientConfig {
                settle_timeout: Duration::from_secs(2),
                ..ClientConfig::default()
            },
        )
    });
    Client { rt, market }
}

/// Dials `peer` through the relay unless a connection to it is open, and waits until one is.
fn wait_connected_through(c: &Client, relay: &Relay, peer: PeerId) {
    let end = Instant::now() + common::DEADLINE;
    let connected = || {
        c.rt.block_on(c.market.overlay().peers())
            .unwrap()
            .iter()
            .any(|p| p.peer == peer.to_string() && p.connected)
    };
    if !connected() {
        c.rt.block_on(c.market.overlay().dial(relay.addr(peer)))
            .unwrap();
    }
    while !connected() {
        assert!(Instant::now() < end, "no connection to the provider");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the provider's store holds of `receipt`, read while it is down.
fn provider_holds(receipts: &Path, receipt: &Receipt) -> Option<StoredReceipt> {
    let store = ReceiptStore::open(receipts).unwrap();
    assert!(store.audit().unwrap().is_clean());
    store.get(&receipt.id()).unwrap()
}

/// Asks `provider` through the relay and stops the provider as the answer passes; returns the
/// countersigned receipt, whose delivery has failed by then.
fn answered_as_the_provider_stops(
    c: &Client,
    relay: &Relay,
    served: &Served,
    tag: &str,
) -> Receipt {
    // A provider started again is reached through the relay too: dial it there first and wait
    // for that connection, or a redial could pick the provider's own listen address.
    wait_connected_through(c, relay, served.peer);
    relay.arm(served.proc.child.id());
    eprintln!("outbox test: asking {tag}");
    let settled =
        c.rt.block_on(c.market.embed_at(served.peer, MODEL, &texts(tag)))
            .unwrap();
    assert!(
        !relay.armed.load(Ordering::SeqCst),
        "the relay saw no answer"
    );
    // The countersignature's first delivery times out against the stopped provider.
    let unacknowledged =
        c.rt.block_on(c.market.flush_settlements(Duration::from_secs(60)));
    eprintln!("outbox test: {tag} answered; {unacknowledged} unacknowledged");
    assert!(unacknowledged >= 1);
    assert_eq!(
        c.market.outbox_len(),
        1,
        "the countersignature waits in the outbox"
    );
    settled.receipt
}

/// Waits (at most the common deadline) until the client's outbox is empty.
fn outbox_empties(c: &Client) -> Duration {
    let started = Instant::now();
    while c.market.outbox_len() > 0 {
        assert!(
            started.elapsed() < common::DEADLINE,
            "the outbox never emptied"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

#[test]
fn a_countersignature_reaches_a_provider_that_was_down_when_it_was_made() {
    let tmp = tempfile::tempdir().unwrap();
    let wallets = tmp.path().join("wallets");
    new_wallet(&wallets, "miner");
    let port = free_port();
    let receipts = tmp.path().join("miner.redb");
    let serve = || start_serve("miner", &wallets, &receipts, port, &["--model", MODEL]);
    let mut served = serve();
    let provider = served.peer;
    let relay = Relay::start(port);
    let key = SecretKey::generate();
    let client_store = ReceiptStore::open(&tmp.path().join("client.redb")).unwrap();

    // First: the client is stopped while the countersignature is undelivered; the next client on
    // the same store finds it in the outbox journal when it starts, and sends it once the
    // provider is back.
    let first = client(&key, &client_store, provider, &relay);
    let a = answered_as_the_provider_stops(&first, &relay, &served, "first");
    let Client { rt, market } = first;
    rt.shutdown_background();
    drop(market);
    served.proc.signal("KILL");
    let _ = served.proc.child.wait();
    let half = provider_holds(&receipts, &a).expect("the provider stored its half");
    assert!(!half.is_countersigned());
    served = serve();
    let mut journal = client_store.path().as_os_str().to_owned();
    journal.push(".outbox");
    let journal = std::fs::read_to_string(&journal).unwrap();
    assert!(
        journal
            .lines()
            .any(|l| l == format!("+{}", a.id().to_hex())),
        "the stopped client's outbox journal names the undelivered countersignature: {journal}"
    );
    let second = client(&key, &client_store, provider, &relay);
    let at_start = outbox_empties(&second);
    served.proc.terminate();
    let full = provider_holds(&receipts, &a).expect("the provider still holds it");
    assert_eq!(
        full.as_receipt(),
        Some(&a),
        "delivered at the client's start"
    );

    // Second: the client keeps running; its retries deliver once the provider is back.
    served = serve();
    let b = answered_as_the_provider_stops(&second, &relay, &served, "second");
    served.proc.signal("KILL");
    let _ = served.proc.child.wait();
    assert!(
        !provider_holds(&receipts, &b)
            .expect("the provider stored its half")
            .is_countersigned()
    );
    served = serve();
    let retried = outbox_empties(&second);
    served.proc.terminate();
    let full = provider_holds(&receipts, &b).expect("the provider still holds it");
    assert_eq!(full.as_receipt(), Some(&b), "delivered by a retry");

    println!(
        "outbox: two countersignatures made while their provider was stopped (SIGSTOP as the \
         answer passed, then SIGKILL and a restart); one sent by the next client, which found it in \
         the outbox journal at its start ({:.1} s after it started), one by the running client's \
         retries ({:.1} s after the provider was back); the provider holds both countersigned",
        at_start.as_secs_f64(),
        retried.as_secs_f64()
    );
    let Client { rt, market } = second;
    rt.shutdown_background();
    drop(market);
}
