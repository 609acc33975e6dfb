//! `agora gateway`: an OpenAI-compatible HTTP endpoint for a client peer of the mesh.

use super::query::ClientArgs;
use agora::gateway::{GatewayConfig, serve_with_shutdown};
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Serve OpenAI's API (`/v1/models`, `/v1/embeddings`, `/v1/chat/completions`) in front of the mesh.
///
/// `--listen` is the HTTP address here; the peer's own mesh addresses are `--p2p-listen`.
#[derive(Debug, Args)]
#[command(mut_arg("listen", |a| a.long("p2p-listen")))]
pub struct GatewayArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Where to serve HTTP (port 0 picks one and prints it). Keep it on loopback or behind a proxy
    /// that authenticates: every request is paid from this peer's wallet.
    #[arg(
        id = "http_listen",
        long = "listen",
        default_value = "127.0.0.1:8080",
        value_name = "HOST:PORT"
    )]
    pub listen: SocketAddr,
    /// Requests answered at once; more get 503 with Retry-After.
    #[arg(long, default_value_t = GatewayConfig::default().max_concurrent_requests)]
    pub max_concurrent: usize,
    /// Tokens generated when a chat request names no max_tokens.
    #[arg(long, default_value_t = GatewayConfig::default().default_max_tokens)]
    pub default_max_tokens: u32,
    /// Serve the peer's local JSON API, the status page and `/metrics` here (e.g.
    /// 127.0.0.1:7702; port 0 picks one and prints it), apart from the OpenAI port.
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<SocketAddr>,
}

/// Runs `agora gateway` until SIGTERM or Ctrl-C.
pub fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (client, _temp, status) = args.client.connect_observed("gateway", "gateway").await?;
        if let Some(addr) = args.http {
            let app =
                super::node::api(client.overlay().clone()).merge(agora::status::router(status));
            super::node::serve_http(addr, app).await?;
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let address = listener.local_addr()?;
        let shutdown = super::node::shutdown_signal();
        println!("peer {}", client.overlay().peer_id());
        println!("gateway http://{address}/v1");
        println!("ready");
        use std::io::Write;
        std::io::stdout().flush()?;
        let config = GatewayConfig {
            max_concurrent_requests: args.max_concurrent.max(1),
            default_max_tokens: args.default_max_tokens,
            request_deadline: Duration::from_millis(args.client.deadline_ms)
                .max(GatewayConfig::default().request_deadline),
            ..GatewayConfig::default()
        };
        let backend = Arc::new(client);
        serve_with_shutdown(listener, Arc::clone(&backend), config, shutdown)
            .await
            .context("the gateway stopped")?;
        // Countersignatures still on their way to providers are delivered before we go.
        let unacknowledged = backend
            .flush_settlements(backend.config().settle_timeout)
            .await;
        if unacknowledged > 0 {
            eprintln!(
                "{unacknowledged} countersigned receipt(s) were not acknowledged by their provider"
            );
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
