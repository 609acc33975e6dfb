#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Flood: fifty peers (in-process overlay nodes on 127.0.0.1, each its own key and connection)
//! flood one `agora serve` (the real binary, MiniLM, a per-client rate limit of 5 queries per
//! second, burst 10; every other limit at its default) while an honest peer keeps asking one query
//! at a time. Besides the fifty, fifty threads open raw TCP connections and send 64 KiB of junk
//! that is not even a libp2p handshake, over and over.
//!
//! What each flooding peer sends, all at once and as fast as answers come back:
//! - eight streams of valid embedding queries;
//! - queries signed by a key other than the sending peer's (refused by the overlay);
//! - queries whose input is garbage (refused as bad input);
//! - settlements of receipts that name another provider (refused before the provider sees them);
//! - every tenth peer: queries with a 4 MiB garbage input, the largest frame the codec accepts;
//! - one greedy peer: 64 more streams of valid queries, far over its rate limit.
//!
//! Promises checked:
//! - every honest query is answered (it may retry on `Busy`, the promised answer to load; it is
//!   never left unanswered, rate limited or failed);
//! - the provider refuses rather than queues: the greedy peer is refused `RateLimited` (by the
//!   provider's admission, or by the overlay past 64 open requests from one peer), and the
//!   queries it runs at once never exceed its bound (`max_in_flight`, 256; beyond it: `Busy`);
//! - its resident memory (VmRSS of the process, sampled every 100 ms) stays within 300 MiB of what
//!   it was before the flood (see RELIABILITY.md for why that bound);
//! - it still answers after the flood, and exits cleanly on SIGTERM.
//!
//! No timing thresholds. `AGORA_FLOOD_SECS` changes the length of the flood (default 15 s);
//! `AGORA_FLOOD_KINDS` (comma-separated kinds) and `AGORA_FLOOD_JUNK` (junk connections) change
//! its mix.

mod common;

use agora_overlay::{Client, Config, Multiaddr, OverlayError, PeerId, now_ms};
use agora_protocols::{
    ContentId, EmbedInput, Payload, ProviderReceipt, QueryErrorKind, QueryRequest,
    QueryWireResponse, SecretKey, Signed, Task,
};
use common::{Proc, Rng, rss_kib};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL: &str = "all-minilm-l6-v2";
const FLOODERS: usize = 50;
const JUNK_CONNECTIONS: usize = 50;
/// Largest input a query may carry (`agora_protocols::query::MAX_INPUT_LEN`).
const HUGE: usize = agora_protocols::query::MAX_INPUT_LEN;
/// The streams of one flooding peer, by kind of traffic.
const DEFAULT_KINDS: &str = "valid,valid,valid,valid,valid,valid,valid,valid,forged,garbage,settle";
/// Every `HUGE_EVERY`th peer also sends 4 MiB frames, one at a time. (Building one costs the
/// flooder far more than refusing it costs the provider in this debug build: with all fifty
/// sending them, the flooders, not the provider, are what saturates two cores.)
const HUGE_EVERY: usize = 10;
/// Streams of valid queries the one greedy peer sends at once, to run into its rate limit.
const GREEDY_STREAMS: usize = 64;
/// Queries per second one client may sustain at the provider (burst: twice that).
const RATE_LIMIT: &str = "5";
/// Growth of the provider's resident memory allowed over the flood.
const RSS_BOUND_MIB: u64 = 300;

