//! `agora node`: join the mesh and serve a small local JSON API about what this node knows.
//!
//! The API (on `--http`, loopback by default) is what `agora peers` and `agora providers` read:
//! `GET /api/status`, `GET /api/peers`, `GET /api/providers?task=embed[&model=M][&dht=1&subnet=1]`.
//! It is for the operator of this machine, not for the network: bind it to 127.0.0.1. The same
//! address serves the web status page (`GET /`) and Prometheus metrics (`GET /metrics`): see
//! [`agora::status`] and `docs/metrics.md`.

use agora_overlay::{Client, Config, KadMode, Multiaddr, ProviderRow, RelayMode, SubnetOffer};
use agora_protocols::{ModelOffer, QueryErrorKind, SecretKey, Task};
use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Join the mesh: discover peers, follow adverts, answer what the node serves.
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Serve the local JSON API here (e.g. 127.0.0.1:7700; port 0 picks one and prints it).
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<SocketAddr>,
    /// Advertise a model: TASK:MODEL:PRICE (repeatable), e.g. embed:all-minilm-l6-v2:1000. This
    /// node only publishes it; queries are refused until a model runner (`agora serve`) answers.
    #[arg(long, value_name = "TASK:MODEL:PRICE")]
    advertise: Vec<String>,
    /// The ledger whose metagraph the status page shows (none when its genesis does not exist).
    #[command(flatten)]
    pub ledger: super::ledger::LedgerPaths,
}

/// Which key is this peer's identity (its hotkey): shared by every command that joins the mesh.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Wallet whose hotkey is this node's identity.
    #[arg(long, value_name = "NAME", required_unless_present = "ephemeral_key")]
    pub wallet: Option<String>,
    /// Hotkey of that wallet.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub hotkey: String,
    /// Directory holding all wallets [default: ~/.agora/wallets].
    #[arg(long, env = "AGORA_WALLET_PATH", value_name = "DIR")]
    pub wallet_path: Option<PathBuf>,
    /// Read the hotkey's password from this file.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Read the hotkey's password from this environment variable (give its name).
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// A throwaway identity for this run (tests, demos): nothing it earns can be claimed later.
    #[arg(long, conflicts_with = "wallet")]
    pub ephemeral_key: bool,
}

/// How to join the mesh: shared by every command that does.
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// A bootstrap node, with /p2p/<peer id> (repeatable; the flags replace the config file's
    /// list).
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Where to listen (repeatable). Default: TCP and QUIC on port 4001.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Serve the DHT even though AutoNAT has not confirmed this node is reachable (loopback and
    /// private test meshes, where AutoNAT never can).
    #[arg(long)]
    pub kad_server: bool,
    /// A private test mesh (127.0.0.1 by default, or the addresses given to --listen, e.g. inside
    /// network namespaces): implies --kad-server, uses listen addresses as external ones, speeds up
    /// adverts and discovery. Not for the open internet.
    #[arg(long)]
    pub loopback: bool,
    /// When to take a relay reservation through a bootstrap node.
    #[arg(long, value_enum, default_value_t = RelayArg::Auto)]
    relay: RelayArg,
    /// Subnets to join (repeatable).
    #[arg(long = "subnet", value_name = "N")]
    pub subnets: Vec<u16>,
}

/// `--relay` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum RelayArg {
    /// Reserve once AutoNAT says this node is private.
    Auto,
    /// Reserve from the start (known to be behind a NAT).
    Always,
    /// Never reserve.
    Never,
}

fn parse_offer(text: &str, subnet: u16) -> anyhow::Result<SubnetOffer> {
    let mut parts = text.splitn(3, ':');
    let (Some(task), Some(model), Some(price)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("--advertise {text:?}: expected TASK:MODEL:PRICE");
    };
    let task: Task = task
        .parse()
        .map_err(|e| anyhow!("--advertise {text:?}: {e}"))?;
    let price: u64 = price
        .parse()
        .map_err(|_| anyhow!("--advertise {text:?}: the price is a whole number"))?;
    if model.is_empty() {
        bail!("--advertise {text:?}: empty model name");
    }
    Ok(SubnetOffer {
        subnet,
        offer: ModelOffer {
            task,
            model: model.to_string(),
            price,
            queue_depth: 0,
            throughput_milli: 0,
        },
    })
}

impl KeyArgs {
    /// Unlocks the hotkey (asking for its password if it is encrypted), or makes a throwaway key.
    pub fn load(&self) -> anyhow::Result<SecretKey> {
        let args = self;
        if args.ephemeral_key {
            return Ok(SecretKey::generate());
        }
        let name = args
            .wallet
            .as_deref()
            .ok_or_else(|| anyhow!("give --wallet NAME or --ephemeral-key"))?;
        let root = match &args.wallet_path {
            Some(path) => path.clone(),
            None => agora_wallet::default_root()?,
        };
        let wallet = agora_wallet::Wallet::new(&root, name)?;
        let file = wallet.hotkey_file(&args.hotkey)?;
        let password = if file.is_encrypted() {
            Some(match (&args.password_file, &args.password_env) {
                (Some(path), _) => agora_wallet::Password::from_file(path)?,
                (None, Some(var)) => agora_wallet::Password::from_env(var)?,
                (None, None) => agora_wallet::Password::from_string(
                    rpassword::prompt_password(format!("Password of hotkey {:?}: ", args.hotkey))
                        .context("no terminal to ask for the password: use --password-file")?,
                ),
            })
        } else {
            None
        };
        Ok(wallet.unlock_hotkey(&args.hotkey, password.as_ref())?)
    }
}

