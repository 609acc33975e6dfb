//! NAT traversal with real processes behind real NATs: network namespaces made by this test, two
//! home networks each behind a router that masquerades (Linux NAT, iptables) and drops unsolicited
//! inbound packets (the stateful firewall every home router has), and a "public" network holding
//! the bootstrap node.
//!
//! ```text
//!   wan: bridge br0 11.77.0.254        agora-bootstrap (Kademlia, relay v2, AutoNAT server)
//!    ├── rt-a: wan0 11.77.0.1  NAT ── h-a: 192.168.1.2   the miner (agora serve)
//!    └── rt-b: wan0 11.77.0.2  NAT ── h-b: 192.168.2.2   the client (agora gateway)
//! ```
//!
//! The public side uses 11.77.0.0/24, a globally routed range, because AutoNAT only trusts global
//! addresses; the namespaces have no route out, so nothing is ever sent to its owners.
//!
//! Promises checked, in order: AutoNAT tells the miner it is private; the miner takes a relay
//! reservation through the bootstrap node and advertises its relayed address; the client, itself
//! behind the other NAT, learns the miner from that advert and buys an embedding from it over
//! the relayed connection (through its OpenAI endpoint); DCUtR then upgrades that connection to a
//! direct one through both NATs, as both nodes' libp2p metrics record, and the next query is
//! answered too. No timing thresholds: each phase polls under one generous deadline.
//!
//! Needs root (CI runs as root) and iptables (`scripts/setup-tools` installs it): not root, the
//! test says why and passes without running; as root, a missing tool or a failure to make the
//! namespaces fails it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::netns::{Namespaces, exec, http, in_ns, ip, is_root, wait_until};
use common::{Proc, bootstrap_binary, outside_tool};
use std::path::Path;

const MODEL: &str = "all-minilm-l6-v2";
/// The metric libp2p's DCUtR recorder counts upgrades in (our registry's prefix first).
const DCUTR_SUCCEEDED: &str =
    "agora_libp2p_dcutr_events_total{event=\"DirectConnectionUpgradeSucceeded\"}";

/// The namespaces: the public network, then per home network its router and its host.
const WAN: usize = 0;
const ROUTER: [usize; 2] = [1, 3];
const HOST: [usize; 2] = [2, 4];

