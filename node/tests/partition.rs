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
//! adverts expire, and connections across the cut close (TCP_USER_TIMEOUT); once the link is back,
//! every node hears
//! every provider again (convergence). Both sides keep serving while cut: a miner of the real
//! embedding model on each side answers a client on its side.
//!
//! The ledger across the same cut: a chain (anvil on h0, 10.77.0.1:8545) orders it, and h1 and h2
//! each mirror it with `agora chain follow`. A transfer made on h0 while h2 is cut off reaches
//! h1's mirror; h2's mirror stops short of it (it cannot reach the chain, and never guesses); after
//! healing, h2's mirror catches up to the same height and the same state root as h1's.
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

use agora_ledger::chain::anvil::{DEV_KEYS, default_binary as anvil_binary};
use common::netns::{Namespaces, http, in_ns, ip, is_root, wait_until};
use common::{COLD_PW, Proc, bootstrap_binary, new_wallet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MODEL: &str = "partition-test-model";
/// The model the two miners serve, one on each side of the cut.
const SERVED_MODEL: &str = "all-minilm-l6-v2";
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
    /// Its full TCP address, `/ip4/.../tcp/PORT/p2p/PEER`.
    addr: String,
    _proc: Proc,
}

/// A node advertising the test model (no model behind it).
fn start_node(name: &str, ns: &str, host_ip: &str, bootstrap: &str) -> Node {
    let advert = format!("embed:{MODEL}:100");
    start_peer(
        name,
        ns,
        host_ip,
        bootstrap,
        &["node", "--advertise", &advert],
    )
}

/// A miner serving the real embedding model.
fn start_miner(name: &str, ns: &str, host_ip: &str, bootstrap: &str) -> Node {
    let args = ["serve", "--model", SERVED_MODEL];
    start_peer(name, ns, host_ip, bootstrap, &args)
}

