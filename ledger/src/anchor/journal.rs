//! The local anchor journal: an append-only file of signed anchor records, the node's own copy of
//! what it anchored (and the only anchor when it runs without a chain).
//!
//! # Format
//!
//! One file of records framed as the local log frames its own (`crate::framing`), with magic
//! `"AGJ1"` and one kind (1, an anchor): `magic | kind | len u32 LE | header check [4] |
//! body check [32] | payload`, where the payload is a signed anchor envelope's exact bytes (at most
//! [`MAX_SIGNED_ANCHOR_LEN`]).
//!
//! Records are hash-chained per anchorer: a record's `prev_hash` is the [`super::record_hash`] of the
//! previous record in the file by the same anchorer, zeros for its first; a journal kept by one node
//! holds one anchorer, so there each record chains to the one before it. At most one record per
//! (anchorer, subnet, epoch).
//!
//! # Crashes and damage
//!
//! Every append is fsynced before it returns. Opening verifies every record: frame checksums,
//! signatures, the hash chain, uniqueness. A torn last record (a short frame, or a last frame whose
//! checksum fails, or a zero-filled end: what a crash mid-append leaves) is cut off when the writer
//! opens the journal and reported ([`Journal::recovered_tail`]); a reader leaves it alone and
//! ignores it ([`Journal::torn_tail`]). It is never accepted. Anything wrong before the end (a bad
//! checksum followed by more data, a bad signature, a broken chain) is an error naming the byte
//! offset of the record, and nothing is repaired.
//!
//! Reads are bounded: the journal is scanned one frame at a time (a frame is at most a few hundred
//! bytes) and only an index of (anchorer, subnet, epoch, hash, offset) is kept in memory.

use super::record::{AnchorError, FIRST_PREV_HASH, MAX_SIGNED_ANCHOR_LEN, SignedAnchor};
use crate::framing::{self, AppendError, Format, Frame, LockError, WriterLock};
use agora_protocols::PublicKey;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

const KIND_ANCHOR: u8 = 1;
const FORMAT: Format = Format {
    magic: *b"AGJ1",
    kinds: &[KIND_ANCHOR],
    max_payload: MAX_SIGNED_ANCHOR_LEN,
};

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("anchor journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another writer holds the lock.
    #[error("anchor journal {path} is locked by another writer (pid {pid}, lock file {lock})")]
    Locked {
        /// The journal.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The pid in the lock file (0 if unreadable).
        pid: u32,
    },
    /// A record before the end of the file is damaged or does not check out.
    #[error("anchor journal {path} is corrupt at byte offset {offset}: {reason}")]
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// Offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Writing through a read-only handle.
    #[error("anchor journal {0} was opened read-only")]
    ReadOnly(PathBuf),
    /// An earlier write failed and could not be rolled back: reopen the journal to recover.
    #[error("anchor journal {0} had a failed write; reopen it to recover the tail")]
    Poisoned(PathBuf),
    /// The record does not chain to the anchorer's last record in the journal.
    #[error(
        "anchor for subnet {subnet} epoch {epoch} does not chain to its anchorer's last record \
         (prev_hash {got}, last record {expected})"
    )]
    ChainBreak {
        /// The subnet.
        subnet: u16,
        /// The epoch.
        epoch: u64,
        /// The hash of the anchorer's last record (hex).
        expected: String,
        /// The record's prev_hash (hex).
        got: String,
    },
    /// The journal already has a record for this (anchorer, subnet, epoch).
    #[error("the journal already holds an anchor by {anchorer} for subnet {subnet} epoch {epoch}")]
    Duplicate {
        /// The anchorer (boxed: a decompressed key is large).
        anchorer: Box<PublicKey>,
        /// The subnet.
        subnet: u16,
        /// The epoch.
        epoch: u64,
    },
    /// The record could not be used.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
}

/// One record of the journal, as indexed in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Byte offset of its frame.
    pub offset: u64,
    /// Its anchorer.
    pub anchorer: PublicKey,
    /// Its subnet.
    pub subnet: u16,
    /// Its epoch.
    pub epoch: u64,
    /// Its [`super::record_hash`].
    pub hash: [u8; 32],
    /// Its `prev_hash`.
    pub prev_hash: [u8; 32],
}

