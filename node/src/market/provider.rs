//! The provider: the loop that turns inbound queries into signed, stored, answered receipts.
//!
//! For each verified query (the overlay has checked its signature, signer and deadline):
//!
//! 1. refuse at once what cannot be served: another subnet, a model not loaded
//!    ([`QueryErrorKind::UnknownModel`]), a query id already answered, found in the receipt store
//!    (a replay, even across restarts), or in flight;
//! 2. admission ([`crate::market::admission`]): replay window, nonce, rate, price, credit;
//! 3. a seat among the model tasks in flight (bounded: [`ProviderConfig::max_in_flight`]), else
//!    [`QueryErrorKind::Busy`];
//! 4. on its own task: run the model before the deadline, sign the answer, **commit the signed half
//!    of the receipt to the store**, and only then send the answer. If the store fails, the client
//!    gets [`QueryErrorKind::Internal`] and no output: work we have no durable claim for is never
//!    handed over.
//!
//! A settlement (the client's countersigned receipt) is committed and acknowledged with whether it
//! was new. Halves never countersigned stop counting toward their client's credit once their
//! query's deadline has passed, up to one credit limit's worth
//! ([`crate::market::admission::UnsignedHalves`]). Every few seconds the provider re-advertises its models with their queue depth and
//! measured throughput.

use crate::market::admission::{Admission, AdmissionConfig, UnsignedHalves};
use crate::market::runner::ModelRunner;
use crate::metrics::{Metrics, QueryRecord, error_kind_label};
use agora_ledger::balances::Genesis;
use agora_ledger::store::{
    Entry, Inserted, ListFilter, MAX_LIST_LIMIT, ReceiptStore, ReceiptWriter, StoredReceipt,
};
use agora_overlay::{Client, Event, QueryReply, SubnetOffer};
use agora_protocols::{
    ContentId, ModelOffer, ProviderReceipt, PublicKey, QueryErrorKind, QueryRequest,
    QueryWireResponse, Receipt, SecretKey, Signed, Task,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// Longest a shutdown waits for the queries in flight to be stored and answered.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);
/// Settlements being stored at once; beyond it a settlement is refused Busy (the client retries).
const MAX_SETTLES_IN_FLIGHT: usize = 256;

/// What a provider serves and on which terms. Defaults written once in [`ProviderConfig::new`].
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The subnet served.
    pub subnet: u16,
    /// Price per query of each model, in units of 1e-9. A model without a price is not served.
    pub prices: HashMap<String, u64>,
    /// Replay window, rate limits, credit.
    pub admission: AdmissionConfig,
    /// Balances to check clients against; without it only the credit limit applies.
    pub genesis: Option<Genesis>,
    /// How often adverts are refreshed with the current queue depth and throughput.
    pub advert_interval: Duration,
    /// Most queries being run (or stored) at once.
    pub max_in_flight: usize,
}

impl ProviderConfig {
    /// Serves `subnet` at `prices`, with default admission and limits.
    pub fn new(subnet: u16, prices: HashMap<String, u64>) -> Self {
        Self {
            subnet,
            prices,
            admission: AdmissionConfig::default(),
            genesis: None,
            advert_interval: Duration::from_secs(5),
            max_in_flight: 256,
        }
    }
}

/// Why a query or settlement was refused, as counters (one per [`QueryErrorKind`]).
#[derive(Debug, Default)]
struct RefusedCounters {
    busy: AtomicU64,
    unknown_model: AtomicU64,
    over_budget: AtomicU64,
    bad_signature: AtomicU64,
    expired: AtomicU64,
    replay: AtomicU64,
    rate_limited: AtomicU64,
    bad_input: AtomicU64,
    internal: AtomicU64,
}

impl RefusedCounters {
    fn counter(&self, kind: QueryErrorKind) -> &AtomicU64 {
        match kind {
            QueryErrorKind::Busy => &self.busy,
            QueryErrorKind::UnknownModel => &self.unknown_model,
            QueryErrorKind::OverBudget => &self.over_budget,
            QueryErrorKind::BadSignature => &self.bad_signature,
            QueryErrorKind::Expired => &self.expired,
            QueryErrorKind::Replay => &self.replay,
            QueryErrorKind::RateLimited => &self.rate_limited,
            QueryErrorKind::BadInput => &self.bad_input,
            QueryErrorKind::Internal => &self.internal,
        }
    }
}

