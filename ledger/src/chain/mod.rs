//! An EVM chain as the ledger's ordered log, and as the place where epoch anchors are kept.
//!
//! Agora does not run a consensus protocol of its own for the ledger. The contract in `contracts/`
//! (`AgoraLedger`) takes signed ledger transactions as opaque bytes and emits them as events in the
//! chain's order; every node reads those events and feeds them, block by block, to the same pure
//! state machine ([`crate::state`]), so every node following the same contract reaches the same
//! state root. The chain is the log; Agora is the state machine.
//!
//! Three parts, each usable alone:
//! - [`Outbox`]: a durable queue of what this node wants on chain (transactions, anchors). A
//!   submission is on disk before the command that made it returns; it goes out when the RPC
//!   answers and leaves the queue only once the chain holds it `depth` blocks deep. Resending is
//!   safe: before sending again the outbox asks the chain whether the item is already there.
//! - [`Follower`]: mirrors the chain's *final* blocks (at least `depth` below the head) into a
//!   [`crate::log::LocalLog`], one ledger block per EVM block from the contract's deployment on,
//!   so every reader of the ledger (validators, `agora metagraph`, replay) works unchanged on the
//!   mirror. Reorgs shallower than `depth` never reach it; a deeper one is detected (the last
//!   mirrored block's hash no longer matches) and stops the follower with an error instead of
//!   silently forking. A restart resumes from the mirror's last block.
//! - [`ChainClient`]: the RPC side: deploys the contract, sends the outbox, reads anchors.
//!
//! Works with any EVM chain given its RPC URL (chain id checked when given): anvil locally, and
//! Bittensor's EVM (chain id 964 mainnet, 945 testnet); see `docs/operator-guide.md`.

pub mod anvil;
mod client;
mod contract;
mod follower;
mod outbox;

pub use client::{ChainClient, FlushReport, OnChainAnchor, deploy};
pub use contract::AgoraLedger;
pub use follower::{Checkpoint, Follower, SyncReport};
pub use outbox::{
    MAX_ANCHOR_RECORD_LEN, MAX_SUBMITTED_TX_LEN, Outbox, PendingItem, SentMarker, Submission,
};

use crate::log::LogError;
/// The EVM types a caller needs to configure a chain, re-exported so callers need no alloy.
pub use alloy::primitives::Address;
pub use alloy::signers::local::PrivateKeySigner;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Where the chain is and how far to trust it.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// JSON-RPC endpoint (http or https).
    pub rpc_url: String,
    /// The chain id the RPC must report; `None` accepts whatever it reports.
    pub chain_id: Option<u64>,
    /// The `AgoraLedger` contract.
    pub contract: Address,
    /// The block the contract was deployed in: ledger height 1 is this block.
    pub start_block: u64,
    /// Blocks below the head before a block counts as final (reorgs up to this deep are harmless).
    pub depth: u64,
    /// Most blocks asked for in one `eth_getLogs` call (public RPCs cap the range).
    pub max_log_range: u64,
    /// Longest one RPC call may take.
    pub rpc_timeout: Duration,
}

impl ChainConfig {
    /// Defaults for everything but where the chain and the contract are.
    pub fn new(rpc_url: impl Into<String>, contract: Address, start_block: u64) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            chain_id: None,
            contract,
            start_block,
            depth: DEFAULT_DEPTH,
            max_log_range: DEFAULT_MAX_LOG_RANGE,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
        }
    }
}

/// Default finality depth: a few blocks, as for a proof-of-authority or finalising chain.
pub const DEFAULT_DEPTH: u64 = 3;
/// Default `eth_getLogs` block range (many public RPCs refuse more than a few thousand).
pub const DEFAULT_MAX_LOG_RANGE: u64 = 1_000;
/// Default deadline of one RPC call.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a chain operation failed.
#[derive(Debug, Error)]
pub enum ChainError {
    /// The RPC URL does not parse.
    #[error("bad RPC URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The RPC failed or did not answer in time; nothing was lost, try again later.
    #[error("RPC {url}: {reason}")]
    Rpc {
        /// The endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The RPC serves another chain than the one configured.
    #[error("the RPC serves chain id {got}, not {expected}")]
    WrongChain {
        /// Configured chain id.
        expected: u64,
        /// What the RPC reported.
        got: u64,
    },
    /// No contract code at the configured address.
    #[error("no contract at {0} on this chain (deploy one with `agora chain deploy`)")]
    NoContract(Address),
    /// The chain reorganised below the finality depth: the mirror no longer matches it.
    #[error(
        "the chain reorganised below the finality depth: block {block} had hash {mirrored}, now {now}; \
         raise --chain-depth and rebuild the mirror"
    )]
    DeepReorg {
        /// The EVM block number.
        block: u64,
        /// Its hash when it was mirrored.
        mirrored: String,
        /// Its hash now.
        now: String,
    },
    /// The mirror belongs to another chain or contract, or is ahead of the chain.
    #[error("the ledger mirror {path} does not follow this chain: {reason}")]
    MirrorMismatch {
        /// The mirror log.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Another process holds the mirror's writer lock for too long.
    #[error("the ledger mirror {0} stayed locked by another writer")]
    MirrorLocked(PathBuf),
    /// The local log (the mirror) failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A file of the outbox or the checkpoint failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An outbox item is damaged or too large.
    #[error("outbox item {path}: {reason}")]
    BadItem {
        /// The item's file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A submission the chain would refuse (empty or over the contract's size limit).
    #[error("cannot submit: {0}")]
    Refused(String),
    /// The chain reverted a submission (for an anchor: another record holds the slot).
    #[error("the chain reverted {what}: {reason}")]
    Reverted {
        /// What was sent.
        what: String,
        /// The revert reason, as far as the RPC says.
        reason: String,
    },
    /// Sending needs a signing key and none was given.
    #[error("no chain key: give --chain-key (or AGORA_CHAIN_KEY) to send transactions")]
    NoKey,
}
