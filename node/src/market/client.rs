//! The client side of the marketplace: ask the mesh, check the answer, pay for it.
//!
//! One query, as [`MarketClient`] runs it:
//! 1. find providers of (subnet, task, model): the gossip-fed provider table, then Kademlia provider
//!    records if the table has none, waiting up to [`ClientConfig::discovery_wait`] for either;
//! 2. rank them with the [`ProviderPolicy`] and ask the best (direct mode), or gossip an announcement
//!    and award the best offer (open mode);
//! 3. the overlay checks the answer against the provider's signature and our request; we decode the
//!    output with its task's bounds, so garbage is a provider fault, never our crash;
//! 4. countersign, commit the receipt to our store (durable), and only then send the countersignature
//!    back to the provider;
//! 5. on a refusal, a timeout or a bad answer, note it in the policy and go to the next provider,
//!    within one overall deadline. Only the answer we accept is countersigned, so a provider that
//!    answers after we moved on is never paid twice for the query, and we never pay two providers.
//!
//! A countersignature the provider does not acknowledge (it was down, restarting, unreachable)
//! waits in the client's outbox and is sent again with backoff until the provider acknowledges it
//! (see [`Outbox`]). The outbox is kept in a small journal beside the receipt store, so what was
//! not acknowledged when a client stopped is sent again when it starts: the receipts themselves are
//! in the store already, the journal only names them.

use super::policy::{Candidate, Failure, PolicyConfig, ProviderPolicy, Standing};
use crate::metrics::{Metrics, QueryRecord, error_kind_label};
use agora_ledger::store::{Entry, ReceiptStore, ReceiptWriter, StoreError, StoredReceipt};
use agora_overlay::{OverlayError, PeerId, now_ms};
use agora_protocols::{
    ContentId, EmbedInput, EmbedOutput, GenerateInput, GenerateOutput, Payload, PayloadError,
    QueryAnnouncement, QueryError, QueryErrorKind, QueryRequest, Receipt, SecretKey, Signed, Task,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How queries are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pick a provider by policy and send it the query.
    Direct,
    /// Gossip an announcement, collect offers, award the best.
    Open,
}

/// The client's knobs, with defaults written once.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Subnet queries go to.
    pub subnet: u16,
    /// Overall deadline of one query, failovers included.
    pub deadline: Duration,
    /// Most providers tried for one query.
    pub max_attempts: usize,
    /// The most paid for one query, in units of 1e-9.
    pub max_price: u64,
    /// Direct or open.
    pub mode: Mode,
    /// How long to wait for a first provider of a model to become known.
    pub discovery_wait: Duration,
    /// How long the provider gets to acknowledge a countersignature (our copy is stored already).
    pub settle_timeout: Duration,
    /// Countersignatures being delivered at once; beyond it a query waits for its own delivery.
    pub max_pending_settlements: usize,
    /// Most unacknowledged countersignatures kept for retrying; past it the oldest is dropped
    /// from the outbox (it stays in the store, and the epoch's settlement still pays it).
    pub max_outbox: usize,
    /// Wait before the first retry of an unacknowledged countersignature; doubled after each
    /// failure up to [`ClientConfig::outbox_retry_max`].
    pub outbox_retry_base: Duration,
    /// Longest wait between two retries.
    pub outbox_retry_max: Duration,
    /// Deliveries that fail before a countersignature is dropped from the outbox (with the
    /// defaults, about half an hour of trying).
    pub outbox_max_failures: u32,
    /// The provider choice.
    pub policy: PolicyConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            subnet: 1,
            deadline: Duration::from_secs(60),
            max_attempts: 3,
            max_price: 1_000_000_000,
            mode: Mode::Direct,
            discovery_wait: Duration::from_secs(20),
            settle_timeout: Duration::from_secs(10),
            max_pending_settlements: 1024,
            max_outbox: 4096,
            outbox_retry_base: Duration::from_secs(1),
            outbox_retry_max: Duration::from_secs(30),
            outbox_max_failures: 64,
            policy: PolicyConfig::default(),
        }
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// Nobody offers the model.
    #[error("no provider of {task} model {model:?} on subnet {subnet} was found")]
    NoProvider {
        /// The task.
        task: Task,
        /// The model.
        model: String,
        /// The subnet.
        subnet: u16,
    },
    /// Every provider tried failed; the last refusal, if any, says why.
    #[error("every provider tried failed: {}", summary(.attempts))]
    AllFailed {
        /// Each attempt's provider and what went wrong.
        attempts: Vec<Attempt>,
        /// The last refusal a provider gave, for callers that map it (credit, rate limit).
        last_refusal: Option<QueryError>,
    },
    /// The deadline passed before any provider answered.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The input does not fit the task's format.
    #[error("bad input: {0}")]
    Input(#[from] PayloadError),
    /// Our receipt store failed: nothing was acknowledged.
    #[error("receipt store: {0}")]
    Store(#[from] StoreError),
    /// The overlay is gone.
    #[error("overlay: {0}")]
    Overlay(#[from] OverlayError),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(String),
}

fn summary(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", short_peer(&a.provider), a.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A peer id shortened for tables and messages.
pub fn short_peer(peer: &PeerId) -> String {
    let text = peer.to_string();
    let tail: String = text
        .chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// One provider tried.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Who.
    pub provider: PeerId,
    /// What went wrong.
    pub error: String,
}

/// An accepted, paid answer.
#[derive(Debug, Clone)]
pub struct Settled<T> {
    /// The decoded output.
    pub output: T,
    /// Who answered.
    pub provider: PeerId,
    /// The receipt signed by both sides, stored in our ledger.
    pub receipt: Receipt,
    /// From the first request to the accepted answer.
    pub latency: Duration,
    /// Providers tried before this one, and why they failed.
    pub failed_attempts: Vec<Attempt>,
}

/// The answers of a query sent to several providers at once.
#[derive(Debug)]
pub struct Redundant<T> {
    /// The answers that came back, each paid and receipted.
    pub answers: Vec<Settled<T>>,
    /// Why the other copies failed.
    pub failures: Vec<MarketError>,
    /// How the answers compare.
    pub agreement: Agreement,
}

/// How redundant answers compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Agreement {
    /// Only one answer came back: nothing to compare.
    Single,
    /// Embeddings: the smallest cosine similarity between any two answers' vectors.
    Cosine {
        /// Lowest pairwise cosine over all vectors.
        min: f32,
        /// Whether it is at least [`EMBED_AGREEMENT`].
        agree: bool,
    },
    /// Generation: whether all answers have the same tokens (meaningful for greedy sampling).
    Tokens {
        /// Answers whose tokens equal the first answer's.
        matching: usize,
        /// Answers compared.
        of: usize,
    },
}

impl Agreement {
    /// Whether the answers agree.
    pub fn agrees(&self) -> bool {
        match self {
            Agreement::Single => true,
            Agreement::Cosine { agree, .. } => *agree,
            Agreement::Tokens { matching, of } => matching == of,
        }
    }
}

/// Cosine at or above which two embeddings of one text count as the same answer (float noise across
/// machines and batch sizes is far below it; a different model or a corrupted one is far above).
pub const EMBED_AGREEMENT: f32 = 0.999;

/// A model on offer, summed over its providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelListing {
    /// The model.
    pub model: String,
    /// Its task.
    pub task: Task,
    /// Providers advertising it.
    pub providers: usize,
    /// The lowest advertised price.
    pub min_price: u64,
}

/// A client of the marketplace: cheap to clone, safe to share across tasks.
#[derive(Debug, Clone)]
pub struct MarketClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: SecretKey,
    overlay: agora_overlay::Client,
    store: ReceiptStore,
    writer: ReceiptWriter,
    policy: Mutex<ProviderPolicy>,
    next_nonce: AtomicU64,
    settlements: Arc<tokio::sync::Semaphore>,
    unacknowledged: AtomicU64,
    outbox: Mutex<Outbox>,
    config: ClientConfig,
    metrics: std::sync::OnceLock<Metrics>,
}

