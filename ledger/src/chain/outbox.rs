//! The outbox: what this node wants on chain, durable until the chain holds it.
//!
//! One file per item in a directory, so several processes (a validator, the CLI, a follower) can
//! share one outbox without a lock: an item is written to a temporary name, fsynced, renamed into
//! place and the directory fsynced, so it is either there whole or not at all. Names sort in
//! submission order (`<unix nanos>-<content hash>.item`), which is the order items are sent in:
//! the ledger's nonces need a signer's transactions in order.
//!
//! Beside an item, a `.sent` marker records that sending started (the chain head then) and, once
//! the RPC took it, the EVM transaction hash. An item with a marker may already be on chain, so
//! before sending it again the sender looks for it there; an item without one was never sent.

use super::ChainError;
use crate::state::tx::{MAX_TX_LEN, TX_ENVELOPE_OVERHEAD};
use agora_protocols::codec;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Largest signed anchor record the contract accepts (its `MAX_ANCHOR_BYTES`).
pub const MAX_ANCHOR_RECORD_LEN: usize = 4096;
/// Largest transaction the contract accepts (its `MAX_TRANSACTION_BYTES`).
pub const MAX_SUBMITTED_TX_LEN: usize = MAX_TX_LEN + TX_ENVELOPE_OVERHEAD;
/// Largest item file read back.
const MAX_ITEM_FILE: u64 = 16 * 1024;
/// Most items listed at once: a bound on memory, not on the queue (the rest wait their turn).
pub const MAX_LISTED: usize = 4096;
const MAGIC: &[u8; 4] = b"AGOX";
const HEADER: usize = 4 + 32;

/// One thing to put on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Submission {
    /// A signed ledger transaction's envelope bytes, for `AgoraLedger.submit`.
    Transaction(Vec<u8>),
    /// An epoch anchor, for `AgoraLedger.anchor`.
    Anchor {
        /// The subnet.
        subnet: u16,
        /// The epoch.
        epoch: u64,
        /// blake3 hash of `record`, the value the contract stores.
        record_hash: [u8; 32],
        /// The signed anchor record.
        record: Vec<u8>,
    },
}

impl Submission {
    /// Checks what the contract would check, so a doomed item never enters the queue.
    pub fn validate(&self) -> Result<(), ChainError> {
        match self {
            Submission::Transaction(tx) if tx.is_empty() || tx.len() > MAX_SUBMITTED_TX_LEN => {
                Err(ChainError::Refused(format!(
                    "a transaction of {} bytes (1 to {MAX_SUBMITTED_TX_LEN})",
                    tx.len()
                )))
            }
            Submission::Anchor {
                record,
                record_hash,
                ..
            } if record.is_empty()
                || record.len() > MAX_ANCHOR_RECORD_LEN
                || *record_hash == [0; 32] =>
            {
                Err(ChainError::Refused(format!(
                    "an anchor record of {} bytes (1 to {MAX_ANCHOR_RECORD_LEN}, non-zero hash)",
                    record.len()
                )))
            }
            _ => Ok(()),
        }
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Submission::Transaction(tx) => format!("transaction of {} bytes", tx.len()),
            Submission::Anchor { subnet, epoch, .. } => {
                format!("anchor of subnet {subnet} epoch {epoch}")
            }
        }
    }
}

/// What the `.sent` marker says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMarker {
    /// The chain head when sending started: the item cannot be on chain below it.
    pub from_block: u64,
    /// The EVM transaction, once the RPC accepted it.
    pub tx_hash: Option<String>,
}

/// An item waiting in the outbox.
#[derive(Debug, Clone)]
pub struct PendingItem {
    /// The item's file.
    pub path: PathBuf,
    /// What it asks for.
    pub submission: Submission,
    /// Whether (and how far) it was sent before.
    pub sent: Option<SentMarker>,
}

/// A directory of pending submissions.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ChainError + '_ {
    move |source| ChainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically and durably: temporary file, fsync, rename, fsync of the
/// directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), ChainError> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        d.sync_all().map_err(io(dir))?;
    }
    Ok(())
}