/// Live counters of a provider, for the status API and logs. Shared by [`Provider::stats`].
#[derive(Debug, Default)]
pub struct ProviderStats {
    answered: AtomicU64,
    settled_new: AtomicU64,
    settled_again: AtomicU64,
    refused: RefusedCounters,
    in_flight: AtomicU64,
}

/// A snapshot of [`ProviderStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Queries answered (each with a stored receipt half).
    pub answered: u64,
    /// Countersigned receipts stored for the first time.
    pub settled: u64,
    /// Countersigned receipts received again (already stored).
    pub settled_again: u64,
    /// Queries being run now.
    pub in_flight: u64,
    /// Refusals by kind (only kinds that happened).
    pub refused: HashMap<String, u64>,
}

impl ProviderStats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let kinds = [
            QueryErrorKind::Busy,
            QueryErrorKind::UnknownModel,
            QueryErrorKind::OverBudget,
            QueryErrorKind::BadSignature,
            QueryErrorKind::Expired,
            QueryErrorKind::Replay,
            QueryErrorKind::RateLimited,
            QueryErrorKind::BadInput,
            QueryErrorKind::Internal,
        ];
        let refused = kinds
            .iter()
            .map(|k| {
                (
                    format!("{k:?}"),
                    self.refused.counter(*k).load(Ordering::Relaxed),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        StatsSnapshot {
            answered: self.answered.load(Ordering::Relaxed),
            settled: self.settled_new.load(Ordering::Relaxed),
            settled_again: self.settled_again.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            refused,
        }
    }

    fn refused(&self, kind: QueryErrorKind) {
        self.refused.counter(kind).fetch_add(1, Ordering::Relaxed);
    }
}

/// What is owed and running now, per client: queries admitted but whose receipts are not stored yet
/// count against the client's credit as if they were, so concurrent queries cannot overdraw it.
/// A query's hold is released just after its receipt is committed, so for that instant it counts
/// twice: the error is always on the client's side of the limit, never the provider's.
#[derive(Debug, Default)]
struct InFlight {
    /// Price of the admitted, unstored queries, per client (only clients with some).
    pending: HashMap<PublicKey, u64>,
    /// (client, query id) being run, so a second copy of a running query is a replay.
    queries: HashSet<(PublicKey, ContentId)>,
}

/// Answers queries for the models of a [`ModelRunner`]. Build with [`Provider::new`], then
/// [`Provider::run`] until shutdown.
#[derive(Debug)]
pub struct Provider {
    key: SecretKey,
    client: Client,
    runner: ModelRunner,
    store: ReceiptStore,
    writer: ReceiptWriter,
    config: ProviderConfig,
    admission: Admission,
    stats: Arc<ProviderStats>,
    in_flight: Arc<Mutex<InFlight>>,
    /// Halves stored and not countersigned, for the credit check.
    halves: Arc<Mutex<UnsignedHalves>>,
    /// Answers per model since the last advert, for the measured throughput.
    answered_by_model: Arc<Mutex<HashMap<String, u64>>>,
    tasks: Arc<Semaphore>,
    settles: Arc<Semaphore>,
    metrics: Metrics,
}

/// Everything a query task needs, cloned out of the provider.
struct QueryJob {
    key: SecretKey,
    client: Client,
    runner: ModelRunner,
    writer: ReceiptWriter,
    stats: Arc<ProviderStats>,
    in_flight: Arc<Mutex<InFlight>>,
    halves: Arc<Mutex<UnsignedHalves>>,
    answered_by_model: Arc<Mutex<HashMap<String, u64>>>,
    request: Box<Signed<QueryRequest>>,
    reply: QueryReply,
    price: u64,
    metrics: Metrics,
    admitted: Instant,
}

impl Provider {
    /// A provider signing with `key`, talking through `client`, running `runner`'s models and
    /// storing receipts in `store` through `writer` (the same store).
    pub fn new(
        key: SecretKey,
        client: Client,
        runner: ModelRunner,
        store: ReceiptStore,
        writer: ReceiptWriter,
        config: ProviderConfig,
    ) -> Self {
        let admission = Admission::new(config.admission.clone());
        let tasks = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        let halves = unsigned_halves(&store, &key.public(), config.admission.replay_window_ms);
        Self {
            halves: Arc::new(Mutex::new(halves)),
            key,
            client,
            runner,
            store,
            writer,
            admission,
            stats: Arc::new(ProviderStats::default()),
            in_flight: Arc::new(Mutex::new(InFlight::default())),
            answered_by_model: Arc::new(Mutex::new(HashMap::new())),
            tasks,
            settles: Arc::new(Semaphore::new(MAX_SETTLES_IN_FLIGHT)),
            config,
            metrics: Metrics::default(),
        }
    }

    /// Counts into `metrics` (and its recent-queries ring) from now on.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.runner.observe_batches(&metrics);
        self.metrics = metrics;
        self
    }

    /// Sets the queue depth gauges from the runner's queues.
    fn refresh_queue_depths(&self) {
        for (_, model) in self.runner.serves() {
            self.metrics
                .set_queue_depth(&model, self.runner.queue_depth(&model));
        }
    }

    /// The live counters (shared: they keep counting after `run` starts).
    pub fn stats(&self) -> Arc<ProviderStats> {
        Arc::clone(&self.stats)
    }

    /// The offers this provider makes now: every served model with a price, its queue depth and
    /// `per_model` answers over `interval` as throughput.
    fn offers(&self, per_model: &HashMap<String, u64>, interval: Duration) -> Vec<SubnetOffer> {
        let millis = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.runner
            .serves()
            .into_iter()
            .filter_map(|(task, model)| {
                let price = *self.config.prices.get(&model)?;
                let answered = per_model.get(&model).copied().unwrap_or(0);
                Some(SubnetOffer {
                    subnet: self.config.subnet,
                    offer: ModelOffer {
                        task,
                        price,
                        queue_depth: u32::try_from(self.runner.queue_depth(&model))
                            .unwrap_or(u32::MAX),
                        // Queries per second times 1000 = answers * 1000 * 1000 / interval in ms.
                        throughput_milli: u32::try_from(
                            answered.saturating_mul(1_000_000) / millis,
                        )
                        .unwrap_or(u32::MAX),
                        model,
                    },
                })
            })
            .collect()
    }

    /// Serves until `events` closes or `shutdown` resolves; then waits for the queries in flight to
    /// be answered (each ends by its deadline), so every receipt handed out is stored.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut advert = tokio::time::interval(self.config.advert_interval);
        advert.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_advert = Instant::now();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                event = events.recv() => match event {
                    Some(Event::InboundQuery { request, reply, .. }) => {
                        self.on_query(request, reply).await;
                    }
                    Some(Event::InboundSettle { receipt, reply, .. }) => {
                        self.on_settle(receipt, reply).await;
                    }
                    None => break,
                },
                _ = advert.tick() => {
                    let per_model = self
                        .answered_by_model
                        .lock()
                        .map(|mut m| std::mem::take(&mut *m))
                        .unwrap_or_default();
                    let offers = self.offers(&per_model, last_advert.elapsed());
                    last_advert = Instant::now();
                    if let Err(e) = self.client.set_offers(offers).await {
                        tracing::warn!(error = %e, "cannot refresh adverts");
                    }
                    tracing::info!(stats = ?self.stats.snapshot(), "provider");
                    self.refresh_queue_depths();
                }
            }
        }
        // Every permit back means every task has finished (stored its receipt and answered). The
        // wait is bounded: a query still running after it was never answered, so its client
        // owes nothing and no receipt is lost.
        let all = u32::try_from(self.config.max_in_flight.max(1)).unwrap_or(u32::MAX);
        let settles = u32::try_from(MAX_SETTLES_IN_FLIGHT).unwrap_or(u32::MAX);
        let drain = async {
            let _ = self.tasks.acquire_many(all).await;
            let _ = self.settles.acquire_many(settles).await;
        };
        if tokio::time::timeout(SHUTDOWN_DRAIN, drain).await.is_err() {
            tracing::warn!(
                in_flight = self.stats.in_flight.load(Ordering::Relaxed),
                "stopping with queries still running; they were not answered"
            );
        }
    }

    async fn refuse(&self, reply: QueryReply, kind: QueryErrorKind, message: impl Into<String>) {
        self.stats.refused(kind);
        let message = message.into();
        tracing::debug!(?kind, %message, "refused");
        let _ = self
            .client
            .respond(reply, agora_overlay::error_response(kind, message))
            .await;
    }

    /// Refuses a query, counting it under its task and the refusal's kind.
    async fn refuse_query(
        &self,
        q: &QueryRequest,
        client: &PublicKey,
        reply: QueryReply,
        kind: QueryErrorKind,
        message: impl Into<String>,
    ) {
        let record = QueryRecord::now(
            "in",
            q.task,
            &q.model,
            peer_text(client),
            error_kind_label(kind),
            Duration::ZERO,
            0,
        );
        self.metrics.query_received(record, None);
        self.refuse(reply, kind, message).await;
    }

    fn served(&self) -> String {
        self.runner
            .serves()
            .iter()
            .filter(|(_, m)| self.config.prices.contains_key(m))
            .map(|(t, m)| format!("{t} {m}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn on_query(&mut self, request: Box<Signed<QueryRequest>>, reply: QueryReply) {
        let q = request.value();
        let client = request.signer();
        if q.subnet != self.config.subnet {
            let message = format!(
                "this provider serves subnet {}, not {}",
                self.config.subnet, q.subnet
            );
            return self
                .refuse_query(q, &client, reply, QueryErrorKind::UnknownModel, message)
                .await;
        }
        let price = match self.config.prices.get(&q.model) {
            Some(price) if self.runner.serves().contains(&(q.task, q.model.clone())) => *price,
            _ => {
                let message = format!(
                    "this provider does not serve {} model {:?}; it serves {}",
                    q.task,
                    q.model,
                    self.served()
                );
                return self
                    .refuse_query(q, &client, reply, QueryErrorKind::UnknownModel, message)
                    .await;
            }
        };
        // A query already answered (its receipt half is stored) is a replay, whatever the nonce
        // window remembers: this holds across restarts.
        match self.store.contains_query(&client, &q.query_id) {
            Ok(false) => {}
            Ok(true) => {
                let message = format!("query {} was already answered", q.query_id);
                return self
                    .refuse_query(q, &client, reply, QueryErrorKind::Replay, message)
                    .await;
            }
            Err(e) => {
                tracing::error!(error = %e, "receipt store read failed");
                let message = "the provider's receipt store failed";
                return self
                    .refuse_query(q, &client, reply, QueryErrorKind::Internal, message)
                    .await;
            }
        }
        let stored_unpaid = match self.store.unpaid(&client, &self.key.public()) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "receipt store read failed");
                let message = "the provider's receipt store failed";
                return self
                    .refuse_query(q, &client, reply, QueryErrorKind::Internal, message)
                    .await;
            }
        };
        let Ok(permit) = Arc::clone(&self.tasks).try_acquire_owned() else {
            let message = format!(
                "{} queries in flight, the most this provider runs at once",
                self.config.max_in_flight
            );
            return self
                .refuse_query(q, &client, reply, QueryErrorKind::Busy, message)
                .await;
        };
        let balance = self.config.genesis.as_ref().map(|g| g.balance_of(&client));
        let decision = {
            let Ok(mut in_flight) = self.in_flight.lock() else {
                return self
                    .refuse_query(
                        q,
                        &client,
                        reply,
                        QueryErrorKind::Internal,
                        "provider state poisoned",
                    )
                    .await;
            };
            if in_flight.queries.contains(&(client, q.query_id)) {
                Err(agora_protocols::QueryError {
                    kind: QueryErrorKind::Replay,
                    message: format!("query {} is already being answered", q.query_id),
                })
            } else {
                let pending = in_flight.pending.get(&client).copied().unwrap_or(0);
                let now = agora_overlay::now_ms();
                let unpaid = self
                    .halves
                    .lock()
                    .map(|h| {
                        let cap = self.admission.config().credit_limit;
                        h.owed(&client, stored_unpaid, now, cap)
                    })
                    .unwrap_or(stored_unpaid)
                    .saturating_add(pending);
                let decision = self
                    .admission
                    .admit(&client, q, price, now, unpaid, balance);
                if decision.is_ok() {
                    *in_flight.pending.entry(client).or_insert(0) += price;
                    in_flight.queries.insert((client, q.query_id));
                }
                decision
            }
        };
        if let Err(e) = decision {
            return self
                .refuse_query(q, &client, reply, e.kind, e.message)
                .await;
        }
        let job = QueryJob {
            key: self.key.clone(),
            client: self.client.clone(),
            runner: self.runner.clone(),
            writer: self.writer.clone(),
            stats: Arc::clone(&self.stats),
            in_flight: Arc::clone(&self.in_flight),
            halves: Arc::clone(&self.halves),
            answered_by_model: Arc::clone(&self.answered_by_model),
            request,
            reply,
            price,
            metrics: self.metrics.clone(),
            admitted: Instant::now(),
        };
        let in_flight = self.stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.set_in_flight(in_flight);
        self.refresh_queue_depths();
        tokio::spawn(async move {
            job.run().await;
            drop(permit);
        });
    }

    async fn on_settle(&mut self, receipt: Box<Receipt>, reply: QueryReply) {
        let Ok(permit) = Arc::clone(&self.settles).try_acquire_owned() else {
            let message = "too many settlements being stored: send it again shortly";
            return self.refuse(reply, QueryErrorKind::Busy, message).await;
        };
        let writer = self.writer.clone();
        let client = self.client.clone();
        let stats = Arc::clone(&self.stats);
        let metrics = self.metrics.clone();
        let halves = Arc::clone(&self.halves);
        tokio::spawn(async move {
            let id = receipt.id();
            let payer = receipt.body().client;
            let response = match writer.commit(Entry::Full(*receipt)).await {
                Ok(inserted) => {
                    if let Ok(mut halves) = halves.lock() {
                        halves.countersigned(&payer, &id);
                    }
                    let new = inserted != Inserted::AlreadyPresent;
                    let counter = if new {
                        &stats.settled_new
                    } else {
                        &stats.settled_again
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    metrics.receipt_settled(new);
                    QueryWireResponse::Settled { new }
                }
                Err(e) => {
                    tracing::error!(error = %e, receipt = %id, "cannot store a countersigned receipt");
                    stats.refused(QueryErrorKind::Internal);
                    agora_overlay::error_response(
                        QueryErrorKind::Internal,
                        "the provider could not store the receipt: send it again later",
                    )
                }
            };
            let _ = client.respond(reply, response).await;
            drop(permit);
        });
    }
}

