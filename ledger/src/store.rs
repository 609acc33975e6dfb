//! The durable receipt store: every receipt this node signed or countersigned, in one redb file.
//!
//! A provider stores its signed half ([`ProviderReceipt`]) before it answers, so that a crash between
//! answering and being paid never loses the claim; either side stores the countersigned [`Receipt`]
//! when it has it, which replaces the half. Every write commits with redb's immediate durability: a
//! call that returned `Ok` is on disk. [`ReceiptWriter`] groups concurrent writes into one
//! transaction, so a busy provider pays one fsync per batch instead of one per query.
//!
//! ```no_run
//! # fn main() -> Result<(), agora_ledger::store::StoreError> {
//! use agora_ledger::store::{ListFilter, ReceiptStore};
//! let store = ReceiptStore::open(std::path::Path::new("/tmp/receipts.redb"))?;
//! for receipt in store.list(&ListFilter { only_unsettled: true, ..ListFilter::default() })? {
//!     println!("{} {}", receipt.id(), receipt.body().price);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Tables
//!
//! - `receipts`: id -> row (a fixed header: format, kind, settled flag, insertion sequence, client,
//!   provider, price; then the receipt's canonical bytes). The header lets `list` filter without
//!   decoding and verifying every receipt; the bytes are the truth and the header is checked
//!   against them on every read.
//! - `by_seq`: insertion sequence -> id, for insertion order and newest-first listing.
//! - `by_query`: client || query id -> id, for replay detection after a restart.
//! - `unpaid`: client || provider -> total price of the unsettled receipts between them, kept in the
//!   same transaction as the rows, so [`ReceiptStore::unpaid`] is one lookup.
//! - `meta`: the schema version and the next sequence number.
//! - `anchor_epochs`: (subnet, epoch) -> (receipt count, total paid, receipts root) of every epoch
//!   this node has folded into an anchor (`crate::anchor`), even an empty one, so the same epoch
//!   folds to the same leaves however often it is built.
//! - `anchored`: (subnet, epoch, leaf index) -> receipt id, and `anchored_by_id`, its inverse: which
//!   receipts an anchor covered, written in one transaction with the epoch's row, so a receipt is
//!   never in two anchors. Tables added after schema 1 are created on open; older files gain them.
//!
//! # Sharing the file
//!
//! redb locks the file: one process (one [`ReceiptStore`], cloned as needed) has it open at a time.
//! A second open, from this process or another, fails with [`StoreError::Locked`].

use agora_protocols::codec::CodecError;
use agora_protocols::{ContentId, ProviderReceipt, PublicKey, Receipt, ReceiptBody, ReceiptError};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Version of the store's tables and row format. A file with another version is refused.
pub const SCHEMA_VERSION: u64 = 1;
/// Most receipts one [`ReceiptStore::list`] returns, whatever the filter asks.
pub const MAX_LIST_LIMIT: usize = 10_000;
/// Receipts [`ListFilter::default`] returns.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// Most entries a [`ReceiptWriter`] puts in one transaction, so one batch never holds the write
/// lock, or its callers, for long.
pub const MAX_BATCH: usize = 1024;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RECEIPTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("receipts");
const BY_SEQ: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("by_seq");
const BY_QUERY: TableDefinition<&[u8; 64], &[u8; 32]> = TableDefinition::new("by_query");
const UNPAID: TableDefinition<&[u8; 64], u64> = TableDefinition::new("unpaid");
/// (subnet, epoch) -> (receipt count, total paid, receipts root) of each anchored epoch.
const ANCHOR_EPOCHS: TableDefinition<(u16, u64), (u64, u64, [u8; 32])> =
    TableDefinition::new("anchor_epochs");
/// (subnet, epoch, leaf index) -> receipt id.
const ANCHORED: TableDefinition<(u16, u64, u64), &[u8; 32]> = TableDefinition::new("anchored");
/// receipt id -> (subnet, epoch, leaf index).
const ANCHORED_BY_ID: TableDefinition<&[u8; 32], (u16, u64, u64)> =
    TableDefinition::new("anchored_by_id");