/// How often the outbox looks for countersignatures due for another try.
const OUTBOX_TICK: Duration = Duration::from_millis(500);
/// Largest outbox journal read at start; a larger one is not ours to trust (it is compacted
/// long before it could grow that large).
const MAX_JOURNAL_LEN: u64 = 64 * 1024 * 1024;

/// Countersignatures sent to their provider and not yet acknowledged: the client's outbox.
///
/// Every countersignature enters it before its first delivery and leaves it when the provider
/// acknowledges it (`Settled`, new or not: a provider stores a receipt once), when the provider
/// refuses it for good (anything but `Busy`, `RateLimited` or `Internal`), or after
/// [`ClientConfig::outbox_max_failures`] failed deliveries. Between tries it waits with
/// exponential backoff; a provider that answers a query again is retried at once (it is back).
///
/// The journal (`<receipt store>.outbox`) is one line per change, `+<id>` when a countersignature
/// enters and `-<id>` when it leaves, appended without `fsync`: a client that crashes keeps what the
/// kernel has, and a line lost in a power cut only means that receipt waits for the epoch's
/// settlement, as before. At start the journal is read, the receipts it names are loaded from the
/// store, and it is rewritten with only those.
#[derive(Debug)]
pub struct Outbox {
    entries: std::collections::HashMap<ContentId, Outgoing>,
    journal: Option<Journal>,
    next_seq: u64,
    max_len: usize,
}

#[derive(Debug)]
struct Outgoing {
    receipt: Receipt,
    provider: PeerId,
    /// Failed deliveries so far.
    failures: u32,
    /// When it may be tried again.
    due: Instant,
    /// A delivery is under way.
    sending: bool,
    /// Order of entry, to drop the oldest when full.
    seq: u64,
}

#[derive(Debug)]
struct Journal {
    path: std::path::PathBuf,
    file: std::fs::File,
    /// Lines appended since the journal was last rewritten.
    lines: usize,
}

impl Journal {
    fn path_for(store: &ReceiptStore) -> std::path::PathBuf {
        let mut name = store.path().as_os_str().to_owned();
        name.push(".outbox");
        std::path::PathBuf::from(name)
    }

