//! One query round trip with a 1 KiB payload over loopback: latency (p50, p99) and queries per
//! second, for Agora's overlay, a plain TCP echo (the floor) and, when asked, Bittensor's own
//! axon/dendrite.
//!
//! ```text
//! cargo bench -p agora-overlay --bench query_roundtrip
//! AGORA_BENCH_BITTENSOR_PYTHON=$HOME/.cache/agora/bench-venv/bin/python \
//!     cargo bench -p agora-overlay --bench query_roundtrip
//! ```
//!
//! - **TCP echo** (floor): a tokio client writes 1024 bytes on a `TCP_NODELAY` connection and reads
//!   the 1024 bytes the server echoes back. No framing, no encryption, no signatures.
//! - **Agora**: two overlay nodes in this process on 127.0.0.1 (TCP + Noise + Yamux, the `loopback`
//!   preset), already connected. The client signs a `QueryRequest` (ed25519) carrying 1024 bytes and
//!   sends it with `Client::query` over `/agora/query/1`; the provider's event loop checks the
//!   signature, the application answers with blake3(input) in a provider-signed receipt, and the
//!   client's event loop checks that receipt before `query` returns. Timed from building the request
//!   to the checked answer.
//! - **Bittensor** (`AGORA_BENCH_BITTENSOR_PYTHON` set to a python with `bittensor` 10.x):
//!   `overlay/benches/python/bittensor_roundtrip.py`, driven over a pipe. A local `bt.Axon` in its own
//!   process serves a synapse carrying the same 1024 bytes (base64) and answers blake3(input); a
//!   `bt.Dendrite` queries it (it signs every request with sr25519; the axon verifies signature and
//!   nonce). No chain is involved.
//!
//! Each round measures every system in turn (echo, Agora, Bittensor), so all see the same machine
//! load: `AGORA_BENCH_LATENCY_SAMPLES` (default 1000) sequential round trips for p50/p99, then
//! `AGORA_BENCH_QPS_QUERIES` (default 4000; Bittensor gets a quarter of it) with
//! `AGORA_BENCH_CONCURRENCY` (default 16) in flight for queries per second. Cells are medians over
//! `AGORA_BENCH_ROUNDS` rounds (default 5); ratios are medians of the per-round ratios.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benches fail loudly

use agora_overlay::{Client, Config, Event, SubnetOffer};
use agora_protocols::{ContentId, ModelOffer, QueryRequest, SecretKey, Signed, Task};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAYLOAD: usize = 1024;
const MODEL: &str = "blake3-bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs[i.min(xs.len() - 1)]
}

fn median(xs: &[f64]) -> f64 {
    percentile(xs, 0.5)
}

/// One system's figures for one round.
#[derive(Debug, Clone, Copy)]
struct RoundResult {
    p50_us: f64,
    p99_us: f64,
    qps: f64,
}

fn payload(i: u64) -> Vec<u8> {
    let mut input = vec![0u8; PAYLOAD];
    for (j, b) in input.iter_mut().enumerate() {
        *b = (j as u64).wrapping_mul(31).wrapping_add(i) as u8;
    }
    input[..8].copy_from_slice(&i.to_le_bytes());
    input
}

// ---------------------------------------------------------------------------------------------
// TCP echo: the floor.

struct Echo {
    addr: std::net::SocketAddr,
}