impl QueryJob {
    /// Runs the model, stores the receipt half, answers; always releases the query's credit hold.
    async fn run(self) {
        let q = self.request.value();
        let client_key = self.request.signer();
        let now = agora_overlay::now_ms();
        let deadline = Instant::now() + Duration::from_millis(q.deadline_ms.saturating_sub(now));
        // Run for this client: its queries wait in its own queue in front of the model, so a
        // client with many in flight does not hold back another's.
        let ran = self
            .runner
            .run_for(Some(client_key), q.task, &q.model, &q.input, deadline)
            .await
            .map(|ran| ran.output);
        let response = match ran {
            Err(e) => {
                self.stats.refused(e.kind());
                agora_overlay::error_response(e.kind(), e.to_string())
            }
            // The answer is worthless past the deadline and must not be charged.
            Ok(_) if agora_overlay::now_ms() > q.deadline_ms => {
                self.stats.refused(QueryErrorKind::Expired);
                agora_overlay::error_response(
                    QueryErrorKind::Expired,
                    "the deadline passed while the model ran",
                )
            }
            Ok(output) => self.store_and_answer(output).await,
        };
        let service = self.admitted.elapsed();
        let (result, price) = match &response {
            QueryWireResponse::Error(e) => (error_kind_label(e.kind), 0),
            _ => ("ok", self.price),
        };
        let record = QueryRecord::now(
            "in",
            q.task,
            &q.model,
            peer_text(&client_key),
            result,
            service,
            price,
        );
        self.metrics.query_received(record, Some(service));
        if let Ok(mut in_flight) = self.in_flight.lock() {
            if let Some(p) = in_flight.pending.get_mut(&client_key) {
                *p = p.saturating_sub(self.price);
                if *p == 0 {
                    in_flight.pending.remove(&client_key);
                }
            }
            in_flight.queries.remove(&(client_key, q.query_id));
        }
        let left = self
            .stats
            .in_flight
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        self.metrics.set_in_flight(left);
        let _ = self.client.respond(self.reply, response).await;
    }