impl Outbox {
    /// Opens (creating) the outbox directory and clears temporary files a crash left.
    pub fn open(dir: &Path) -> Result<Self, ChainError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                // Never renamed into place: never acknowledged.
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues `submission`; durable when this returns. Queuing what is already queued does
    /// nothing and returns the existing item's path.
    pub fn push(&self, submission: &Submission) -> Result<PathBuf, ChainError> {
        submission.validate()?;
        let payload = codec::encode(submission).map_err(|e| ChainError::BadItem {
            path: self.dir.clone(),
            reason: e.to_string(),
        })?;
        let hash = blake3::hash(&payload);
        let suffix = format!("-{}.item", &hash.to_hex()[..32]);
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
            {
                return Ok(path);
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = self.dir.join(format!("{nanos:020}{suffix}"));
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(hash.as_bytes());
        bytes.extend_from_slice(&payload);
        write_durably(&path, &bytes)?;
        Ok(path)
    }

    /// Up to `MAX_LISTED` (4,096) pending items, oldest first. A damaged item is an error naming it
    /// (it is never dropped silently: remove it by hand once understood).
    pub fn pending(&self) -> Result<Vec<PendingItem>, ChainError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().is_some_and(|e| e == "item") {
                names.push(path);
            }
        }
        names.sort();
        names.truncate(MAX_LISTED);
        names
            .into_iter()
            .map(|path| Self::read_item(&path))
            .collect()
    }

    /// How many items wait.
    pub fn len(&self) -> Result<usize, ChainError> {
        let mut n = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            if entry
                .map_err(io(&self.dir))?
                .path()
                .extension()
                .is_some_and(|e| e == "item")
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> Result<bool, ChainError> {
        Ok(self.len()? == 0)
    }

    fn read_item(path: &Path) -> Result<PendingItem, ChainError> {
        let bad = |reason: String| ChainError::BadItem {
            path: path.to_path_buf(),
            reason,
        };
        let mut bytes = Vec::new();
        File::open(path)
            .map_err(io(path))?
            .take(MAX_ITEM_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io(path))?;
        if bytes.len() as u64 > MAX_ITEM_FILE {
            return Err(bad(format!("over {MAX_ITEM_FILE} bytes")));
        }
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(bad("not an outbox item".into()));
        }
        let payload = &bytes[HEADER..];
        if blake3::hash(payload).as_bytes() != &bytes[4..HEADER] {
            return Err(bad("checksum mismatch".into()));
        }
        let submission: Submission = codec::decode(payload, MAX_ITEM_FILE as usize)
            .map_err(|e| bad(format!("undecodable: {e}")))?;
        let marker = path.with_extension("sent");
        let sent = match std::fs::read(&marker) {
            Ok(text) if text.len() <= 4096 => Some(
                serde_json::from_slice(&text)
                    .map_err(|e| bad(format!("bad marker {}: {e}", marker.display())))?,
            ),
            Ok(_) => return Err(bad(format!("marker {} too large", marker.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&marker)(e)),
        };
        Ok(PendingItem {
            path: path.to_path_buf(),
            submission,
            sent,
        })
    }

    /// Records (durably) that `item` is being sent, or was sent as an EVM transaction.
    pub fn mark(&self, item: &PendingItem, marker: &SentMarker) -> Result<(), ChainError> {
        let text = serde_json::to_vec(marker).map_err(|e| ChainError::BadItem {
            path: item.path.clone(),
            reason: e.to_string(),
        })?;
        write_durably(&item.path.with_extension("sent"), &text)
    }

    /// Removes a done item (the chain holds it final) with its marker.
    pub fn remove(&self, item: &PendingItem) -> Result<(), ChainError> {
        std::fs::remove_file(&item.path).map_err(io(&item.path))?;
        self.remove_marker(item)
    }

    /// Removes an item's `.sent` marker (after the item itself was removed or moved aside).
    pub(crate) fn remove_marker(&self, item: &PendingItem) -> Result<(), ChainError> {
        let marker = item.path.with_extension("sent");
        match std::fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&marker)(e)),
        }
        if let Ok(d) = File::open(&self.dir) {
            d.sync_all().map_err(io(&self.dir))?;
        }
        Ok(())
    }
}