/// Outcomes by (kind of traffic, result).
type Tally = Arc<Mutex<BTreeMap<(&'static str, String), u64>>>;

fn note(tally: &Tally, kind: &'static str, result: &Result<impl Sized, OverlayError>) {
    let result = match result {
        Ok(_) => "answered".to_string(),
        Err(OverlayError::Refused(e)) => format!("{:?}", e.kind),
        Err(OverlayError::Request { .. }) => "request failed".to_string(),
        Err(other) => format!("{other}").chars().take(40).collect(),
    };
    *tally.lock().unwrap().entry((kind, result)).or_insert(0) += 1;
}

fn request(
    signer: &SecretKey,
    client: &SecretKey,
    nonce: u64,
    input: Vec<u8>,
) -> Signed<QueryRequest> {
    let mut id = client.public().to_bytes().to_vec();
    id.extend_from_slice(&nonce.to_le_bytes());
    Signed::sign(
        QueryRequest {
            query_id: ContentId::of_payload(&id),
            subnet: 1,
            task: Task::Embed,
            model: MODEL.to_string(),
            input,
            max_price: 1_000_000,
            nonce,
            sent_at_ms: now_ms(),
            deadline_ms: now_ms() + 30_000,
        },
        signer,
    )
    .unwrap()
}

fn embed(text: &str) -> Vec<u8> {
    EmbedInput {
        texts: vec![text.to_string()],
    }
    .to_bytes()
    .unwrap()
}

fn node(key: &SecretKey) -> Client {
    let (client, mut events) = agora_overlay::spawn(key, Config::loopback(), None).unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    client
}

/// The result of `call`, or `Err` after 30 s.
async fn within<T>(
    call: impl std::future::Future<Output = Result<T, OverlayError>>,
) -> Result<Result<(), OverlayError>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .map(|r| r.map(drop))
}

