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
    Address, ChainClient, ChainConfig, ChainError, DEFAULT_DEPTH, FlushReport, Follower, Outbox,
    PrivateKeySigner, Submission, deploy,
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
    ChainSession::open(chain, mirror)?.round(None).map(|_| ())
}

/// One process's connection to the chain, for the loops that keep a mirror in step and send an
/// outbox (`agora chain follow`, the validator's ledger thread, a miner's settlement thread).
///
/// It owns a single-threaded runtime because an alloy HTTP client must stay on the runtime that
/// made it; callers are plain threads and call it blocking. The client is made on first use and
/// dropped after an RPC error, so a chain that went away is reconnected on a later round.
pub struct ChainSession {
    runtime: tokio::runtime::Runtime,
    config: ChainConfig,
    signer: Option<PrivateKeySigner>,
    mirror: PathBuf,
    client: Option<ChainClient>,
}

/// What one [`ChainSession::round`] did.
#[derive(Debug, Default)]
pub struct Round {
    /// What the outbox flush did (empty without an outbox).
    pub flushed: FlushReport,
    /// The mirror's height after the round.
    pub height: u64,
}

impl ChainSession {
    /// A session for the chain of `chain`, mirroring into `mirror`; connects on first use.
    pub fn open(chain: &ChainArgs, mirror: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            runtime: runtime()?,
            config: chain.config()?,
            signer: chain.signer()?,
            mirror: mirror.to_path_buf(),
            client: None,
        })
    }

    /// The chain's settings.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// Sends what `outbox` holds (items the chain refuses for good come back in
    /// `flushed.failed`), then mirrors every new final block. An unreachable RPC drops the
    /// connection and is an error; so are a reorg deeper than the depth and a mirror of another
    /// chain, which retrying cannot heal (see [`is_fatal`]).
    pub fn round(&mut self, outbox: Option<&Outbox>) -> anyhow::Result<Round> {
        let Self {
            runtime,
            config,
            signer,
            mirror,
            client,
        } = self;
        let result = runtime.block_on(async {
            if client.is_none() {
                *client = Some(ChainClient::connect(config.clone(), signer.clone()).await?);
            }
            let Some(c) = client.as_ref() else {
                bail!("no chain client");
            };
            let flushed = match outbox {
                Some(outbox) => c.flush(outbox).await?,
                None => FlushReport::default(),
            };
            let synced = Follower::new(c.clone(), mirror).sync().await?;
            anyhow::Ok(Round {
                flushed,
                height: synced.height,
            })
        });
        if result.is_err() {
            self.client = None;
        }
        result
    }

    /// Enters the session's runtime, for making things that must live on it.
    pub fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.runtime.enter()
    }

    /// Runs `future` on the session's runtime (for reads such as finding an anchor).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The connected client, connecting first if needed.
    pub fn client(&mut self) -> anyhow::Result<ChainClient> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = self.runtime.block_on(ChainClient::connect(
            self.config.clone(),
            self.signer.clone(),
        ))?;
        self.client = Some(c.clone());
        Ok(c)
    }
}

/// Whether a chain error cannot heal by retrying: a reorg deeper than the configured depth, or a
/// mirror that follows another chain or contract.
pub fn is_fatal(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref(),
        Some(ChainError::DeepReorg { .. }) | Some(ChainError::MirrorMismatch { .. })
    )
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
    if chain.signer()?.is_none() {
        bail!("sending to the chain needs --chain-key (or AGORA_CHAIN_KEY)");
    }
    let outbox = Outbox::open(&outbox_dir(mirror))?;
    outbox.push(&Submission::Transaction(tx.clone()))?;
    let mut session = ChainSession::open(chain, mirror)?;
    let started = Instant::now();
    let mut from = 1;
    loop {
        let round = match session.round(Some(&outbox)) {
            Ok(round) => round,
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) => return Ok(Submitted::Queued(format!("{e:#}"))),
        };
        if let Some(reason) = round.flushed.interrupted {
            return Ok(Submitted::Queued(reason));
        }
        if let Some((_, reason)) = round.flushed.failed.first() {
            bail!("the chain refused the transaction: {reason}");
        }
        if let Some((height, _)) = find_tx(mirror, from, &tx)? {
            return Ok(Submitted::Final(height));
        }
        from = round.height + 1;
        if started.elapsed() >= wait {
            return Ok(Submitted::Queued(format!(
                "not final after {} s (the chain must pass {} more blocks)",
                wait.as_secs(),
                session.config().depth
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The height of the first mirrored block at or after `from` holding `tx`, and the index of `tx`
/// in that block.
pub fn find_tx(mirror: &Path, from: u64, tx: &[u8]) -> anyhow::Result<Option<(u64, usize)>> {
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
        for block in &blocks {
            if let Some(index) = block.txs.iter().position(|t| t == tx) {
                return Ok(Some((block.height, index)));
            }
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
    let mirror = args.ledger.log_path()?;
    let outbox = Outbox::open(&outbox_dir(&mirror))?;
    let mut session = ChainSession::open(&args.ledger.chain, &mirror)?;
    let poll = Duration::from_millis(args.poll_ms.max(50));
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "following {} into {}",
        session.config().rpc_url,
        mirror.display()
    )?;
    stdout.flush()?;
    let shutdown = {
        // The signal handlers belong to the session's runtime, which polls them below.
        let _runtime = session.enter();
        super::node::shutdown_signal()
    };
    tokio::pin!(shutdown);
    let mut last_height = None;
    loop {
        match session.round(Some(&outbox)) {
            Ok(round) => {
                for (path, reason) in &round.flushed.failed {
                    eprintln!("refused by the chain: {} ({reason})", path.display());
                }
                if let Some(reason) = round.flushed.interrupted {
                    eprintln!("outbox waits: {reason}");
                }
                if last_height != Some(round.height) {
                    writeln!(stdout, "height {}", round.height)?;
                    stdout.flush()?;
                    last_height = Some(round.height);
                }
            }
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) => eprintln!("chain round failed, retrying: {e:#}"),
        }
        let stop = session.block_on(async {
            tokio::select! {
                () = &mut shutdown => true,
                () = tokio::time::sleep(poll) => false,
            }
        });
        if stop {
            break;
        }
    }
    writeln!(stdout, "stopped")?;
    Ok(ExitCode::SUCCESS)
}
