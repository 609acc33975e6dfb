//! The ledger from the command line: `agora transfer`, `agora stake`, `agora subnet`, `agora register`,
//! `agora metagraph` and `agora ledger init|status|seal`.
//!
//! Every command reads the state the same way every node does: the genesis file, then every block
//! of the ordered log replayed through the state machine (`agora_ledger::state`). Commands that
//! change something sign one transaction with the wallet's coldkey, append it to the local log
//! (the single-writer file log for one machine; the chain issue adds an EVM chain as the log) and
//! seal it into a block, then replay again and say whether the ledger accepted it.

use super::wallet::{PasswordArgs, WalletPath, password};
use agora_ledger::balances::{UNITS_PER_TOKEN, format_units};
use agora_ledger::log::{LocalLog, TxLog, replay};
use agora_ledger::state::tx::{Call, hotkey_binding_proof, sign_tx};
use agora_ledger::state::{LedgerGenesis, LedgerState};
use agora_protocols::{PublicKey, SecretKey};
use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Longest a command waits for another writer to release the local log.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest a command waits for its transaction to come back final from the chain.
const CHAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Where the ledger is on this machine.
#[derive(Debug, Clone, Args)]
pub struct LedgerPaths {
    /// The ordered transaction log [default: ~/.agora/ledger/log].
    #[arg(long = "ledger-log", env = "AGORA_LEDGER_LOG", value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// The genesis file [default: ~/.agora/ledger/genesis.json].
    #[arg(
        long = "ledger-genesis",
        env = "AGORA_LEDGER_GENESIS",
        value_name = "PATH"
    )]
    pub genesis: Option<PathBuf>,
    /// With a chain, the log above is the mirror of the chain's final blocks.
    #[command(flatten)]
    pub chain: super::chain::ChainArgs,
}

impl LedgerPaths {
    fn dir() -> anyhow::Result<PathBuf> {
        Ok(dirs::home_dir()
            .context("no home directory: give --ledger-log and --ledger-genesis")?
            .join(".agora")
            .join("ledger"))
    }

    pub(crate) fn log_path(&self) -> anyhow::Result<PathBuf> {
        match &self.log {
            Some(path) => Ok(path.clone()),
            None => Ok(Self::dir()?.join("log")),
        }
    }

    pub(crate) fn genesis_path(&self) -> anyhow::Result<PathBuf> {
        match &self.genesis {
            Some(path) => Ok(path.clone()),
            None => Ok(Self::dir()?.join("genesis.json")),
        }
    }