const META_SCHEMA: &str = "schema_version";
const META_NEXT_SEQ: &str = "next_seq";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's directory could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another handle (this process or another, e.g. a running node) has the file open.
    #[error("receipt store {0} is open elsewhere (is a node running on it?)")]
    Locked(PathBuf),
    /// The file is not a receipt store this version can read, or redb found it damaged.
    #[error("cannot open receipt store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// redb's reason.
        source: redb::Error,
    },
    /// The file was written with another schema version.
    #[error(
        "receipt store schema version {found} is not supported (this build reads {SCHEMA_VERSION})"
    )]
    UnsupportedSchema {
        /// The version in the file.
        found: u64,
    },
    /// A redb operation failed (I/O, a damaged page).
    #[error("receipt store: {0}")]
    Database(#[from] redb::Error),
    /// A stored row could not be decoded or does not check out: the file was altered or damaged.
    #[error("receipt store row {id} is corrupt: {reason}")]
    Corrupt {
        /// The row's key (an id, or the hex of an index key).
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The receipt offered for storage does not verify.
    #[error("refusing to store receipt: {0}")]
    Invalid(#[from] ReceiptError),
    /// The receipt could not be encoded.
    #[error("cannot encode receipt: {0}")]
    Encode(#[from] CodecError),
    /// A receipt with this id is already stored with a different body or different signatures.
    #[error("receipt {0} is already stored with different contents")]
    Conflict(ContentId),
    /// Storing this receipt would take its client's unpaid total to the provider past `u64::MAX`.
    #[error("receipt {0} would overflow the unpaid total between its client and provider")]
    Overflow(ContentId),
    /// The [`ReceiptWriter`] thread has stopped (closed, or the store failed underneath it).
    #[error("the receipt writer has stopped")]
    WriterClosed,
    /// The epoch is already anchored with other contents.
    #[error("subnet {subnet} epoch {epoch} is already anchored with other receipts or totals")]
    AnchorConflict {
        /// The subnet.
        subnet: u16,
        /// The epoch.
        epoch: u64,
    },
    /// A later epoch of the subnet is already anchored: epochs are anchored in order.
    #[error(
        "subnet {subnet} is already anchored up to epoch {last}; epoch {epoch} can no longer be"
    )]
    AnchorOrder {
        /// The subnet.
        subnet: u16,
        /// The epoch asked for.
        epoch: u64,
        /// The last anchored epoch.
        last: u64,
    },
    /// The receipt is already covered by an anchor.
    #[error("receipt {id} is already anchored in subnet {subnet} epoch {epoch}")]
    AlreadyAnchored {
        /// The receipt.
        id: ContentId,
        /// Subnet of the anchor that covers it.
        subnet: u16,
        /// Epoch of the anchor that covers it.
        epoch: u64,
    },
    /// The receipt cannot be anchored: not stored, or not countersigned.
    #[error("receipt {id} cannot be anchored: {reason}")]
    NotAnchorable {
        /// The receipt.
        id: ContentId,
        /// Why.
        reason: &'static str,
    },
}

macro_rules! redb_error_into_store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(redb::Error::from(e))
            }
        }
    )*};
}
redb_error_into_store_error!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The receipt was not stored before.
    New,
    /// The same receipt (or, for a half, the full receipt it belongs to) was already stored.
    AlreadyPresent,
    /// A stored provider half was replaced by the countersigned receipt.
    Upgraded,
}

/// One thing to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The provider's signed half.
    Half(ProviderReceipt),
    /// The receipt signed by both sides.
    Full(Receipt),
}

impl Entry {
    /// The receipt id.
    pub fn id(&self) -> ContentId {
        match self {
            Entry::Half(r) => r.id(),
            Entry::Full(r) => r.id(),
        }
    }

    /// The signed body.
    pub fn body(&self) -> &ReceiptBody {
        match self {
            Entry::Half(r) => r.body(),
            Entry::Full(r) => r.body(),
        }
    }
}

/// A receipt as stored: a half or a full receipt, and whether it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredReceipt {
    /// Signed by the provider only.
    Half(ProviderReceipt),
    /// Signed by both sides.
    Full(Receipt),
}

impl StoredReceipt {
    /// The signed body.
    pub fn body(&self) -> &ReceiptBody {
        match self {
            StoredReceipt::Half(r) => r.body(),
            StoredReceipt::Full(r) => r.body(),
        }
    }

    /// The receipt id.
    pub fn id(&self) -> ContentId {
        match self {
            StoredReceipt::Half(r) => r.id(),
            StoredReceipt::Full(r) => r.id(),
        }
    }

    /// Whether the client has countersigned: only such receipts move money.
    pub fn is_countersigned(&self) -> bool {
        matches!(self, StoredReceipt::Full(_))
    }

    /// The full receipt, if countersigned.
    pub fn as_receipt(&self) -> Option<&Receipt> {
        match self {
            StoredReceipt::Full(r) => Some(r),
            StoredReceipt::Half(_) => None,
        }
    }
}

/// A stored receipt with the row's bookkeeping, as [`ReceiptStore::list_rows`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// The receipt.
    pub receipt: StoredReceipt,
    /// Whether it has been settled ([`ReceiptStore::mark_settled`]).
    pub settled: bool,
    /// Insertion sequence: 0 for the first receipt stored, then increasing.
    pub seq: u64,
}

/// Which receipts [`ReceiptStore::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Only receipts where this key is the client or the provider.
    pub party: Option<PublicKey>,
    /// Only receipts not yet settled.
    pub only_unsettled: bool,
    /// At most this many (capped at [`MAX_LIST_LIMIT`]).
    pub limit: usize,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            party: None,
            only_unsettled: false,
            limit: DEFAULT_LIST_LIMIT,
        }
    }
}

/// What [`ReceiptStore::audit`] found.
#[derive(Debug, Default)]
pub struct Audit {
    /// Rows that decode and verify, in insertion order.
    pub good: Vec<StoredRow>,
    /// Rows that do not, with the reason.
    pub bad: Vec<(String, StoreError)>,
    /// Client/provider pairs whose kept unpaid total differs from the sum over the good rows:
    /// (client, provider, kept, recomputed).
    pub unpaid_mismatches: Vec<(PublicKey, PublicKey, u64, u64)>,
}

impl Audit {
    /// Whether everything checked out.
    pub fn is_clean(&self) -> bool {
        self.bad.is_empty() && self.unpaid_mismatches.is_empty()
    }
}

