//! The chain as the ledger's log from the command line: the `--chain-*` options every ledger
//! command takes, and `agora chain deploy|status|follow`.
//!
//! With `--chain-rpc` (and the contract), the ledger log path names the *mirror*: the chain's
//! final blocks copied into a local log by `agora_ledger::chain::Follower`, which every reader
//! (metagraph, validators, replay) reads unchanged. Commands that change the ledger put their
//! signed transaction in the durable outbox beside the mirror (`<ledger dir>/outbox`), send it, and
//! wait for it to come back final through the mirror. Without `--chain-rpc` the log is the local
//! single-writer file log.

use super::ledger::LedgerPaths;
use agora_ledger::chain::{
    Address, ChainClient, ChainConfig, DEFAULT_DEPTH, Follower, Outbox, PrivateKeySigner,
    Submission, deploy,
};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the chain that orders the ledger is. All optional: without `--chain-rpc` the ledger is
/// the local file log.
#[derive(Debug, Clone, Default, Args)]
pub struct ChainArgs {
    /// JSON-RPC URL of the EVM chain that orders the ledger (anvil, Bittensor's EVM, any EVM
    /// chain). Without it the ledger is the local file log.
    #[arg(
        long = "chain-rpc",
        id = "chain_rpc",
        env = "AGORA_CHAIN_RPC",
        value_name = "URL"
    )]
    pub rpc: Option<String>,
    /// The AgoraLedger contract (0x address, from `agora chain deploy`).
    #[arg(
        long = "chain-contract",
        id = "chain_contract",
        env = "AGORA_CHAIN_CONTRACT",
        value_name = "ADDRESS"
    )]
    pub contract: Option<String>,
    /// The block the contract was deployed in: ledger height 1.
    #[arg(
        long = "chain-start-block",
        id = "chain_start_block",
        env = "AGORA_CHAIN_START_BLOCK",
        value_name = "N"
    )]
    pub start_block: Option<u64>,
    /// Blocks below the chain's head before a block counts as final [default: 3].
    #[arg(
        long = "chain-depth",
        id = "chain_depth",
        env = "AGORA_CHAIN_DEPTH",
        value_name = "N"
    )]
    pub depth: Option<u64>,
    /// The chain id the RPC must serve (31337 anvil, 964 Bittensor EVM, 945 its testnet).
    #[arg(
        long = "chain-id",
        id = "chain_id",
        env = "AGORA_CHAIN_ID",
        value_name = "ID"
    )]
    pub chain_id: Option<u64>,
    /// Private key (0x hex) of the EVM account that pays gas for this node's submissions. Prefer
    /// the environment variable to the flag: flags show in `ps`.
    #[arg(
        long = "chain-key",
        id = "chain_key",
        env = "AGORA_CHAIN_KEY",
        hide_env_values = true,
        value_name = "HEX"
    )]
    pub key: Option<String>,
}

impl ChainArgs {
    /// Whether a chain is configured.
    pub fn enabled(&self) -> bool {
        self.rpc.is_some()
    }

    /// The chain configuration, once `--chain-rpc`, `--chain-contract` and `--chain-start-block`
    /// are all given.
    pub fn config(&self) -> anyhow::Result<ChainConfig> {
        let rpc = self.rpc.clone().context("--chain-rpc is not set")?;
        let contract: Address = self
            .contract
            .as_deref()
            .context("--chain-rpc needs --chain-contract (from `agora chain deploy`)")?
            .parse()
            .context("--chain-contract is not a 0x address")?;
        let start = self
            .start_block
            .context("--chain-rpc needs --chain-start-block (from `agora chain deploy`)")?;
        let mut config = ChainConfig::new(rpc, contract, start);
        config.depth = self.depth.unwrap_or(DEFAULT_DEPTH);
        config.chain_id = self.chain_id;
        Ok(config)
    }

