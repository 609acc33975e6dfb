//! A network partition and its healing, with real processes on three hosts: three network
//! namespaces made by this test (iproute2), joined by a bridge, cut in two and joined again.
//!
//! ```text
//!   h0 (10.77.0.1, the bridge br0)   h1 (10.77.0.2)   h2 (10.77.0.3)
//!   agora-bootstrap, node a          node b           nodes c0, c1
//!        br0 ── v1 ═══ eth0 (h1)
//!        br0 ── v2 ═══ eth0 (h2)     <- the cut: `ip -n h0 link set v2 down`
//! ```
//!
//! Every node advertises the same model. Promises checked: the mesh forms (each node sees the three
//! others' adverts by gossip and finds their provider records through Kademlia); while h2 is cut off,
//! each side keeps hearing its own providers (fresh adverts) and drops the other side's once their
//! adverts expire; once the link is back, every node hears every provider again (convergence).
//!
//! Nodes are read through their local API (bound to 127.0.0.1 inside their namespace) with
//! `ip netns exec NS agora providers --json`. Each node runs with `--loopback`, Agora's preset for
//! private test meshes (listen addresses count as external, Kademlia server mode, fast adverts),
//! here with real 10.77.0.x listen addresses instead of 127.0.0.1.
//!
//! Needs root (CI runs as root): not root, the test says why and passes without running. As root,
//! a failure to make the namespaces fails the test. No traffic leaves the namespaces made here, and
//! they are deleted when the test ends, pass or fail. No timing thresholds: every phase polls under
//! one generous deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::netns::{Namespaces, in_ns, ip, is_root, wait_until};
use common::{Proc, bootstrap_binary};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const MODEL: &str = "partition-test-model";
const SUBNET_PREFIX: &str = "10.77.0";

/// Makes three namespaces: h0 holds the bridge (10.77.0.1), h1 and h2 hang off it through veth
/// pairs named v1 and v2 on the bridge side, eth0 on theirs.
fn make_hosts() -> Result<Namespaces, String> {
    let hosts = Namespaces::make("part", &["h0", "h1", "h2"])?;
    let h0 = hosts.name(0).to_string();
    ip(&["-n", &h0, "link", "add", "br0", "type", "bridge"])?;
    ip(&[
        "-n",
        &h0,
        "addr",
        "add",
        &format!("{SUBNET_PREFIX}.1/24"),
        "dev",
        "br0",
    ])?;
    ip(&["-n", &h0, "link", "set", "br0", "up"])?;
    for i in 1..3 {
        let host = hosts.name(i).to_string();
        let veth = format!("v{i}");
        // Both ends are made inside the test's namespaces: nothing appears in the caller's.
        ip(&[
            "-n", &h0, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &host,
        ])?;
        ip(&["-n", &h0, "link", "set", &veth, "master", "br0"])?;
        ip(&["-n", &h0, "link", "set", &veth, "up"])?;
        ip(&[
            "-n",
            &host,
            "addr",
            "add",
            &format!("{SUBNET_PREFIX}.{}/24", i + 1),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &host, "link", "set", "eth0", "up"])?;
    }
    Ok(hosts)
}

struct Node {
    name: String,
    ns: String,
    peer: String,
    http: String,
    _proc: Proc,
}