    /// Rewrites the journal with `+` lines for `ids` only (write a temporary file, then rename it
    /// over the old one, so a crash leaves one or the other), and opens it for appending.
    fn rewrite<'a>(
        path: std::path::PathBuf,
        ids: impl Iterator<Item = &'a ContentId>,
    ) -> std::io::Result<Journal> {
        use std::io::Write;
        let mut text = String::new();
        let mut lines = 0;
        for id in ids {
            text.push('+');
            text.push_str(&id.to_hex());
            text.push('\n');
            lines += 1;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(Journal { path, file, lines })
    }

    fn append(&mut self, sign: char, id: &ContentId) {
        use std::io::Write;
        let line = format!("{sign}{}\n", id.to_hex());
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            tracing::warn!(journal = %self.path.display(), error = %e,
                "cannot write the outbox journal; retries go on in memory");
        }
        self.lines += 1;
    }
}

impl Outbox {
    /// The outbox of the client whose receipts are in `store`: what its journal names that the
    /// store holds countersigned by `client` (the rest is skipped), due at once.
    fn open(store: &ReceiptStore, client: &agora_protocols::PublicKey, max_len: usize) -> Outbox {
        let path = Journal::path_for(store);
        let mut pending: Vec<ContentId> = Vec::new();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_JOURNAL_LEN => {
                tracing::warn!(journal = %path.display(), "outbox journal too large: ignored");
            }
            Ok(_) => match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let mut live: Vec<ContentId> = Vec::new();
                    for line in text.lines() {
                        let (sign, hex) = line.split_at_checked(1).unwrap_or(("", ""));
                        let Ok(id) = ContentId::from_hex(hex) else {
                            continue;
                        };
                        match sign {
                            "+" if !live.contains(&id) => live.push(id),
                            "-" => live.retain(|x| *x != id),
                            _ => {}
                        }
                    }
                    pending = live;
                }
                Err(e) => {
                    tracing::warn!(journal = %path.display(), error = %e, "cannot read the outbox journal")
                }
            },
            Err(_) => {}
        }
        let now = Instant::now();
        let mut outbox = Outbox {
            entries: std::collections::HashMap::new(),
            journal: None,
            next_seq: 0,
            max_len: max_len.max(1),
        };
        for id in pending.iter().rev().take(outbox.max_len).rev() {
            let receipt = match store.get(id) {
                Ok(Some(StoredReceipt::Full(r))) if r.body().client == *client => r,
                _ => continue,
            };
            let Ok(provider) = agora_overlay::peer_id_of(&receipt.body().provider) else {
                continue;
            };
            outbox.insert(receipt, provider, now);
        }
        match Journal::rewrite(path.clone(), outbox.entries.keys()) {
            Ok(journal) => outbox.journal = Some(journal),
            Err(e) => {
                tracing::warn!(journal = %path.display(), error = %e,
                    "cannot write the outbox journal; unacknowledged countersignatures are retried only while this client runs")
            }
        }
        if !outbox.entries.is_empty() {
            tracing::info!(
                count = outbox.entries.len(),
                "countersignatures not acknowledged before the last stop: sending them again"
            );
        }
        outbox
    }

    fn insert(&mut self, receipt: Receipt, provider: PeerId, due: Instant) {
        if self.entries.len() >= self.max_len {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, o)| o.seq)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                tracing::warn!(receipt = %id.short(),
                    "outbox full: no more retries for the oldest countersignature (it stays stored)");
                self.remove(&id);
            }
        }
        self.next_seq += 1;
        self.entries.insert(
            receipt.id(),
            Outgoing {
                receipt,
                provider,
                failures: 0,
                due,
                sending: false,
                seq: self.next_seq,
            },
        );
    }

    fn remove(&mut self, id: &ContentId) {
        if self.entries.remove(id).is_some()
            && let Some(journal) = &mut self.journal
        {
            journal.append('-', id);
            if journal.lines > 2 * self.entries.len() + 1024 {
                let path = journal.path.clone();
                match Journal::rewrite(path, self.entries.keys()) {
                    Ok(j) => self.journal = Some(j),
                    Err(e) => tracing::warn!(error = %e, "cannot compact the outbox journal"),
                }
            }
        }
    }

    /// Records a countersignature about to be delivered for the first time.
    fn add(&mut self, receipt: &Receipt, provider: PeerId) {
        let id = receipt.id();
        if self.entries.contains_key(&id) {
            return;
        }
        self.insert(receipt.clone(), provider, Instant::now());
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.sending = true;
        }
        if let Some(journal) = &mut self.journal {
            journal.append('+', &id);
        }
    }

    /// Up to `max` countersignatures due for another try, marked as being sent.
    fn take_due(&mut self, now: Instant, max: usize) -> Vec<(Receipt, PeerId)> {
        let mut due: Vec<&mut Outgoing> = self
            .entries
            .values_mut()
            .filter(|o| !o.sending && o.due <= now)
            .collect();
        due.sort_by_key(|o| o.seq);
        due.into_iter()
            .take(max)
            .map(|o| {
                o.sending = true;
                (o.receipt.clone(), o.provider)
            })
            .collect()
    }

    /// What one delivery came to.
    fn finish(&mut self, id: &ContentId, outcome: Delivery, config: &ClientConfig) {
        match outcome {
            Delivery::Acknowledged | Delivery::Refused => self.remove(id),
            Delivery::Failed => {
                let Some(entry) = self.entries.get_mut(id) else {
                    return;
                };
                entry.sending = false;
                entry.failures = entry.failures.saturating_add(1);
                if entry.failures >= config.outbox_max_failures {
                    tracing::warn!(receipt = %id.short(), provider = %entry.provider,
                        "giving up delivering a countersignature (it stays stored)");
                    self.remove(id);
                    return;
                }
                let backoff = config
                    .outbox_retry_base
                    .saturating_mul(1u32 << entry.failures.saturating_sub(1).min(16))
                    .min(config.outbox_retry_max);
                entry.due = Instant::now() + backoff;
            }
        }
    }

    /// The provider is reachable again: its countersignatures are due now.
    fn hurry(&mut self, provider: &PeerId) {
        let now = Instant::now();
        for entry in self.entries.values_mut() {
            if entry.provider == *provider && !entry.sending {
                entry.due = now;
            }
        }
    }

    /// Countersignatures waiting for an acknowledgement.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How one delivery of a countersignature ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// The provider has it.
    Acknowledged,
    /// The provider refused it for a reason that will not pass (a bad receipt): no retry.
    Refused,
    /// No acknowledgement (down, unreachable, busy, timed out): try again later.
    Failed,
}

