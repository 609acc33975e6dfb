//! Prometheus metrics on real processes: a bootstrap node, a miner (`agora serve --http`), a
//! client (`agora query`) and a gateway (`agora gateway --http`). One embedding query goes through
//! the client and one through the gateway's OpenAI endpoint; then `/metrics` of the miner, the
//! gateway and the bootstrap are scraped over HTTP. The miner's query, receipt, earnings and batch
//! counters moved, the gateway counts the query it sent, the bootstrap counts its peers, every
//! exposition is OpenMetrics (ending in `# EOF`), and the same families in the classic text format
//! pass `promtool check metrics` with no complaint.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    DEADLINE, Proc, free_port, http_get, new_wallet, outside_tool, start_bootstrap_with_metrics,
    start_serve,
};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

const MODEL: &str = "all-minilm-l6-v2";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";
const CLASSIC: &str = "text/plain; version=0.0.4";

/// The value of the first sample whose line starts with `series` (name and labels, exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Runs `promtool check metrics` on `exposition`: it must exit 0 and say nothing.
fn promtool_clean(what: &str, exposition: &str) {
    use std::io::Write;
    let promtool = outside_tool("promtool", "PROMTOOL");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs: {e} (see scripts/setup-tools)", promtool.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on the {what}'s exposition ({}):\n{said}",
        out.status
    );
}

/// A plain HTTP/1.1 POST of a JSON body: (status, body).
fn post_json(addr: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

/// Scrapes `addr`'s `/metrics` both ways; checks the OpenMetrics framing and lints the classic one.
fn scrape(what: &str, addr: &str) -> String {
    let (status, content_type, open) = http_get(addr, "/metrics", OPENMETRICS);
    assert_eq!(status, 200, "{what} /metrics");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{what}: {content_type}"
    );
    assert!(
        open.ends_with("# EOF\n"),
        "{what}: OpenMetrics ends with # EOF"
    );
    let (status, content_type, classic) = http_get(addr, "/metrics", CLASSIC);
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain"),
        "{what}: {content_type}"
    );
    promtool_clean(what, &classic);
    open
}

#[test]
fn a_query_moves_the_miners_counters_and_every_exposition_passes_promtool() {
    // Fail early, before minutes of setup, when promtool is missing.
    outside_tool("promtool", "PROMTOOL");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wallets = dir.join("wallets");
    new_wallet(&wallets, "miner");
    new_wallet(&wallets, "client");

    let boot_metrics = format!("127.0.0.1:{}", free_port());
    let port: u16 = boot_metrics.rsplit(':').next().unwrap().parse().unwrap();
    let (_boot, boot_addr) = start_bootstrap_with_metrics(dir, port);
    let miner = start_serve(
        "miner",
        &wallets,
        &dir.join("miner.redb"),
        free_port(),
        &[
            "--bootstrap",
            &boot_addr,
            "--model",
            MODEL,
            "--http",
            "127.0.0.1:0",
        ],
    );
    let miner_http = miner
        .http
        .clone()
        .expect("the miner prints its http address");

    let receipts = dir.join("client.redb");
    let out = common::embed_query(
        dir,
        &boot_addr,
        &receipts,
        "metrics are counted",
        &["--json"],
    );
    assert!(out.contains("\"receipt\""), "the query was answered: {out}");

    let m = scrape("miner", &miner_http);
    let ok = sample(
        &m,
        "agora_queries_received_total{task=\"embed\",result=\"ok\"}",
    );
    assert!(ok >= Some(1.0), "one answered query counted:\n{m}");
    assert!(
        sample(&m, "agora_receipts_stored_total{side=\"provider\"}") >= Some(1.0),
        "its receipt counted"
    );
    assert!(
        sample(&m, "agora_earned_units_total") >= Some(1.0),
        "earnings"
    );
    assert!(
        sample(&m, "agora_query_service_seconds_count{task=\"embed\"}") >= Some(1.0),
        "service time observed"
    );
    assert!(
        sample(&m, "agora_embed_batch_size_count") >= Some(1.0),
        "a batch observed"
    );
    assert!(
        sample(&m, "agora_peers_connected") >= Some(1.0),
        "peers counted"
    );
    assert!(
        m.contains("agora_connections{transport=\"tcp\",direction=\"outbound\"}"),
        "connections by transport"
    );
    assert!(m.contains("agora_kad_routing_table_peers "), "DHT health");
    assert!(
        m.contains("agora_libp2p_swarm_"),
        "libp2p's metrics in the same registry"
    );
    assert!(
        m.contains("agora_libp2p_gossipsub_"),
        "gossipsub's metrics too"
    );
    assert!(
        m.contains("agora_anchor_last_epoch "),
        "anchor state exposed"
    );
    assert!(m.contains("agora_build_info{"), "build info");
    assert!(
        !m.contains(&miner.peer.to_string()),
        "no peer id in any label"
    );

    // The gateway: one embedding through its OpenAI endpoint, counted on its own /metrics.
    let gateway = Proc::start(
        "gateway",
        std::path::Path::new(env!("CARGO_BIN_EXE_agora")),
        &[
            "gateway",
            "--ephemeral-key",
            "--loopback",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--bootstrap",
            &boot_addr,
            "--receipts",
            dir.join("gateway.redb").to_str().unwrap(),
        ],
    );
    let gateway_http = gateway.wait_for("its --http address", |l| {
        l.strip_prefix("http ").map(|a| a.trim().to_string())
    });
    let openai = gateway.wait_for("its OpenAI address", |l| {
        l.strip_prefix("gateway http://")
            .and_then(|a| a.trim().strip_suffix("/v1"))
            .map(str::to_string)
    });
    let body = format!(r#"{{"model":"{MODEL}","input":"counted at the gateway"}}"#);
    let end = Instant::now() + DEADLINE;
    // Until the miner's advert reaches the gateway it answers 404 (unknown model): retry.
    while post_json(&openai, "/v1/embeddings", &body).0 != 200 {
        assert!(
            Instant::now() < end,
            "the gateway never answered an embedding"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let g = scrape("gateway", &gateway_http);
    assert!(
        sample(&g, "agora_queries_sent_total{task=\"embed\",result=\"ok\"}") >= Some(1.0),
        "the gateway counts the query it paid for:\n{g}"
    );
    assert!(g.contains("role=\"gateway\""), "its role in build info");

    let b = scrape("bootstrap", &boot_metrics);
    assert!(
        sample(&b, "agora_peers_connected") >= Some(1.0),
        "the bootstrap counts its peers:\n{b}"
    );
    assert!(
        b.contains("agora_libp2p_swarm_connections_established_total"),
        "the bootstrap's libp2p metrics"
    );
    assert!(b.contains("agora_gossip_mesh_peers{"), "gossip mesh sizes");
}
