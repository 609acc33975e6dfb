//! The ordered log of ledger transactions: where the order every node agrees on comes from.
//!
//! The state machine ([`crate::state`]) is pure; what it needs is the same sequence of blocks of
//! transaction bytes on every node. [`TxLog`] is that source: a chain (a later issue) or, for one
//! machine and the demo, [`LocalLog`], a single-writer file log.
//!
//! # Local log format
//!
//! One append-only file of records, each
//! `magic "AGL1" | kind u8 | len u32 LE | header check [4] | body check [32] | payload [len]`,
//! where the header check is the first 4 bytes of blake3 over magic, kind and len, and the body check
//! is blake3 over kind, len and payload. A *tx* record (kind 1) holds a signed transaction's exact
//! envelope bytes; a *seal* record (kind 2) closes a block: height, the previous block's hash, the
//! transaction count and the block's hash, which is blake3 over the height, the previous hash and
//! each transaction's hash. Blocks are therefore hash-chained, and a reader checks every link.
//!
//! Every append is fsynced before it returns, so an acknowledged transaction survives a crash. A
//! crash mid-write leaves a *torn tail*: a partial record, or a last record whose checksum fails,
//! or a zero-filled end. Opening for writing truncates it and keeps everything before; a reader
//! just stops before it. Damage anywhere else (a bad record followed by more data) is corruption,
//! reported with its byte offset, never repaired silently and never a panic.
//!
//! One writer at a time: the writer holds `<log>.lock`, created with `O_EXCL` and holding its pid.
//! A second writer is refused with an error naming the holder. A lock left by a dead process (its
//! pid no longer in `/proc`) is taken over; elsewhere, remove the file by hand.

use crate::framing::{self, AppendError, Format, LockError, Parsed, WriterLock};
use crate::state::tx::{MAX_TX_LEN, TX_ENVELOPE_OVERHEAD, Transaction};
use crate::state::{BlockError, LedgerState, StateRoot, TxError};
use agora_protocols::Signed;
use agora_protocols::codec::{self, CodecError};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Hash of the block before the first: all zeros.
pub const GENESIS_PREV_HASH: [u8; 32] = [0; 32];
/// Most transactions in one block: a bound on what a reader holds in memory for one block.
pub const MAX_BLOCK_TXS: usize = 10_000;

const MAGIC: [u8; 4] = *b"AGL1";
const KIND_TX: u8 = 1;
const KIND_SEAL: u8 = 2;
const MAX_PAYLOAD: usize = MAX_TX_LEN + TX_ENVELOPE_OVERHEAD;

/// One block of the ordered log: transaction envelopes as they were appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Height, from 1.
    pub height: u64,
    /// The previous block's hash ([`GENESIS_PREV_HASH`] for height 1).
    pub prev_hash: [u8; 32],
    /// This block's hash ([`block_hash`]).
    pub hash: [u8; 32],
    /// Signed transaction envelopes, in order; each is decoded and checked by the state machine.
    pub txs: Vec<Vec<u8>>,
}

/// A block's hash: blake3 over a domain tag, the height, the previous hash, the transaction count
/// and each transaction's blake3 hash. Changing, dropping or reordering anything changes it.
pub fn block_hash<B: AsRef<[u8]>>(height: u64, prev_hash: &[u8; 32], txs: &[B]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"agora/ledger/block/v1\0");
    h.update(&height.to_le_bytes());
    h.update(prev_hash);
    h.update(&(txs.len() as u64).to_le_bytes());
    for tx in txs {
        h.update(blake3::hash(tx.as_ref()).as_bytes());
    }
    *h.finalize().as_bytes()
}

/// A source of ordered transactions: submit transactions, read the blocks that order them.
pub trait TxLog {
    /// What can go wrong reading or writing this log.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Submits a signed transaction; it is ordered into a later block.
    fn append(&mut self, tx: &Signed<Transaction>) -> Result<(), Self::Error>;

    /// The height of the last block that can be read (0: none yet).
    fn height(&mut self) -> Result<u64, Self::Error>;

    /// Up to `max` blocks starting at height `from` (1 is the first), in order.
    fn blocks_from(&mut self, from: u64, max: usize) -> Result<Vec<Block>, Self::Error>;
}