fn start_node(name: &str, ns: &str, host_ip: &str, bootstrap: &str) -> Node {
    let listen = format!("/ip4/{host_ip}/tcp/0");
    let advert = format!("embed:{MODEL}:100");
    let args = in_ns(
        ns,
        Path::new(env!("CARGO_BIN_EXE_agora")),
        &[
            "node",
            "--ephemeral-key",
            "--loopback",
            "--kad-server",
            "--listen",
            &listen,
            "--http",
            "127.0.0.1:0",
            "--bootstrap",
            bootstrap,
            "--advertise",
            &advert,
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proc = Proc::start(name, Path::new("ip"), &args);
    let peer = proc.wait_for("its peer id", |l| l.strip_prefix("peer ").map(String::from));
    let http = proc.wait_for("its API address", |l| {
        l.strip_prefix("http ").map(String::from)
    });
    proc.wait_for("ready", |l| (l == "ready").then_some(()));
    Node {
        name: name.to_string(),
        ns: ns.to_string(),
        peer,
        http,
        _proc: proc,
    }
}

/// The node's providers of the test model (peer id -> advert age in ms), through its API, read from
/// inside its namespace. `dht` adds Kademlia provider records (their age is 0). None if the API did
/// not answer.
fn providers(node: &Node, dht: bool) -> Option<BTreeMap<String, (u64, String)>> {
    let mut args = vec![
        "netns",
        "exec",
        &node.ns,
        env!("CARGO_BIN_EXE_agora"),
        "providers",
        "--node",
        &node.http,
        "--json",
        "--task",
        "embed",
        "--model",
        MODEL,
    ];
    if dht {
        args.push("--dht");
    }
    let out = Command::new("ip")
        .args(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "[{}] agora providers: {}",
            node.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        rows.as_array()?
            .iter()
            .map(|r| {
                (
                    r["peer"].as_str().unwrap_or("").to_string(),
                    (
                        r["age_ms"].as_u64().unwrap_or(u64::MAX),
                        r["source"].as_str().unwrap_or("").to_string(),
                    ),
                )
            })
            .collect(),
    )
}

/// The peers `node` holds an open connection to, through `agora peers`; a string saying why when
/// its API did not answer (so that [`wait_until`] keeps waiting).
fn connected(node: &Node) -> Result<BTreeSet<String>, String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node.ns,
            env!("CARGO_BIN_EXE_agora"),
            "peers",
            "--node",
            &node.http,
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{}: agora peers: {e}", node.name))?;
    Ok(rows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["connected"] == true)
        .filter_map(|r| r["peer"].as_str().map(String::from))
        .collect())
}

/// For every node: the set of other nodes whose adverts it holds with an age under `fresh_ms`
/// (adverts made since the moment that matters), compared with the set it should hold.
fn check_views(
    nodes: &[Node],
    expected: &dyn Fn(&Node) -> BTreeSet<String>,
    fresh_ms: Option<u64>,
) -> Option<String> {
    for node in nodes {
        let Some(rows) = providers(node, false) else {
            return Some(format!("{}: no answer from its API", node.name));
        };
        let seen: BTreeSet<String> = rows
            .iter()
            .filter(|(peer, (age, _))| **peer != node.peer && fresh_ms.is_none_or(|f| *age < f))
            .map(|(peer, _)| peer.clone())
            .collect();
        let want = expected(node);
        if seen != want {
            return Some(format!(
                "{} holds {} fresh adverts, expected {} ({} rows in all)",
                node.name,
                seen.len(),
                want.len(),
                rows.len()
            ));
        }
    }
    None
}

