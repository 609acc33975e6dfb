//! Kademlia provider lookups in a 200-node mesh in one process: hops and time.
//!
//! ```text
//! cargo bench -p agora-overlay --bench kad_mesh
//! ```
//!
//! Every node is the overlay's own swarm (`agora_overlay::behaviour::build_swarm`: TCP + Noise +
//! Yamux on 127.0.0.1, Kademlia on `/agora/kad/1.0.0` in server mode, the `loopback` preset, so the
//! same Kademlia configuration as a real node but with 5 s periodic walks), driven by a small loop here that does what
//! the overlay's event loop does for Kademlia (listen addresses are external, identify feeds
//! Kademlia) and records what the lookup needs. Node 0 is the bootstrap; every other node knows only
//! it and walks the DHT from there.
//!
//! Then `AGORA_BENCH_KEYS` (default 20) provider keys (`provider_key(1, embed, model-j)`) are each
//! published by one node, and `AGORA_BENCH_LOOKUPS` (default 100) lookups run one at a time from
//! nodes spread over the mesh. For each lookup:
//! - **time**: from `get_providers` to the first non-empty `FoundProviders` (what a client waits
//!   for), and to the end of the query (the iterative lookup keeps going until the closest peers have
//!   all answered);
//! - **requests**: how many peers the query contacted (`QueryStats::num_requests`);
//! - **hops**: the length of the referral chain to the first peer that held the record. Every node
//!   logs the GET_PROVIDERS requests it answers during the lookup, with the closer peers it returned
//!   (recomputed from its routing table at that moment, as Kademlia's handler does); the origin's
//!   own closest peers are hop 1, a peer first learned from a hop-n answer is hop n+1. Origins are
//!   nodes that do not hold the record themselves.
//!
//! Baseline from the same run: the ping round trip between connected nodes of the same mesh (libp2p
//! ping's own measurements, every 15 s per connection, from the join until the lookups end), so
//! "time / ping RTT" says how many sequential round trips a lookup costs on this load.
//!
//! `AGORA_BENCH_NODES` (default 200) sets the mesh size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benches fail loudly

use agora_overlay::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, build_swarm};
use agora_overlay::{Config, provider_key};
use agora_protocols::Task;
use futures::StreamExt;
use libp2p::kad::{self, KBucketKey, QueryId, RecordKey};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity, ping};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Kademlia's replication factor (libp2p's K_VALUE), the size of the origin's first batch.
const K: usize = 20;

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

/// The GET_PROVIDERS requests answered during the current lookup.
struct Trace {
    key: RecordKey,
    origin: PeerId,
    /// (who answered, the closer peers it returned, whether it held the record), in answer order.
    answers: Vec<(PeerId, Vec<PeerId>, bool)>,
}

#[derive(Default)]
struct Shared {
    trace: Mutex<Option<Trace>>,
    /// Ping round trips (µs) seen while `collect_rtts` is set.
    rtts: Mutex<Vec<f64>>,
    collect_rtts: AtomicBool,
}

#[derive(Debug)]
struct LookupResult {
    first: Option<Duration>,
    total: Duration,
    requests: u32,
}

enum Cmd {
    Bootstrap(PeerId, Multiaddr),
    TableSize(oneshot::Sender<usize>),
    Provide(RecordKey, oneshot::Sender<Result<(), String>>),
    Holds(RecordKey, oneshot::Sender<bool>),
    Closest(RecordKey, oneshot::Sender<Vec<PeerId>>),
    Lookup(RecordKey, oneshot::Sender<LookupResult>),
}

struct NodeHandle {
    peer: PeerId,
    addr: Multiaddr,
    tx: mpsc::Sender<Cmd>,
}

impl NodeHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> T {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.unwrap();
        rx.await.unwrap()
    }
}

struct PendingLookup {
    id: QueryId,
    started: Instant,
    first: Option<Duration>,
    tx: oneshot::Sender<LookupResult>,
}

