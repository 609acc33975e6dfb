//! `agora peers` and `agora providers`: what a running `agora node` knows, read from its local API.

use agora_overlay::{PeerRow, ProviderRow};
use anyhow::{Context, anyhow, bail};
use clap::Args;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// Largest API response read (a provider table of thousands of rows fits).
const MAX_RESPONSE_LEN: u64 = 16 * 1024 * 1024;
/// How long one API call may take.
const TIMEOUT: Duration = Duration::from_secs(40);

/// Where the node's API is.
#[derive(Debug, Args)]
pub struct NodeApi {
    /// The node's `--http` address.
    #[arg(
        long,
        env = "AGORA_NODE",
        default_value = "127.0.0.1:7700",
        value_name = "HOST:PORT"
    )]
    node: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// List the peers a running node knows.
#[derive(Debug, Args)]
pub struct PeersArgs {
    #[command(flatten)]
    api: NodeApi,
}

/// List the providers a running node knows.
#[derive(Debug, Args)]
pub struct ProvidersArgs {
    #[command(flatten)]
    api: NodeApi,
    /// Only this task (embed, generate).
    #[arg(long)]
    task: Option<String>,
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Also look up Kademlia provider records (needs --task and --model).
    #[arg(long)]
    dht: bool,
    /// Subnet for the DHT lookup.
    #[arg(long, default_value_t = 1)]
    subnet: u16,
}

/// A plain HTTP/1.1 GET on loopback: the API is local, so no TLS and no client library.
fn get(node: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let addr = node
        .to_socket_addrs()
        .with_context(|| format!("--node {node:?}"))?
        .next()
        .ok_or_else(|| anyhow!("--node {node:?} resolves to nothing"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| {
            format!("no agora node API at {node} (is `agora node --http {node}` running?)")
        })?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {node}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE_LEN)
        .read_to_end(&mut response)
        .context("reading the API response")?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response from {node}"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let body = response[split + 4..].to_vec();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!(
            "{node}{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return dechunk(&body);
    }
    Ok(body)
}

fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("malformed chunked body"))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| anyhow!("malformed chunk size"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// `agora peers`.
pub fn run_peers(args: PeersArgs) -> anyhow::Result<ExitCode> {
    let body = get(&args.api.node, "/api/peers")?;
    let rows: Vec<PeerRow> = serde_json::from_slice(&body).context("parsing /api/peers")?;
    if args.api.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<54} {:>9} {:>5} {:>7}  {:<24} ADDRESS",
        "PEER", "CONNECTED", "DHT", "RTT", "AGENT"
    );
    for row in &rows {
        println!(
            "{:<54} {:>9} {:>5} {:>7}  {:<24} {}",
            row.peer,
            if row.connected { "yes" } else { "no" },
            if row.in_routing_table { "yes" } else { "no" },
            row.rtt_ms
                .map(|r| format!("{r}ms"))
                .unwrap_or_else(|| "-".into()),
            row.agent.as_deref().unwrap_or("-"),
            row.addrs.first().map(String::as_str).unwrap_or("-"),
        );
    }
    eprintln!("{} peers", rows.len());
    Ok(ExitCode::SUCCESS)
}

fn query_string(args: &ProvidersArgs) -> String {
    let mut params = Vec::new();
    if let Some(task) = &args.task {
        params.push(format!("task={}", encode(task)));
    }
    if let Some(model) = &args.model {
        params.push(format!("model={}", encode(model)));
    }
    if args.dht {
        params.push("dht=1".to_string());
        params.push(format!("subnet={}", args.subnet));
    }
    if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `agora providers`.
pub fn run_providers(args: ProvidersArgs) -> anyhow::Result<ExitCode> {
    if args.dht && (args.task.is_none() || args.model.is_none()) {
        bail!("--dht needs --task and --model");
    }
    let path = format!("/api/providers{}", query_string(&args));
    let body = get(&args.api.node, &path)?;
    let rows: Vec<ProviderRow> = serde_json::from_slice(&body).context("parsing /api/providers")?;
    if args.api.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<54} {:>6} {:<9} {:<28} {:>12} {:>6} {:<7} {:<6} {:>8}",
        "PROVIDER", "SUBNET", "TASK", "MODEL", "PRICE", "QUEUE", "REACH", "SOURCE", "AGE"
    );
    for row in &rows {
        println!(
            "{:<54} {:>6} {:<9} {:<28} {:>12} {:>6} {:<7} {:<6} {:>7}s",
            row.peer,
            row.subnet,
            row.task,
            row.model,
            row.price,
            row.queue_depth,
            row.reachability,
            row.source,
            row.age_ms / 1000
        );
    }
    eprintln!("{} providers", rows.len());
    Ok(ExitCode::SUCCESS)
}