/// `agora COMMAND... --ephemeral-key --loopback --kad-server` on `host_ip` inside `ns`, with its
/// local API, joined through `bootstrap`.
fn start_peer(name: &str, ns: &str, host_ip: &str, bootstrap: &str, command: &[&str]) -> Node {
    let listen = format!("/ip4/{host_ip}/tcp/0");
    let mut args = command.to_vec();
    args.extend([
        "--ephemeral-key",
        "--loopback",
        "--kad-server",
        "--listen",
        &listen,
        "--http",
        "127.0.0.1:0",
        "--bootstrap",
        bootstrap,
    ]);
    let args = in_ns(ns, Path::new(env!("CARGO_BIN_EXE_agora")), &args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proc = Proc::start(name, Path::new("ip"), &args);
    let (mut peer, mut http, mut addr) = (None, None, None);
    proc.wait_for("ready", |l| {
        if let Some(p) = l.strip_prefix("peer ") {
            peer = Some(p.to_string());
        } else if let Some(h) = l.strip_prefix("http ") {
            http = Some(h.to_string());
        } else if let Some(a) = l.strip_prefix("listen ") {
            addr.get_or_insert_with(|| a.to_string());
        }
        (l == "ready").then_some(())
    });
    Node {
        name: name.to_string(),
        ns: ns.to_string(),
        peer: peer.expect("a peer line"),
        http: http.expect("an http line"),
        addr: addr.expect("a listen line"),
        _proc: proc,
    }
}

/// `agora query --task embed` from `ns` (a client on `host_ip`, joined through `bootstrap`): the
/// peer id of the provider that answered.
fn query_from(ns: &str, host_ip: &str, bootstrap: &str, text: &str) -> Result<String, String> {
    let listen = format!("/ip4/{host_ip}/tcp/0");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_agora")])
        .args([
            "query",
            "--ephemeral-key",
            "--loopback",
            "--listen",
            &listen,
            "--bootstrap",
            bootstrap,
            "--task",
            "embed",
            "--input",
            text,
            "--json",
        ])
        .env("AGORA_CONFIG", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("query output: {e}"))?;
    v["answers"][0]["provider"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| "no provider in the answer".to_string())
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

/// Blocks below the chain's head before the followers count a block final.
const DEPTH: u64 = 2;

/// The ledger across the partition: anvil on h0 ordering it, and its genesis.
struct Ledger {
    dir: PathBuf,
    rpc: String,
    contract: String,
    start_block: u64,
    _anvil: Proc,
}

impl Ledger {
    fn genesis(&self) -> PathBuf {
        self.dir.join("genesis.json")
    }

    fn mirror(&self, host: &str) -> PathBuf {
        self.dir.join(host).join("ledger.log")
    }

    /// The ledger and chain flags for a process on `host` with its own mirror.
    fn flags(&self, host: &str) -> Vec<String> {
        [
            "--ledger-log",
            self.mirror(host).to_str().unwrap(),
            "--ledger-genesis",
            self.genesis().to_str().unwrap(),
            "--chain-rpc",
            &self.rpc,
            "--chain-contract",
            &self.contract,
            "--chain-start-block",
            &self.start_block.to_string(),
            "--chain-depth",
            &DEPTH.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// One JSON-RPC call to anvil from inside `ns`: the `result`.
    fn rpc(&self, ns: &str, method: &str, params: &str) -> Option<serde_json::Value> {
        anvil_rpc(ns, &self.rpc, method, params)
    }

    /// The ledger height the followers count final now.
    fn final_height(&self, ns: &str) -> u64 {
        let head = self.rpc(ns, "eth_blockNumber", "[]").unwrap();
        let head =
            u64::from_str_radix(head.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        (head - DEPTH) - self.start_block + 1
    }
}

/// One JSON-RPC call to the chain at `url` from inside `ns`: the `result`.
fn anvil_rpc(ns: &str, url: &str, method: &str, params: &str) -> Option<serde_json::Value> {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    let response = http(
        ns,
        url.trim_start_matches("http://"),
        &format!(
            "POST / HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(value["result"].clone())
}

/// `ip netns exec NS agora ARGS`, with the wallets of `dir` and the coldkey password at hand.
fn agora_in_ns(ns: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_agora")])
        .args(args)
        .env("AGORA_WALLET_PATH", dir.join("wallets"))
        .env("COLD_PW", COLD_PW)
        .env("AGORA_CHAIN_KEY", DEV_KEYS[1])
        .env("AGORA_CONFIG", "/dev/null")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "agora {args:?} in {ns} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Starts anvil on h0, deploys the contract and writes a genesis funding alice's coldkey.
fn start_ledger(h0: &str, dir: &Path) -> Ledger {
    let anvil = anvil_binary().expect("a home directory");
    assert!(
        anvil.exists(),
        "anvil is missing at {} (scripts/setup-tools installs it)",
        anvil.display()
    );
    let args = in_ns(
        h0,
        &anvil,
        &[
            "--host",
            &format!("{SUBNET_PREFIX}.1"),
            "--port",
            "8545",
            "--silent",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ledger = Ledger {
        dir: dir.to_path_buf(),
        rpc: format!("http://{SUBNET_PREFIX}.1:8545"),
        contract: String::new(),
        start_block: 0,
        _anvil: Proc::start("anvil", Path::new("ip"), &args),
    };
    wait_until("anvil to answer", || {
        ledger
            .rpc(h0, "eth_chainId", "[]")
            .is_none()
            .then(|| "no answer yet".to_string())
    });
    let deployed = agora_in_ns(h0, dir, &["chain", "deploy", "--chain-rpc", &ledger.rpc]);
    let field = |name: &str| {
        deployed
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    ledger.contract = field("contract ");
    ledger.start_block = field("start-block ").parse().unwrap();
    let (alice, _) = new_wallet(&dir.join("wallets"), "alice");
    agora_in_ns(
        h0,
        dir,
        &[
            "ledger",
            "init",
            "--ledger-genesis",
            ledger.genesis().to_str().unwrap(),
            "--ledger-log",
            ledger.mirror("h0").to_str().unwrap(),
            "--account",
            &format!("{alice}=1000"),
        ],
    );
    ledger
}

/// A mirror's (height, state root), read from its file alone.
fn mirror_status(ns: &str, ledger: &Ledger, host: &str) -> Option<(u64, String)> {
    if !ledger.mirror(host).exists() {
        return Some((0, String::new()));
    }
    let out = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_agora")])
        .args(["ledger", "status", "--json", "--ledger-log"])
        .arg(ledger.mirror(host))
        .arg("--ledger-genesis")
        .arg(ledger.genesis())
        .env("AGORA_CONFIG", "/dev/null")
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["height"].as_u64()?, v["state_root"].as_str()?.to_string()))
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
    // One miner of the real model on each side of the cut to come.
    let miners = [
        start_miner("miner@h1", hosts.name(1), &ip_of(1), &boot_addr),
        start_miner("miner@h2", hosts.name(2), &ip_of(2), &boot_addr),
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

    // The ledger: anvil on h0, a follower mirroring it on each of h1 and h2; both mirrors agree.
    let (h0, h1, h2) = (hosts.name(0), hosts.name(1), hosts.name(2));
    let ledger = start_ledger(h0, tmp.path());
    ledger
        .rpc(h0, "anvil_mine", &format!(r#"["{:#x}"]"#, DEPTH + 1))
        .unwrap();
    let mut followers = Vec::new();
    for (ns, host) in [(h1, "h1"), (h2, "h2")] {
        let mut args = vec![
            "chain".to_string(),
            "follow".into(),
            "--poll-ms".into(),
            "200".into(),
        ];
        args.extend(ledger.flags(host));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let argv = in_ns(ns, Path::new(env!("CARGO_BIN_EXE_agora")), &args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        followers.push(Proc::start(
            &format!("follow-{host}"),
            Path::new("ip"),
            &argv,
        ));
    }
    let start_height = ledger.final_height(h0);
    wait_until("both mirrors at the chain's final height", || {
        let (a, b) = (
            mirror_status(h1, &ledger, "h1"),
            mirror_status(h2, &ledger, "h2"),
        );
        (a.as_ref().map(|s| s.0) != Some(start_height) || a != b)
            .then(|| format!("h1 {a:?}, h2 {b:?}, final {start_height}"))
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

    // Both sides keep serving: a client on each side buys an embedding from the miner on its side
    // (the cut-off side's client joins through a node there).
    wait_until("a query answered on each side of the cut", || {
        let here = query_from(h1, &ip_of(1), &boot_addr, "served beside the bootstrap");
        let there = query_from(h2, &ip_of(2), &nodes[2].addr, "served on the cut-off side");
        match (here, there) {
            (Ok(a), Ok(b)) if a == miners[0].peer && b == miners[1].peer => None,
            other => Some(format!("{other:?}")),
        }
    });

    // A transfer on the chain during the cut (blocks mined meanwhile, then enough to make it
    // final, then none): h1's mirror takes it, h2's stops short of it.
    let mining = Arc::new(AtomicBool::new(true));
    let miner = {
        let (mining, url, h0) = (Arc::clone(&mining), ledger.rpc.clone(), h0.to_string());
        std::thread::spawn(move || {
            while mining.load(Ordering::SeqCst) {
                anvil_rpc(&h0, &url, "anvil_mine", r#"["0x1"]"#);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let (bob, _) = new_wallet(&tmp.path().join("wallets"), "bob");
    let mut args: Vec<String> = [
        "transfer",
        "--wallet",
        "alice",
        "--password-env",
        "COLD_PW",
        "--to",
        &bob,
        "--amount",
        "1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(ledger.flags("h0"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sent = agora_in_ns(h0, tmp.path(), &args);
    mining.store(false, Ordering::SeqCst);
    miner.join().unwrap();
    ledger
        .rpc(h0, "anvil_mine", &format!(r#"["{:#x}"]"#, DEPTH + 1))
        .unwrap();
    let transfer_height: u64 = sent
        .split("accepted in block ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no accepted line: {sent}"));
    let final_height = ledger.final_height(h0);
    wait_until("h1's mirror to take the transfer", || {
        let a = mirror_status(h1, &ledger, "h1");
        (a.as_ref().map(|s| s.0) != Some(final_height))
            .then(|| format!("h1 {a:?}, final {final_height}"))
    });
    let (h1_height, h1_root) = mirror_status(h1, &ledger, "h1").unwrap();
    let (h2_height, h2_root) = mirror_status(h2, &ledger, "h2").unwrap();
    assert!(
        h2_height < transfer_height,
        "h2 mirrored block {h2_height}, past the transfer at {transfer_height}, while cut off"
    );
    assert_ne!(h1_root, h2_root);

    // Connections across the cut do not linger half-open: missed pings start a close, and
    // TCP_USER_TIMEOUT ends it even when the connection's send buffer is full (a miner's gossip),
    // where a graceful close alone would wait on a flush for the kernel's 15 minutes.
    let peers: Vec<&Node> = nodes.iter().chain(&miners).collect();
    wait_until("connections across the cut to close", || {
        for node in &peers {
            let open = match connected(node) {
                Ok(open) => open,
                Err(why) => return Some(why),
            };
            let across = peers
                .iter()
                .find(|n| cut_off(n) != cut_off(node) && open.contains(&n.peer));
            if let Some(other) = across {
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

    // The ledger: h2's mirror catches up to h1's height and state root.
    wait_until("h2's mirror to reach h1's state root", || {
        let b = mirror_status(h2, &ledger, "h2");
        (b.as_ref() != Some(&(h1_height, h1_root.clone())))
            .then(|| format!("h2 {b:?}, h1 at {h1_height} {h1_root}"))
    });

    drop(followers);
    drop(ledger);
    drop(nodes);
    drop(boot);
    drop(hosts);
}