// ---- row format ----------------------------------------------------------------------------------

const ROW_FORMAT: u8 = 1;
const KIND_HALF: u8 = 1;
const KIND_FULL: u8 = 2;
/// format, kind, settled, seq, client, provider, price.
const ROW_HEADER_LEN: usize = 1 + 1 + 1 + 8 + 32 + 32 + 8;

/// The fixed part of a row: enough to filter and keep totals without decoding the receipt.
#[derive(Debug, Clone, Copy)]
struct RowHeader {
    kind: u8,
    settled: bool,
    seq: u64,
    client: [u8; 32],
    provider: [u8; 32],
    price: u64,
}

impl RowHeader {
    fn involves(&self, party: &[u8; 32]) -> bool {
        &self.client == party || &self.provider == party
    }
}

fn encode_row(header: &RowHeader, bytes: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(ROW_HEADER_LEN + bytes.len());
    row.push(ROW_FORMAT);
    row.push(header.kind);
    row.push(u8::from(header.settled));
    row.extend_from_slice(&header.seq.to_be_bytes());
    row.extend_from_slice(&header.client);
    row.extend_from_slice(&header.provider);
    row.extend_from_slice(&header.price.to_be_bytes());
    row.extend_from_slice(bytes);
    row
}

fn corrupt(id: impl std::fmt::Display, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        id: id.to_string(),
        reason: reason.into(),
    }
}

/// Splits a row into its header and the receipt bytes, checking only the layout.
fn split_row(id: &ContentId, row: &[u8]) -> Result<(RowHeader, Vec<u8>), StoreError> {
    let Some((head, bytes)) = row.split_first_chunk::<ROW_HEADER_LEN>() else {
        return Err(corrupt(
            id,
            format!("row of {} bytes is too short", row.len()),
        ));
    };
    let [format, kind, settled, rest @ ..] = head;
    if *format != ROW_FORMAT {
        return Err(corrupt(id, format!("unknown row format {format}")));
    }
    if *kind != KIND_HALF && *kind != KIND_FULL {
        return Err(corrupt(id, format!("unknown receipt kind {kind}")));
    }
    let settled = match settled {
        0 => false,
        1 => true,
        other => return Err(corrupt(id, format!("settled flag {other}"))),
    };
    let (seq, rest) = take_array::<8>(rest);
    let (client, rest) = take_array::<32>(rest);
    let (provider, rest) = take_array::<32>(rest);
    let (price, _) = take_array::<8>(rest);
    Ok((
        RowHeader {
            kind: *kind,
            settled,
            seq: u64::from_be_bytes(seq),
            client,
            provider,
            price: u64::from_be_bytes(price),
        },
        bytes.to_vec(),
    ))
}

/// The first `N` bytes of `bytes` (zero-filled if short; callers pass slices of a checked length).
fn take_array<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    let mut out = [0u8; N];
    let n = bytes.len().min(N);
    let (head, tail) = bytes.split_at(n);
    if let Some(dst) = out.get_mut(..n) {
        dst.copy_from_slice(head);
    }
    (out, tail)
}

/// Decodes a row fully: the receipt is decoded under the protocol's size limits and its signatures
/// verified, and the header must agree with it.
fn decode_row(id: &ContentId, row: &[u8]) -> Result<(RowHeader, StoredReceipt), StoreError> {
    let (header, bytes) = split_row(id, row)?;
    let receipt = if header.kind == KIND_FULL {
        StoredReceipt::Full(Receipt::from_bytes(&bytes).map_err(|e| corrupt(id, e.to_string()))?)
    } else {
        StoredReceipt::Half(
            ProviderReceipt::from_bytes(&bytes).map_err(|e| corrupt(id, e.to_string()))?,
        )
    };
    if receipt.id() != *id {
        return Err(corrupt(id, format!("holds receipt {}", receipt.id())));
    }
    let body = receipt.body();
    if body.client.to_bytes() != header.client
        || body.provider.to_bytes() != header.provider
        || body.price != header.price
    {
        return Err(corrupt(id, "header disagrees with the receipt"));
    }
    Ok((header, receipt))
}

fn pair_key(a: &[u8; 32], b: &[u8; 32]) -> [u8; 64] {
    let mut key = [0u8; 64];
    let (left, right) = key.split_at_mut(32);
    left.copy_from_slice(a);
    right.copy_from_slice(b);
    key
}

fn split_pair(key: &[u8; 64]) -> ([u8; 32], [u8; 32]) {
    let (a, rest) = take_array::<32>(key);
    let (b, _) = take_array::<32>(rest);
    (a, b)
}

// ---- the store -----------------------------------------------------------------------------------

/// The receipt store. Cheap to clone: clones share one open database.
#[derive(Debug, Clone)]
pub struct ReceiptStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    db: Database,
    path: PathBuf,
}

/// A receipt ready to be written: verified and encoded outside the write transaction, so the
/// write lock is held only for the table updates.
struct Prepared {
    id: ContentId,
    kind: u8,
    bytes: Vec<u8>,
    body: ReceiptBody,
    /// The provider's signature, for a full receipt (a half's is the end of its bytes).
    provider_signature: [u8; 64],
}

