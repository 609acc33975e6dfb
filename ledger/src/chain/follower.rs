//! The follower: the chain's final blocks mirrored into a local log, one ledger block per EVM
//! block, from the contract's deployment block on.
//!
//! Ledger height `h` is EVM block `start_block + h - 1`, empty or not: heights (and with them
//! epochs and reveal windows) advance with the chain's clock, exactly as the local log's clock
//! (`agora ledger run`) advances them on one machine. A block's transactions are the contract's
//! `Transaction` events in it, in log order. Only blocks at least `depth` below the head are
//! mirrored, so a shallower reorg never reaches the ledger.
//!
//! Beside the mirror, `<mirror>.chain.json` (the [`Checkpoint`]) names the chain, the contract and
//! the hash of the last mirrored EVM block. A restart resumes after the mirror's last block; a
//! mirror of another chain or contract is refused; a last block whose hash changed means a reorg
//! deeper than `depth`, which stops the follower with an error instead of forking silently.

use super::{ChainClient, ChainConfig, ChainError};
use crate::log::{LocalLog, LogError, MAX_BLOCK_TXS, TxLog};
use crate::state::tx::{MAX_TX_LEN, TX_ENVELOPE_OVERHEAD};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the mirror follows and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The chain's id.
    pub chain_id: u64,
    /// The contract (0x hex).
    pub contract: String,
    /// The EVM block of ledger height 1.
    pub start_block: u64,
    /// Ledger height of the last mirrored block (0: none).
    pub height: u64,
    /// Hash of that EVM block (0x hex), empty at height 0.
    pub block_hash: String,
}

impl Checkpoint {
    fn path(mirror: &Path) -> PathBuf {
        let mut name = mirror.as_os_str().to_owned();
        name.push(".chain.json");
        PathBuf::from(name)
    }