async fn spawn_node(shared: Arc<Shared>) -> NodeHandle {
    let keypair = identity::Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let config = bench_config();
    let mut swarm = build_swarm(keypair, &config).unwrap();
    for addr in &config.listen {
        swarm.listen_on(addr.clone()).unwrap();
    }
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            swarm.add_external_address(address.clone());
            break address;
        }
    };
    let (tx, mut rx) = mpsc::channel::<Cmd>(16);
    tokio::spawn(async move {
        let mut state = NodeState::default();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => on_cmd(&mut swarm, &mut state, cmd),
                    None => return,
                },
                event = swarm.select_next_some() => on_event(&mut swarm, &mut state, &shared, event),
            }
        }
    });
    NodeHandle { peer, addr, tx }
}

/// The `loopback` preset (listen addresses external, Kademlia server, walks every 5 s). With the
/// default 30 s walks, 200 nodes joining at once on a loaded 2-core machine did not all get past
/// the bootstrap node within 10 minutes (one routing table stayed at 1 entry).
fn bench_config() -> Config {
    Config::loopback()
}

/// What a node's loop waits on.
#[derive(Default)]
struct NodeState {
    provides: HashMap<QueryId, oneshot::Sender<Result<(), String>>>,
    lookup: Option<PendingLookup>,
}

fn on_cmd(swarm: &mut Swarm<Behaviour>, state: &mut NodeState, cmd: Cmd) {
    let kad = &mut swarm.behaviour_mut().kad;
    match cmd {
        Cmd::Bootstrap(peer, addr) => {
            kad.add_address(&peer, addr);
            let _ = kad.bootstrap();
        }
        Cmd::TableSize(tx) => {
            let n = kad.kbuckets().map(|b| b.num_entries()).sum();
            let _ = tx.send(n);
        }
        Cmd::Provide(key, tx) => match kad.start_providing(key) {
            Ok(id) => {
                state.provides.insert(id, tx);
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
            }
        },
        Cmd::Holds(key, tx) => {
            let held = kad::store::RecordStore::providers(kad.store_mut(), &key);
            let _ = tx.send(!held.is_empty());
        }
        Cmd::Closest(key, tx) => {
            let target = KBucketKey::new(key);
            let peers = kad
                .get_closest_local_peers(&target)
                .take(K)
                .map(|k| *k.preimage())
                .collect();
            let _ = tx.send(peers);
        }
        Cmd::Lookup(key, tx) => {
            let id = kad.get_providers(key);
            state.lookup = Some(PendingLookup {
                id,
                started: Instant::now(),
                first: None,
                tx,
            });
        }
    }
}

fn on_event(
    swarm: &mut Swarm<Behaviour>,
    state: &mut NodeState,
    shared: &Shared,
    event: SwarmEvent<BehaviourEvent>,
) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => swarm.add_external_address(address),
        // What the overlay's event loop does: Kademlia does not learn addresses from inbound
        // connections, identify tells them.
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) if info.protocols.contains(&KAD_PROTOCOL) => {
            for addr in info.listen_addrs.into_iter().take(8) {
                swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
            result: Ok(rtt), ..
        })) if shared.collect_rtts.load(Ordering::Relaxed) => {
            shared.rtts.lock().unwrap().push(rtt.as_secs_f64() * 1e6);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::InboundRequest {
            request:
                kad::InboundRequest::GetProvider {
                    num_provider_peers, ..
                },
        })) => {
            let mut trace = shared.trace.lock().unwrap();
            if let Some(trace) = trace.as_mut() {
                let target = KBucketKey::new(trace.key.clone());
                let closer = swarm
                    .behaviour_mut()
                    .kad
                    .find_closest_local_peers(&target, &trace.origin)
                    .map(|p| p.node_id)
                    .collect();
                let me = *swarm.local_peer_id();
                trace.answers.push((me, closer, num_provider_peers > 0));
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            result,
            stats,
            step,
        })) => match result {
            kad::QueryResult::StartProviding(result) => {
                if let Some(tx) = state.provides.remove(&id) {
                    let _ = tx.send(result.map(|_| ()).map_err(|e| e.to_string()));
                }
            }
            kad::QueryResult::GetProviders(result)
                if state.lookup.as_ref().is_some_and(|l| l.id == id) =>
            {
                let l = state.lookup.as_mut().unwrap();
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = &result
                    && !providers.is_empty()
                    && l.first.is_none()
                {
                    l.first = Some(l.started.elapsed());
                }
                if step.last {
                    let l = state.lookup.take().unwrap();
                    let _ = l.tx.send(LookupResult {
                        first: l.first,
                        total: stats.duration().unwrap_or_default(),
                        requests: stats.num_requests(),
                    });
                }
            }
            _ => {}
        },
        _ => {}
    }
}