/// Why the local log could not be used.
#[derive(Debug, Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("ledger log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another writer holds the lock.
    #[error(
        "ledger log {path} is locked by another writer (pid {pid}, lock file {lock}); \
         only one process may write a local log"
    )]
    Locked {
        /// The log.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The pid written in the lock file (0 if unreadable).
        pid: u32,
    },
    /// A record before the end of the file is damaged.
    #[error("ledger log {path} is corrupt at byte offset {offset}: {reason}")]
    Corrupt {
        /// The log.
        path: PathBuf,
        /// Offset of the damaged record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Writing through a read-only handle.
    #[error("ledger log {0} was opened read-only")]
    ReadOnly(PathBuf),
    /// An earlier write failed and could not be rolled back: reopen the log to recover.
    #[error("ledger log {0} had a failed write; reopen it to recover the tail")]
    Poisoned(PathBuf),
    /// The open block is full.
    #[error("the open block already has {MAX_BLOCK_TXS} transactions: seal it first")]
    BlockFull,
    /// A transaction could not be encoded.
    #[error("cannot encode a transaction: {0}")]
    Codec(#[from] CodecError),
    /// An encoded transaction is over the size limit.
    #[error("a transaction of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Seal {
    height: u64,
    prev_hash: [u8; 32],
    tx_count: u64,
    hash: [u8; 32],
}

#[derive(Debug, Clone, Copy)]
struct BlockEntry {
    /// Offset of the block's first record.
    start: u64,
    /// Offset just after its seal.
    end: u64,
}

/// What a scan of the file found.
#[derive(Debug, Default)]
struct Index {
    blocks: Vec<BlockEntry>,
    last_hash: [u8; 32],
    /// Transactions after the last seal.
    pending: Vec<Vec<u8>>,
    pending_start: u64,
    /// Length of the valid prefix.
    valid_len: u64,
}

/// The local log's framing: its own magic and kinds, payloads up to one transaction envelope.
const FORMAT: Format = Format {
    magic: MAGIC,
    kinds: &[KIND_TX, KIND_SEAL],
    max_payload: MAX_PAYLOAD,
};

fn encode_record(kind: u8, payload: &[u8]) -> Result<Vec<u8>, LogError> {
    FORMAT.encode(kind, payload).map_err(LogError::TooLarge)
}

fn parse_record(buf: &[u8], at: usize) -> Parsed<'_> {
    FORMAT.parse(buf, at)
}

impl Index {
    /// Scans `buf` (the file from `base` on) continuing from the current index. Returns whether a
    /// torn tail was found (at `valid_len`).
    fn scan(&mut self, path: &Path, buf: &[u8], base: u64) -> Result<bool, LogError> {
        let mut at = usize::try_from(self.valid_len.saturating_sub(base)).unwrap_or(usize::MAX);
        let corrupt = |offset: u64, reason: String| LogError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        while at < buf.len() {
            let offset = base + at as u64;
            match parse_record(buf, at) {
                Parsed::Torn => return Ok(true),
                Parsed::Corrupt(reason) => return Err(corrupt(offset, reason)),
                Parsed::Record {
                    kind,
                    payload,
                    next,
                } => {
                    if kind == KIND_TX {
                        if self.pending.len() >= MAX_BLOCK_TXS {
                            return Err(corrupt(offset, "block over the transaction limit".into()));
                        }
                        if self.pending.is_empty() {
                            self.pending_start = offset;
                        }
                        self.pending.push(payload.to_vec());
                    } else {
                        let seal: Seal = codec::decode(payload, MAX_PAYLOAD)
                            .map_err(|e| corrupt(offset, format!("bad seal: {e}")))?;
                        self.check_seal(&seal)
                            .map_err(|reason| corrupt(offset, reason))?;
                        let start = if self.pending.is_empty() {
                            offset
                        } else {
                            self.pending_start
                        };
                        self.blocks.push(BlockEntry {
                            start,
                            end: base + next as u64,
                        });
                        self.last_hash = seal.hash;
                        self.pending.clear();
                    }
                    self.valid_len = base + next as u64;
                    at = next;
                }
            }
        }
        Ok(false)
    }

    fn check_seal(&self, seal: &Seal) -> Result<(), String> {
        let height = self.blocks.len() as u64 + 1;
        if seal.height != height {
            return Err(format!(
                "seal of height {} where {height} was due",
                seal.height
            ));
        }
        if seal.prev_hash != self.last_hash {
            return Err(format!(
                "block {height} does not chain to block {}",
                height - 1
            ));
        }
        if seal.tx_count != self.pending.len() as u64 {
            return Err(format!(
                "block {height} seals {} transactions but {} precede it",
                seal.tx_count,
                self.pending.len()
            ));
        }
        if seal.hash != block_hash(height, &seal.prev_hash, &self.pending) {
            return Err(format!(
                "block {height} hash does not match its transactions"
            ));
        }
        Ok(())
    }
}

