//! `agora serve`: a miner. Loads real models, advertises them on the mesh, admits queries and answers
//! them with signed receipts that are stored durably before the answer leaves.
//!
//! Stdout is for scripts and tests: model loading progress, then the lines `agora node` prints
//! (`peer`, `listen`, `http`), then `ready`. Logs go to stderr (`-v`). The local API (`--http`) is
//! `agora node`'s, plus `GET /api/serve` with the provider's counters, the status page (`GET /`)
//! and Prometheus metrics (`GET /metrics`).

use super::anchor::JournalPath;
use super::ledger::LedgerPaths;
use super::node::{
    KeyArgs, MeshArgs, api, ledger_source, serve_http, shutdown_signal, spawn_observed,
};
use super::settlement::Settler;
use agora::market::admission::AdmissionConfig;
use agora::market::provider::{Provider, ProviderConfig, ProviderStats, initial_offers};
use agora::market::runner::{Fault, KNOWN_MODELS, ModelRunner};
use agora_inference::backend::DevicePreference;
use agora_ledger::balances::Genesis;
use agora_ledger::store::{ReceiptStore, ReceiptWriter};
use agora_protocols::Task;
use anyhow::{Context, anyhow, bail};
use clap::Args;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Default price of an embedding query, in units of 1e-9.
const DEFAULT_EMBED_PRICE: u64 = 1_000;
/// Default price of a generation query, in units of 1e-9.
const DEFAULT_GENERATE_PRICE: u64 = 50_000;
/// Receipts waiting for the store's writer thread before answers wait for room.
const WRITER_QUEUE: usize = 4096;

/// Serve models to the mesh: a miner.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// A model to serve (repeatable): all-minilm-l6-v2 (embed), smollm2-135m-instruct (generate).
    #[arg(long = "model", value_name = "NAME", required = true)]
    pub models: Vec<String>,
    /// Price per query in units of 1e-9: MODEL=UNITS for one model, or UNITS for all (repeatable)
    /// [default: 1000 for embed, 50000 for generate].
    #[arg(long = "price", value_name = "[MODEL=]UNITS")]
    pub prices: Vec<String>,
    /// Most a client may owe this miner in unpaid receipts, in units of 1e-9 [default: 1000000000].
    #[arg(long, value_name = "UNITS")]
    pub credit_limit: Option<u64>,
    /// Genesis allocation file: a client may also not owe more than its balance there.
    #[arg(long = "genesis", id = "balances_genesis", value_name = "PATH")]
    pub genesis: Option<PathBuf>,
    /// The receipt store [default: ~/.agora/receipts.redb; with --ephemeral-key a temporary file].
    #[arg(long, env = "AGORA_RECEIPTS", value_name = "PATH")]
    pub receipts: Option<PathBuf>,
    /// Serve the local JSON API here (e.g. 127.0.0.1:7700; port 0 picks one and prints it).
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<SocketAddr>,
    /// Queries per second one client may sustain (burst: twice that) [default: 50].
    #[arg(long, value_name = "QPS")]
    pub rate_limit: Option<u32>,
    /// Chaos testing only: answer wrongly on purpose (e.g. wrong-embeddings), so that tests can
    /// show validators taking a faulty miner's incentive away.
    #[arg(long, value_enum, hide = true)]
    pub fault: Option<Fault>,
    /// The ledger: its metagraph on the status page, and the epochs `--settle` settles. Where
    /// its genesis does not exist the status page shows no metagraph.
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// At each end of the subnet's epoch, fold the epoch's countersigned receipts, weights and
    /// consensus into an anchor record signed by this miner's hotkey: journaled, the receipts
    /// marked settled (clients' credit here renews), and with `--chain-rpc` sent to the chain.
    #[arg(long)]
    pub settle: bool,
    #[command(flatten)]
    pub journal: JournalPath,
}

/// Prices per model from `--price` flags over the defaults.
fn prices(args: &[String], models: &[(Task, String)]) -> anyhow::Result<HashMap<String, u64>> {
    let mut prices: HashMap<String, u64> = models
        .iter()
        .map(|(task, model)| {
            let price = match task {
                Task::Embed => DEFAULT_EMBED_PRICE,
                Task::Generate => DEFAULT_GENERATE_PRICE,
            };
            (model.clone(), price)
        })
        .collect();
    // "UNITS" first, then "MODEL=UNITS" over it, whatever the order on the command line.
    let (for_all, per_model): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| !a.contains('='));
    for text in for_all {
        let units: u64 = text
            .parse()
            .map_err(|_| anyhow!("--price {text:?}: expected UNITS or MODEL=UNITS"))?;
        prices.values_mut().for_each(|p| *p = units);
    }
    for text in per_model {
        let (model, units) = text
            .split_once('=')
            .ok_or_else(|| anyhow!("--price {text:?}: expected MODEL=UNITS"))?;
        let units: u64 = units
            .parse()
            .map_err(|_| anyhow!("--price {text:?}: the price is a whole number of units"))?;
        let Some(price) = prices.get_mut(model) else {
            bail!("--price {text:?}: {model} is not among the --model flags");
        };
        *price = units;
    }
    Ok(prices)
}

