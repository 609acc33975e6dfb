//! Argument parsing and dispatch for every `agora` subcommand.

pub mod anchor;
pub mod chain;
pub mod config;
pub mod consensus;
pub mod demo;
pub mod gateway;
pub mod infer;
pub mod ledger;
pub mod ledger_run;
pub mod node;
pub mod peers;
pub mod query;
pub mod receipts;
pub mod serve;
pub mod settlement;
pub mod validate;
pub mod wallet;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Agora: a peer-to-peer marketplace for machine intelligence.
///
/// Peers serve models (miners), score each other (validators) and settle every answer with a receipt
/// signed by both sides. Start with `agora demo` to see it work, then `agora wallet new`.
#[derive(Debug, Parser)]
#[command(
    name = "agora",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// The TOML config file [default: ~/.agora/config.toml when it exists]. Flags override the
    /// environment, which overrides the file: see `agora config show` and docs/configuration.md.
    #[arg(long, global = true, env = config::CONFIG_ENV, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, restore, inspect and use coldkey/hotkey wallets.
    #[command(subcommand)]
    Wallet(wallet::WalletCommand),
    /// Run models locally on the cached weights (no network).
    #[command(subcommand)]
    Infer(infer::InferCommand),
    /// Yuma consensus and emission, exactly as the Bittensor chain computes them.
    #[command(subcommand)]
    Consensus(consensus::ConsensusCommand),
    /// Move free balance from the wallet's coldkey to another key.
    Transfer(ledger::TransferArgs),
    /// Stake on a hotkey or take stake back.
    #[command(subcommand)]
    Stake(ledger::StakeCommand),
    /// Create, show and list subnets.
    #[command(subcommand)]
    Subnet(ledger::SubnetCommand),
    /// Register a hotkey on a subnet, paying the burn.
    Register(ledger::RegisterArgs),
    /// A subnet's neurons: stake, trust, consensus, incentive, dividends, emission.
    Metagraph(ledger::MetagraphArgs),
    /// The local ledger: genesis, status, sealing blocks.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// List, show and verify the receipts in the local receipt store.
    #[command(subcommand)]
    Receipts(receipts::ReceiptsCommand),
    /// The EVM chain that orders the ledger: deploy its contract, follow it, show its state.
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// Settle epochs into signed anchor records in the local journal; verify inclusion proofs.
    #[command(subcommand)]
    Anchor(anchor::AnchorCommand),
    /// Run a peer of the mesh: join through bootstrap nodes, keep the provider table, serve a local API.
    Node(node::NodeArgs),
    /// Serve models to the mesh: a miner.
    Serve(serve::ServeArgs),
    /// Challenge the subnet's miners, score them and publish weights on the ledger: a validator.
    Validate(validate::ValidateArgs),
    /// Show the peers a running node (`agora node --http ...`) is connected to.
    Peers(peers::PeersArgs),
    /// Show the providers a running node knows, from signed adverts and the DHT.
    Providers(peers::ProvidersArgs),
    /// Ask the mesh: embed texts or continue a chat, pay, and keep the receipt.
    Query(query::QueryArgs),
    /// Serve OpenAI's HTTP API in front of the mesh, as a client peer.
    Gateway(gateway::GatewayArgs),
    /// Run the local showcase: everything Agora can do today, on this machine.
    Demo(demo::DemoArgs),
    /// The configuration: the file in use, and the effective value of every setting.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Print a shell completion script (e.g. `agora completions bash > ~/.local/share/bash-completion/completions/agora`).
    Completions(config::CompletionsArgs),
}

/// Runs the parsed command. Subcommands return their own exit code where the spec fixes one.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Wallet(cmd) => wallet::run(cmd),
        Command::Infer(cmd) => infer::run(cmd),
        Command::Consensus(cmd) => consensus::run(cmd),
        Command::Receipts(cmd) => receipts::run(cmd),
        Command::Anchor(cmd) => anchor::run(cmd),
        Command::Chain(cmd) => chain::run(cmd),
        Command::Transfer(args) => ledger::transfer(args),
        Command::Stake(cmd) => ledger::stake(cmd),
        Command::Subnet(cmd) => ledger::subnet(cmd),
        Command::Register(args) => ledger::register(args),
        Command::Metagraph(args) => ledger::metagraph(args),
        Command::Ledger(cmd) => ledger::ledger(cmd),
        Command::Node(args) => node::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Peers(args) => peers::run_peers(args),
        Command::Providers(args) => peers::run_providers(args),
        Command::Query(args) => query::run(args),
        Command::Gateway(args) => gateway::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Config(cmd) => config::run(cmd),
        Command::Completions(args) => config::completions(args),
    }
}

/// Logs go to stderr so that stdout stays machine-readable (JSON lines, tables).
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `text` cut to `width` characters for a table cell, with "..." when cut.
pub(crate) fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(3)).collect();
    out.push_str("...");
    out
}
