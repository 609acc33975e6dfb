//! The demo's ledger, ordered by a real local chain: anvil mining a block every half second, the
//! AgoraLedger contract deployed on it, a subnet whose epochs are short enough to watch, every
//! miner and the validator registered on it, the validator staked.
//!
//! The registrations are real signed transactions (coldkey binds its hotkey, pays the burn), sent
//! through the durable outbox to the contract and read back final through a mirror, exactly as
//! `agora register --chain-rpc ...` does; the demo only does it in-process so that it needs no
//! password prompts. Every process of the demo follows the same contract into its own mirror.

use super::super::chain::{ChainArgs, ChainSession, find_tx, outbox_dir};
use agora_ledger::balances::{Genesis, UNITS_PER_TOKEN};
use agora_ledger::chain::anvil::{ANVIL_CHAIN_ID, Anvil, DEV_KEYS, default_binary};
use agora_ledger::chain::{Outbox, Submission, deploy};
use agora_ledger::log::{LocalLog, replay};
use agora_ledger::state::tx::{Call, hotkey_binding_proof, sign_tx};
use agora_ledger::state::{
    GenesisSubnet, Hyperparameters, LedgerGenesis, LedgerParams, LedgerState, MetagraphRow,
};
use agora_protocols::SecretKey;
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The demo's subnet.
pub const NETUID: u16 = 1;
/// Blocks per epoch on the demo's subnet (Bittensor's default is 360).
const TEMPO: u16 = 10;
/// What each coldkey starts with, in tokens.
const FUNDS_TOKENS: u64 = 1_000;
/// The validator's stake, in tokens (a permit needs stake).
const VALIDATOR_STAKE_TOKENS: u64 = 100;
/// anvil's block interval.
const BLOCK_TIME: Duration = Duration::from_millis(500);
/// Blocks below the head before a block is final (the demo's reorg safety margin).
const DEPTH: u64 = 2;
/// How long the set-up transactions may take to come back final.
const SETUP_DEADLINE: Duration = Duration::from_secs(90);

/// The demo's chain: anvil and the contract on it.
pub struct Chain {
    /// The running anvil (stopped on drop).
    pub anvil: Anvil,
    /// The chain options every process gets; the key is per process.
    pub args: ChainArgs,
}

impl Chain {
    /// Starts anvil in `dir` and deploys the contract with its first development account.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = default_binary().context("no home directory to find anvil in")?;
        if !binary.exists() {
            bail!(
                "anvil is not installed at {} (run scripts/setup, or scripts/setup-tools)",
                binary.display()
            );
        }
        let anvil = Anvil::start(&binary, dir, Some(BLOCK_TIME))?;
        let url = anvil.url();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (contract, start_block) =
            runtime.block_on(deploy(&url, DEV_KEYS[0].parse()?, Duration::from_secs(60)))?;
        Ok(Self {
            anvil,
            args: ChainArgs {
                rpc: Some(url),
                contract: Some(format!("{contract:#x}")),
                start_block: Some(start_block),
                depth: Some(DEPTH),
                chain_id: Some(ANVIL_CHAIN_ID),
                key: None,
            },
        })
    }

    /// The options as flags, with the ledger genesis and the process's own mirror.
    pub fn flags(&self, genesis: &Path, mirror: &Path) -> Vec<String> {
        let a = &self.args;
        let mut flags = vec![
            "--ledger-log".to_string(),
            mirror.to_string_lossy().into_owned(),
            "--ledger-genesis".to_string(),
            genesis.to_string_lossy().into_owned(),
        ];
        for (flag, value) in [
            ("--chain-rpc", a.rpc.clone()),
            ("--chain-contract", a.contract.clone()),
            ("--chain-start-block", a.start_block.map(|b| b.to_string())),
            ("--chain-depth", a.depth.map(|d| d.to_string())),
            ("--chain-id", a.chain_id.map(|c| c.to_string())),
        ] {
            if let Some(value) = value {
                flags.push(flag.to_string());
                flags.push(value);
            }
        }
        flags
    }
}

/// A wallet's two keys.
pub struct Keys {
    /// Holds money, owns the hotkey.
    pub cold: SecretKey,
    /// The node's identity.
    pub hot: SecretKey,
}

/// The demo's own view of the ledger: the genesis every process reads, and its mirror of the
/// chain.
pub struct LedgerFiles {
    /// The demo's mirror of the chain's final blocks.
    pub log: PathBuf,
    /// The ledger genesis.
    pub genesis: PathBuf,
    session: ChainSession,
}