impl MarketClient {
    /// A client signing with `key` (the overlay's key too), storing receipts through `writer`.
    pub fn new(
        key: SecretKey,
        overlay: agora_overlay::Client,
        store: ReceiptStore,
        writer: ReceiptWriter,
        config: ClientConfig,
    ) -> Self {
        // Nonces start at the clock in microseconds, so they keep increasing across restarts
        // without being stored: the providers' replay windows need nothing more.
        let first_nonce = now_ms().saturating_mul(1000);
        let outbox = Outbox::open(&store, &key.public(), config.max_outbox);
        let client = Self {
            inner: Arc::new(Inner {
                key,
                overlay,
                store,
                writer,
                policy: Mutex::new(ProviderPolicy::new(config.policy.clone())),
                next_nonce: AtomicU64::new(first_nonce),
                settlements: Arc::new(tokio::sync::Semaphore::new(
                    config.max_pending_settlements.max(1),
                )),
                unacknowledged: AtomicU64::new(0),
                outbox: Mutex::new(outbox),
                config,
                metrics: std::sync::OnceLock::new(),
            }),
        };
        // Retries need a runtime; a client made outside one only delivers once (as `new` is
        // always called inside one by the node, this is for completeness).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(Self::retry_outbox(Arc::downgrade(&client.inner)));
        }
        client
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.inner
            .outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Countersignatures not yet acknowledged by their provider (being retried).
    pub fn outbox_len(&self) -> usize {
        self.outbox().len()
    }