/// Hops to the first record holder, from the origin's first batch and the referrals logged.
fn hops(initial: &[PeerId], trace: &Trace) -> Option<usize> {
    let mut depth: HashMap<PeerId, usize> = initial.iter().map(|p| (*p, 1)).collect();
    // Referrals can arrive in any order: relax until nothing changes.
    loop {
        let mut changed = false;
        for (who, closer, _) in &trace.answers {
            let Some(d) = depth.get(who).copied() else {
                continue;
            };
            for q in closer {
                if depth.get(q).is_none_or(|old| *old > d + 1) {
                    depth.insert(*q, d + 1);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    trace
        .answers
        .iter()
        .filter(|(_, _, holds)| *holds)
        .filter_map(|(who, _, _)| depth.get(who).copied())
        .min()
}

fn main() {
    let n = env_usize("AGORA_BENCH_NODES", 200);
    let keys_n = env_usize("AGORA_BENCH_KEYS", 20);
    let lookups_n = env_usize("AGORA_BENCH_LOOKUPS", 100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = runtime.metrics().num_workers();
    runtime.block_on(async move {
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(spawn_node(Arc::clone(&shared)).await);
        }
        let (boot_peer, boot_addr) = (nodes[0].peer, nodes[0].addr.clone());
        for node in &nodes[1..] {
            node.tx
                .send(Cmd::Bootstrap(boot_peer, boot_addr.clone()))
                .await
                .unwrap();
        }
        eprintln!("{n} nodes listening after {:.1} s", started.elapsed().as_secs_f64());

        // Joined: the median routing table holds at least K peers, the smallest at least 5.
        let want = K.min(n - 1);
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut last_report = Instant::now();
        let sizes = loop {
            let mut sizes = Vec::with_capacity(n);
            for node in &nodes {
                sizes.push(node.ask(Cmd::TableSize).await);
            }
            let mut sorted = sizes.clone();
            sorted.sort_unstable();
            let (min, median) = (sorted[0], sorted[n / 2]);
            if min >= want.min(5) && median >= want {
                break sizes;
            }
            if last_report.elapsed() > Duration::from_secs(15) {
                last_report = Instant::now();
                eprintln!(
                    "joining ({:.0} s): routing tables min {min} median {median} max {}",
                    started.elapsed().as_secs_f64(),
                    sorted[n - 1]
                );
            }
            assert!(
                Instant::now() < deadline,
                "the mesh never formed: routing tables min {min} median {median}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let mut sorted = sizes.clone();
        sorted.sort_unstable();
        eprintln!(
            "joined after {:.1} s; routing table sizes min {} median {} max {}",
            started.elapsed().as_secs_f64(),
            sorted[0],
            sorted[n / 2],
            sorted[n - 1]
        );
        shared
            .collect_rtts
            .store(true, Ordering::Relaxed);
        // Let the tables settle a little further.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let mut sizes = Vec::with_capacity(n);
        for node in &nodes {
            sizes.push(node.ask(Cmd::TableSize).await as f64);
        }
        let table_median = percentile(&sizes, 0.5);

        // Publish the provider records.
        let keys: Vec<(RecordKey, usize)> = (0..keys_n)
            .map(|j| {
                (
                    provider_key(1, Task::Embed, &format!("model-{j}")),
                    1 + (j * 37) % (n - 1),
                )
            })
            .collect();
        // All at once: each publication is an iterative query that ends on its slowest peer.
        let mut published = Vec::new();
        for (key, who) in &keys {
            let (tx, rx) = oneshot::channel();
            nodes[*who]
                .tx
                .send(Cmd::Provide(key.clone(), tx))
                .await
                .unwrap();
            published.push(rx);
        }
        for rx in published {
            rx.await.unwrap().expect("a provider record is published");
        }
        eprintln!(
            "provider records published after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // Who holds each record: every node asked at once (one at a time, each answer waits behind
        // 200 busy swarms in the scheduler's queue).
        let mut holders: Vec<Vec<bool>> = Vec::new();
        for (key, _) in &keys {
            let mut answers = Vec::with_capacity(n);
            for node in &nodes {
                let (tx, rx) = oneshot::channel();
                node.tx.send(Cmd::Holds(key.clone(), tx)).await.unwrap();
                answers.push(rx);
            }
            let mut held = Vec::with_capacity(n);
            for rx in answers {
                held.push(rx.await.unwrap());
            }
            holders.push(held);
        }
        let holders_per_key: Vec<f64> = holders
            .iter()
            .map(|h| h.iter().filter(|x| **x).count() as f64)
            .collect();
        eprintln!(
            "{keys_n} provider records published; holders per key median {}",
            percentile(&holders_per_key, 0.5)
        );

        // The lookups, one at a time.
        let (mut first_ms, mut total_ms, mut requests, mut hop_counts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut missed = 0;
        for i in 0..lookups_n {
            let (key, _) = &keys[i % keys.len()];
            // The origin is a node that does not hold the record itself (else there is no lookup).
            let mut o = (i * 53 + 11) % n;
            while holders[i % keys.len()][o] {
                o = (o + 1) % n;
            }
            let origin = &nodes[o];
            let k1 = key.clone();
            let initial = origin.ask(|tx| Cmd::Closest(k1, tx)).await;
            *shared.trace.lock().unwrap() = Some(Trace {
                key: key.clone(),
                origin: origin.peer,
                answers: Vec::new(),
            });
            let k3 = key.clone();
            let result = origin.ask(|tx| Cmd::Lookup(k3, tx)).await;
            let trace = shared.trace.lock().unwrap().take().unwrap();
            match result.first {
                Some(first) => first_ms.push(first.as_secs_f64() * 1e3),
                None => missed += 1,
            }
            total_ms.push(result.total.as_secs_f64() * 1e3);
            requests.push(f64::from(result.requests));
            if let Some(h) = hops(&initial, &trace) {
                hop_counts.push(h as f64);
            }
            if i % 20 == 19 {
                eprintln!("{} lookups done", i + 1);
            }
        }
        shared
            .collect_rtts
            .store(false, Ordering::Relaxed);
        let rtts = shared.rtts.lock().unwrap().clone();
        let ping_ms = if rtts.is_empty() {
            f64::NAN
        } else {
            percentile(&rtts, 0.5) / 1e3
        };

        println!();
        println!(
            "Kademlia provider lookups: {n} nodes in one process on 127.0.0.1 TCP, median routing \
             table {table_median:.0} peers, {keys_n} keys, {lookups_n} lookups ({missed} found \
             nothing), tokio workers {workers}"
        );
        println!();
        println!("| measure | p50 | p90 | max |");
        println!("|---|---|---|---|");
        let line = |name: &str, xs: &[f64], unit: &str, digits: usize| {
            if xs.is_empty() {
                println!("| {name} | - | - | - |");
            } else {
                println!(
                    "| {name} | {:.*}{unit} | {:.*}{unit} | {:.*}{unit} |",
                    digits,
                    percentile(xs, 0.5),
                    digits,
                    percentile(xs, 0.9),
                    digits,
                    percentile(xs, 1.0),
                );
            }
        };
        line("hops to the first record holder", &hop_counts, "", 0);
        line("peers contacted (requests)", &requests, "", 0);
        line("time to the first provider", &first_ms, " ms", 1);
        line("time to the end of the query", &total_ms, " ms", 1);
        println!();
        println!(
            "baseline: ping RTT between connected nodes of this mesh, p50 {ping_ms:.2} ms ({} samples)",
            rtts.len()
        );
        if !first_ms.is_empty() && ping_ms.is_finite() {
            println!(
                "| ratio | p50 |\n|---|---|\n| time to the first provider / ping RTT | {:.1}x |\n| time to the end of the query / ping RTT | {:.1}x |\n| hops / log2(nodes) | {:.2} |",
                percentile(&first_ms, 0.5) / ping_ms,
                percentile(&total_ms, 0.5) / ping_ms,
                percentile(&hop_counts, 0.5) / (n as f64).log2(),
            );
        }
        // Dropping the command senders ends every node's loop.
        drop(nodes);
    });
}