/// Writes the genesis (every coldkey funded, subnet 1 owned by the validator's coldkey), then
/// sends the transactions registering every neuron and staking the validator through the chain,
/// and checks that the ledger took all of them.
pub fn set_up(
    dir: &Path,
    chain: &Chain,
    validator: &Keys,
    miners: &[&Keys],
) -> anyhow::Result<LedgerFiles> {
    let genesis_path = dir.join("ledger-genesis.json");
    let accounts: BTreeMap<_, _> = std::iter::once(validator)
        .chain(miners.iter().copied())
        .map(|k| (k.cold.public(), FUNDS_TOKENS * UNITS_PER_TOKEN))
        .collect();
    let hyperparameters = Hyperparameters {
        tempo: TEMPO,
        commit_reveal_enabled: true,
        reveal_period_epochs: 1,
        weights_set_rate_limit: 5,
        ..Hyperparameters::default()
    };
    let genesis = LedgerGenesis::new(
        Genesis::new(accounts)?,
        LedgerParams::default(),
        vec![GenesisSubnet {
            owner: validator.cold.public(),
            hyperparameters,
        }],
    )?;
    std::fs::write(&genesis_path, genesis.to_json()?)
        .with_context(|| format!("writing {}", genesis_path.display()))?;

    let state = genesis.to_state();
    let mut txs = Vec::new();
    for keys in std::iter::once(validator).chain(miners.iter().copied()) {
        let nonce = state.next_nonce(&keys.cold.public());
        let bind = Call::AssociateHotkey {
            hotkey: keys.hot.public(),
            proof: hotkey_binding_proof(&keys.hot, &keys.cold.public()),
        };
        txs.push(sign_tx(&keys.cold, nonce, bind)?.to_bytes()?);
        let register = Call::Register {
            netuid: NETUID,
            hotkey: keys.hot.public(),
        };
        txs.push(sign_tx(&keys.cold, nonce + 1, register)?.to_bytes()?);
    }
    let stake = Call::AddStake {
        hotkey: validator.hot.public(),
        amount: VALIDATOR_STAKE_TOKENS * UNITS_PER_TOKEN,
    };
    let nonce = state.next_nonce(&validator.cold.public()) + 2;
    txs.push(sign_tx(&validator.cold, nonce, stake)?.to_bytes()?);

    let mirror = dir.join("demo").join("ledger.log");
    let outbox = Outbox::open(&outbox_dir(&mirror))?;
    for tx in &txs {
        outbox.push(&Submission::Transaction(tx.clone()))?;
    }
    let mut keyed = chain.args.clone();
    keyed.key = Some(DEV_KEYS[0].to_string());
    let mut session = ChainSession::open(&keyed, &mirror)?;
    let started = Instant::now();
    loop {
        let round = session.round(Some(&outbox))?;
        if let Some((_, reason)) = round.flushed.failed.first() {
            bail!("the chain refused a set-up transaction: {reason}");
        }
        let last = txs.last().map(Vec::as_slice).unwrap_or_default();
        if outbox.is_empty()? && find_tx(&mirror, 1, last)?.is_some() {
            break;
        }
        if started.elapsed() > SETUP_DEADLINE {
            bail!("the set-up transactions were not final on chain within {SETUP_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let files = LedgerFiles {
        log: mirror,
        genesis: genesis_path,
        session,
    };
    let (_, _, report) = replay(
        &mut LocalLog::open_read_only(&files.log)?,
        genesis.to_state(),
    )?;
    if let Some((height, index, error)) = report.refused.first() {
        bail!("the ledger refused transaction {index} of block {height}: {error}");
    }
    Ok(files)
}

/// The ledger now: the demo's mirror brought up to the chain's final blocks, replayed from the
/// genesis.
pub fn state(files: &mut LedgerFiles) -> anyhow::Result<LedgerState> {
    files.session.round(None)?;
    replay_mirror(&files.genesis, &files.log, None)
}

/// The ledger of the mirror at `mirror`, replayed from the genesis: to its end, or exactly to
/// `height`.
pub fn replay_mirror(
    genesis: &Path,
    mirror: &Path,
    height: Option<u64>,
) -> anyhow::Result<LedgerState> {
    let genesis = LedgerGenesis::load(genesis)?.to_state();
    let mut log = LocalLog::open_read_only(mirror)?;
    Ok(match height {
        Some(height) => agora_ledger::anchor::replay_to(&mut log, genesis, height)?,
        None => replay(&mut log, genesis)?.0,
    })
}

impl LedgerFiles {
    /// The anchor of `hash` for `subnet`'s `epoch`, if the contract holds it.
    pub fn find_anchor(
        &mut self,
        subnet: u16,
        epoch: u64,
        hash: [u8; 32],
    ) -> anyhow::Result<Option<agora_ledger::chain::OnChainAnchor>> {
        let client = self.session.client()?;
        Ok(self
            .session
            .block_on(client.find_anchor(subnet, epoch, hash))?)
    }

    /// Waits until the contract holds the anchor of `hash`, and for it to be final.
    pub fn wait_for_anchor(
        &mut self,
        subnet: u16,
        epoch: u64,
        hash: [u8; 32],
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let height = state(self)?.height();
            let start = self.session.config().start_block;
            if let Some(found) = self.find_anchor(subnet, epoch, hash)?
                && found.block < start + height
            {
                return Ok(());
            }
            if started.elapsed() > deadline {
                bail!("anchor of epoch {epoch} not final on chain within {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The subnet's metagraph now.
pub fn metagraph(files: &mut LedgerFiles) -> anyhow::Result<Vec<MetagraphRow>> {
    state(files)?
        .metagraph(NETUID)
        .context("the demo's subnet is missing from the ledger")
}