#[test]
fn partition_and_heal_converge() {
    if !is_root() {
        eprintln!(
            "SKIPPED partition test: it makes network namespaces (`ip netns add`), which needs root; \
             CI runs as root"
        );
        return;
    }
    let hosts = match make_hosts() {
        Ok(hosts) => hosts,
        Err(e) => panic!("running as root, but cannot make the test's network namespaces: {e}"),
    };
    let tmp = tempfile::tempdir().unwrap();

    // The bootstrap node on h0 prints its full addresses first.
    let key = tmp.path().join("bootstrap.key");
    let boot_listen = format!("/ip4/{SUBNET_PREFIX}.1/tcp/0");
    let boot_args = in_ns(
        hosts.name(0),
        &bootstrap_binary(),
        &[
            "--key-file",
            key.to_str().unwrap(),
            "--listen",
            &boot_listen,
            "--metrics",
            "off",
            "--loopback",
        ],
    );
    let boot_args: Vec<&str> = boot_args.iter().map(String::as_str).collect();
    let boot = Proc::start("bootstrap", Path::new("ip"), &boot_args);
    let boot_addr = boot.wait_for("its address", |l| {
        l.contains("/p2p/").then(|| l.trim().to_string())
    });
    assert!(boot_addr.contains(SUBNET_PREFIX), "{boot_addr}");

    let ip_of = |h: usize| format!("{SUBNET_PREFIX}.{}", h + 1);
    let nodes = vec![
        start_node("a@h0", hosts.name(0), &ip_of(0), &boot_addr),
        start_node("b@h1", hosts.name(1), &ip_of(1), &boot_addr),
        start_node("c0@h2", hosts.name(2), &ip_of(2), &boot_addr),
        start_node("c1@h2", hosts.name(2), &ip_of(2), &boot_addr),
    ];
    let all: BTreeSet<String> = nodes.iter().map(|n| n.peer.clone()).collect();
    let others = |node: &Node| -> BTreeSet<String> {
        all.iter().filter(|p| **p != node.peer).cloned().collect()
    };
    let cut_off = |node: &Node| node.ns == hosts.name(2);
    let same_side = |node: &Node| -> BTreeSet<String> {
        nodes
            .iter()
            .filter(|n| n.peer != node.peer && cut_off(n) == cut_off(node))
            .map(|n| n.peer.clone())
            .collect()
    };

    // 1. The mesh forms across the three hosts: adverts by gossip, provider records by Kademlia.
    wait_until("every node to hold every other's advert", || {
        check_views(&nodes, &others, None)
    });
    wait_until("every node to find every other's provider record", || {
        for node in &nodes {
            let Some(rows) = providers(node, true) else {
                return Some(format!("{}: no answer from its API", node.name));
            };
            let found: BTreeSet<String> = rows
                .iter()
                .filter(|(_, (_, source))| source.contains("dht"))
                .map(|(peer, _)| peer.clone())
                .collect();
            let want = others(node);
            if !want.is_subset(&found) {
                return Some(format!(
                    "{} found {} of {} records",
                    node.name,
                    found.intersection(&want).count(),
                    want.len()
                ));
            }
        }
        None
    });

    // 2. Cut h2 off from h0 and h1: the bridge's port towards h2 goes down.
    ip(&["-n", hosts.name(0), "link", "set", "v2", "down"]).unwrap();
    let cut_at = Instant::now();
    let since = |t: Instant| u64::try_from(t.elapsed().as_millis()).unwrap();
    // Each side hears only its own providers, with adverts made after the cut; the other side's
    // have expired.
    wait_until("each side to hold only its own providers", || {
        check_views(&nodes, &same_side, Some(since(cut_at)))
            .or_else(|| check_views(&nodes, &same_side, None))
    });

    // Connections across the cut do not linger half-open: three missed pings close them.
    wait_until("connections across the cut to close", || {
        for node in &nodes {
            let open = match connected(node) {
                Ok(open) => open,
                Err(why) => return Some(why),
            };
            let across: Vec<&Node> = nodes
                .iter()
                .filter(|n| cut_off(n) != cut_off(node) && open.contains(&n.peer))
                .collect();
            if let Some(other) = across.first() {
                return Some(format!("{} still connected to {}", node.name, other.name));
            }
        }
        None
    });

    // 3. Heal: every node hears every provider again, with adverts made after the healing.
    ip(&["-n", hosts.name(0), "link", "set", "v2", "up"]).unwrap();
    let healed_at = Instant::now();
    wait_until("the healed mesh to converge", || {
        check_views(&nodes, &others, Some(since(healed_at)))
    });
    // Kademlia across the healed link: the cut-off side finds the other side's records again.
    wait_until("provider records across the healed link", || {
        for node in nodes.iter().filter(|n| cut_off(n)) {
            let Some(rows) = providers(node, true) else {
                return Some(format!("{}: no answer from its API", node.name));
            };
            let found: BTreeSet<String> = rows
                .iter()
                .filter(|(_, (_, source))| source.contains("dht"))
                .map(|(peer, _)| peer.clone())
                .collect();
            if !others(node).is_subset(&found) {
                return Some(format!("{} found {} records", node.name, found.len()));
            }
        }
        None
    });

    drop(nodes);
    drop(boot);
    drop(hosts);
}