/// The anchor journal: one writer (which also reads), any number of readers.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    entries: Vec<JournalEntry>,
    by_key: BTreeMap<(PublicKey, u16, u64), usize>,
    by_hash: HashMap<[u8; 32], usize>,
    heads: BTreeMap<PublicKey, [u8; 32]>,
    valid_len: u64,
    lock: Option<WriterLock>,
    poisoned: bool,
    recovered_tail: Option<u64>,
    torn_tail: Option<u64>,
}

impl Journal {
    /// Opens (creating it and its folder if needed) the journal for appending: takes the writer
    /// lock, verifies every record, cuts off a torn last record. Fails on damage before the end,
    /// naming the offset.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let lock = WriterLock::acquire(path).map_err(|e| match e {
            LockError::Held { lock, pid } => JournalError::Locked {
                path: path.to_path_buf(),
                lock,
                pid,
            },
            LockError::Io { lock, source } => JournalError::Io { path: lock, source },
        })?;
        let file = framing::open_for_append(path).map_err(|e| io(path, e))?;
        let mut journal = Self::scan(path, file, Some(lock))?;
        if let Some(torn) = journal.torn_tail.take() {
            framing::truncate_tail(&journal.file, path, journal.valid_len)
                .map_err(|e| io(path, e))?;
            journal.recovered_tail = Some(torn);
        } else {
            framing::sync_dir(path);
        }
        Ok(journal)
    }

    /// Opens an existing journal to read it, without the lock. A torn tail (a crash, or an append
    /// in progress) is left alone and not read.
    pub fn open_read_only(path: &Path) -> Result<Self, JournalError> {
        let file = File::open(path).map_err(|e| io(path, e))?;
        Self::scan(path, file, None)
    }

    fn scan(path: &Path, file: File, lock: Option<WriterLock>) -> Result<Self, JournalError> {
        let len = file.metadata().map_err(|e| io(path, e))?.len();
        let mut journal = Self {
            path: path.to_path_buf(),
            file,
            entries: Vec::new(),
            by_key: BTreeMap::new(),
            by_hash: HashMap::new(),
            heads: BTreeMap::new(),
            valid_len: 0,
            lock,
            poisoned: false,
            recovered_tail: None,
            torn_tail: None,
        };
        let mut payload = Vec::new();
        loop {
            let at = journal.valid_len;
            match FORMAT
                .read_at(&journal.file, at, len, &mut payload)
                .map_err(|e| io(path, e))?
            {
                Frame::End => break,
                Frame::Torn => {
                    journal.torn_tail = Some(len - at);
                    break;
                }
                Frame::Corrupt(reason) => return Err(journal.corrupt(at, reason)),
                Frame::Record { next, .. } => {
                    let anchor = SignedAnchor::from_bytes(&payload)
                        .map_err(|e| journal.corrupt(at, e.to_string()))?;
                    journal
                        .check_next(&anchor)
                        .map_err(|e| journal.corrupt(at, e.to_string()))?;
                    journal.index(at, &anchor);
                    journal.valid_len = next;
                }
            }
        }
        Ok(journal)
    }

    fn corrupt(&self, offset: u64, reason: String) -> JournalError {
        JournalError::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// Whether `anchor` may come next: it chains to its anchorer's last record and is the first
    /// for its (anchorer, subnet, epoch).
    fn check_next(&self, anchor: &SignedAnchor) -> Result<(), JournalError> {
        let r = anchor.record();
        if self.by_key.contains_key(&(r.anchorer, r.subnet, r.epoch)) {
            return Err(JournalError::Duplicate {
                anchorer: Box::new(r.anchorer),
                subnet: r.subnet,
                epoch: r.epoch,
            });
        }
        let expected = self.head(&r.anchorer);
        if r.prev_hash != expected {
            return Err(JournalError::ChainBreak {
                subnet: r.subnet,
                epoch: r.epoch,
                expected: hex(&expected),
                got: hex(&r.prev_hash),
            });
        }
        Ok(())
    }

    fn index(&mut self, offset: u64, anchor: &SignedAnchor) {
        let r = anchor.record();
        let i = self.entries.len();
        self.entries.push(JournalEntry {
            offset,
            anchorer: r.anchorer,
            subnet: r.subnet,
            epoch: r.epoch,
            hash: anchor.hash(),
            prev_hash: r.prev_hash,
        });
        self.by_key.insert((r.anchorer, r.subnet, r.epoch), i);
        self.by_hash.insert(anchor.hash(), i);
        self.heads.insert(r.anchorer, anchor.hash());
    }

    /// Appends `anchor`, durable when this returns. Refused if it does not chain to its anchorer's
    /// last record ([`Self::head`]) or repeats an (anchorer, subnet, epoch).
    pub fn append(&mut self, anchor: &SignedAnchor) -> Result<(), JournalError> {
        if self.lock.is_none() {
            return Err(JournalError::ReadOnly(self.path.clone()));
        }
        if self.poisoned {
            return Err(JournalError::Poisoned(self.path.clone()));
        }
        self.check_next(anchor)?;
        let record = FORMAT
            .encode(KIND_ANCHOR, anchor.to_bytes())
            .map_err(|len| AnchorError::TooLarge { len })?;
        let at = self.valid_len;
        match framing::append_synced(&mut self.file, at, &record) {
            Ok(()) => {}
            Err(AppendError::Io(e)) => return Err(io(&self.path, e)),
            Err(AppendError::Poisoned(e)) => {
                self.poisoned = true;
                return Err(io(&self.path, e));
            }
        }
        self.index(at, anchor);
        self.valid_len = at + record.len() as u64;
        Ok(())
    }

    /// The hash of `anchorer`'s last record: the `prev_hash` its next record must carry
    /// ([`FIRST_PREV_HASH`] when it has none).
    pub fn head(&self, anchorer: &PublicKey) -> [u8; 32] {
        self.heads.get(anchorer).copied().unwrap_or(FIRST_PREV_HASH)
    }

    /// Every record's index entry, in file order.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.entries
    }

    /// Records in the journal.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the journal has no records.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of torn tail cut off when this writer opened the journal, if any.
    pub fn recovered_tail(&self) -> Option<u64> {
        self.recovered_tail
    }

    /// Bytes of torn tail a reader found and ignored, if any.
    pub fn torn_tail(&self) -> Option<u64> {
        self.torn_tail
    }

    /// Whether a record with this [`super::record_hash`] is in the journal.
    pub fn contains_hash(&self, hash: &[u8; 32]) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// The index entry of (anchorer, subnet, epoch), if recorded.
    pub fn entry(&self, anchorer: &PublicKey, subnet: u16, epoch: u64) -> Option<&JournalEntry> {
        self.by_key
            .get(&(*anchorer, subnet, epoch))
            .and_then(|i| self.entries.get(*i))
    }

    /// The record of (anchorer, subnet, epoch), read back and checked again.
    pub fn get(
        &self,
        anchorer: &PublicKey,
        subnet: u16,
        epoch: u64,
    ) -> Result<Option<SignedAnchor>, JournalError> {
        match self.by_key.get(&(*anchorer, subnet, epoch)) {
            Some(i) => self.read(*i).map(Some),
            None => Ok(None),
        }
    }

    /// The record with this hash, read back and checked again.
    pub fn find_hash(&self, hash: &[u8; 32]) -> Result<Option<SignedAnchor>, JournalError> {
        match self.by_hash.get(hash) {
            Some(i) => self.read(*i).map(Some),
            None => Ok(None),
        }
    }

    /// Record number `i` (file order), read back from the file and checked again: the file may
    /// have changed since it was scanned.
    pub fn read(&self, i: usize) -> Result<SignedAnchor, JournalError> {
        let Some(entry) = self.entries.get(i) else {
            return Err(self.corrupt(self.valid_len, format!("no record number {i}")));
        };
        let mut payload = Vec::new();
        let frame = FORMAT
            .read_at(&self.file, entry.offset, self.valid_len, &mut payload)
            .map_err(|e| io(&self.path, e))?;
        let changed = || self.corrupt(entry.offset, "record changed since it was read".into());
        match frame {
            Frame::Record { .. } => {
                let anchor = SignedAnchor::from_bytes(&payload)
                    .map_err(|e| self.corrupt(entry.offset, e.to_string()))?;
                if anchor.hash() != entry.hash {
                    return Err(changed());
                }
                Ok(anchor)
            }
            Frame::Corrupt(reason) => Err(self.corrupt(entry.offset, reason)),
            Frame::Torn | Frame::End => Err(changed()),
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