impl MeshArgs {
    /// Builds the overlay configuration. The config file and the environment are already folded
    /// into the arguments (see `cli::config`).
    pub fn overlay_config(&self) -> anyhow::Result<Config> {
        let args = self;
        let mut config = if args.loopback {
            Config::loopback()
        } else {
            Config::default()
        };
        config.bootstrap = args.bootstrap.clone();
        if !args.listen.is_empty() {
            config.listen = args.listen.clone();
        }
        if !args.subnets.is_empty() {
            config.subnets = args.subnets.clone();
        }
        if args.kad_server {
            config.kad_mode = KadMode::Server;
        }
        config.relay = match args.relay {
            RelayArg::Auto => RelayMode::Auto,
            RelayArg::Always => RelayMode::Always,
            RelayArg::Never => RelayMode::Never,
        };
        if config.bootstrap.is_empty() {
            eprintln!(
                "warning: no bootstrap node given (--bootstrap, AGORA_BOOTSTRAP or [mesh] bootstrap \
                 in the config file); waiting to be dialed"
            );
        }
        Ok(config)
    }
}

/// Runs `agora node` until interrupted.
pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let key = args.key.load()?;
    let mut config = args.mesh.overlay_config()?;
    let subnet = config.subnets.first().copied().unwrap_or(1);
    config.offers = args
        .advertise
        .iter()
        .map(|text| parse_offer(text, subnet))
        .collect::<anyhow::Result<_>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ledger = ledger_source(&args.ledger, subnet);
    runtime.block_on(serve(key, config, args.http, ledger))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    key: SecretKey,
    config: Config,
    http: Option<SocketAddr>,
    ledger: Option<agora::status::LedgerSource>,
) -> anyhow::Result<()> {
    let (client, mut events, page) = spawn_observed(&key, config, "node")?;
    let page = page.with_ledger(ledger);

    // No model runner is attached to a bare node: refuse with a reason rather than time out.
    let refuser = client.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let reply = event.into_reply();
            let response = agora_overlay::error_response(
                QueryErrorKind::UnknownModel,
                "this node runs no model runner (start it with `agora serve`)",
            );
            let _ = refuser.respond(reply, response).await;
        }
    });

    let mut status = client.status().await?;
    for _ in 0..100 {
        if !status.listen_addrs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = client.status().await?;
    }
    println!("peer {}", client.peer_id());
    for addr in &status.listen_addrs {
        println!("listen {addr}/p2p/{}", client.peer_id());
    }

    if let Some(addr) = http {
        serve_http(addr, api(client.clone()).merge(agora::status::router(page))).await?;
    }
    let shutdown = shutdown_signal();
    println!("ready");
    use std::io::Write;
    std::io::stdout().flush()?;

    shutdown.await;
    Ok(())
}

/// Joins the mesh like [`agora_overlay::spawn`], with one Prometheus registry (prefix `agora`) that
/// libp2p, the overlay and the marketplace's [`agora::metrics::Metrics`] all record into, and the
/// status page's context around it (add the receipt store and ledger to it where there are some).
pub fn spawn_observed(
    key: &SecretKey,
    config: Config,
    role: &'static str,
) -> anyhow::Result<(
    Client,
    tokio::sync::mpsc::Receiver<agora_overlay::Event>,
    agora::status::StatusContext,
)> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("agora");
    let (client, events) = agora_overlay::spawn(key, config, Some(&mut registry))?;
    let metrics = agora::metrics::Metrics::register(&mut registry, role);
    let status = agora::status::StatusContext::new(client.clone(), metrics, registry, role);
    Ok((client, events, status))
}

/// The ledger behind `paths`, read for the status page: its `subnet`'s metagraph at the last
/// block, or none where the genesis file does not exist (a node started without a ledger).
pub fn ledger_source(
    paths: &super::ledger::LedgerPaths,
    subnet: u16,
) -> Option<agora::status::LedgerSource> {
    let genesis = paths.genesis_path().ok()?;
    let log = paths.log_path().ok()?;
    Some(std::sync::Arc::new(move || {
        use agora_ledger::log::{LocalLog, replay};
        if !genesis.exists() {
            return Ok(None);
        }
        let state = agora_ledger::state::LedgerGenesis::load(&genesis)
            .map_err(|e| format!("reading {}: {e}", genesis.display()))?
            .to_state();
        let state = if log.exists() {
            let mut reader = LocalLog::open_read_only(&log)
                .map_err(|e| format!("opening {}: {e}", log.display()))?;
            replay(&mut reader, state)
                .map_err(|e| format!("replaying {}: {e}", log.display()))?
                .0
        } else {
            state
        };
        let height = state.height();
        let epoch = state
            .subnet(subnet)
            .map(|s| s.epoch_index(height))
            .unwrap_or(0);
        Ok(Some(agora::status::LedgerView {
            subnet,
            height,
            epoch,
            rows: state.metagraph(subnet).unwrap_or_default(),
        }))
    }))
}

