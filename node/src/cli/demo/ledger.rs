//! The demo's ledger: a local log with a subnet whose epochs are short enough to watch, every miner
//! and the validator registered on it, the validator staked, and a block clock.
//!
//! The registrations are real signed transactions (coldkey binds its hotkey, pays the burn), appended
//! to the log and replayed through the state machine exactly as `agora register` does; the demo only
//! does it in-process so that it needs no password prompts.

use agora_ledger::balances::{Genesis, UNITS_PER_TOKEN};
use agora_ledger::log::{LocalLog, TxLog, replay};
use agora_ledger::state::tx::{Call, hotkey_binding_proof, sign_tx};
use agora_ledger::state::{
    GenesisSubnet, Hyperparameters, LedgerGenesis, LedgerParams, LedgerState, MetagraphRow,
};
use agora_protocols::SecretKey;
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The demo's subnet.
pub const NETUID: u16 = 1;
/// Blocks per epoch on the demo's subnet (Bittensor's default is 360).
const TEMPO: u16 = 10;
/// What each coldkey starts with, in tokens.
const FUNDS_TOKENS: u64 = 1_000;
/// The validator's stake, in tokens (a permit needs stake).
const VALIDATOR_STAKE_TOKENS: u64 = 100;

/// A wallet's two keys.
pub struct Keys {
    /// Holds money, owns the hotkey.
    pub cold: SecretKey,
    /// The node's identity.
    pub hot: SecretKey,
}

/// Where the demo's ledger lives.
pub struct LedgerFiles {
    /// The local log.
    pub log: PathBuf,
    /// The ledger genesis.
    pub genesis: PathBuf,
}

/// Writes the genesis (every coldkey funded, subnet 1 owned by the validator's coldkey), then one
/// block registering every neuron and staking the validator; checks the ledger took all of it.
pub fn set_up(dir: &Path, validator: &Keys, miners: &[&Keys]) -> anyhow::Result<LedgerFiles> {
    let files = LedgerFiles {
        log: dir.join("ledger.log"),
        genesis: dir.join("ledger-genesis.json"),
    };
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
    std::fs::write(&files.genesis, genesis.to_json()?)
        .with_context(|| format!("writing {}", files.genesis.display()))?;

    let state = genesis.to_state();
    let mut log = LocalLog::open(&files.log)?;
    for keys in std::iter::once(validator).chain(miners.iter().copied()) {
        let nonce = state.next_nonce(&keys.cold.public());
        let bind = Call::AssociateHotkey {
            hotkey: keys.hot.public(),
            proof: hotkey_binding_proof(&keys.hot, &keys.cold.public()),
        };
        log.append(&sign_tx(&keys.cold, nonce, bind)?)?;
        let register = Call::Register {
            netuid: NETUID,
            hotkey: keys.hot.public(),
        };
        log.append(&sign_tx(&keys.cold, nonce + 1, register)?)?;
    }
    let stake = Call::AddStake {
        hotkey: validator.hot.public(),
        amount: VALIDATOR_STAKE_TOKENS * UNITS_PER_TOKEN,
    };
    let nonce = state.next_nonce(&validator.cold.public()) + 2;
    log.append(&sign_tx(&validator.cold, nonce, stake)?)?;
    log.seal_block()?;
    drop(log);

    let (_, _, report) = replay(
        &mut LocalLog::open_read_only(&files.log)?,
        genesis.to_state(),
    )?;
    if let Some((height, index, error)) = report.refused.first() {
        bail!("the ledger refused transaction {index} of block {height}: {error}");
    }
    Ok(files)
}

/// The ledger now, replayed from its genesis and log.
pub fn state(files: &LedgerFiles) -> anyhow::Result<LedgerState> {
    let genesis = LedgerGenesis::load(&files.genesis)?.to_state();
    let (state, _, _) = replay(&mut LocalLog::open_read_only(&files.log)?, genesis)?;
    Ok(state)
}

/// The subnet's metagraph now.
pub fn metagraph(files: &LedgerFiles) -> anyhow::Result<Vec<MetagraphRow>> {
    state(files)?
        .metagraph(NETUID)
        .context("the demo's subnet is missing from the ledger")
}