/// One flooding peer: one task per kind of traffic, until `stop`.
async fn flood(
    client: Client,
    key: SecretKey,
    peer: PeerId,
    tally: Tally,
    stop: Arc<AtomicBool>,
    index: usize,
) {
    let other = SecretKey::generate();
    // Each peer counts its own nonces, as a real client does (the provider's anti-replay window is
    // per client).
    let nonces = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();
    let mut kinds =
        std::env::var("AGORA_FLOOD_KINDS").unwrap_or_else(|_| DEFAULT_KINDS.to_string());
    if index.is_multiple_of(HUGE_EVERY) {
        kinds.push_str(",huge");
    }
    if index == 1 {
        kinds.push_str(&",valid".repeat(GREEDY_STREAMS));
    }
    let kinds: Vec<&'static str> = kinds
        .split(',')
        .map(|k| match k {
            "valid" => "valid",
            "forged" => "forged",
            "garbage" => "garbage",
            "huge" => "huge",
            "settle" => "settle",
            other => panic!("unknown flood kind {other}"),
        })
        .collect();
    for kind in kinds {
        let (client, key, other, tally, stop, nonces) = (
            client.clone(),
            key.clone(),
            other.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
            Arc::clone(&nonces),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = nonces.fetch_add(1, Ordering::Relaxed);
                let result = match kind {
                    "valid" => {
                        let q = request(&key, &key, n, embed(&format!("flood {n}")));
                        within(client.query(peer, q)).await
                    }
                    "forged" => {
                        let q = request(&other, &key, n, embed("forged"));
                        within(client.query(peer, q)).await
                    }
                    "garbage" => {
                        let q = request(&key, &key, n, vec![0xA5; 512]);
                        within(client.query(peer, q)).await
                    }
                    "huge" => {
                        let mut junk = vec![0u8; HUGE];
                        junk[..8].copy_from_slice(&n.to_le_bytes());
                        let q = request(&key, &key, n, junk);
                        within(client.query(peer, q)).await
                    }
                    _ => {
                        // A receipt that names another provider, countersigned by us.
                        let q = request(&key, &key, n, embed("settle"));
                        let QueryWireResponse::Answer { receipt, .. } =
                            agora_overlay::answer(&other, &q, vec![1, 2, 3], 1)
                        else {
                            panic!("answer builds an answer")
                        };
                        let receipt = ProviderReceipt::from_bytes(&receipt)
                            .unwrap()
                            .countersign(&key)
                            .unwrap();
                        within(client.settle(peer, receipt)).await
                    }
                };
                let result = result.unwrap_or_else(|_| {
                    Err(OverlayError::Request {
                        peer: peer.to_string(),
                        reason: "no answer within 30 s".to_string(),
                    })
                });
                note(&tally, kind, &result);
                if matches!(
                    result,
                    Err(OverlayError::Request { .. }) | Err(OverlayError::Stopped)
                ) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Raw TCP connections that write junk instead of a handshake, over and over.
fn junk(addr: std::net::SocketAddr, stop: Arc<AtomicBool>, count: Arc<AtomicU64>, seed: u64) {
    let mut rng = Rng(seed.max(1));
    let bytes: Vec<u8> = (0..64 * 1024).map(|_| rng.next() as u8).collect();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let Ok(mut s) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        count.fetch_add(1, Ordering::Relaxed);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(&bytes);
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    }
}

/// User plus system CPU time of process `pid`, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// GET on the miner's local API.
fn get_json(http: &str, path: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

#[test]
fn a_flood_from_fifty_peers_is_refused_while_an_honest_peer_is_answered() {
    let flood_secs: u64 = std::env::var("AGORA_FLOOD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut rng = Rng::from_env();
    let mut serve = Proc::start(
        "serve",
        Path::new(env!("CARGO_BIN_EXE_agora")),
        &[
            "serve",
            "--ephemeral-key",
            "--loopback",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--http",
            "127.0.0.1:0",
            "--model",
            MODEL,
            "--rate-limit",
            RATE_LIMIT,
        ],
    );
    let (mut peer, mut listen, mut http) = (None::<PeerId>, None::<Multiaddr>, None::<String>);
    serve.wait_for("ready", |l| {
        let l = l.trim();
        if let Some(p) = l.strip_prefix("peer ") {
            peer = Some(p.parse().unwrap());
        } else if let Some(a) = l.strip_prefix("listen ") {
            listen.get_or_insert_with(|| a.parse().unwrap());
        } else if let Some(h) = l.strip_prefix("http ") {
            http = Some(h.to_string());
        }
        (l == "ready").then_some(())
    });
    let (peer, listen, http) = (peer.unwrap(), listen.unwrap(), http.unwrap());
    let socket: std::net::SocketAddr = {
        let text = listen.to_string();
        let parts: Vec<&str> = text.split('/').collect();
        format!("{}:{}", parts[2], parts[4]).parse().unwrap()
    };
    let pid = serve.child.id();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let honest_key = SecretKey::generate();
    let honest = rt.block_on(async {
        let c = node(&honest_key);
        common::connect_to(&c, peer, &listen).await;
        c
    });
    // Warm up: the honest peer's first queries, so the baseline includes a model that has run.
    let nonces = Arc::new(AtomicU64::new(1));
    for _ in 0..8 {
        let n = nonces.fetch_add(1, Ordering::Relaxed);
        let q = request(&honest_key, &honest_key, n, embed("warm up"));
        rt.block_on(honest.query(peer, q)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let baseline = rss_kib(pid).unwrap();
    let cpu_before = cpu_ticks(pid);

    // The fifty, each connected before the flood starts.
    let tally: Tally = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // The flooders run on a runtime of their own, so the honest peer's node is not starved of
    // threads inside this test process: what it sees is the provider's doing.
    let flood_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let flooders: Vec<(Client, SecretKey)> = flood_rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..FLOODERS {
            let key = SecretKey::generate();
            let c = node(&key);
            all.push((c, key));
        }
        for (c, _) in &all {
            common::connect_to(c, peer, &listen).await;
        }
        all
    });
    let flood_tasks: Vec<_> = flooders
        .iter()
        .enumerate()
        .map(|(i, (c, k))| {
            flood_rt.spawn(flood(
                c.clone(),
                k.clone(),
                peer,
                Arc::clone(&tally),
                Arc::clone(&stop),
                i,
            ))
        })
        .collect();
    let junk_count = Arc::new(AtomicU64::new(0));
    let junk_connections = std::env::var("AGORA_FLOOD_JUNK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(JUNK_CONNECTIONS);
    let junkers: Vec<_> = (0..junk_connections)
        .map(|_| {
            let (stop, count, seed) = (Arc::clone(&stop), Arc::clone(&junk_count), rng.next());
            std::thread::spawn(move || junk(socket, stop, count, seed))
        })
        .collect();

    // Meanwhile: the honest peer, one query at a time, retrying on Busy; the provider's memory and
    // in-flight count sampled.
    let started = Instant::now();
    let sampler = {
        let (stop, http) = (Arc::clone(&stop), http.clone());
        std::thread::spawn(move || {
            let (mut peak, mut max_in_flight) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    peak = peak.max(rss);
                }
                let stats = get_json(&http, "/api/serve");
                max_in_flight = max_in_flight.max(stats["in_flight"].as_u64().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            (peak, max_in_flight)
        })
    };
    let mut honest_answered = 0u64;
    let mut honest_busy = 0u64;
    let mut honest_other = Vec::new();
    while started.elapsed() < Duration::from_secs(flood_secs) {
        let n = nonces.fetch_add(1, Ordering::Relaxed);
        let q = request(&honest_key, &honest_key, n, embed(&format!("honest {n}")));
        let result = rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let sampled =
                    tokio::time::timeout(Duration::from_secs(30), honest.query(peer, q.clone()));
                match sampled.await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(OverlayError::Refused(e)))
                        if e.kind == QueryErrorKind::Busy && Instant::now() < deadline =>
                    {
                        honest_busy += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("no answer within 30 s".to_string()),
                }
            }
        });
        match result {
            Ok(()) => honest_answered += 1,
            Err(e) => honest_other.push(e),
        }
        // Well inside the per-client rate limit (5 per second).
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let (peak, max_in_flight) = sampler.join().unwrap();
    let mut peak = peak.max(baseline);
    flood_rt.block_on(async {
        for t in flood_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(40), t).await;
        }
    });
    for j in junkers {
        j.join().unwrap();
    }
    let at_end = rss_kib(pid).unwrap();
    peak = peak.max(at_end);

    // After the flood: the honest peer is still answered at once.
    let n = nonces.fetch_add(1, Ordering::Relaxed);
    let q = request(&honest_key, &honest_key, n, embed("after the flood"));
    rt.block_on(honest.query(peer, q)).unwrap();
    let stats = get_json(&http, "/api/serve");
    let tally = tally.lock().unwrap().clone();
    let total: u64 = tally.values().sum();
    println!(
        "flood: {FLOODERS} peers (each 8 streams of valid queries and one each of forged, garbage and \
         false settlements; every {HUGE_EVERY}th also 4 MiB frames; one greedy with \
         {GREEDY_STREAMS} more valid streams) for {flood_secs} s, plus {} junk TCP connections; \
         {total} flood requests; provider CPU {:.1} s over the flood; provider VmRSS {} MiB before, peak {} MiB (+{} MiB), {} MiB at the end; \
         most queries in flight {max_in_flight}; honest peer: {honest_answered} answered, \
         {honest_busy} Busy retries, {} failed; provider counters {stats}",
        junk_count.load(Ordering::Relaxed),
        (cpu_ticks(pid) - cpu_before) as f64 / 100.0,
        baseline / 1024,
        peak / 1024,
        peak.saturating_sub(baseline) / 1024,
        at_end / 1024,
        honest_other.len(),
    );
    for ((kind, result), n) in &tally {
        println!("  {kind:<8} {result:<16} {n}");
    }
    drop(flooders);
    flood_rt.shutdown_background();

    assert!(
        honest_other.is_empty(),
        "honest queries failed: {honest_other:?}"
    );
    assert!(honest_answered > 0);
    let refused = |kind: &str| stats["refused"][kind].as_u64().unwrap_or(0);
    // Refused by the provider's admission or, past 64 open requests, by the overlay.
    let rate_limited = refused("RateLimited")
        + tally
            .iter()
            .filter(|((_, result), _)| result == "RateLimited")
            .map(|(_, n)| n)
            .sum::<u64>();
    // With another mix (AGORA_FLOOD_KINDS) the greedy peer's queries may never be built in time
    // to run into anything.
    if std::env::var("AGORA_FLOOD_KINDS").is_err() {
        assert!(
            rate_limited > 0,
            "the greedy peer was never rate limited: {stats}"
        );
    }
    assert!(max_in_flight <= 256, "{max_in_flight} queries in flight");
    assert!(
        peak.saturating_sub(baseline) <= RSS_BOUND_MIB * 1024,
        "the provider grew from {} MiB to {} MiB under the flood",
        baseline / 1024,
        peak / 1024
    );
    serve.terminate();
    assert!(
        serve.child.wait().unwrap().success(),
        "a clean exit after the flood"
    );
}