fn lock_error(log: &Path, e: LockError) -> LogError {
    match e {
        LockError::Held { lock, pid } => LogError::Locked {
            path: log.to_path_buf(),
            lock,
            pid,
        },
        LockError::Io { lock, source } => LogError::Io { path: lock, source },
    }
}

/// A local ordered log in one file: one writer (which also reads), any number of readers.
#[derive(Debug)]
pub struct LocalLog {
    path: PathBuf,
    file: File,
    index: Index,
    lock: Option<WriterLock>,
    poisoned: bool,
    recovered_tail: Option<u64>,
}

impl LocalLog {
    /// Opens (creating if needed) the log for writing: takes the writer lock, scans and checks
    /// every record, truncates a torn tail. Fails on corruption, naming the offset.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let lock = WriterLock::acquire(path).map_err(|e| lock_error(path, e))?;
        let file = framing::open_for_append(path).map_err(io)?;
        let mut log = Self {
            path: path.to_path_buf(),
            file,
            index: Index::default(),
            lock: Some(lock),
            poisoned: false,
            recovered_tail: None,
        };
        let torn = log.rescan()?;
        if torn {
            let len = log.file.metadata().map_err(io)?.len();
            log.recovered_tail = Some(len - log.index.valid_len);
            framing::truncate_tail(&log.file, path, log.index.valid_len).map_err(io)?;
        } else {
            framing::sync_dir(path);
        }
        Ok(log)
    }

    /// Opens the log for reading only, without the lock; a torn tail (a write in progress, or a
    /// crash) is left alone and not read.
    pub fn open_read_only(path: &Path) -> Result<Self, LogError> {
        let file = File::open(path).map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut log = Self {
            path: path.to_path_buf(),
            file,
            index: Index::default(),
            lock: None,
            poisoned: false,
            recovered_tail: None,
        };
        log.rescan()?;
        Ok(log)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of torn tail removed when this writer opened the log, if any.
    pub fn recovered_tail(&self) -> Option<u64> {
        self.recovered_tail
    }

    /// The hash of the last sealed block ([`GENESIS_PREV_HASH`] if none).
    pub fn last_hash(&self) -> [u8; 32] {
        self.index.last_hash
    }

    /// Transactions appended but not yet sealed into a block.
    pub fn pending(&self) -> usize {
        self.index.pending.len()
    }

    fn io(&self, source: std::io::Error) -> LogError {
        LogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads the file from the end of the valid prefix and extends the index. Returns whether a
    /// torn tail follows the valid prefix.
    fn rescan(&mut self) -> Result<bool, LogError> {
        let base = self.index.valid_len;
        let mut buf = Vec::new();
        self.file
            .seek(SeekFrom::Start(base))
            .map_err(|e| self.io(e))?;
        self.file.read_to_end(&mut buf).map_err(|e| self.io(e))?;
        self.index.scan(&self.path, &buf, base)
    }

    fn write_record(&mut self, record: &[u8]) -> Result<(), LogError> {
        if self.lock.is_none() {
            return Err(LogError::ReadOnly(self.path.clone()));
        }
        if self.poisoned {
            return Err(LogError::Poisoned(self.path.clone()));
        }
        match framing::append_synced(&mut self.file, self.index.valid_len, record) {
            Ok(()) => Ok(()),
            Err(AppendError::Io(e)) => Err(self.io(e)),
            Err(AppendError::Poisoned(e)) => {
                self.poisoned = true;
                Err(self.io(e))
            }
        }
    }

    /// Appends one transaction's envelope bytes to the open block; durable when this returns.
    pub fn append_bytes(&mut self, tx: &[u8]) -> Result<(), LogError> {
        if self.index.pending.len() >= MAX_BLOCK_TXS {
            return Err(LogError::BlockFull);
        }
        let record = encode_record(KIND_TX, tx)?;
        self.write_record(&record)?;
        if self.index.pending.is_empty() {
            self.index.pending_start = self.index.valid_len;
        }
        self.index.pending.push(tx.to_vec());
        self.index.valid_len += record.len() as u64;
        Ok(())
    }

    /// Closes the open block (possibly empty: heights advance with time, and epochs with them)
    /// and returns its header; durable when this returns.
    pub fn seal_block(&mut self) -> Result<Block, LogError> {
        let height = self.index.blocks.len() as u64 + 1;
        let prev_hash = self.index.last_hash;
        let hash = block_hash(height, &prev_hash, &self.index.pending);
        let seal = Seal {
            height,
            prev_hash,
            tx_count: self.index.pending.len() as u64,
            hash,
        };
        let record = encode_record(KIND_SEAL, &codec::encode(&seal)?)?;
        self.write_record(&record)?;
        let start = if self.index.pending.is_empty() {
            self.index.valid_len
        } else {
            self.index.pending_start
        };
        let txs = std::mem::take(&mut self.index.pending);
        Ok(self.index_sealed(start, record.len(), seal, txs))
    }

    /// Records a block just written (from `start`, `written` bytes) in the index.
    fn index_sealed(&mut self, start: u64, written: usize, seal: Seal, txs: Vec<Vec<u8>>) -> Block {
        self.index.valid_len += written as u64;
        self.index.blocks.push(BlockEntry {
            start,
            end: self.index.valid_len,
        });
        self.index.last_hash = seal.hash;
        Block {
            height: seal.height,
            prev_hash: seal.prev_hash,
            hash: seal.hash,
            txs,
        }
    }

    /// Appends `txs` and seals them as one block with a single write and fsync: how a mirror of
    /// an already-ordered log (the chain follower) copies a block. A crash part-way leaves at most
    /// unsealed transactions, which [`LocalLog::discard_pending`] removes.
    pub fn append_block<B: AsRef<[u8]>>(&mut self, txs: &[B]) -> Result<Block, LogError> {
        if !self.index.pending.is_empty() {
            return Err(LogError::Poisoned(self.path.clone()));
        }
        if txs.len() > MAX_BLOCK_TXS {
            return Err(LogError::BlockFull);
        }
        let height = self.index.blocks.len() as u64 + 1;
        let prev_hash = self.index.last_hash;
        let hash = block_hash(height, &prev_hash, txs);
        let mut bytes = Vec::new();
        for tx in txs {
            bytes.extend_from_slice(&encode_record(KIND_TX, tx.as_ref())?);
        }
        let seal = Seal {
            height,
            prev_hash,
            tx_count: txs.len() as u64,
            hash,
        };
        bytes.extend_from_slice(&encode_record(KIND_SEAL, &codec::encode(&seal)?)?);
        self.write_record(&bytes)?;
        let start = self.index.valid_len;
        let txs = txs.iter().map(|t| t.as_ref().to_vec()).collect();
        Ok(self.index_sealed(start, bytes.len(), seal, txs))
    }

    /// Removes transactions appended but not sealed (a writer that crashed before sealing), so a
    /// mirror can rewrite the block whole. Returns how many were removed.
    pub fn discard_pending(&mut self) -> Result<usize, LogError> {
        let n = self.index.pending.len();
        if n == 0 {
            return Ok(0);
        }
        if self.lock.is_none() {
            return Err(LogError::ReadOnly(self.path.clone()));
        }
        let at = self.index.pending_start;
        self.file
            .set_len(at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io(e))?;
        self.index.valid_len = at;
        self.index.pending.clear();
        Ok(n)
    }

    /// Reads one sealed block back from the file, checking every record again (the file may have
    /// been damaged since it was scanned).
    fn read_block(&mut self, height: u64) -> Result<Option<Block>, LogError> {
        let Some(entry) = usize::try_from(height)
            .ok()
            .and_then(|h| h.checked_sub(1))
            .and_then(|i| self.index.blocks.get(i))
            .copied()
        else {
            return Ok(None);
        };
        let len = usize::try_from(entry.end - entry.start).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; len];
        self.file
            .seek(SeekFrom::Start(entry.start))
            .map_err(|e| self.io(e))?;
        self.file.read_exact(&mut buf).map_err(|e| self.io(e))?;
        let corrupt = |at: usize, reason: String| LogError::Corrupt {
            path: self.path.clone(),
            offset: entry.start + at as u64,
            reason,
        };
        let mut txs = Vec::new();
        let mut at = 0;
        loop {
            match parse_record(&buf, at) {
                Parsed::Record {
                    kind: KIND_TX,
                    payload,
                    next,
                } => {
                    txs.push(payload.to_vec());
                    at = next;
                }
                Parsed::Record { payload, next, .. } => {
                    let seal: Seal = codec::decode(payload, MAX_PAYLOAD)
                        .map_err(|e| corrupt(at, format!("bad seal: {e}")))?;
                    let hash = block_hash(seal.height, &seal.prev_hash, &txs);
                    if next != buf.len() || seal.height != height || hash != seal.hash {
                        return Err(corrupt(
                            at,
                            format!("block {height} changed since it was read"),
                        ));
                    }
                    return Ok(Some(Block {
                        height,
                        prev_hash: seal.prev_hash,
                        hash,
                        txs,
                    }));
                }
                Parsed::Torn => {
                    return Err(corrupt(at, "block truncated since it was read".into()));
                }
                Parsed::Corrupt(reason) => return Err(corrupt(at, reason)),
            }
        }
    }
}