    /// Reads the checkpoint beside `mirror`, if there is one.
    pub fn load(mirror: &Path) -> Result<Option<Self>, ChainError> {
        let path = Self::path(mirror);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() <= 4096 => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| ChainError::MirrorMismatch {
                        path: path.clone(),
                        reason: format!("unreadable checkpoint: {e}"),
                    })
            }
            Ok(_) => Err(ChainError::MirrorMismatch {
                path,
                reason: "checkpoint over 4096 bytes".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ChainError::Io { path, source }),
        }
    }

    fn save(&self, mirror: &Path) -> Result<(), ChainError> {
        let path = Self::path(mirror);
        let tmp = path.with_extension("tmp");
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ChainError::Io { path: p, source }
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ChainError::MirrorMismatch {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(&bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
}

/// What one [`Follower::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Ledger blocks mirrored.
    pub blocks: u64,
    /// Transactions mirrored.
    pub transactions: u64,
    /// Transactions skipped because they are over the ledger's size limit (the contract refuses
    /// them too; skipping is the same on every node).
    pub skipped: u64,
    /// The mirror's height afterwards.
    pub height: u64,
    /// The chain head seen.
    pub head: u64,
}

/// Mirrors the chain's final blocks into a local log.
#[derive(Debug)]
pub struct Follower {
    client: ChainClient,
    mirror: PathBuf,
    lock_wait: Duration,
}

impl Follower {
    /// A follower of `client`'s contract writing into the local log at `mirror`.
    pub fn new(client: ChainClient, mirror: &Path) -> Self {
        Self {
            client,
            mirror: mirror.to_path_buf(),
            lock_wait: Duration::from_secs(10),
        }
    }

    /// The client it reads through.
    pub fn client(&self) -> &ChainClient {
        &self.client
    }

    /// The mirror log.
    pub fn mirror(&self) -> &Path {
        &self.mirror
    }

    fn config(&self) -> &ChainConfig {
        self.client.config()
    }

    async fn open_mirror(&self) -> Result<LocalLog, ChainError> {
        if let Some(dir) = self.mirror.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| ChainError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let started = Instant::now();
        loop {
            match LocalLog::open(&self.mirror) {
                Ok(log) => return Ok(log),
                Err(LogError::Locked { .. }) if started.elapsed() < self.lock_wait => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(LogError::Locked { .. }) => {
                    return Err(ChainError::MirrorLocked(self.mirror.clone()));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Mirrors every final block not yet mirrored. Safe to call again at any time; what it did is
    /// durable when it returns (each block is sealed and fsynced as it is written, and the
    /// checkpoint after each range).
    pub async fn sync(&self) -> Result<SyncReport, ChainError> {
        let config = self.config().clone();
        let head = self.client.head().await?;
        let final_block = head.saturating_sub(config.depth);
        let mut log = self.open_mirror().await?;
        // Only this follower writes the mirror, and only whole blocks: anything unsealed is a
        // block a crash cut short, rewritten below.
        log.discard_pending()?;
        let mut height = log.height()?;
        let contract = format!("{:#x}", config.contract);
        let mut checkpoint = match Checkpoint::load(&self.mirror)? {
            Some(cp) => {
                let mismatch = |reason: String| ChainError::MirrorMismatch {
                    path: self.mirror.clone(),
                    reason,
                };
                if cp.chain_id != self.client.chain_id() {
                    return Err(mismatch(format!(
                        "it follows chain {}, the RPC serves {}",
                        cp.chain_id,
                        self.client.chain_id()
                    )));
                }
                if !cp.contract.eq_ignore_ascii_case(&contract)
                    || cp.start_block != config.start_block
                {
                    return Err(mismatch(format!(
                        "it follows contract {} from block {}, not {contract} from block {}",
                        cp.contract, cp.start_block, config.start_block
                    )));
                }
                cp
            }
            None if height == 0 => Checkpoint {
                chain_id: self.client.chain_id(),
                contract,
                start_block: config.start_block,
                height: 0,
                block_hash: String::new(),
            },
            None => {
                return Err(ChainError::MirrorMismatch {
                    path: self.mirror.clone(),
                    reason: format!(
                        "it has {height} blocks but no checkpoint: it is not a chain mirror"
                    ),
                });
            }
        };
        // A reorg deeper than `depth` changed a block we already mirrored: stop, loudly.
        if height > 0 && checkpoint.height == height && !checkpoint.block_hash.is_empty() {
            let block = config.start_block + height - 1;
            let now = format!("{:#x}", self.client.block_hash(block).await?);
            if !now.eq_ignore_ascii_case(&checkpoint.block_hash) {
                return Err(ChainError::DeepReorg {
                    block,
                    mirrored: checkpoint.block_hash.clone(),
                    now,
                });
            }
        }
        let mut report = SyncReport {
            head,
            ..SyncReport::default()
        };
        let mut next = config.start_block + height;
        while next <= final_block {
            let to = final_block.min(next + config.max_log_range.max(1) - 1);
            let mut events = self.client.transaction_events(next, to).await?;
            events.sort_by_key(|e| (e.block, e.log_index));
            let mut events = events.into_iter().peekable();
            for block in next..=to {
                let mut txs = Vec::new();
                while let Some(event) = events.next_if(|e| e.block == block) {
                    if event.bytes.is_empty()
                        || event.bytes.len() > MAX_TX_LEN + TX_ENVELOPE_OVERHEAD
                        || txs.len() >= MAX_BLOCK_TXS
                    {
                        report.skipped += 1;
                        continue;
                    }
                    txs.push(event.bytes);
                }
                report.transactions += txs.len() as u64;
                log.append_block(&txs)?;
                report.blocks += 1;
            }
            height = log.height()?;
            checkpoint.height = height;
            checkpoint.block_hash = format!("{:#x}", self.client.block_hash(to).await?);
            checkpoint.save(&self.mirror)?;
            next = to + 1;
        }
        if checkpoint.height == 0 && height == 0 {
            checkpoint.save(&self.mirror)?;
        }
        report.height = height;
        Ok(report)
    }
}