/// Runs `agora serve` until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    for name in &args.models {
        if !KNOWN_MODELS.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = KNOWN_MODELS.iter().map(|(n, _)| *n).collect();
            bail!(
                "unknown model {name:?}: this build serves {}",
                known.join(", ")
            );
        }
    }
    let key = args.key.load()?;
    let mut overlay = args.mesh.overlay_config()?;
    let subnet = overlay.subnets.first().copied().unwrap_or(1);
    let genesis = args
        .genesis
        .as_deref()
        .map(Genesis::load)
        .transpose()
        .context("reading the genesis file")?;
    let (store_path, temp) =
        super::node::receipts_location(args.receipts.as_deref(), &args.key, "serve")?;
    let store = ReceiptStore::open(&store_path)?;
    let settler = if args.settle {
        if args.key.ephemeral_key {
            bail!(
                "--settle signs anchors with the wallet's hotkey: give --wallet, not --ephemeral-key"
            );
        }
        let journal = args.journal.path()?;
        println!(
            "settling each epoch of subnet {subnet} into {}",
            journal.display()
        );
        Some(Settler::new(
            key.clone(),
            subnet,
            store.clone(),
            &args.ledger,
            &journal,
        )?)
    } else {
        None
    };
    match &temp {
        Some(_) => println!(
            "receipts {} (temporary: --ephemeral-key, deleted at exit)",
            store_path.display()
        ),
        None => println!("receipts {}", store_path.display()),
    }

    let mut stdout = std::io::stdout();
    let runner = ModelRunner::load(&args.models, DevicePreference::from_env(), |line| {
        println!("{line}");
        let _ = std::io::stdout().flush();
    })?
    .with_fault(args.fault);
    if let Some(fault) = args.fault {
        eprintln!("warning: serving with the deliberate fault {fault:?} (chaos testing)");
    }
    let prices = prices(&args.prices, &runner.serves())?;
    let mut admission = AdmissionConfig::default();
    if let Some(limit) = args.credit_limit {
        admission = admission.with_credit_limit(limit);
    }
    if let Some(qps) = args.rate_limit {
        admission = admission.with_rate_limit(qps);
    }
    overlay.offers = initial_offers(&runner, subnet, &prices);
    let mut config = ProviderConfig::new(subnet, prices);
    config.admission = admission;
    config.genesis = genesis;
    config.advert_interval = overlay.advert_interval;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let writer = ReceiptWriter::spawn(store.clone(), WRITER_QUEUE);
    let stop_settling = Arc::new(AtomicBool::new(false));
    let result = runtime.block_on(async {
        let (client, events, status) = spawn_observed(&key, overlay, "serve")?;
        let status = status
            .with_receipts(store.clone())
            .with_ledger(ledger_source(&args.ledger, subnet));
        let settling = match settler {
            Some(settler) => Some(
                settler
                    .with_metrics(status.metrics.clone())
                    .spawn(Arc::clone(&stop_settling))?,
            ),
            None => None,
        };
        let provider = Provider::new(key, client.clone(), runner, store, writer.clone(), config)
            .with_metrics(status.metrics.clone());
        let stats = provider.stats();
        print_addresses(&client, &mut stdout).await?;
        if let Some(addr) = args.http {
            let app = api(client.clone())
                .merge(serve_api(stats))
                .merge(agora::status::router(status));
            serve_http(addr, app).await?;
        }
        let shutdown = shutdown_signal();
        writeln!(stdout, "ready")?;
        stdout.flush()?;
        provider.run(events, shutdown).await;
        // Everything answered is stored; let the writer finish and release the file.
        writer.close().await;
        stop_settling.store(true, Ordering::SeqCst);
        if let Some(settling) = settling {
            let _ = tokio::task::spawn_blocking(move || settling.join()).await;
        }
        anyhow::Ok(())
    });
    // Stop the overlay and the API before the temporary store is deleted.
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(temp);
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `peer <id>` and one `listen <addr>/p2p/<id>` per listen address, as `agora node` does.
async fn print_addresses(
    client: &agora_overlay::Client,
    out: &mut std::io::Stdout,
) -> anyhow::Result<()> {
    let mut status = client.status().await?;
    for _ in 0..100 {
        if !status.listen_addrs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = client.status().await?;
    }
    writeln!(out, "peer {}", client.peer_id())?;
    for addr in &status.listen_addrs {
        writeln!(out, "listen {addr}/p2p/{}", client.peer_id())?;
    }
    Ok(())
}

/// `GET /api/serve`: the provider's counters.
fn serve_api(stats: Arc<ProviderStats>) -> axum::Router {
    use axum::extract::State;
    use axum::routing::get;
    async fn serve_stats(State(stats): State<Arc<ProviderStats>>) -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::to_value(stats.snapshot()).unwrap_or_default())
    }
    axum::Router::new()
        .route("/api/serve", get(serve_stats))
        .with_state(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn served() -> Vec<(Task, String)> {
        vec![
            (Task::Embed, "all-minilm-l6-v2".to_string()),
            (Task::Generate, "smollm2-135m-instruct".to_string()),
        ]
    }

    #[test]
    fn prices_default_per_task_and_flags_override() {
        let p = prices(&[], &served()).unwrap();
        assert_eq!(p["all-minilm-l6-v2"], DEFAULT_EMBED_PRICE);
        assert_eq!(p["smollm2-135m-instruct"], DEFAULT_GENERATE_PRICE);
        let flags = ["all-minilm-l6-v2=7".to_string(), "9".to_string()];
        let p = prices(&flags, &served()).unwrap();
        assert_eq!(p["all-minilm-l6-v2"], 7);
        assert_eq!(p["smollm2-135m-instruct"], 9);
        assert!(prices(&["other=1".to_string()], &served()).is_err());
        assert!(prices(&["x".to_string()], &served()).is_err());
    }
}
