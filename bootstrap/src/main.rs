//! `agora-bootstrap`: the node operators run so that peers can find each other.
//!
//! A stable identity (a 32-byte seed file created on first start, 0600), TCP and QUIC listeners,
//! Kademlia in server mode, a relay v2 server with limits (peers behind NATs reserve through it and
//! DCUtR hole-punches from there), AutoNAT answers, and `/metrics` over HTTP from one
//! prometheus-client registry that libp2p-metrics records into. It prints its full addresses (with
//! `/p2p/<peer id>`) on stdout, one a line, so scripts can capture them.
//!
//! Misbehaving peers cost it nothing lasting: every decoder is size-limited, gossip is validated,
//! connections are capped, and nothing a peer sends ends the process.

use agora_overlay::{Config, KadMode, Multiaddr, RelayMode, RelayServerLimits};
use agora_protocols::SecretKey;
use anyhow::{Context, bail};
use clap::Parser;
use prometheus_client::registry::Registry;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Agora bootstrap node: DHT server, relay, AutoNAT and metrics, with a stable identity.
#[derive(Debug, Parser)]
#[command(name = "agora-bootstrap", version, max_term_width = 100)]
struct Args {
    /// The identity seed file: created (0600) on first start, reused after, so the peer id, and
    /// with it every address peers have configured, survives restarts.
    #[arg(long, env = "AGORA_BOOTSTRAP_KEY", default_value = "bootstrap.key")]
    key_file: PathBuf,
    /// Where to listen (repeatable). Default: TCP and QUIC on port 4001 on all interfaces.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Other bootstrap nodes to join (repeatable), with `/p2p/<peer id>`.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics. "off" disables it.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics: String,
    /// Gossip subnets to join, so adverts and announcements flow through this node too.
    #[arg(long = "subnet", default_value = "1")]
    subnets: Vec<u16>,
    /// A local test mesh: listen addresses count as external and AutoNAT accepts loopback probes.
    #[arg(long)]
    loopback: bool,
    /// Most relay circuits open at once.
    #[arg(long, default_value_t = 64)]
    max_circuits: usize,
    /// Most relay reservations held at once.
    #[arg(long, default_value_t = 512)]
    max_reservations: usize,
    /// More log output (-v info, -vv debug). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,agora_overlay=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Reads the seed file, or creates it with a fresh key (0600, never overwriting).
fn load_or_create_key(path: &Path) -> anyhow::Result<SecretKey> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::read(path) {
        Ok(bytes) => {
            let seed: zeroize::Zeroizing<[u8; 32]> =
                zeroize::Zeroizing::new(bytes.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "{}: a key file is exactly 32 bytes, this one is {}",
                        path.display(),
                        bytes.len()
                    )
                })?);
            let mut bytes = bytes;
            zeroize::Zeroize::zeroize(&mut bytes);
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                eprintln!(
                    "warning: {} is readable by others (mode {:o}); chmod 600 it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                );
            }
            Ok(SecretKey::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            let seed = zeroize::Zeroizing::new(key.seed());
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(seed.as_slice())?;
            file.sync_all()?;
            eprintln!("created a new identity in {}", path.display());
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let key = load_or_create_key(&args.key_file)?;
    let mut config = Config {
        kad_mode: KadMode::Server,
        relay_server: Some(RelayServerLimits {
            max_circuits: args.max_circuits,
            max_reservations: args.max_reservations,
            ..RelayServerLimits::default()
        }),
        relay: RelayMode::Never,
        dcutr: false,
        subnets: args.subnets.clone(),
        bootstrap: args.bootstrap.clone(),
        agent_version: format!("agora-bootstrap/{}", env!("CARGO_PKG_VERSION")),
        ..Config::default()
    };
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    if args.loopback {
        config.listen_addrs_are_external = true;
        config.autonat_only_global_ips = false;
    }
    let mut registry = Registry::with_prefix("agora");
    let listeners = config.listen.len().max(1);
    let (client, mut events) = agora_overlay::spawn(&key, config, Some(&mut registry))?;
    let registry = Arc::new(Mutex::new(registry));

    // Bootstrap nodes serve no models: refuse any query politely instead of letting it time out.
    let refuser = client.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let reply = event.into_reply();
            let response = agora_overlay::error_response(
                agora_protocols::QueryErrorKind::UnknownModel,
                "this is a bootstrap node; it serves no models",
            );
            let _ = refuser.respond(reply, response).await;
        }
    });

    // Print our addresses once every listener is up (each configured address gives at least one;
    // printing at the first would leave out a transport whose listener is a moment slower).
    let peer_id = client.peer_id();
    let mut status = client.status().await?;
    for _ in 0..100 {
        if status.listen_addrs.len() >= listeners {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = client.status().await?;
    }
    if status.listen_addrs.is_empty() {
        bail!("no listener came up");
    }
    {
        let mut out = std::io::stdout().lock();
        for addr in &status.listen_addrs {
            writeln!(out, "{addr}/p2p/{peer_id}")?;
        }
        out.flush()?;
    }
    eprintln!("agora-bootstrap {peer_id} running");

    if args.metrics != "off" {
        let addr: SocketAddr = args
            .metrics
            .parse()
            .with_context(|| format!("--metrics {:?} is not HOST:PORT", args.metrics))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics on {addr}"))?;
        eprintln!("metrics on http://{}/metrics", listener.local_addr()?);
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move |headers: axum::http::HeaderMap| {
                    metrics(registry.clone(), headers)
                }),
            )
            .route(
                "/api/status",
                axum::routing::get({
                    let client = client.clone();
                    move || status_json(client.clone())
                }),
            );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("metrics server stopped: {e}");
            }
        });
    }

    shutdown_signal().await;
    eprintln!("shutting down");
    drop(client);
    Ok(())
}

/// OpenMetrics text, or the classic text format for a client that asks only for `text/plain`
/// (the same negotiation as every `agora` node's `/metrics`).
async fn metrics(
    registry: Arc<Mutex<Registry>>,
    headers: axum::http::HeaderMap,
) -> impl axum::response::IntoResponse {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let encoded = match registry.lock() {
        Ok(registry) => agora_overlay::metrics::encode_for(&registry, accept).ok(),
        Err(_) => None,
    };
    match encoded {
        Some((content_type, body)) => (
            axum::http::StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, content_type)],
            body,
        ),
        None => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            "cannot encode metrics".to_string(),
        ),
    }
}

async fn status_json(client: agora_overlay::Client) -> axum::response::Response {
    use axum::response::IntoResponse;
    match client.status().await {
        Ok(status) => axum::Json(status).into_response(),
        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// SIGINT or SIGTERM (what systemd and container runtimes send).
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(term) => { term.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