impl Echo {
    async fn start() -> Echo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                stream.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; PAYLOAD];
                    while stream.read_exact(&mut buf).await.is_ok() {
                        if stream.write_all(&buf).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Echo { addr }
    }

    async fn connect(&self) -> tokio::net::TcpStream {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    async fn round(&self, samples: usize, queries: usize, concurrency: usize) -> RoundResult {
        let mut stream = self.connect().await;
        let mut buf = vec![0u8; PAYLOAD];
        let mut lat = Vec::with_capacity(samples);
        for i in 0..samples {
            let input = payload(i as u64);
            let t = Instant::now();
            stream.write_all(&input).await.unwrap();
            stream.read_exact(&mut buf).await.unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(buf, input);
        }
        let next = Arc::new(AtomicUsize::new(0));
        let mut streams = Vec::new();
        for _ in 0..concurrency {
            streams.push(self.connect().await);
        }
        let started = Instant::now();
        let mut workers = Vec::new();
        for mut stream in streams {
            let next = Arc::clone(&next);
            workers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; PAYLOAD];
                while next.fetch_add(1, Ordering::Relaxed) < queries {
                    let input = payload(7);
                    stream.write_all(&input).await.unwrap();
                    stream.read_exact(&mut buf).await.unwrap();
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        let qps = queries as f64 / started.elapsed().as_secs_f64();
        RoundResult {
            p50_us: median(&lat),
            p99_us: percentile(&lat, 0.99),
            qps,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Agora: two overlay nodes on 127.0.0.1.

struct Agora {
    client: Client,
    client_key: SecretKey,
    provider: libp2p::PeerId,
    counter: Arc<AtomicU64>,
    // Keeps the provider's event loop alive (it stops when every Client handle is dropped).
    _provider: Client,
}

fn request(key: &SecretKey, counter: &AtomicU64) -> (Signed<QueryRequest>, [u8; 32]) {
    let i = counter.fetch_add(1, Ordering::Relaxed);
    let input = payload(i);
    let expected = *blake3::hash(&input).as_bytes();
    let now = agora_overlay::now_ms();
    let mut id_bytes = key.public().to_bytes().to_vec();
    id_bytes.extend_from_slice(&i.to_le_bytes());
    let request = Signed::sign(
        QueryRequest {
            query_id: ContentId::of_payload(&id_bytes),
            subnet: 1,
            task: Task::Embed,
            model: MODEL.to_string(),
            input,
            max_price: 10,
            nonce: i,
            sent_at_ms: now,
            deadline_ms: now + 60_000,
        },
        key,
    )
    .unwrap();
    (request, expected)
}

impl Agora {
    async fn start() -> Agora {
        let provider_key = SecretKey::generate();
        let config = Config {
            offers: vec![SubnetOffer {
                subnet: 1,
                offer: ModelOffer {
                    task: Task::Embed,
                    model: MODEL.to_string(),
                    price: 1,
                    queue_depth: 0,
                    throughput_milli: 1000,
                },
            }],
            ..Config::loopback()
        };
        let (provider, mut events) = agora_overlay::spawn(&provider_key, config, None).unwrap();
        let answer_client = provider.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::InboundQuery { request, reply, .. } => {
                        let output = blake3::hash(&request.value().input).as_bytes().to_vec();
                        let response = agora_overlay::answer(&provider_key, &request, output, 1);
                        let _ = answer_client.respond(reply, response).await;
                    }
                    Event::InboundSettle { reply, .. } => {
                        let response = agora_protocols::QueryWireResponse::Settled { new: true };
                        let _ = answer_client.respond(reply, response).await;
                    }
                }
            }
        });
        let addr = loop {
            let status = provider.status().await.unwrap();
            if let Some(addr) = status.listen_addrs.first() {
                break format!("{addr}/p2p/{}", status.peer_id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };

        let client_key = SecretKey::generate();
        let (client, _events) =
            agora_overlay::spawn(&client_key, Config::loopback(), None).unwrap();
        client.dial(addr.parse().unwrap()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.status().await.unwrap().connected_peers == 0 {
            assert!(Instant::now() < deadline, "the client never connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let agora = Agora {
            client,
            client_key,
            provider: provider.peer_id(),
            counter: Arc::new(AtomicU64::new(0)),
            _provider: provider,
        };
        for _ in 0..50 {
            agora.one().await;
        }
        agora
    }

    async fn one(&self) {
        let (req, expected) = request(&self.client_key, &self.counter);
        let answer = self.client.query(self.provider, req).await.unwrap();
        assert_eq!(answer.output, expected);
    }

    async fn round(&self, samples: usize, queries: usize, concurrency: usize) -> RoundResult {
        let mut lat = Vec::with_capacity(samples);
        for _ in 0..samples {
            let t = Instant::now();
            self.one().await;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let next = Arc::clone(&next);
            let client = self.client.clone();
            let key = self.client_key.clone();
            let counter = Arc::clone(&self.counter);
            let provider = self.provider;
            workers.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < queries {
                    let (req, expected) = request(&key, &counter);
                    let answer = client.query(provider, req).await.unwrap();
                    assert_eq!(answer.output, expected);
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        let qps = queries as f64 / started.elapsed().as_secs_f64();
        RoundResult {
            p50_us: median(&lat),
            p99_us: percentile(&lat, 0.99),
            qps,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bittensor: the Python script, driven over a pipe.

struct Bittensor {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    version: String,
}

impl Bittensor {
    fn start(python: &str) -> Bittensor {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/python/bittensor_roundtrip.py"
        );
        let mut child = Command::new(python)
            .args([script, "--stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{python} {script}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let hello: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the bittensor script said {line:?}: {e}"));
        let version = hello["bittensor"].as_str().unwrap_or("?").to_string();
        Bittensor {
            child,
            stdin,
            stdout,
            version,
        }
    }

    fn round(&mut self, samples: usize, queries: usize, concurrency: usize) -> RoundResult {
        writeln!(self.stdin, "round {samples} {queries} {concurrency}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the bittensor script said {line:?}: {e}"));
        let errors = v["errors"].as_u64().unwrap_or(0);
        assert_eq!(errors, 0, "bittensor round had errors: {line}");
        RoundResult {
            p50_us: v["p50_us"].as_f64().unwrap(),
            p99_us: v["p99_us"].as_f64().unwrap(),
            qps: v["qps"].as_f64().unwrap(),
        }
    }
}

impl Drop for Bittensor {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------

fn row(name: &str, rounds: &[RoundResult]) -> String {
    let p50: Vec<f64> = rounds.iter().map(|r| r.p50_us).collect();
    let p99: Vec<f64> = rounds.iter().map(|r| r.p99_us).collect();
    let qps: Vec<f64> = rounds.iter().map(|r| r.qps).collect();
    format!(
        "| {name} | {:.1} | {:.1} | {:.0} |",
        median(&p50),
        median(&p99),
        median(&qps)
    )
}

/// Median over rounds of `f(a_round, b_round)`.
fn ratio(
    a: &[RoundResult],
    b: &[RoundResult],
    f: impl Fn(&RoundResult, &RoundResult) -> f64,
) -> f64 {
    let rs: Vec<f64> = a.iter().zip(b).map(|(a, b)| f(a, b)).collect();
    median(&rs)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rounds = env_usize("AGORA_BENCH_ROUNDS", 5);
    let samples = env_usize("AGORA_BENCH_LATENCY_SAMPLES", 1000);
    let queries = env_usize("AGORA_BENCH_QPS_QUERIES", 4000);
    let concurrency = env_usize("AGORA_BENCH_CONCURRENCY", 16);
    let python = std::env::var("AGORA_BENCH_BITTENSOR_PYTHON").ok();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = runtime.metrics().num_workers();
    let (echo, agora) = runtime.block_on(async { (Echo::start().await, Agora::start().await) });
    let mut bittensor = python.as_deref().map(Bittensor::start);
    if let Some(bt) = &mut bittensor {
        // Warm up the axon and dendrite (first requests set up the HTTP session).
        bt.round(50, 50, 1);
    }

    let (mut e, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let er = runtime.block_on(echo.round(samples, queries, concurrency));
        let ar = runtime.block_on(agora.round(samples, queries, concurrency));
        eprintln!("round {round}: echo {er:?}");
        eprintln!("round {round}: agora {ar:?}");
        e.push(er);
        a.push(ar);
        if let Some(bt) = &mut bittensor {
            let br = bt.round(samples / 2, queries / 4, concurrency);
            eprintln!("round {round}: bittensor {br:?}");
            b.push(br);
        }
    }

    println!();
    println!(
        "query round trip, 1 KiB payload over 127.0.0.1: {rounds} rounds, {samples} sequential round \
         trips for latency, {queries} with {concurrency} in flight for throughput; tokio workers {workers}"
    );
    println!();
    println!("| system | p50 (µs) | p99 (µs) | queries/s |");
    println!("|---|---|---|---|");
    println!("{}", row("TCP echo (floor)", &e));
    println!("{}", row("Agora overlay", &a));
    if let Some(bt) = &bittensor {
        println!(
            "{}",
            row(&format!("Bittensor {} axon/dendrite", bt.version), &b)
        );
    }
    println!();
    println!("| comparison | p50 latency | p99 latency | queries/s |");
    println!("|---|---|---|---|");
    println!(
        "| Agora / TCP echo (the floor) | {:.1}x | {:.1}x | {:.4}x |",
        ratio(&a, &e, |a, e| a.p50_us / e.p50_us),
        ratio(&a, &e, |a, e| a.p99_us / e.p99_us),
        ratio(&a, &e, |a, e| a.qps / e.qps),
    );
    if b.is_empty() {
        println!();
        println!(
            "(set AGORA_BENCH_BITTENSOR_PYTHON to a python with bittensor 10.x for the Bittensor rows)"
        );
    } else {
        println!(
            "| Bittensor / Agora | {:.1}x | {:.1}x | {:.4}x |",
            ratio(&b, &a, |b, a| b.p50_us / a.p50_us),
            ratio(&b, &a, |b, a| b.p99_us / a.p99_us),
            ratio(&b, &a, |b, a| b.qps / a.qps),
        );
        println!();
        println!(
            "Agora against Bittensor (target: at least 10x each): {:.1}x lower p50, {:.1}x lower p99, \
             {:.1}x the queries per second",
            ratio(&b, &a, |b, a| b.p50_us / a.p50_us),
            ratio(&b, &a, |b, a| b.p99_us / a.p99_us),
            ratio(&a, &b, |a, b| a.qps / b.qps),
        );
    }
    drop(bittensor);
}
