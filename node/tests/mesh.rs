//! The mesh, with real processes on real sockets: one `agora-bootstrap` and nine `agora node`s on
//! 127.0.0.1, checked only through their local HTTP APIs.
//!
//! Promises checked: peers find each other through the DHT alone (each node is told only the
//! bootstrap address); a provider record is found from every peer; adverts reach every subscriber
//! by gossip; and with the bootstrap killed, the mesh still carries adverts and a late joiner that
//! knows only a surviving peer finds everyone. No timing thresholds: every wait polls under one
//! generous deadline. Every process is killed at the end, even on failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{bootstrap_binary, lines};

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NODES: usize = 9;
const MODEL: &str = "mesh-test-model";
/// One deadline for each phase; a loaded 2-core machine builds other things while this runs.
const DEADLINE: Duration = Duration::from_secs(180);

/// Kills every process it holds when dropped, pass or fail.
#[derive(Default)]
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no output line for {what}"))
}

struct NodeProc {
    peer: String,
    http: String,
    listen: String,
}

fn start_node(procs: &mut Processes, name: &str, bootstrap: &str, advertise: bool) -> NodeProc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.args([
        "node",
        "--ephemeral-key",
        "--loopback",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--http",
        "127.0.0.1:0",
        "--bootstrap",
        bootstrap,
    ])
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if advertise {
        cmd.args(["--advertise", &format!("embed:{MODEL}:100")]);
    }
    let mut child = cmd.spawn().expect("agora node starts");
    let out = lines(child.stdout.take().unwrap(), None);
    let _err = lines(child.stderr.take().unwrap(), Some(name.to_string()));
    procs.0.push(child);
    let (mut peer, mut http, mut listen) = (None, None, None);
    loop {
        let line = next_line(&out, name);
        if let Some(rest) = line.strip_prefix("peer ") {
            peer = Some(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("http ") {
            http = Some(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("listen ") {
            listen.get_or_insert_with(|| rest.to_string());
        } else if line == "ready" {
            break;
        }
    }
    NodeProc {
        peer: peer.expect("peer line"),
        http: http.expect("http line"),
        listen: listen.expect("listen line"),
    }
}

/// GET on the node's local API; None if it does not answer 200 (yet).
fn get_json(http: &str, path: &str) -> Option<serde_json::Value> {
    let mut stream = TcpStream::connect(http).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8(response).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

fn wait_until(what: &str, mut check: impl FnMut() -> Option<String>) {
    let start = Instant::now();
    while let Some(missing) = check() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: {missing}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Peers in the node's routing table.
fn routing_peers(node: &NodeProc) -> HashSet<String> {
    get_json(&node.http, "/api/peers")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|p| p["in_routing_table"].as_bool() == Some(true))
        .filter_map(|p| p["peer"].as_str().map(String::from))
        .collect()
}

/// Providers of the test model, with the source each was learned from.
fn providers(node: &NodeProc, dht: bool) -> Vec<(String, String, u64)> {
    let path = if dht {
        format!("/api/providers?task=embed&model={MODEL}&dht=1&subnet=1")
    } else {
        format!("/api/providers?task=embed&model={MODEL}")
    };
    get_json(&node.http, &path)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["peer"].as_str().unwrap_or("").to_string(),
                r["source"].as_str().unwrap_or("").to_string(),
                r["age_ms"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

#[test]
fn mesh_of_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut procs = Processes::default();

    // The bootstrap node prints its full address first.
    let mut boot = Command::new(bootstrap_binary())
        .args(["--key-file"])
        .arg(tmp.path().join("boot.key"))
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
            "--loopback",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agora-bootstrap starts");
    let boot_out = lines(boot.stdout.take().unwrap(), None);
    let boot_err = lines(boot.stderr.take().unwrap(), Some("bootstrap".into()));
    procs.0.push(boot);
    let boot_addr = next_line(&boot_out, "the bootstrap address");
    assert!(boot_addr.contains("/p2p/"), "{boot_addr}");
    let metrics = loop {
        let line = next_line(&boot_err, "the metrics address");
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };

    // Nine nodes, told only the bootstrap address; the first two serve the test model.
    let nodes: Vec<NodeProc> = (0..NODES)
        .map(|i| start_node(&mut procs, &format!("node{i}"), &boot_addr, i < 2))
        .collect();
    let all: HashSet<String> = nodes.iter().map(|n| n.peer.clone()).collect();
    let providers_set: HashSet<String> = nodes[..2].iter().map(|n| n.peer.clone()).collect();

    // 1. Through the DHT alone, every node has every other node in its routing table.
    wait_until("every node to know every other through the DHT", || {
        for node in &nodes {
            let known = routing_peers(node);
            let missing: Vec<_> = all
                .iter()
                .filter(|p| **p != node.peer && !known.contains(*p))
                .collect();
            if !missing.is_empty() {
                return Some(format!("{} misses {}", node.peer, missing.len()));
            }
        }
        None
    });

    // 2. Adverts reach every subscriber by gossip.
    wait_until("adverts to reach every node", || {
        for node in &nodes {
            let seen: HashSet<String> = providers(node, false)
                .into_iter()
                .filter(|(_, source, _)| source.contains("gossip"))
                .map(|(peer, _, _)| peer)
                .collect();
            let expected: HashSet<String> = providers_set
                .iter()
                .filter(|p| **p != node.peer)
                .cloned()
                .collect();
            if !expected.is_subset(&seen) {
                return Some(format!("{} has {seen:?}", node.peer));
            }
        }
        None
    });

    // 3. The provider records are found from every peer through Kademlia.
    wait_until("provider records from every node", || {
        for node in &nodes {
            let found: HashSet<String> = providers(node, true)
                .into_iter()
                .filter(|(_, source, _)| source.contains("dht"))
                .map(|(peer, _, _)| peer)
                .collect();
            let expected: HashSet<String> = providers_set
                .iter()
                .filter(|p| **p != node.peer)
                .cloned()
                .collect();
            if !expected.is_subset(&found) {
                return Some(format!("{} found {found:?}", node.peer));
            }
        }
        None
    });

    // The bootstrap's metrics saw the mesh.
    let mut stream = TcpStream::connect(&metrics).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("libp2p_kad") || text.contains("agora_libp2p_kad"),
        "{text}"
    );
    assert!(text.contains("identify"), "no identify metrics");

    // 4. Kill the bootstrap: the mesh goes on without it.
    let mut boot = procs.0.remove(0);
    boot.kill().unwrap();
    boot.wait().unwrap();
    let killed_at = Instant::now();

    // Adverts issued after the kill still reach every node.
    wait_until("fresh adverts after the bootstrap is gone", || {
        let since_kill = u64::try_from(killed_at.elapsed().as_millis()).unwrap();
        for node in &nodes {
            let fresh: HashSet<String> = providers(node, false)
                .into_iter()
                .filter(|(_, _, age)| *age < since_kill)
                .map(|(peer, _, _)| peer)
                .collect();
            let expected: HashSet<String> = providers_set
                .iter()
                .filter(|p| **p != node.peer)
                .cloned()
                .collect();
            if !expected.is_subset(&fresh) {
                return Some(format!("{} has fresh {fresh:?}", node.peer));
            }
        }
        None
    });

    // A late joiner that knows only a surviving peer finds everyone and the providers.
    let late = start_node(&mut procs, "late", &nodes[5].listen, false);
    wait_until("the late joiner to find the mesh", || {
        let known = routing_peers(&late);
        let missing = all.iter().filter(|p| !known.contains(*p)).count();
        if missing > 0 {
            return Some(format!("late joiner misses {missing}"));
        }
        let found: HashSet<String> = providers(&late, true)
            .into_iter()
            .map(|(peer, _, _)| peer)
            .collect();
        if !providers_set.is_subset(&found) {
            return Some(format!("late joiner found providers {found:?}"));
        }
        None
    });
}