    /// Signs the answer and commits its receipt half; the answer only if the commit succeeded.
    async fn store_and_answer(&self, output: Vec<u8>) -> QueryWireResponse {
        let q = self.request.value();
        let answer = agora_overlay::answer(&self.key, &self.request, output, self.price);
        let QueryWireResponse::Answer { receipt, .. } = &answer else {
            self.stats.refused(QueryErrorKind::Internal);
            return answer;
        };
        let half = match ProviderReceipt::from_bytes(receipt) {
            Ok(half) => half,
            Err(e) => {
                tracing::error!(error = %e, "our own receipt does not decode");
                self.stats.refused(QueryErrorKind::Internal);
                return agora_overlay::error_response(QueryErrorKind::Internal, e.to_string());
            }
        };
        let (id, client) = (half.id(), half.body().client);
        match self.writer.commit(Entry::Half(half)).await {
            Ok(_) => {
                if let Ok(mut halves) = self.halves.lock() {
                    halves.stored(client, id, self.price, q.deadline_ms);
                }
                self.stats.answered.fetch_add(1, Ordering::Relaxed);
                self.metrics.receipt_stored("provider", self.price);
                if let Ok(mut m) = self.answered_by_model.lock() {
                    *m.entry(q.model.clone()).or_insert(0) += 1;
                }
                answer
            }
            Err(e) => {
                tracing::error!(error = %e, query = %q.query_id, "cannot store a receipt half");
                self.stats.refused(QueryErrorKind::Internal);
                agora_overlay::error_response(
                    QueryErrorKind::Internal,
                    "the provider could not store its receipt, so it does not answer",
                )
            }
        }
    }
}