    fn genesis(&self) -> anyhow::Result<LedgerGenesis> {
        let path = self.genesis_path()?;
        if !path.exists() {
            bail!(
                "no ledger genesis at {} (create one with `agora ledger init`)",
                path.display()
            );
        }
        LedgerGenesis::load(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The state after every block of the log.
    pub(crate) fn state(&self) -> anyhow::Result<LedgerState> {
        let genesis = self.genesis()?.to_state();
        let path = self.log_path()?;
        if self.chain.enabled()
            && let Err(e) = super::chain::sync_mirror(&self.chain, &path)
        {
            // Reading what the mirror already holds beats no answer; say how stale it may be.
            eprintln!("note: the chain is unreachable, reading the mirror as it is: {e:#}");
        }
        if !path.exists() {
            return Ok(genesis);
        }
        let mut log = LocalLog::open_read_only(&path)
            .with_context(|| format!("opening the ledger log {}", path.display()))?;
        let (state, _, _) = replay(&mut log, genesis).context("replaying the ledger log")?;
        Ok(state)
    }

    /// Appends one transaction as its own block and reports whether the ledger accepted it.
    fn submit(&self, key: &SecretKey, call: Call) -> anyhow::Result<ExitCode> {
        let before = self.state()?;
        let nonce = before.next_nonce(&key.public());
        let name = call.name();
        let tx = sign_tx(key, nonce, call)?;
        let path = self.log_path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if self.chain.enabled() {
            return self.submit_to_chain(&path, name, tx.to_bytes()?);
        }
        let block = {
            // Another writer (the block clock, a validator) may hold the log for a moment: wait.
            let mut log = agora::market::validator::open_writer(&path, LOCK_WAIT)
                .with_context(|| format!("opening the ledger log {} to write", path.display()))?;
            log.append(&tx)?;
            log.seal_block()?
        };
        // The same replay every node does: did the state machine take it?
        let genesis = self.genesis()?.to_state();
        let mut log = LocalLog::open_read_only(&path)?;
        let (_, root, report) = replay(&mut log, genesis)?;
        if let Some((_, _, error)) = report.refused.iter().find(|(h, _, _)| *h == block.height) {
            eprintln!(
                "the ledger refused the {name} at block {}: {error}",
                block.height
            );
            return Ok(ExitCode::FAILURE);
        }
        println!(
            "{name} accepted in block {} (state root {})",
            block.height,
            hex::encode(root)
        );
        Ok(ExitCode::SUCCESS)
    }
}

impl LedgerPaths {
    /// The chain's half of [`LedgerPaths::submit`]: queue, send, wait for the transaction to come
    /// back final through the mirror, then report what the state machine did with it.
    fn submit_to_chain(&self, mirror: &Path, name: &str, tx: Vec<u8>) -> anyhow::Result<ExitCode> {
        use super::chain::{Submitted, submit};
        match submit(&self.chain, mirror, tx, CHAIN_WAIT)? {
            Submitted::Queued(reason) => {
                println!(
                    "{name} queued in {} ({reason}); it goes out when the chain answers \
                     (`agora chain follow` keeps sending)",
                    super::chain::outbox_dir(mirror).display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Submitted::Final(height) => {
                let genesis = self.genesis()?.to_state();
                let mut log = LocalLog::open_read_only(mirror)?;
                let (_, root, report) = replay(&mut log, genesis)?;
                if let Some((_, _, error)) = report.refused.iter().find(|(h, _, _)| *h == height) {
                    eprintln!("the ledger refused the {name} at block {height}: {error}");
                    return Ok(ExitCode::FAILURE);
                }
                println!(
                    "{name} accepted in block {height} (state root {})",
                    hex::encode(root)
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// Which wallet signs, and how its coldkey is unlocked.
#[derive(Debug, Args)]
pub struct Signer {
    /// The wallet whose coldkey signs.
    #[arg(long, value_name = "NAME")]
    pub wallet: String,
    #[command(flatten)]
    pub path: WalletPath,
    #[command(flatten)]
    pub password: PasswordArgs,
}

impl Signer {
    fn coldkey(&self) -> anyhow::Result<SecretKey> {
        let wallet = self.path.wallet(&self.wallet)?;
        wallet.coldkey_file()?;
        let password = password(&self.password, "coldkey")?;
        Ok(wallet.unlock_coldkey(&password)?)
    }

    /// The public key of a hotkey of this wallet, by name, or any key by hex.
    fn hotkey_public(&self, name_or_hex: &str) -> anyhow::Result<PublicKey> {
        if name_or_hex.len() == 64
            && let Ok(key) = PublicKey::from_hex(name_or_hex)
        {
            return Ok(key);
        }
        Ok(self.path.wallet(&self.wallet)?.hotkey_public(name_or_hex)?)
    }
}

fn parse_tokens(text: &str) -> Result<u64, String> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 9 || (whole.is_empty() && frac.is_empty()) {
        return Err(format!(
            "{text:?}: an amount of tokens with at most 9 decimals"
        ));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| format!("{text:?} is not an amount"))?
    };
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")
            .parse()
            .map_err(|_| format!("{text:?} is not an amount"))?
    };
    whole
        .checked_mul(UNITS_PER_TOKEN)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Move free balance from the wallet's coldkey to another key.
#[derive(Debug, Args)]
pub struct TransferArgs {
    #[command(flatten)]
    pub signer: Signer,
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// The recipient's key (hex).
    #[arg(long)]
    pub to: String,
    /// Tokens (up to 9 decimals).
    #[arg(long, value_parser = parse_tokens)]
    pub amount: u64,
}

/// Stake on a hotkey (yours, or a delegate's), or take stake back.
#[derive(Debug, Subcommand)]
pub enum StakeCommand {
    /// Move free balance into stake on a hotkey.
    Add(StakeArgs),
    /// Move stake on a hotkey back to free balance.
    Remove(StakeArgs),
}

/// `agora stake add|remove`.
#[derive(Debug, Args)]
pub struct StakeArgs {
    #[command(flatten)]
    pub signer: Signer,
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// The hotkey: a hotkey name of this wallet, or any hotkey's public key in hex.
    #[arg(long, default_value = "default")]
    pub hotkey: String,
    /// Tokens (up to 9 decimals).
    #[arg(long, value_parser = parse_tokens)]
    pub amount: u64,
}

/// Subnets.
#[derive(Debug, Subcommand)]
pub enum SubnetCommand {
    /// Create a subnet owned by the wallet's coldkey (pays the ledger's lock cost).
    Create(SubnetCreateArgs),
    /// Show one subnet: owner, hyperparameters, burn price, neurons.
    Show(SubnetShowArgs),
    /// List the subnets.
    List(LedgerReadArgs),
}

/// `agora subnet create`.
#[derive(Debug, Args)]
pub struct SubnetCreateArgs {
    #[command(flatten)]
    pub signer: Signer,
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// The owner's hotkey on the subnet (a hotkey name of this wallet, already associated).
    #[arg(long)]
    pub owner_hotkey: Option<String>,
}

/// `agora subnet show`.
#[derive(Debug, Args)]
pub struct SubnetShowArgs {
    /// The subnet.
    pub netuid: u16,
    #[command(flatten)]
    pub read: LedgerReadArgs,
}

/// Read-only ledger commands.
#[derive(Debug, Args)]
pub struct LedgerReadArgs {
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Register a hotkey of the wallet on a subnet, paying the current burn.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub signer: Signer,
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// The subnet.
    #[arg(long)]
    pub subnet: u16,
    /// The hotkey of this wallet to register (associated with the coldkey first if it is not yet).
    #[arg(long, default_value = "default")]
    pub hotkey: String,
}

/// The subnet's neurons as Bittensor users know them.
#[derive(Debug, Args)]
pub struct MetagraphArgs {
    /// The subnet.
    #[arg(long)]
    pub subnet: u16,
    #[command(flatten)]
    pub read: LedgerReadArgs,
}

/// The local ledger itself.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Write a genesis file: initial balances, in tokens.
    Init(InitArgs),
    /// Height, state root, issuance, subnets and balances.
    Status(LedgerReadArgs),
    /// Seal empty blocks (the local log's clock: epochs run at their blocks).
    Seal(SealArgs),
    /// Seal an empty block every --block-time ms until stopped: the local log's running clock.
    Run(super::ledger_run::RunArgs),
}

/// `agora ledger init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// An initial balance: KEY_HEX=TOKENS (repeatable).
    #[arg(long = "account", value_name = "KEY=TOKENS")]
    pub accounts: Vec<String>,
    /// Replace an existing genesis file.
    #[arg(long)]
    pub force: bool,
}

/// `agora ledger seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// How many blocks.
    #[arg(long, default_value_t = 1)]
    pub blocks: u64,
}

/// `agora transfer`.
pub fn transfer(args: TransferArgs) -> anyhow::Result<ExitCode> {
    let to = PublicKey::from_hex(&args.to).map_err(|e| anyhow!("--to: {e}"))?;
    let key = args.signer.coldkey()?;
    args.ledger.submit(
        &key,
        Call::Transfer {
            to,
            amount: args.amount,
        },
    )
}

/// `agora stake add|remove`.
pub fn stake(cmd: StakeCommand) -> anyhow::Result<ExitCode> {
    let (args, add) = match cmd {
        StakeCommand::Add(args) => (args, true),
        StakeCommand::Remove(args) => (args, false),
    };
    let hotkey = args.signer.hotkey_public(&args.hotkey)?;
    let key = args.signer.coldkey()?;
    let call = if add {
        Call::AddStake {
            hotkey,
            amount: args.amount,
        }
    } else {
        Call::RemoveStake {
            hotkey,
            amount: args.amount,
        }
    };
    args.ledger.submit(&key, call)
}

/// `agora subnet ...`.
pub fn subnet(cmd: SubnetCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SubnetCommand::Create(args) => {
            let owner_hotkey = args
                .owner_hotkey
                .as_deref()
                .map(|h| args.signer.hotkey_public(h))
                .transpose()?;
            let key = args.signer.coldkey()?;
            args.ledger.submit(
                &key,
                Call::CreateSubnet {
                    hyperparameters: None,
                    owner_hotkey,
                },
            )
        }
        SubnetCommand::Show(args) => {
            let state = args.read.ledger.state()?;
            let subnet = state
                .subnet(args.netuid)
                .ok_or_else(|| anyhow!("no subnet {} in the ledger", args.netuid))?;
            if args.read.json {
                println!("{}", serde_json::to_string_pretty(subnet)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("subnet {}", subnet.netuid);
            println!("  owner           {}", subnet.owner);
            println!("  created at      block {}", subnet.created_at);
            println!("  burn price      {}", format_units(subnet.burn));
            println!("  neurons         {}", subnet.neurons.len());
            println!("  epochs run      {}", subnet.epochs);
            println!(
                "  hyperparameters {}",
                serde_json::to_string(&subnet.hyperparameters)?
            );
            Ok(ExitCode::SUCCESS)
        }
        SubnetCommand::List(args) => {
            let state = args.ledger.state()?;
            let rows: Vec<_> = state
                .subnets()
                .map(|s| {
                    json!({"netuid": s.netuid, "owner": s.owner.to_hex(),
                        "neurons": s.neurons.len(), "burn": s.burn})
                })
                .collect();
            if args.json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:>6} {:>8} {:>16}  owner", "netuid", "neurons", "burn");
                for s in state.subnets() {
                    println!(
                        "{:>6} {:>8} {:>16}  {}",
                        s.netuid,
                        s.neurons.len(),
                        format_units(s.burn),
                        s.owner
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `agora register`.
pub fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let wallet = args.signer.path.wallet(&args.signer.wallet)?;
    let hotkey_public = wallet.hotkey_public(&args.hotkey)?;
    let coldkey = args.signer.coldkey()?;
    let state = args.ledger.state()?;
    match state.hotkey(&hotkey_public) {
        Some(info) if info.owner == coldkey.public() => {}
        Some(_) => bail!("hotkey {hotkey_public} belongs to another coldkey"),
        None => {
            // First use: bind the hotkey to the coldkey; the hotkey signs its consent.
            let file = wallet.hotkey_file(&args.hotkey)?;
            let password = if file.is_encrypted() {
                Some(password(
                    &args.signer.password,
                    &format!("hotkey {:?}", args.hotkey),
                )?)
            } else {
                None
            };
            let hotkey = wallet.unlock_hotkey(&args.hotkey, password.as_ref())?;
            let proof = hotkey_binding_proof(&hotkey, &coldkey.public());
            let code = args.ledger.submit(
                &coldkey,
                Call::AssociateHotkey {
                    hotkey: hotkey_public,
                    proof,
                },
            )?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
        }
    }
    args.ledger.submit(
        &coldkey,
        Call::Register {
            netuid: args.subnet,
            hotkey: hotkey_public,
        },
    )
}

/// `agora metagraph`.
pub fn metagraph(args: MetagraphArgs) -> anyhow::Result<ExitCode> {
    let state = args.read.ledger.state()?;
    let rows = state
        .metagraph(args.subnet)
        .ok_or_else(|| anyhow!("no subnet {} in the ledger", args.subnet))?;
    if args.read.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let p = |x: u16| f64::from(x) / 65535.0;
    println!(
        "{:>4}  {:<10} {:>16} {:>7} {:>7} {:>7} {:>7} {:>14} {:>6} {:>6}",
        "uid",
        "hotkey",
        "stake",
        "vtrust",
        "cons",
        "incent",
        "divs",
        "emission",
        "active",
        "permit"
    );
    for r in &rows {
        println!(
            "{:>4}  {:<10} {:>16} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>14} {:>6} {:>6}",
            r.uid,
            &r.hotkey[..10.min(r.hotkey.len())],
            format_units(r.stake),
            p(r.validator_trust_u16),
            p(r.consensus_u16),
            p(r.incentive_u16),
            p(r.dividends_u16),
            format_units(r.emission),
            r.active,
            r.validator_permit
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `agora ledger ...`.
pub fn ledger(cmd: LedgerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LedgerCommand::Init(args) => init(&args),
        LedgerCommand::Status(args) => status(&args),
        LedgerCommand::Run(args) => super::ledger_run::run(&args),
        LedgerCommand::Seal(args) => {
            let path = args.ledger.log_path()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut log = agora::market::validator::open_writer(&path, LOCK_WAIT)?;
            let mut last = None;
            for _ in 0..args.blocks {
                last = Some(log.seal_block()?);
            }
            if let Some(block) = last {
                println!("sealed up to block {}", block.height);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let path = args.ledger.genesis_path()?;
    if path.exists() && !args.force {
        bail!(
            "{} exists (give --force to replace it; the log's history would no longer replay)",
            path.display()
        );
    }
    let mut accounts = std::collections::BTreeMap::new();
    for text in &args.accounts {
        let (key, tokens) = text
            .split_once('=')
            .ok_or_else(|| anyhow!("--account {text:?}: expected KEY_HEX=TOKENS"))?;
        let key = PublicKey::from_hex(key).map_err(|e| anyhow!("--account {text:?}: {e}"))?;
        let units = parse_tokens(tokens).map_err(|e| anyhow!("--account: {e}"))?;
        accounts.insert(key, units);
    }
    let balances = agora_ledger::balances::Genesis::new(accounts)?;
    let genesis = LedgerGenesis::new(
        balances,
        agora_ledger::state::LedgerParams::default(),
        Vec::new(),
    )?;
    write_file(&path, &genesis.to_json()?)?;
    println!("genesis written to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn status(args: &LedgerReadArgs) -> anyhow::Result<ExitCode> {
    let state = args.ledger.state()?;
    let root = state.state_root()?;
    if args.json {
        let balances: serde_json::Map<String, serde_json::Value> = state
            .balances()
            .map(|(k, v)| (k.to_hex(), json!(v)))
            .collect();
        println!(
            "{}",
            json!({
                "height": state.height(),
                "state_root": hex::encode(root),
                "total_issuance": state.total_issuance(),
                "subnets": state.subnets().map(|s| s.netuid).collect::<Vec<_>>(),
                "balances": balances,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("height         {}", state.height());
    println!("state root     {}", hex::encode(root));
    println!("issuance       {}", format_units(state.total_issuance()));
    println!(
        "subnets        {}",
        state
            .subnets()
            .map(|s| s.netuid.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (key, units) in state.balances() {
        println!("  {key}  {}", format_units(units));
    }
    Ok(ExitCode::SUCCESS)
}