    /// The signing key, if given.
    pub fn signer(&self) -> anyhow::Result<Option<PrivateKeySigner>> {
        self.key
            .as_deref()
            .map(|hex| {
                hex.trim()
                    .parse::<PrivateKeySigner>()
                    .context("--chain-key is not a 32-byte hex private key")
            })
            .transpose()
    }
}

/// The outbox beside a mirror log.
pub fn outbox_dir(mirror: &Path) -> PathBuf {
    mirror
        .parent()
        .map_or_else(|| PathBuf::from("outbox"), |d| d.join("outbox"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Brings the mirror at `mirror` up to the chain's final blocks.
pub fn sync_mirror(chain: &ChainArgs, mirror: &Path) -> anyhow::Result<()> {
    let config = chain.config()?;
    runtime()?.block_on(async {
        let client = ChainClient::connect(config, None).await?;
        Follower::new(client, mirror).sync().await?;
        anyhow::Ok(())
    })
}

/// How a transaction sent through the chain ended.
#[derive(Debug)]
pub enum Submitted {
    /// It is in the mirror at this ledger height.
    Final(u64),
    /// It is queued (and maybe sent) but not yet back final; the reason says why.
    Queued(String),
}

/// Queues `tx` (signed envelope bytes) in the outbox, sends it, and waits up to `wait` for it to
/// come back final in the mirror.
pub fn submit(
    chain: &ChainArgs,
    mirror: &Path,
    tx: Vec<u8>,
    wait: Duration,
) -> anyhow::Result<Submitted> {
    let config = chain.config()?;
    let signer = chain
        .signer()?
        .context("sending to the chain needs --chain-key (or AGORA_CHAIN_KEY)")?;
    let outbox = Outbox::open(&outbox_dir(mirror))?;
    outbox.push(&Submission::Transaction(tx.clone()))?;
    runtime()?.block_on(async {
        let client = match ChainClient::connect(config, Some(signer)).await {
            Ok(client) => client,
            Err(e) => return Ok(Submitted::Queued(e.to_string())),
        };
        let follower = Follower::new(client.clone(), mirror);
        let started = Instant::now();
        let mut from = 1;
        loop {
            let report = client.flush(&outbox).await?;
            if let Some(reason) = report.interrupted {
                return Ok(Submitted::Queued(reason));
            }
            if let Some((_, reason)) = report.failed.first() {
                bail!("the chain refused the transaction: {reason}");
            }
            let synced = follower.sync().await?;
            if let Some(height) = find_tx(mirror, from, &tx)? {
                return Ok(Submitted::Final(height));
            }
            from = synced.height + 1;
            if started.elapsed() >= wait {
                return Ok(Submitted::Queued(format!(
                    "not final after {} s (the chain must pass {} more blocks)",
                    wait.as_secs(),
                    client.config().depth
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// The height of the first mirrored block at or after `from` holding `tx`.
fn find_tx(mirror: &Path, from: u64, tx: &[u8]) -> anyhow::Result<Option<u64>> {
    use agora_ledger::log::{LocalLog, TxLog};
    if !mirror.exists() {
        return Ok(None);
    }
    let mut log = LocalLog::open_read_only(mirror)?;
    let mut next = from.max(1);
    loop {
        let blocks = log.blocks_from(next, 256)?;
        let Some(last) = blocks.last().map(|b| b.height) else {
            return Ok(None);
        };
        if let Some(block) = blocks.iter().find(|b| b.txs.iter().any(|t| t == tx)) {
            return Ok(Some(block.height));
        }
        next = last + 1;
    }
}

/// `agora chain`.
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Deploy the AgoraLedger contract; prints its address and deployment block.
    Deploy(DeployArgs),
    /// The chain's head, the mirror's height and the outbox.
    Status(StatusArgs),
    /// Keep the mirror in step with the chain and send the outbox, until stopped.
    Follow(FollowArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// JSON-RPC URL.
    #[arg(long = "chain-rpc", env = "AGORA_CHAIN_RPC", value_name = "URL")]
    pub rpc: String,
    /// Private key (0x hex) of the deploying account; prefer the environment variable.
    #[arg(
        long = "chain-key",
        env = "AGORA_CHAIN_KEY",
        hide_env_values = true,
        value_name = "HEX"
    )]
    pub key: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub ledger: LedgerPaths,
}

#[derive(Debug, Args)]
pub struct FollowArgs {
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// Milliseconds between rounds.
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub poll_ms: u64,
}

pub fn run(cmd: ChainCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ChainCommand::Deploy(args) => {
            let key = args
                .key
                .trim()
                .parse::<PrivateKeySigner>()
                .context("--chain-key is not a 32-byte hex private key")?;
            let (address, block) =
                runtime()?.block_on(deploy(&args.rpc, key, Duration::from_secs(60)))?;
            println!("contract {address:#x}");
            println!("start-block {block}");
            Ok(ExitCode::SUCCESS)
        }
        ChainCommand::Status(args) => status(&args),
        ChainCommand::Follow(args) => follow(&args),
    }
}

fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let chain = &args.ledger.chain;
    let config = chain.config()?;
    let mirror = args.ledger.log_path()?;
    let outbox = Outbox::open(&outbox_dir(&mirror))?;
    runtime()?.block_on(async {
        let client = ChainClient::connect(config, None).await?;
        let head = client.head().await?;
        let sequence = client.sequence().await?;
        let follower = Follower::new(client.clone(), &mirror);
        let report = follower.sync().await?;
        println!("chain-id {}", client.chain_id());
        println!("head {head}");
        println!("transactions-ordered {sequence}");
        println!("mirror-height {}", report.height);
        println!("outbox-pending {}", outbox.len()?);
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn follow(args: &FollowArgs) -> anyhow::Result<ExitCode> {
    let chain = &args.ledger.chain;
    let config = chain.config()?;
    let signer = chain.signer()?;
    let mirror = args.ledger.log_path()?;
    let outbox = Outbox::open(&outbox_dir(&mirror))?;
    let poll = Duration::from_millis(args.poll_ms.max(50));
    runtime()?.block_on(async {
        let shutdown = super::node::shutdown_signal();
        tokio::pin!(shutdown);
        let mut stdout = std::io::stdout();
        writeln!(
            stdout,
            "following {} into {}",
            config.rpc_url,
            mirror.display()
        )?;
        stdout.flush()?;
        let mut client = None;
        let mut last_height = None;
        loop {
            if client.is_none() {
                match ChainClient::connect(config.clone(), signer.clone()).await {
                    Ok(c) => client = Some(c),
                    Err(e) => eprintln!("chain unreachable, retrying: {e}"),
                }
            }
            if let Some(c) = &client {
                let round = async {
                    let flushed = c.flush(&outbox).await?;
                    for (path, reason) in &flushed.failed {
                        eprintln!("refused by the chain: {} ({reason})", path.display());
                    }
                    let synced = Follower::new(c.clone(), &mirror).sync().await?;
                    anyhow::Ok((flushed, synced))
                };
                match round.await {
                    Ok((flushed, synced)) => {
                        if let Some(reason) = flushed.interrupted {
                            eprintln!("outbox waits: {reason}");
                        }
                        if last_height != Some(synced.height) {
                            writeln!(stdout, "height {}", synced.height)?;
                            stdout.flush()?;
                            last_height = Some(synced.height);
                        }
                    }
                    Err(e) => {
                        eprintln!("chain round failed, retrying: {e:#}");
                        // A deep reorg or a foreign mirror will not heal by retrying.
                        if let Some(agora_ledger::chain::ChainError::DeepReorg { .. })
                        | Some(agora_ledger::chain::ChainError::MirrorMismatch { .. }) =
                            e.downcast_ref()
                        {
                            return Err(e);
                        }
                        client = None;
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(poll) => {}
            }
        }
        writeln!(stdout, "stopped")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