impl Prepared {
    fn new(entry: &Entry) -> Result<Self, StoreError> {
        match entry {
            // A ProviderReceipt value always carries a valid provider signature (its type's
            // invariant), so only the body rules are checked again.
            Entry::Half(r) => {
                r.body().validate()?;
                Ok(Self {
                    id: r.id(),
                    kind: KIND_HALF,
                    bytes: r.to_bytes()?,
                    body: r.body().clone(),
                    provider_signature: [0; 64],
                })
            }
            Entry::Full(r) => {
                r.verify()?;
                Ok(Self {
                    id: r.id(),
                    kind: KIND_FULL,
                    bytes: r.to_bytes()?,
                    body: r.body().clone(),
                    provider_signature: r.provider_signature().0,
                })
            }
        }
    }
}

impl ReceiptStore {
    /// Opens the store at `path`, creating the file (and its directory) if missing.
    ///
    /// The whole file is checked for integrity on open (every page checksum), so a damaged or
    /// altered file is refused here with an error instead of misbehaving later. That reads the
    /// file once: a store of a million receipts takes on the order of a second.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_path_buf()),
                other => StoreError::Open {
                    path: path.to_path_buf(),
                    source: other.into(),
                },
            })?;
        let store = Self {
            inner: Arc::new(StoreInner {
                db,
                path: path.to_path_buf(),
            }),
        };
        store.init_schema()?;
        Ok(store)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Creates the tables on a new file; checks the schema version on an existing one.
    fn init_schema(&self) -> Result<(), StoreError> {
        let txn = self.inner.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(META_SCHEMA)?.map(|v| v.value());
            match found {
                Some(SCHEMA_VERSION) => {}
                Some(found) => return Err(StoreError::UnsupportedSchema { found }),
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                    meta.insert(META_NEXT_SEQ, 0)?;
                }
            }
            // Opening creates them, so readers never meet a missing table.
            txn.open_table(RECEIPTS)?;
            txn.open_table(BY_SEQ)?;
            txn.open_table(BY_QUERY)?;
            txn.open_table(UNPAID)?;
            txn.open_table(ANCHOR_EPOCHS)?;
            txn.open_table(ANCHORED)?;
            txn.open_table(ANCHORED_BY_ID)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Provider side, before it answers: stores its signed half. Idempotent for the same bytes;
    /// [`Inserted::AlreadyPresent`] too if the countersigned receipt is already stored.
    pub fn put_provider_half(&self, r: &ProviderReceipt) -> Result<Inserted, StoreError> {
        self.put_one(Entry::Half(r.clone()))
    }

    /// Either side: the countersigned receipt (both signatures verified here). Replaces a stored
    /// half with the same id ([`Inserted::Upgraded`]); [`Inserted::AlreadyPresent`] if the full
    /// receipt is already there.
    pub fn put_receipt(&self, r: &Receipt) -> Result<Inserted, StoreError> {
        self.put_one(Entry::Full(r.clone()))
    }

    fn put_one(&self, entry: Entry) -> Result<Inserted, StoreError> {
        let mut results = self.put_many(std::slice::from_ref(&entry))?;
        results.pop().ok_or(StoreError::WriterClosed)
    }

    /// Stores several receipts in one write transaction (group commit: one fsync for all). All or
    /// nothing: if any entry is refused, nothing is written and the error names it. Entries are
    /// applied in order, so a half followed by its full receipt gives `[New, Upgraded]`.
    pub fn put_many(&self, items: &[Entry]) -> Result<Vec<Inserted>, StoreError> {
        let prepared = items
            .iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>, _>>()?;
        let txn = self.inner.db.begin_write()?;
        let mut results = Vec::with_capacity(prepared.len());
        {
            let mut meta = txn.open_table(META)?;
            let mut receipts = txn.open_table(RECEIPTS)?;
            let mut by_seq = txn.open_table(BY_SEQ)?;
            let mut by_query = txn.open_table(BY_QUERY)?;
            let mut unpaid = txn.open_table(UNPAID)?;
            let mut next_seq = meta
                .get(META_NEXT_SEQ)?
                .map(|v| v.value())
                .ok_or_else(|| corrupt(META_NEXT_SEQ, "missing"))?;
            for p in &prepared {
                let existing = receipts.get(&p.id.0)?.map(|v| v.value().to_vec());
                let outcome = match existing {
                    Some(row) => {
                        let (header, stored) = decode_row(&p.id, &row)?;
                        let outcome = compare(&p.id, p, &header, &stored)?;
                        if outcome == Inserted::Upgraded {
                            let new_header = RowHeader {
                                kind: KIND_FULL,
                                ..header
                            };
                            receipts
                                .insert(&p.id.0, encode_row(&new_header, &p.bytes).as_slice())?;
                        }
                        outcome
                    }
                    None => {
                        let client = p.body.client.to_bytes();
                        let provider = p.body.provider.to_bytes();
                        let header = RowHeader {
                            kind: p.kind,
                            settled: false,
                            seq: next_seq,
                            client,
                            provider,
                            price: p.body.price,
                        };
                        receipts.insert(&p.id.0, encode_row(&header, &p.bytes).as_slice())?;
                        by_seq.insert(next_seq, &p.id.0)?;
                        let query_key = pair_key(&client, &p.body.query_id.0);
                        if by_query.get(&query_key)?.is_none() {
                            by_query.insert(&query_key, &p.id.0)?;
                        }
                        let pair = pair_key(&client, &provider);
                        let total = unpaid.get(&pair)?.map(|v| v.value()).unwrap_or(0);
                        let total = total
                            .checked_add(p.body.price)
                            .ok_or(StoreError::Overflow(p.id))?;
                        unpaid.insert(&pair, total)?;
                        next_seq = next_seq
                            .checked_add(1)
                            .ok_or_else(|| corrupt(META_NEXT_SEQ, "sequence exhausted"))?;
                        Inserted::New
                    }
                };
                results.push(outcome);
            }
            meta.insert(META_NEXT_SEQ, next_seq)?;
        }
        txn.commit()?;
        Ok(results)
    }

    /// Reads one receipt.
    pub fn get(&self, id: &ContentId) -> Result<Option<StoredReceipt>, StoreError> {
        Ok(self.get_row(id)?.map(|row| row.receipt))
    }

    /// Reads one receipt with its bookkeeping (settled flag, insertion sequence).
    pub fn get_row(&self, id: &ContentId) -> Result<Option<StoredRow>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let receipts = txn.open_table(RECEIPTS)?;
        let Some(row) = receipts.get(&id.0)? else {
            return Ok(None);
        };
        let (header, receipt) = decode_row(id, row.value())?;
        Ok(Some(StoredRow {
            receipt,
            settled: header.settled,
            seq: header.seq,
        }))
    }

    /// Whether a receipt (half or full) exists for this client's query id: a replay after a
    /// restart, which a provider must refuse.
    pub fn contains_query(
        &self,
        client: &PublicKey,
        query_id: &ContentId,
    ) -> Result<bool, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let by_query = txn.open_table(BY_QUERY)?;
        Ok(by_query
            .get(&pair_key(&client.to_bytes(), &query_id.0))?
            .is_some())
    }

    /// Newest first, filtered; at most `filter.limit` (capped at [`MAX_LIST_LIMIT`]).
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<StoredReceipt>, StoreError> {
        Ok(self
            .list_rows(filter)?
            .into_iter()
            .map(|row| row.receipt)
            .collect())
    }

    /// [`Self::list`] with each row's settled flag and sequence number.
    pub fn list_rows(&self, filter: &ListFilter) -> Result<Vec<StoredRow>, StoreError> {
        let limit = filter.limit.min(MAX_LIST_LIMIT);
        let party = filter.party.map(|p| p.to_bytes());
        let txn = self.inner.db.begin_read()?;
        let by_seq = txn.open_table(BY_SEQ)?;
        let receipts = txn.open_table(RECEIPTS)?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for item in by_seq.iter()?.rev() {
            let (seq, id) = item?;
            let id = ContentId(*id.value());
            let Some(row) = receipts.get(&id.0)? else {
                return Err(corrupt(
                    seq.value(),
                    format!("indexes missing receipt {id}"),
                ));
            };
            // Filter on the header first: only the rows returned are decoded and verified.
            let (header, _) = split_row(&id, row.value())?;
            if filter.only_unsettled && header.settled {
                continue;
            }
            if let Some(party) = &party
                && !header.involves(party)
            {
                continue;
            }
            let (header, receipt) = decode_row(&id, row.value())?;
            out.push(StoredRow {
                receipt,
                settled: header.settled,
                seq: header.seq,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Sum of the prices of the unsettled receipts, half or full, where `client` pays
    /// `provider`. One lookup: the total is kept up to date by every write.
    pub fn unpaid(&self, client: &PublicKey, provider: &PublicKey) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let unpaid = txn.open_table(UNPAID)?;
        Ok(unpaid
            .get(&pair_key(&client.to_bytes(), &provider.to_bytes()))?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Marks receipts settled, lowering the unpaid totals. Ids not stored, or already settled, are
    /// skipped; returns how many were newly settled. (Settlement itself arrives with the ledger log;
    /// this exists so that unpaid totals can fall.)
    pub fn mark_settled(&self, ids: &[ContentId]) -> Result<usize, StoreError> {
        let txn = self.inner.db.begin_write()?;
        let mut settled = 0usize;
        {
            let mut receipts = txn.open_table(RECEIPTS)?;
            let mut unpaid = txn.open_table(UNPAID)?;
            for id in ids {
                let Some(row) = receipts.get(&id.0)?.map(|v| v.value().to_vec()) else {
                    continue;
                };
                let (header, bytes) = split_row(id, &row)?;
                if header.settled {
                    continue;
                }
                let pair = pair_key(&header.client, &header.provider);
                let total = unpaid.get(&pair)?.map(|v| v.value()).unwrap_or(0);
                let total = total
                    .checked_sub(header.price)
                    .ok_or_else(|| corrupt(id, "unpaid total is below this receipt's price"))?;
                unpaid.insert(&pair, total)?;
                let new_header = RowHeader {
                    settled: true,
                    ..header
                };
                receipts.insert(&id.0, encode_row(&new_header, &bytes).as_slice())?;
                settled = settled.saturating_add(1);
            }
        }
        txn.commit()?;
        Ok(settled)
    }

    /// How many receipts (halves and full) are stored.
    pub fn count(&self) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        Ok(txn.open_table(RECEIPTS)?.len()?)
    }

    /// Every stored receipt in insertion order, for recomputing balances. Fails on the first row
    /// that does not decode and verify; [`Self::audit`] reports them all instead.
    pub fn all(&self) -> Result<Vec<StoredReceipt>, StoreError> {
        let mut out = Vec::new();
        self.for_each_row(|id, row| {
            let (_, receipt) = decode_row(&id, row)?;
            out.push(receipt);
            Ok(())
        })?;
        Ok(out)
    }

    /// Re-reads every row: decodes it, verifies its signatures, and recomputes the unpaid totals
    /// from the good rows to compare with the kept ones. Only a failure to read the database is an
    /// error; everything wrong with the contents is in the report.
    pub fn audit(&self) -> Result<Audit, StoreError> {
        let mut audit = Audit::default();
        let mut recomputed: HashMap<[u8; 64], u64> = HashMap::new();
        self.for_each_row(|id, row| {
            match decode_row(&id, row) {
                Ok((header, receipt)) => {
                    if !header.settled {
                        let total = recomputed
                            .entry(pair_key(&header.client, &header.provider))
                            .or_insert(0);
                        *total = total.saturating_add(header.price);
                    }
                    audit.good.push(StoredRow {
                        receipt,
                        settled: header.settled,
                        seq: header.seq,
                    });
                }
                Err(e) => audit.bad.push((id.to_hex(), e)),
            }
            Ok(())
        })?;
        // Pairs with a bad row cannot be recomputed: they are reported through `bad` already.
        let txn = self.inner.db.begin_read()?;
        let unpaid = txn.open_table(UNPAID)?;
        let mut kept: HashMap<[u8; 64], u64> = HashMap::new();
        for item in unpaid.iter()? {
            let (key, value) = item?;
            kept.insert(*key.value(), value.value());
        }
        let mut pairs: Vec<[u8; 64]> = kept.keys().chain(recomputed.keys()).copied().collect();
        pairs.sort_unstable();
        pairs.dedup();
        for pair in pairs {
            let kept_total = kept.get(&pair).copied().unwrap_or(0);
            let recomputed_total = recomputed.get(&pair).copied().unwrap_or(0);
            if kept_total != recomputed_total {
                let (client, provider) = split_pair(&pair);
                let client = PublicKey::from_bytes(&client)
                    .map_err(|e| corrupt(hex_of(&pair), e.to_string()))?;
                let provider = PublicKey::from_bytes(&provider)
                    .map_err(|e| corrupt(hex_of(&pair), e.to_string()))?;
                audit
                    .unpaid_mismatches
                    .push((client, provider, kept_total, recomputed_total));
            }
        }
        Ok(audit)
    }

    /// Calls `f` with each row in insertion order.
    fn for_each_row(
        &self,
        mut f: impl FnMut(ContentId, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.inner.db.begin_read()?;
        let by_seq = txn.open_table(BY_SEQ)?;
        let receipts = txn.open_table(RECEIPTS)?;
        for item in by_seq.iter()? {
            let (seq, id) = item?;
            let id = ContentId(*id.value());
            let Some(row) = receipts.get(&id.0)? else {
                return Err(corrupt(
                    seq.value(),
                    format!("indexes missing receipt {id}"),
                ));
            };
            f(id, row.value())?;
        }
        Ok(())
    }
}

// ---- anchors ---------------------------------------------------------------------------------------

/// What an anchor covered for one subnet's epoch, as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchoredEpoch {
    /// Receipts covered.
    pub receipt_count: u64,
    /// Sum of their prices.
    pub total_paid: u64,
    /// The Merkle root over their leaves.
    pub receipts_root: [u8; 32],
}

/// Where an anchored receipt sits: its anchor's subnet and epoch and its leaf index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorSlot {
    /// The subnet.
    pub subnet: u16,
    /// The epoch.
    pub epoch: u64,
    /// Leaf index under the anchor's receipts root.
    pub index: u64,
}

impl ReceiptStore {
    /// What was anchored for `subnet`'s `epoch`, if it was.
    pub fn anchored_epoch(
        &self,
        subnet: u16,
        epoch: u64,
    ) -> Result<Option<AnchoredEpoch>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let epochs = txn.open_table(ANCHOR_EPOCHS)?;
        Ok(epochs.get(&(subnet, epoch))?.map(|v| {
            let (receipt_count, total_paid, receipts_root) = v.value();
            AnchoredEpoch {
                receipt_count,
                total_paid,
                receipts_root,
            }
        }))
    }

    /// The last anchored epoch of `subnet`, if any.
    pub fn last_anchored_epoch(&self, subnet: u16) -> Result<Option<u64>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let epochs = txn.open_table(ANCHOR_EPOCHS)?;
        let last = epochs.range((subnet, 0)..=(subnet, u64::MAX))?.next_back();
        Ok(match last {
            Some(item) => Some(item?.0.value().1),
            None => None,
        })
    }

    /// The receipt ids an anchor of `subnet`'s `epoch` covered, in leaf order.
    pub fn anchored_ids(&self, subnet: u16, epoch: u64) -> Result<Vec<ContentId>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let anchored = txn.open_table(ANCHORED)?;
        let mut out = Vec::new();
        for (expected, item) in
            (0u64..).zip(anchored.range((subnet, epoch, 0)..=(subnet, epoch, u64::MAX))?)
        {
            let (key, id) = item?;
            let (_, _, index) = key.value();
            if index != expected {
                return Err(corrupt(
                    format!("anchored {subnet}/{epoch}/{index}"),
                    format!("leaf {index} where {expected} was due"),
                ));
            }
            out.push(ContentId(*id.value()));
        }
        Ok(out)
    }

    /// Which anchor covers receipt `id`, if one does.
    pub fn anchor_slot(&self, id: &ContentId) -> Result<Option<AnchorSlot>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let by_id = txn.open_table(ANCHORED_BY_ID)?;
        Ok(by_id.get(&id.0)?.map(|v| {
            let (subnet, epoch, index) = v.value();
            AnchorSlot {
                subnet,
                epoch,
                index,
            }
        }))
    }

    /// Calls `f` with every countersigned receipt of `subnet` that no anchor covers yet, each
    /// decoded and verified, in no particular order. Provider-only halves are skipped: they wait
    /// until the client's countersignature arrives.
    pub fn for_each_unanchored(
        &self,
        subnet: u16,
        mut f: impl FnMut(Receipt) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.inner.db.begin_read()?;
        let receipts = txn.open_table(RECEIPTS)?;
        let by_id = txn.open_table(ANCHORED_BY_ID)?;
        for item in receipts.iter()? {
            let (id, row) = item?;
            let id = ContentId(*id.value());
            let (header, _) = split_row(&id, row.value())?;
            if header.kind != KIND_FULL || by_id.get(&id.0)?.is_some() {
                continue;
            }
            if let (_, StoredReceipt::Full(receipt)) = decode_row(&id, row.value())?
                && receipt.body().subnet == subnet
            {
                f(receipt)?;
            }
        }
        Ok(())
    }

    /// Records durably, in one transaction, that the anchor of `subnet`'s `epoch` covers `ids` (in
    /// leaf order) with the totals of `summary`. Returns `false` when exactly this was recorded
    /// before (building an anchor twice is harmless). Refused, with nothing written, when the
    /// epoch is recorded with other contents, a later epoch of the subnet is already anchored, an
    /// id is already covered by an anchor, or an id is not a stored countersigned receipt.
    pub fn record_anchor(
        &self,
        subnet: u16,
        epoch: u64,
        ids: &[ContentId],
        summary: &AnchoredEpoch,
    ) -> Result<bool, StoreError> {
        if ids.len() as u64 != summary.receipt_count {
            return Err(StoreError::AnchorConflict { subnet, epoch });
        }
        let txn = self.inner.db.begin_write()?;
        {
            let mut epochs = txn.open_table(ANCHOR_EPOCHS)?;
            let mut anchored = txn.open_table(ANCHORED)?;
            let mut by_id = txn.open_table(ANCHORED_BY_ID)?;
            let receipts = txn.open_table(RECEIPTS)?;
            if let Some(existing) = epochs.get(&(subnet, epoch))? {
                let (count, total, root) = existing.value();
                if (count, total, root)
                    == (
                        summary.receipt_count,
                        summary.total_paid,
                        summary.receipts_root,
                    )
                {
                    return Ok(false);
                }
                return Err(StoreError::AnchorConflict { subnet, epoch });
            }
            if let Some(last) = epochs.range((subnet, 0)..=(subnet, u64::MAX))?.next_back() {
                let last = last?.0.value().1;
                if last > epoch {
                    return Err(StoreError::AnchorOrder {
                        subnet,
                        epoch,
                        last,
                    });
                }
            }
            for (index, id) in (0u64..).zip(ids) {
                if let Some(slot) = by_id.get(&id.0)? {
                    let (subnet, epoch, _) = slot.value();
                    return Err(StoreError::AlreadyAnchored {
                        id: *id,
                        subnet,
                        epoch,
                    });
                }
                let Some(row) = receipts.get(&id.0)? else {
                    return Err(StoreError::NotAnchorable {
                        id: *id,
                        reason: "not in the store",
                    });
                };
                let (header, _) = split_row(id, row.value())?;
                if header.kind != KIND_FULL {
                    return Err(StoreError::NotAnchorable {
                        id: *id,
                        reason: "not countersigned",
                    });
                }
                drop(row);
                anchored.insert(&(subnet, epoch, index), &id.0)?;
                by_id.insert(&id.0, &(subnet, epoch, index))?;
            }
            epochs.insert(
                &(subnet, epoch),
                &(
                    summary.receipt_count,
                    summary.total_paid,
                    summary.receipts_root,
                ),
            )?;
        }
        txn.commit()?;
        Ok(true)
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What storing `p` over the already stored `stored` means. The body must be the same, and so must
/// every signature the two share: the same kind must have the same bytes, and a half and a full
/// receipt must carry the same provider signature. Two different valid signatures over one body
/// mean a key signed twice; the first stays and the second is reported.
fn compare(
    id: &ContentId,
    p: &Prepared,
    header: &RowHeader,
    stored: &StoredReceipt,
) -> Result<Inserted, StoreError> {
    if stored.body() != &p.body {
        return Err(StoreError::Conflict(*id));
    }
    let stored_bytes = match stored {
        StoredReceipt::Half(r) => r.to_bytes()?,
        StoredReceipt::Full(r) => r.to_bytes()?,
    };
    let same = match (header.kind, p.kind) {
        // A half's encoding ends with its provider signature.
        (KIND_HALF, KIND_FULL) => stored_bytes.ends_with(&p.provider_signature),
        (KIND_FULL, KIND_HALF) => match stored {
            StoredReceipt::Full(r) => p.bytes.ends_with(&r.provider_signature().0),
            StoredReceipt::Half(_) => false,
        },
        _ => stored_bytes == p.bytes,
    };
    if !same {
        return Err(StoreError::Conflict(*id));
    }
    Ok(match (header.kind, p.kind) {
        (KIND_HALF, KIND_FULL) => Inserted::Upgraded,
        _ => Inserted::AlreadyPresent,
    })
}

// ---- group commit ---------------------------------------------------------------------------------

enum Job {
    Commit {
        entry: Box<Entry>,
        reply: oneshot::Sender<Result<Inserted, StoreError>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// Group-commit front of a [`ReceiptStore`] for async code: receipts are durable before the caller
/// acknowledges anything, without one fsync per receipt.
///
/// A dedicated thread (redb is blocking) takes everything waiting in the queue, up to
/// [`MAX_BATCH`], writes it in one transaction, then answers each caller. Under load many receipts
/// share each fsync; with one caller it costs what a direct put costs.
///
/// The queue is bounded: when it is full, [`Self::commit`] waits for room. That back-pressure is
/// deliberate: a provider that cannot store receipts as fast as it answers queries must slow down
/// rather than answer work it has no durable record of.
///
/// The thread stops when every clone is dropped or [`Self::close`] is called; a caller whose entry
/// was still queued then gets [`StoreError::WriterClosed`].
#[derive(Debug, Clone)]
pub struct ReceiptWriter {
    tx: mpsc::Sender<Job>,
    transactions: Arc<AtomicU64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Commit { entry, .. } => write!(f, "Commit({})", entry.id()),
            Job::Close { .. } => f.write_str("Close"),
        }
    }
}

impl ReceiptWriter {
    /// Starts the writer thread over `store`, with room for `queue` waiting entries (at least 1).
    /// Needs no tokio runtime to start; [`Self::commit`] works from any runtime.
    pub fn spawn(store: ReceiptStore, queue: usize) -> ReceiptWriter {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let transactions = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&transactions);
        // The thread owns its receiver; if spawning a named thread fails (no threads left), the
        // receiver is dropped and every commit answers WriterClosed instead of hanging.
        let _ = std::thread::Builder::new()
            .name("agora-receipt-writer".to_string())
            .spawn(move || writer_loop(store, rx, counter));
        ReceiptWriter { tx, transactions }
    }

    /// Stores `entry` durably, together with whatever else is waiting, and returns what the store
    /// did with it. Waits for room when the queue is full (back-pressure).
    pub async fn commit(&self, entry: Entry) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job::Commit {
                entry: Box::new(entry),
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterClosed)?;
        answer.await.map_err(|_| StoreError::WriterClosed)?
    }

    /// Write transactions committed so far (each one fsync). Fewer than the entries committed
    /// whenever batching helped.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Stops the writer after the entries queued before this call are written, and waits until its
    /// thread has let go of the store (so the file can be reopened). Other clones' later commits
    /// get [`StoreError::WriterClosed`].
    pub async fn close(self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Job::Close { done }).await.is_ok() {
            // An error means the thread already stopped: just as good.
            let _ = finished.await;
        }
    }
}