/// Serves a node's local HTTP side (`--http`: the JSON API, the status page, `/metrics`) on
/// `addr` in the background, after printing `http ADDRESS` (port 0 picks one) for scripts.
pub async fn serve_http(
    addr: std::net::SocketAddr,
    app: axum::Router,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the API on {addr}"))?;
    let bound = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        writeln!(out, "http {bound}")?;
        out.flush()?;
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("API server stopped: {e}");
        }
    });
    Ok(bound)
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
///
/// The handlers are installed when this is *called*, not when the future is first polled: call it
/// before telling anyone you are ready, or a SIGTERM sent right after "ready" kills the process
/// with the default action instead of shutting it down cleanly. Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            _ = next(term.as_mut()) => {}
            _ = next(interrupt.as_mut()) => {}
        }
    }
}

/// The next delivery of a signal, or never when its handler could not be installed.
async fn next(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Query string of `/api/providers`.
#[derive(Debug, Deserialize)]
struct ProvidersQuery {
    task: Option<String>,
    model: Option<String>,
    /// Also ask Kademlia provider records (needs task and model).
    #[serde(default)]
    dht: Option<String>,
    subnet: Option<u16>,
}

/// The node's local JSON API (status, peers, providers).
pub fn api(client: Client) -> axum::Router {
    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;

    fn unavailable(e: impl std::fmt::Display) -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
    }

    async fn status(State(client): State<Client>) -> Response {
        match client.status().await {
            Ok(s) => axum::Json(s).into_response(),
            Err(e) => unavailable(e),
        }
    }
    async fn peers(State(client): State<Client>) -> Response {
        match client.peers().await {
            Ok(p) => axum::Json(p).into_response(),
            Err(e) => unavailable(e),
        }
    }
    async fn providers(State(client): State<Client>, Query(q): Query<ProvidersQuery>) -> Response {
        let task: Option<Task> = match q.task.as_deref().map(str::parse).transpose() {
            Ok(task) => task,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}")).into_response(),
        };
        let mut rows = match client.providers(task, q.model.clone()).await {
            Ok(rows) => rows,
            Err(e) => return unavailable(e),
        };
        if q.dht.as_deref().is_some_and(|v| v == "1" || v == "true") {
            let (Some(task), Some(model)) = (task, q.model.clone()) else {
                return (StatusCode::BAD_REQUEST, "dht=1 needs task and model").into_response();
            };
            let subnet = q.subnet.unwrap_or(1);
            match tokio::time::timeout(
                Duration::from_secs(30),
                client.dht_providers(subnet, task, model.clone()),
            )
            .await
            {
                Ok(Ok(peers)) => {
                    for peer in peers {
                        let peer = peer.to_string();
                        let mut known = false;
                        for row in rows.iter_mut().filter(|r| r.peer == peer) {
                            row.source = "gossip+dht".to_string();
                            known = true;
                        }
                        if known {
                            continue;
                        }
                        rows.push(ProviderRow {
                            peer,
                            subnet,
                            task: task.as_str().to_string(),
                            model: model.clone(),
                            price: 0,
                            queue_depth: 0,
                            throughput_milli: 0,
                            reachability: "unknown".to_string(),
                            addrs: Vec::new(),
                            age_ms: 0,
                            source: "dht".to_string(),
                        });
                    }
                }
                Ok(Err(e)) => return unavailable(e),
                Err(_) => return unavailable("DHT lookup timed out"),
            }
        }
        axum::Json(rows).into_response()
    }

    axum::Router::new()
        .route("/api/status", get(status))
        .route("/api/peers", get(peers))
        .route("/api/providers", get(providers))
        .with_state(client)
}

/// A receipt store file removed when dropped: an ephemeral identity's receipts can never be claimed,
/// so keeping them would only leave litter.
#[derive(Debug)]
pub struct TempStore(PathBuf);

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where a command's receipt store is: `--receipts` (or `AGORA_RECEIPTS`) if given; a temporary file
/// (deleted when the guard drops) for an `--ephemeral-key`; else `~/.agora/receipts.redb`.
pub fn receipts_location(
    receipts: Option<&Path>,
    key: &KeyArgs,
    command: &str,
) -> anyhow::Result<(PathBuf, Option<TempStore>)> {
    if let Some(path) = receipts {
        return Ok((path.to_path_buf(), None));
    }
    if key.ephemeral_key {
        let mut suffix = [0u8; 8];
        agora_protocols::keys::fill_random(&mut suffix);
        let path =
            std::env::temp_dir().join(format!("agora-{command}-{}.redb", hex::encode(suffix)));
        return Ok((path.clone(), Some(TempStore(path))));
    }
    let home =
        dirs::home_dir().context("no home directory: pass --receipts or set AGORA_RECEIPTS")?;
    Ok((home.join(".agora").join("receipts.redb"), None))
}