    /// Tries every unacknowledged countersignature now and keeps trying (at the outbox's pace)
    /// until none is left or `limit` has passed; returns how many are left. Call it before
    /// exiting, after [`Self::flush_settlements`], to give restarting providers a chance.
    pub async fn drain_outbox(&self, limit: Duration) -> usize {
        let end = Instant::now() + limit;
        {
            let mut outbox = self.outbox();
            let now = Instant::now();
            for entry in outbox.entries.values_mut() {
                if !entry.sending {
                    entry.due = now;
                }
            }
        }
        loop {
            let left = self.outbox_len();
            if left == 0 || Instant::now() >= end {
                return left;
            }
            tokio::time::sleep(OUTBOX_TICK.min(end.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// The outbox's loop: every [`OUTBOX_TICK`], the countersignatures due are sent again (as
    /// many at once as the settlement bound allows). Ends when the client is dropped.
    async fn retry_outbox(inner: std::sync::Weak<Inner>) {
        let mut tick = tokio::time::interval(OUTBOX_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let client = MarketClient { inner };
            let max = client.inner.config.max_pending_settlements.max(1);
            let due = client.outbox().take_due(Instant::now(), max);
            for (receipt, provider) in due {
                let Ok(permit) = Arc::clone(&client.inner.settlements).acquire_owned().await else {
                    return;
                };
                let client = client.clone();
                tokio::spawn(async move {
                    let id = receipt.id();
                    let outcome = client.deliver(provider, receipt).await;
                    if outcome == Delivery::Acknowledged {
                        tracing::info!(receipt = %id.short(), %provider,
                            "a countersignature sent again was acknowledged");
                    }
                    client.outbox().finish(&id, outcome, &client.inner.config);
                    drop(permit);
                });
            }
        }
    }

    /// One delivery of a countersignature to its provider.
    async fn deliver(&self, provider: PeerId, receipt: Receipt) -> Delivery {
        let sent = tokio::time::timeout(
            self.inner.config.settle_timeout,
            self.inner.overlay.settle(provider, receipt),
        )
        .await;
        match sent {
            Ok(Ok(_)) => Delivery::Acknowledged,
            Ok(Err(OverlayError::Refused(e)))
                if !matches!(
                    e.kind,
                    QueryErrorKind::Busy | QueryErrorKind::RateLimited | QueryErrorKind::Internal
                ) =>
            {
                tracing::warn!(%provider, reason = %e.message,
                    "the provider refused our countersignature");
                Delivery::Refused
            }
            _ => Delivery::Failed,
        }
    }

    /// Counts every attempt into `metrics` (and its recent-queries ring) from now on. The first
    /// call wins.
    pub fn set_metrics(&self, metrics: Metrics) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// Counts one attempt at `peer` (`None`: nobody could be asked).
    fn count_attempt(
        &self,
        task: Task,
        model: &str,
        peer: Option<PeerId>,
        result: &'static str,
        round_trip: Option<Duration>,
        price: u64,
    ) {
        let Some(metrics) = self.inner.metrics.get() else {
            return;
        };
        let record = QueryRecord::now(
            "out",
            task,
            model,
            peer.map(|p| p.to_string()).unwrap_or_default(),
            result,
            round_trip.unwrap_or_default(),
            price,
        );
        metrics.query_sent(record, round_trip);
    }

    /// The overlay handle.
    pub fn overlay(&self) -> &agora_overlay::Client {
        &self.inner.overlay
    }

    /// The receipt store.
    pub fn store(&self) -> &ReceiptStore {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sets the consensus reputation the policy weighs (see [`ProviderPolicy::set_reputation`]).
    pub fn set_reputation(&self, reputation: impl IntoIterator<Item = (PeerId, f64)>) {
        let reputation: Vec<(PeerId, f64)> = reputation.into_iter().collect();
        // The same reputation weighs in gossip: the overlay makes it the peers' application score.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (overlay, scores) = (self.inner.overlay.clone(), reputation.clone());
            runtime.spawn(async move { overlay.set_reputation(scores).await });
        }
        self.policy().set_reputation(reputation);
    }

    /// What this client has seen of each provider.
    pub fn standings(&self) -> Vec<Standing> {
        self.policy().standings(Instant::now())
    }

    /// Embeds texts with `model`.
    pub async fn embed(
        &self,
        model: &str,
        input: &EmbedInput,
    ) -> Result<Settled<EmbedOutput>, MarketError> {
        self.embed_avoiding(model, input, HashSet::new(), None)
            .await
    }

    /// Embeds texts with `model` at `peer` only: no policy choice and no failover. Validators use
    /// it to challenge one given miner, whose answer (or silence) is what they score.
    pub async fn embed_at(
        &self,
        peer: PeerId,
        model: &str,
        input: &EmbedInput,
    ) -> Result<Settled<EmbedOutput>, MarketError> {
        self.embed_avoiding(model, input, HashSet::new(), Some(peer))
            .await
    }

    async fn embed_avoiding(
        &self,
        model: &str,
        input: &EmbedInput,
        avoid: HashSet<PeerId>,
        only: Option<PeerId>,
    ) -> Result<Settled<EmbedOutput>, MarketError> {
        let texts = input.texts.len();
        let check = move |out: &EmbedOutput| {
            (out.vectors.len() == texts)
                .then_some(())
                .ok_or_else(|| format!("{} vectors for {texts} texts", out.vectors.len()))
        };
        self.query(Task::Embed, model, input, check, avoid, only)
            .await
    }

    /// Continues a chat with `model`.
    pub async fn generate(
        &self,
        model: &str,
        input: &GenerateInput,
    ) -> Result<Settled<GenerateOutput>, MarketError> {
        self.generate_avoiding(model, input, HashSet::new(), None)
            .await
    }

    /// Continues a chat with `model` at `peer` only: no policy choice and no failover (see
    /// [`Self::embed_at`]).
    pub async fn generate_at(
        &self,
        peer: PeerId,
        model: &str,
        input: &GenerateInput,
    ) -> Result<Settled<GenerateOutput>, MarketError> {
        self.generate_avoiding(model, input, HashSet::new(), Some(peer))
            .await
    }

    async fn generate_avoiding(
        &self,
        model: &str,
        input: &GenerateInput,
        avoid: HashSet<PeerId>,
        only: Option<PeerId>,
    ) -> Result<Settled<GenerateOutput>, MarketError> {
        let max_tokens = input.max_tokens as usize;
        let check = move |out: &GenerateOutput| {
            (out.token_ids.len() <= max_tokens)
                .then_some(())
                .ok_or_else(|| format!("{} tokens for at most {max_tokens}", out.token_ids.len()))
        };
        self.query(Task::Generate, model, input, check, avoid, only)
            .await
    }

    /// Sends one embedding query to `k` providers at once, pays each, and compares their vectors.
    pub async fn embed_redundant(
        &self,
        model: &str,
        input: &EmbedInput,
        k: usize,
    ) -> Result<Redundant<EmbedOutput>, MarketError> {
        let (answers, failures) = self
            .redundant(Task::Embed, model, k, |client, avoid| {
                let input = input.clone();
                let model = model.to_string();
                async move { client.embed_avoiding(&model, &input, avoid, None).await }
            })
            .await?;
        let agreement = compare_embeddings(&answers);
        Ok(Redundant {
            answers,
            failures,
            agreement,
        })
    }

    /// Sends one generation query to `k` providers at once, pays each, and compares their tokens.
    pub async fn generate_redundant(
        &self,
        model: &str,
        input: &GenerateInput,
        k: usize,
    ) -> Result<Redundant<GenerateOutput>, MarketError> {
        let (answers, failures) = self
            .redundant(Task::Generate, model, k, |client, avoid| {
                let input = input.clone();
                let model = model.to_string();
                async move { client.generate_avoiding(&model, &input, avoid, None).await }
            })
            .await?;
        let agreement = compare_generations(&answers);
        Ok(Redundant {
            answers,
            failures,
            agreement,
        })
    }

    /// Runs `k` copies of a query on the `k` best providers, one each: copy `i` starts with every other
    /// chosen provider excluded, so it goes to provider `i` first and fails over to the rest.
    async fn redundant<T, F, Fut>(
        &self,
        task: Task,
        model: &str,
        k: usize,
        run: F,
    ) -> Result<(Vec<T>, Vec<MarketError>), MarketError>
    where
        F: Fn(MarketClient, HashSet<PeerId>) -> Fut,
        Fut: std::future::Future<Output = Result<T, MarketError>> + Send + 'static,
        T: Send + 'static,
    {
        let chosen: Vec<PeerId> = self
            .ranked_providers(task, model)
            .await?
            .into_iter()
            .take(k.max(1))
            .map(|c| c.peer)
            .collect();
        let mut handles = Vec::new();
        for peer in &chosen {
            let avoid = chosen.iter().filter(|p| *p != peer).copied().collect();
            handles.push(tokio::spawn(run(self.clone(), avoid)));
        }
        let mut answers = Vec::new();
        let mut failures = Vec::new();
        for handle in handles {
            match handle.await {
                Ok(Ok(answer)) => answers.push(answer),
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(MarketError::Sign(format!("query task failed: {e}"))),
            }
        }
        if answers.is_empty()
            && let Some(e) = failures.pop()
        {
            return Err(e);
        }
        Ok((answers, failures))
    }

    /// Models on offer on our subnet, from the provider table.
    pub async fn models(&self) -> Result<Vec<ModelListing>, MarketError> {
        let rows = self.inner.overlay.providers(None, None).await?;
        let mut models: BTreeMap<(String, String), ModelListing> = BTreeMap::new();
        for row in rows
            .into_iter()
            .filter(|r| r.subnet == self.inner.config.subnet)
        {
            let Ok(task) = row.task.parse::<Task>() else {
                continue;
            };
            let entry = models
                .entry((row.model.clone(), row.task.clone()))
                .or_insert(ModelListing {
                    model: row.model.clone(),
                    task,
                    providers: 0,
                    min_price: u64::MAX,
                });
            entry.providers += 1;
            entry.min_price = entry.min_price.min(row.price);
        }
        Ok(models.into_values().collect())
    }

    /// Providers of the model, best first by policy.
    pub async fn ranked_providers(
        &self,
        task: Task,
        model: &str,
    ) -> Result<Vec<Candidate>, MarketError> {
        let candidates = self.candidates(task, model).await?;
        Ok(self.policy().rank(&candidates, Instant::now()))
    }

    fn policy(&self) -> std::sync::MutexGuard<'_, ProviderPolicy> {
        // A panic while holding the lock would only leave counters half-updated: keep going.
        self.inner
            .policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Providers of (subnet, task, model) we could ask, waiting for discovery if none is known yet.
    async fn candidates(&self, task: Task, model: &str) -> Result<Vec<Candidate>, MarketError> {
        let subnet = self.inner.config.subnet;
        let give_up = Instant::now() + self.inner.config.discovery_wait;
        let mut asked_dht = false;
        loop {
            let rows = self
                .inner
                .overlay
                .providers(Some(task), Some(model.to_string()))
                .await?;
            let mut found: Vec<Candidate> = rows
                .into_iter()
                .filter(|r| r.subnet == subnet && r.price <= self.inner.config.max_price)
                .filter_map(|r| {
                    Some(Candidate {
                        peer: r.peer.parse().ok()?,
                        price: r.price,
                        queue_depth: r.queue_depth,
                    })
                })
                .collect();
            if found.is_empty() && !asked_dht {
                asked_dht = true;
                // The fallback: provider records carry no price, so ask at our maximum.
                if let Ok(Ok(peers)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.inner
                        .overlay
                        .dht_providers(subnet, task, model.to_string()),
                )
                .await
                {
                    found = peers
                        .into_iter()
                        .filter(|p| *p != self.inner.overlay.peer_id())
                        .map(|peer| Candidate {
                            peer,
                            price: self.inner.config.max_price,
                            queue_depth: 0,
                        })
                        .collect();
                }
            }
            if !found.is_empty() {
                return Ok(found);
            }
            if Instant::now() >= give_up {
                return Err(MarketError::NoProvider {
                    task,
                    model: model.to_string(),
                    subnet,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Signs a request for `input`; each attempt gets its own nonce and the time left as deadline.
    fn sign_request(
        &self,
        query_id: ContentId,
        task: Task,
        model: &str,
        input: &[u8],
        deadline_ms: u64,
    ) -> Result<Signed<QueryRequest>, MarketError> {
        let nonce = self.inner.next_nonce.fetch_add(1, Ordering::Relaxed);
        let request = QueryRequest {
            query_id,
            subnet: self.inner.config.subnet,
            task,
            model: model.to_string(),
            input: input.to_vec(),
            max_price: self.inner.config.max_price,
            nonce,
            sent_at_ms: now_ms(),
            deadline_ms,
        };
        Signed::sign(request, &self.inner.key).map_err(|e| MarketError::Sign(e.to_string()))
    }

    /// One query with failover; `check` is the task's own sanity check of a decoded output.
    /// With `only`, the query goes to that provider alone (directly, whatever the mode) and
    /// nowhere else.
    async fn query<I: Payload, O: Payload>(
        &self,
        task: Task,
        model: &str,
        input: &I,
        check: impl Fn(&O) -> Result<(), String>,
        avoid: HashSet<PeerId>,
        only: Option<PeerId>,
    ) -> Result<Settled<O>, MarketError> {
        let started = Instant::now();
        let input = input.to_bytes()?;
        let deadline = started + self.inner.config.deadline;
        let deadline_ms = now_ms().saturating_add(
            self.inner
                .config
                .deadline
                .as_millis()
                .try_into()
                .unwrap_or(0),
        );
        let query_id = ContentId::derive(
            "agora 2026-11 query id",
            &[
                self.inner.key.public().to_bytes().as_slice(),
                &self.inner.next_nonce.load(Ordering::Relaxed).to_le_bytes(),
                &ContentId::of_payload(&input).0,
            ]
            .concat(),
        );
        let mut failed: Vec<Attempt> = Vec::new();
        let mut last_refusal = None;
        let mut tried = avoid;
        let mut asked_anyone = false;

        while failed.len() < self.inner.config.max_attempts {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let request = self.sign_request(query_id, task, model, &input, deadline_ms)?;
            let mut attempt_started = Instant::now();
            let outcome = match (self.inner.config.mode, only) {
                (Mode::Direct, _) | (Mode::Open, Some(_)) => {
                    let peer = match only {
                        Some(peer) if !tried.contains(&peer) => peer,
                        Some(_) => break,
                        None => {
                            let ranked = match self.ranked_providers(task, model).await {
                                Ok(ranked) => ranked,
                                Err(e) => {
                                    if matches!(e, MarketError::NoProvider { .. }) {
                                        self.count_attempt(
                                            task,
                                            model,
                                            None,
                                            "no_provider",
                                            None,
                                            0,
                                        );
                                    }
                                    return Err(e);
                                }
                            };
                            let Some(choice) =
                                ranked.into_iter().find(|c| !tried.contains(&c.peer))
                            else {
                                break;
                            };
                            choice.peer
                        }
                    };
                    tried.insert(peer);
                    asked_anyone = true;
                    self.policy().started(peer, Instant::now());
                    attempt_started = Instant::now();
                    let result =
                        tokio::time::timeout(left, self.inner.overlay.query(peer, request)).await;
                    (peer, result)
                }
                (Mode::Open, None) => {
                    let announcement = self.announce(&request)?;
                    match tokio::time::timeout(
                        left,
                        self.inner.overlay.open_query(announcement, request),
                    )
                    .await
                    {
                        Ok(Ok((peer, answer))) => {
                            self.policy().started(peer, Instant::now());
                            tried.insert(peer);
                            (peer, Ok(Ok(answer)))
                        }
                        Ok(Err(e)) => {
                            let result = match &e {
                                OverlayError::NoOffers(_) => "no_provider",
                                OverlayError::Refused(q) => error_kind_label(q.kind),
                                _ => "unreachable",
                            };
                            self.count_attempt(task, model, None, result, None, 0);
                            failed.push(Attempt {
                                provider: self.inner.overlay.peer_id(),
                                error: e.to_string(),
                            });
                            continue;
                        }
                        Err(_) => break,
                    }
                }
            };
            let (peer, result) = outcome;
            let answer = match result {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    let result = match &e {
                        OverlayError::Refused(q) => error_kind_label(q.kind),
                        OverlayError::BadAnswer { .. } => "bad_answer",
                        _ => "unreachable",
                    };
                    self.count_attempt(task, model, Some(peer), result, None, 0);
                    let failure = match &e {
                        OverlayError::Refused(q) => {
                            last_refusal = Some(q.clone());
                            match q.kind {
                                QueryErrorKind::Busy | QueryErrorKind::RateLimited => Failure::Busy,
                                _ => Failure::Fault,
                            }
                        }
                        _ => Failure::Fault,
                    };
                    self.policy().failed(peer, failure, Instant::now());
                    failed.push(Attempt {
                        provider: peer,
                        error: e.to_string(),
                    });
                    continue;
                }
                Err(_) => {
                    self.count_attempt(task, model, Some(peer), "timeout", None, 0);
                    self.policy().failed(peer, Failure::Fault, Instant::now());
                    failed.push(Attempt {
                        provider: peer,
                        error: "no answer before the deadline".to_string(),
                    });
                    break;
                }
            };
            let output = match O::from_bytes(&answer.output)
                .map_err(|e| e.to_string())
                .and_then(|o| check(&o).map(|()| o))
            {
                Ok(output) => output,
                Err(e) => {
                    self.count_attempt(task, model, Some(peer), "bad_answer", None, 0);
                    self.policy().failed(peer, Failure::Fault, Instant::now());
                    failed.push(Attempt {
                        provider: peer,
                        error: format!("unusable answer: {e}"),
                    });
                    continue;
                }
            };
            let latency = started.elapsed();
            let round_trip = attempt_started.elapsed();
            self.policy().succeeded(peer, latency, Instant::now());
            let receipt = answer
                .receipt
                .countersign(&self.inner.key)
                .map_err(|e| MarketError::Sign(e.to_string()))?;
            // Durable on our side before the provider hears the countersignature.
            self.inner
                .writer
                .commit(Entry::Full(receipt.clone()))
                .await?;
            let price = receipt.body().price;
            self.count_attempt(task, model, Some(peer), "ok", Some(round_trip), price);
            if let Some(metrics) = self.inner.metrics.get() {
                metrics.receipt_stored("client", price);
            }
            self.settle_in_background(peer, receipt.clone()).await;
            return Ok(Settled {
                output,
                provider: peer,
                receipt,
                latency,
                failed_attempts: failed,
            });
        }
        if failed.is_empty() {
            if !asked_anyone && self.inner.config.mode == Mode::Direct {
                self.count_attempt(task, model, None, "no_provider", None, 0);
                return Err(MarketError::NoProvider {
                    task,
                    model: model.to_string(),
                    subnet: self.inner.config.subnet,
                });
            }
            return Err(MarketError::Timeout(self.inner.config.deadline));
        }
        Err(MarketError::AllFailed {
            attempts: failed,
            last_refusal,
        })
    }

    /// Sends the countersignature to the provider without holding up the answer: our copy is
    /// already durable, and the provider's acknowledgement tells the client nothing it needs to use
    /// the answer. Deliveries in flight are bounded; [`Self::flush_settlements`] waits for them.
    async fn settle_in_background(&self, peer: PeerId, receipt: Receipt) {
        {
            let mut outbox = self.outbox();
            // It answered us just now: whatever else it owes an acknowledgement for can go too.
            outbox.hurry(&peer);
            outbox.add(&receipt, peer);
        }
        let permit = match Arc::clone(&self.inner.settlements).acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return,
        };
        let client = self.clone();
        tokio::spawn(async move {
            let id = receipt.id();
            let outcome = client.deliver(peer, receipt).await;
            if outcome != Delivery::Acknowledged {
                client.inner.unacknowledged.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(provider = %peer, receipt = %id.short(),
                    "the provider did not acknowledge our countersignature; it stays in the outbox");
            }
            client.outbox().finish(&id, outcome, &client.inner.config);
            drop(permit);
        });
    }

    /// Waits until every countersignature sent so far has been acknowledged or has timed out (at
    /// most `limit`); returns how many first deliveries were not acknowledged since this client
    /// started (those wait in the outbox: [`Self::outbox_len`], [`Self::drain_outbox`]). Call it
    /// before exiting.
    pub async fn flush_settlements(&self, limit: Duration) -> u64 {
        let all =
            u32::try_from(self.inner.config.max_pending_settlements.max(1)).unwrap_or(u32::MAX);
        if let Ok(Ok(permits)) = tokio::time::timeout(
            limit,
            Arc::clone(&self.inner.settlements).acquire_many_owned(all),
        )
        .await
        {
            drop(permits);
        }
        self.inner.unacknowledged.load(Ordering::Relaxed)
    }

    fn announce(
        &self,
        request: &Signed<QueryRequest>,
    ) -> Result<Signed<QueryAnnouncement>, MarketError> {
        let q = request.value();
        let announcement = QueryAnnouncement {
            query_id: q.query_id,
            subnet: q.subnet,
            task: q.task,
            model: q.model.clone(),
            input_hash: ContentId::of_payload(&q.input),
            input_len: u32::try_from(q.input.len()).unwrap_or(u32::MAX),
            max_price: q.max_price,
            deadline_ms: q.deadline_ms,
        };
        Signed::sign(announcement, &self.inner.key).map_err(|e| MarketError::Sign(e.to_string()))
    }
}

fn compare_embeddings(answers: &[Settled<EmbedOutput>]) -> Agreement {
    if answers.len() < 2 {
        return Agreement::Single;
    }
    let mut min = 1.0f32;
    for (i, a) in answers.iter().enumerate() {
        for b in &answers[i + 1..] {
            if a.output.vectors.len() != b.output.vectors.len() {
                min = min.min(0.0);
                continue;
            }
            for (x, y) in a.output.vectors.iter().zip(&b.output.vectors) {
                min = min.min(agora_protocols::task::cosine(x, y));
            }
        }
    }
    Agreement::Cosine {
        min,
        agree: min >= EMBED_AGREEMENT,
    }
}

fn compare_generations(answers: &[Settled<GenerateOutput>]) -> Agreement {
    let Some(first) = answers.first() else {
        return Agreement::Single;
    };
    if answers.len() < 2 {
        return Agreement::Single;
    }
    Agreement::Tokens {
        matching: answers
            .iter()
            .filter(|a| a.output.token_ids == first.output.token_ids)
            .count(),
        of: answers.len(),
    }
}