/// The halves in `store` that `provider` signed and no client countersigned yet (the newest
/// [`MAX_LIST_LIMIT`] unsettled rows are read), as of a start: their query's deadline was not kept,
/// so each goes stale `replay_window_ms` after it was answered (no query is admitted later than
/// that after it was sent, so no answer of it can still be on its way).
fn unsigned_halves(
    store: &ReceiptStore,
    provider: &PublicKey,
    replay_window_ms: u64,
) -> UnsignedHalves {
    let mut halves = UnsignedHalves::new();
    let filter = ListFilter {
        party: Some(*provider),
        only_unsettled: true,
        limit: MAX_LIST_LIMIT,
    };
    match store.list(&filter) {
        Ok(rows) => {
            for row in rows {
                if let StoredReceipt::Half(half) = row {
                    let body = half.body();
                    if body.provider == *provider {
                        let stale_at = body.answered_at_ms.saturating_add(replay_window_ms);
                        halves.stored(body.client, half.id(), body.price, stale_at);
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e,
            "cannot read the receipt store's unsigned halves: they all count toward credit"),
    }
    halves
}

/// A peer's id as text for the status page, from its key (the key's hex if it has no peer id).
fn peer_text(key: &PublicKey) -> String {
    agora_overlay::peer_id_of(key)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| key.to_hex())
}

/// The subnet offers of `runner`'s models at `prices`, before anything was measured (for the first
/// advert, sent as soon as the node starts).
pub fn initial_offers(
    runner: &ModelRunner,
    subnet: u16,
    prices: &HashMap<String, u64>,
) -> Vec<SubnetOffer> {
    runner
        .serves()
        .into_iter()
        .filter_map(|(task, model): (Task, String)| {
            let price = *prices.get(&model)?;
            Some(SubnetOffer {
                subnet,
                offer: ModelOffer {
                    task,
                    model,
                    price,
                    queue_depth: 0,
                    throughput_milli: 0,
                },
            })
        })
        .collect()
}