impl TxLog for LocalLog {
    type Error = LogError;

    fn append(&mut self, tx: &Signed<Transaction>) -> Result<(), LogError> {
        let bytes = tx.to_bytes()?;
        self.append_bytes(&bytes)
    }

    fn height(&mut self) -> Result<u64, LogError> {
        if self.lock.is_none() {
            self.rescan()?;
        }
        Ok(self.index.blocks.len() as u64)
    }

    fn blocks_from(&mut self, from: u64, max: usize) -> Result<Vec<Block>, LogError> {
        if self.lock.is_none() {
            self.rescan()?;
        }
        let mut out = Vec::new();
        let mut height = from.max(1);
        while out.len() < max {
            match self.read_block(height)? {
                Some(b) => out.push(b),
                None => break,
            }
            height += 1;
        }
        Ok(out)
    }
}

/// Why a replay stopped.
#[derive(Debug, Error)]
pub enum ReplayError<E: std::error::Error + 'static> {
    /// The log could not be read.
    #[error("reading the log: {0}")]
    Log(#[source] E),
    /// The log's blocks do not follow the state.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The state could not be encoded for its root.
    #[error("state root: {0}")]
    Codec(#[from] CodecError),
    /// A block does not chain to the one before it.
    #[error("block {height} does not chain to the previous block")]
    Chain {
        /// The block.
        height: u64,
    },
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayReport {
    /// Blocks applied.
    pub blocks: u64,
    /// Transactions accepted.
    pub accepted: u64,
    /// Transactions refused, with their height and index in the block.
    pub refused: Vec<(u64, usize, TxError)>,
}

/// Brings `state` up to the log's last block, applying every block after `state.height()` in
/// order, `batch` blocks per read. `prev_hash` is the hash of the block `state` is at
/// ([`GENESIS_PREV_HASH`] from genesis); the new one is returned with the report. Replaying the
/// same log from the same state always gives the same state root.
pub fn catch_up<L: TxLog>(
    log: &mut L,
    state: &mut LedgerState,
    prev_hash: [u8; 32],
    batch: usize,
) -> Result<([u8; 32], ReplayReport), ReplayError<L::Error>> {
    catch_up_until(log, state, prev_hash, batch, u64::MAX, |_| {})
}

/// [`catch_up`] that stops after block `until` (or at the log's end, whichever comes first), and
/// shows `observe` the state before the first block and after every block applied, so that a
/// caller keeps the states it needs on the way (the settler keeps each epoch's state just before
/// its last block) without replaying the log again.
pub fn catch_up_until<L: TxLog>(
    log: &mut L,
    state: &mut LedgerState,
    mut prev_hash: [u8; 32],
    batch: usize,
    until: u64,
    mut observe: impl FnMut(&LedgerState),
) -> Result<([u8; 32], ReplayReport), ReplayError<L::Error>> {
    let mut report = ReplayReport::default();
    observe(state);
    while state.height() < until {
        let want = usize::try_from(until - state.height())
            .unwrap_or(usize::MAX)
            .min(batch.max(1));
        let blocks = log
            .blocks_from(state.height() + 1, want)
            .map_err(ReplayError::Log)?;
        if blocks.is_empty() {
            break;
        }
        for block in blocks {
            if block.height > until {
                return Ok((prev_hash, report));
            }
            if block.prev_hash != prev_hash {
                return Err(ReplayError::Chain {
                    height: block.height,
                });
            }
            let results = state.apply_block_bytes(block.height, &block.txs)?;
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Ok(()) => report.accepted += 1,
                    Err(e) => report.refused.push((block.height, i, e)),
                }
            }
            report.blocks += 1;
            prev_hash = block.hash;
            observe(state);
        }
    }
    Ok((prev_hash, report))
}

/// Replays a whole log onto a genesis state and returns the final state and its root.
pub fn replay<L: TxLog>(
    log: &mut L,
    genesis: LedgerState,
) -> Result<(LedgerState, StateRoot, ReplayReport), ReplayError<L::Error>> {
    let mut state = genesis;
    let (_, report) = catch_up(log, &mut state, GENESIS_PREV_HASH, 256)?;
    let root = state.state_root()?;
    Ok((state, root, report))
}