fn writer_loop(store: ReceiptStore, mut rx: mpsc::Receiver<Job>, transactions: Arc<AtomicU64>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Vec::new();
        let mut close = None;
        match first {
            Job::Commit { entry, reply } => batch.push((*entry, reply)),
            Job::Close { done } => close = Some(done),
        }
        while close.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job::Commit { entry, reply }) => batch.push((*entry, reply)),
                Ok(Job::Close { done }) => close = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            write_batch(&store, batch, &transactions);
        }
        if let Some(done) = close {
            drop(store);
            rx.close();
            let _ = done.send(());
            return;
        }
    }
}

/// Writes a batch in one transaction; if the batch is refused (one bad entry), falls back to one
/// transaction per entry, so each caller gets its own answer and one bad receipt never fails
/// another's.
fn write_batch(
    store: &ReceiptStore,
    batch: Vec<(Entry, oneshot::Sender<Result<Inserted, StoreError>>)>,
    transactions: &AtomicU64,
) {
    let (entries, replies): (Vec<Entry>, Vec<_>) = batch.into_iter().unzip();
    match store.put_many(&entries) {
        Ok(results) => {
            transactions.fetch_add(1, Ordering::Relaxed);
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that stopped waiting has nothing to be told; its receipt is stored.
                let _ = reply.send(Ok(result));
            }
        }
        Err(_) if entries.len() > 1 => {
            for (entry, reply) in entries.into_iter().zip(replies) {
                let result = store.put_many(std::slice::from_ref(&entry));
                if result.is_ok() {
                    transactions.fetch_add(1, Ordering::Relaxed);
                }
                let result = result.and_then(|mut r| r.pop().ok_or(StoreError::WriterClosed));
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
    }
}