/// Makes the network of the module doc.
fn make_network() -> Result<Namespaces, String> {
    let ns = Namespaces::make("nat", &["wan", "rt-a", "h-a", "rt-b", "h-b"])?;
    let wan = ns.name(WAN).to_string();
    ip(&["-n", &wan, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &wan, "addr", "add", "11.77.0.254/24", "dev", "br0"])?;
    ip(&["-n", &wan, "link", "set", "br0", "up"])?;
    for side in 0..2 {
        let (router, host) = (ns.name(ROUTER[side]), ns.name(HOST[side]));
        let n = side + 1;
        let port = format!("w{n}");
        ip(&[
            "-n", &wan, "link", "add", &port, "type", "veth", "peer", "name", "wan0", "netns",
            router,
        ])?;
        ip(&["-n", &wan, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &wan, "link", "set", &port, "up"])?;
        ip(&[
            "-n",
            router,
            "addr",
            "add",
            &format!("11.77.0.{n}/24"),
            "dev",
            "wan0",
        ])?;
        ip(&["-n", router, "link", "set", "wan0", "up"])?;
        ip(&[
            "-n", router, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns",
            host,
        ])?;
        let lan = format!("192.168.{n}");
        ip(&[
            "-n",
            router,
            "addr",
            "add",
            &format!("{lan}.1/24"),
            "dev",
            "lan0",
        ])?;
        ip(&["-n", router, "link", "set", "lan0", "up"])?;
        ip(&[
            "-n",
            host,
            "addr",
            "add",
            &format!("{lan}.2/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", host, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            host,
            "route",
            "add",
            "default",
            "via",
            &format!("{lan}.1"),
        ])?;
        // The router: forwards, masquerades the home network behind its public address, and
        // drops what nobody inside asked for (a hole punch is exactly getting past this).
        exec(router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        for rule in [
            &[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                "wan0",
                "-j",
                "MASQUERADE",
            ][..],
            &[
                "-A",
                "INPUT",
                "-i",
                "wan0",
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-j",
                "DROP",
            ][..],
            &[
                "-A",
                "FORWARD",
                "-i",
                "wan0",
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-j",
                "DROP",
            ][..],
        ] {
            let mut args = vec!["iptables"];
            args.extend_from_slice(rule);
            exec(router, &args)?;
        }
    }
    Ok(ns)
}

/// Starts `agora ARGS` inside `ns`; waits for `ready` and returns it with its `--http` address.
fn start_agora(name: &str, ns: &str, args: &[&str]) -> (Proc, String, Vec<String>) {
    let argv = in_ns(ns, Path::new(env!("CARGO_BIN_EXE_agora")), args);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let proc = Proc::start(name, Path::new("ip"), &argv);
    let mut http = None;
    let mut lines = Vec::new();
    proc.wait_for("ready", |l| {
        if let Some(a) = l.strip_prefix("http ") {
            http = Some(a.trim().to_string());
        }
        lines.push(l.to_string());
        (l.trim() == "ready").then_some(())
    });
    (proc, http.expect("an http line"), lines)
}

/// `GET path` from inside `ns`: the body, when the server answered 200.
fn get(ns: &str, addr: &str, path: &str) -> Option<String> {
    let response = http(
        ns,
        addr,
        &format!("GET {path} HTTP/1.0\r\nAccept: text/plain; version=0.0.4\r\n\r\n"),
    )?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?;
    (status == "200").then(|| body.to_string())
}

/// A JSON body, or null when there was none.
fn json(body: Option<String>) -> serde_json::Value {
    body.and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default()
}

/// A counter's value in a classic text exposition.
fn counter(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// POSTs an embedding request to the gateway at `addr` from inside `ns`: (status line, provider).
fn embed(ns: &str, addr: &str, text: &str) -> (String, Option<String>) {
    let body = format!(r#"{{"model":"{MODEL}","input":"{text}"}}"#);
    let request = format!(
        "POST /v1/embeddings HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = http(ns, addr, &request).unwrap_or_default();
    let status = response.lines().next().unwrap_or("").to_string();
    let provider = response.lines().find_map(|l| {
        l.strip_prefix("x-agora-provider:")
            .map(|p| p.trim().to_string())
    });
    (status, provider)
}

#[test]
fn a_miner_behind_a_nat_is_reached_through_a_relay_then_directly() {
    if !is_root() {
        eprintln!(
            "SKIPPED NAT test: it makes network namespaces (`ip netns add`), which needs root; \
             CI runs as root"
        );
        return;
    }
    outside_tool("iptables", "IPTABLES");
    let net = match make_network() {
        Ok(net) => net,
        Err(e) => panic!("making the namespaces failed: {e}"),
    };
    let (wan, home_a, home_b) = (net.name(WAN), net.name(HOST[0]), net.name(HOST[1]));

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bootstrap.key");
    let boot_args = in_ns(
        wan,
        &bootstrap_binary(),
        &[
            "--key-file",
            key.to_str().unwrap(),
            "--listen",
            "/ip4/11.77.0.254/tcp/4001",
            "--listen",
            "/ip4/11.77.0.254/udp/4001/quic-v1",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let boot_args: Vec<&str> = boot_args.iter().map(String::as_str).collect();
    let bootstrap = Proc::start("bootstrap", Path::new("ip"), &boot_args);
    let mut boot_addrs = Vec::new();
    while boot_addrs.len() < 2 {
        boot_addrs.push(bootstrap.wait_for("its addresses", |l| {
            l.contains("/p2p/").then(|| l.trim().to_string())
        }));
    }
    let mut mesh = Vec::new();
    for addr in &boot_addrs {
        mesh.extend(["--bootstrap", addr.as_str()]);
    }

    // The miner listens on every interface of its home network: nothing there is reachable.
    let mut miner_args = vec![
        "serve",
        "--ephemeral-key",
        "--model",
        MODEL,
        "--listen",
        "/ip4/0.0.0.0/tcp/4001",
        "--listen",
        "/ip4/0.0.0.0/udp/4001/quic-v1",
        "--http",
        "127.0.0.1:0",
    ];
    miner_args.extend(&mesh);
    let (_miner, miner_http, lines) = start_agora("miner", home_a, &miner_args);
    let miner_peer = lines
        .iter()
        .find_map(|l| l.strip_prefix("peer "))
        .expect("a peer line")
        .trim()
        .to_string();

    wait_until(
        "AutoNAT says private and a relay reservation is held",
        || {
            let status = json(get(home_a, &miner_http, "/api/status"));
            let relays = status["relays"].as_array().map_or(0, Vec::len);
            (status["nat"] != "private" || relays == 0)
                .then(|| format!("nat {} relays {relays}", status["nat"]))
        },
    );

    let mut gateway_args = vec![
        "gateway",
        "--ephemeral-key",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ];
    gateway_args.extend(&mesh);
    let (_gateway, gateway_http, lines) = start_agora("client", home_b, &gateway_args);
    let openai = lines
        .iter()
        .find_map(|l| l.strip_prefix("gateway http://"))
        .and_then(|a| a.trim().strip_suffix("/v1"))
        .expect("a gateway line")
        .to_string();

    wait_until("the client learns the miner's relayed address", || {
        let providers = json(get(home_b, &gateway_http, "/api/providers?task=embed"));
        let relayed = providers.as_array().is_some_and(|rows| {
            rows.iter().any(|r| {
                r["peer"] == miner_peer.as_str()
                    && r["reachability"] == "relay"
                    && r["addrs"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|a| a.as_str().is_some_and(|a| a.contains("/p2p-circuit/")))
                    })
            })
        });
        (!relayed).then(|| format!("providers: {providers}"))
    });

    wait_until(
        "an embedding bought from the miner through the relay",
        || {
            let (status, provider) = embed(home_b, &openai, "through the relay");
            (!status.contains(" 200 ") || provider.as_deref() != Some(miner_peer.as_str()))
                .then(|| format!("{status} from {provider:?}"))
        },
    );

    wait_until("DCUtR upgrades the connection to a direct one", || {
        let miner = get(home_a, &miner_http, "/metrics").unwrap_or_default();
        let client = get(home_b, &gateway_http, "/metrics").unwrap_or_default();
        let (m, c) = (
            counter(&miner, DCUTR_SUCCEEDED),
            counter(&client, DCUTR_SUCCEEDED),
        );
        (m < 1.0 || c < 1.0).then(|| format!("upgrades: miner {m}, client {c}"))
    });

    let (status, provider) = embed(home_b, &openai, "directly");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(provider.as_deref(), Some(miner_peer.as_str()));
}
