//! The marketplace's Prometheus metrics, and the short history the status page draws.
//!
//! One [`Metrics`] per process, registered once with [`Metrics::register`] into the same registry
//! (prefix `agora`) that the overlay and libp2p record into; its handles are cheap clones, held by
//! whoever counts (the provider, the client, the model runner, the validator). An unregistered
//! [`Metrics::default`] counts into nothing, so library users and tests need not care.
//!
//! Labels take values from small fixed sets (a task, a result kind, a model this build serves, a
//! side), never a peer id, so the number of series stays bounded. Every name is documented in
//! `docs/metrics.md`.
//!
//! Besides the counters, [`Metrics::activity`] keeps a bounded ring of the last queries (in and out)
//! and a bounded series of earnings and spending over time: the status page's recent-queries table
//! and its charts.

use agora_protocols::Task;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use agora_overlay::metrics::error_kind_label;

/// Queries kept for the status page's recent-queries table.
pub const RECENT_QUERIES: usize = 200;
/// Points kept of the earnings series (one per [`SERIES_INTERVAL`]: an hour).
pub const SERIES_POINTS: usize = 720;
/// How often the earnings series takes a point.
pub const SERIES_INTERVAL: Duration = Duration::from_secs(5);

/// Latency buckets, in seconds: from a fast embedding on a GPU to a long generation on a CPU.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Batch size buckets (texts per encoder call; the embedder batches at most 64).
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// `task`, `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    task: &'static str,
    result: &'static str,
}

/// `task`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: &'static str,
}

/// `model` (one this build serves: a fixed list).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

/// `side`: provider or client.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    side: &'static str,
}

/// `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `step` of weight publication.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

/// `version`, `role`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    role: &'static str,
}

type LatencyFamily = Family<TaskLabels, Histogram, fn() -> Histogram>;

/// The marketplace's metric handles. Clones share the same series.
#[derive(Debug, Clone)]
pub struct Metrics {
    queries_received: Family<QueryLabels, Counter>,
    queries_sent: Family<QueryLabels, Counter>,
    service_seconds: LatencyFamily,
    round_trip_seconds: LatencyFamily,
    embed_batch_size: Histogram,
    model_queue_depth: Family<ModelLabels, Gauge>,
    queries_in_flight: Gauge,
    receipts_stored: Family<SideLabels, Counter>,
    receipts_settled: Family<ResultLabels, Counter>,
    earned_units: Counter,
    spent_units: Counter,
    ledger_height: Gauge,
    ledger_epoch: Gauge,
    challenges: Family<ResultLabels, Counter>,
    weights: Family<StepLabels, Counter>,
    anchor_last_epoch: Gauge,
    anchor_pending: Gauge,
    build_info: Family<BuildLabels, Gauge>,
    activity: Arc<Activity>,
}

impl Default for Metrics {
    /// Handles registered nowhere: they count, but nothing exposes them.
    fn default() -> Self {
        Self {
            queries_received: Family::default(),
            queries_sent: Family::default(),
            service_seconds: Family::new_with_constructor(latency_histogram),
            round_trip_seconds: Family::new_with_constructor(latency_histogram),
            embed_batch_size: Histogram::new(BATCH_BUCKETS),
            model_queue_depth: Family::default(),
            queries_in_flight: Gauge::default(),
            receipts_stored: Family::default(),
            receipts_settled: Family::default(),
            earned_units: Counter::default(),
            spent_units: Counter::default(),
            ledger_height: Gauge::default(),
            ledger_epoch: Gauge::default(),
            challenges: Family::default(),
            weights: Family::default(),
            anchor_last_epoch: Gauge::default(),
            anchor_pending: Gauge::default(),
            build_info: Family::default(),
            activity: Arc::new(Activity::default()),
        }
    }
}

impl Metrics {
    /// Creates the handles and registers them in `registry` (prefix `agora`). `role` is the
    /// command (node, serve, validate, gateway), shown in `agora_build_info`.
    pub fn register(registry: &mut Registry, role: &'static str) -> Self {
        let m = Self::default();
        registry.register(
            "queries_received",
            "Queries this provider decided, by task and result (ok, or the refusal kind: busy, rate_limited, over_budget, bad_signature, expired, replay, unknown_model, bad_input, internal)",
            m.queries_received.clone(),
        );
        registry.register(
            "queries_sent",
            "Query attempts this client made to a provider, by task and result (ok, a refusal kind, timeout, unreachable, bad_answer, no_provider)",
            m.queries_sent.clone(),
        );
        registry.register(
            "query_service_seconds",
            "Provider side: time from admitting a query to having its answer signed and its receipt stored, by task",
            m.service_seconds.clone(),
        );
        registry.register(
            "query_round_trip_seconds",
            "Client side: time from sending a query to a provider to holding its verified answer, by task",
            m.round_trip_seconds.clone(),
        );
        registry.register(
            "embed_batch_size",
            "Texts per call of the embedding model (concurrent queries share batches)",
            m.embed_batch_size.clone(),
        );
        registry.register(
            "model_queue_depth",
            "Requests waiting in a model's queue (texts for embedding, chats for generation), by model",
            m.model_queue_depth.clone(),
        );
        registry.register(
            "queries_in_flight",
            "Queries admitted by this provider and not answered yet",
            m.queries_in_flight.clone(),
        );
        registry.register(
            "receipts_stored",
            "Receipts committed to the local store, by side (provider: its signed half, before answering; client: the countersigned receipt)",
            m.receipts_stored.clone(),
        );
        registry.register(
            "receipts_settled",
            "Countersigned receipts received by this provider, by result (new, again)",
            m.receipts_settled.clone(),
        );
        registry.register(
            "earned_units",
            "Units (1e-9 token) earned by this provider: the price of every answer whose receipt it stored",
            m.earned_units.clone(),
        );
        registry.register(
            "spent_units",
            "Units (1e-9 token) this client owes for answers it accepted and countersigned",
            m.spent_units.clone(),
        );
        registry.register(
            "ledger_height",
            "Height of the last ledger block this node applied",
            m.ledger_height.clone(),
        );
        registry.register(
            "ledger_epoch",
            "Epoch of the node's subnet at the last ledger block it applied",
            m.ledger_epoch.clone(),
        );
        registry.register(
            "validator_challenges",
            "Challenges this validator sent to miners, by result (answered, missed)",
            m.challenges.clone(),
        );
        registry.register(
            "validator_weights",
            "Weight transactions this validator wrote to the ledger, by step (commit, reveal, set, refused)",
            m.weights.clone(),
        );
        registry.register(
            "anchor_last_epoch",
            "Last epoch this miner settled into an anchor record (journaled; with a chain also queued for it); 0 before the first",
            m.anchor_last_epoch.clone(),
        );
        registry.register(
            "anchor_pending",
            "Anchor records settled but not yet final on the chain (waiting in the outbox); 0 without a chain",
            m.anchor_pending.clone(),
        );
        registry.register(
            "build_info",
            "Always 1; the labels say which version runs and in which role",
            m.build_info.clone(),
        );
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                role,
            })
            .set(1);
        for task in [Task::Embed, Task::Generate] {
            let task = TaskLabels {
                task: task.as_str(),
            };
            // Histograms with no observation yet still show, so dashboards have their series.
            let _ = m.service_seconds.get_or_create(&task);
            let _ = m.round_trip_seconds.get_or_create(&task);
            let ok = QueryLabels {
                task: task.task,
                result: "ok",
            };
            let _ = m.queries_received.get_or_create(&ok);
            let _ = m.queries_sent.get_or_create(&ok);
        }
        for side in ["provider", "client"] {
            let _ = m.receipts_stored.get_or_create(&SideLabels { side });
        }
        m
    }

    /// The recent-queries ring and the earnings series.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Provider side: a query was decided (`result` is `ok` or an [`error_kind_label`]).
    pub fn query_received(&self, record: QueryRecord, service: Option<Duration>) {
        let task = task_label(&record.task);
        self.queries_received
            .get_or_create(&QueryLabels {
                task,
                result: record.result,
            })
            .inc();
        if let Some(d) = service {
            self.service_seconds
                .get_or_create(&TaskLabels { task })
                .observe(d.as_secs_f64());
        }
        self.activity.push(record);
    }

    /// Client side: one attempt at a provider ended (`result` is `ok`, an [`error_kind_label`],
    /// `timeout`, `unreachable`, `bad_answer` or `no_provider`).
    pub fn query_sent(&self, record: QueryRecord, round_trip: Option<Duration>) {
        let task = task_label(&record.task);
        self.queries_sent
            .get_or_create(&QueryLabels {
                task,
                result: record.result,
            })
            .inc();
        if let Some(d) = round_trip {
            self.round_trip_seconds
                .get_or_create(&TaskLabels { task })
                .observe(d.as_secs_f64());
        }
        self.activity.push(record);
    }

    /// One call of the embedding model took `texts` texts.
    pub fn embed_batch(&self, texts: usize) {
        self.embed_batch_size.observe(texts as f64);
    }

    /// `model`'s queue holds `depth` requests.
    pub fn set_queue_depth(&self, model: &str, depth: usize) {
        self.model_queue_depth
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// `n` queries are being run by this provider.
    pub fn set_in_flight(&self, n: u64) {
        self.queries_in_flight
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A receipt was committed on `side` (`provider` or `client`), worth `price` units: earned on
    /// the provider's side, spent on the client's.
    pub fn receipt_stored(&self, side: &'static str, price: u64) {
        self.receipts_stored
            .get_or_create(&SideLabels { side })
            .inc();
        match side {
            "provider" => {
                self.earned_units.inc_by(price);
                self.activity.add_earned(price);
            }
            _ => {
                self.spent_units.inc_by(price);
                self.activity.add_spent(price);
            }
        }
    }

    /// A countersigned receipt arrived (`new`: first time).
    pub fn receipt_settled(&self, new: bool) {
        let result = if new { "new" } else { "again" };
        self.receipts_settled
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The ledger as last applied: its height and the subnet's epoch there.
    pub fn set_ledger(&self, height: u64, epoch: u64) {
        self.ledger_height
            .set(i64::try_from(height).unwrap_or(i64::MAX));
        self.ledger_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }

    /// A miner settled `last_epoch` into an anchor record; `pending` anchors wait in the chain
    /// outbox for finality.
    pub fn set_anchors(&self, last_epoch: u64, pending: u64) {
        self.anchor_last_epoch
            .set(i64::try_from(last_epoch).unwrap_or(i64::MAX));
        self.anchor_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// A validator's challenge was answered or missed.
    pub fn challenge(&self, answered: bool) {
        let result = if answered { "answered" } else { "missed" };
        self.challenges
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// A validator wrote weights (`commit`, `reveal`, `set`) or saw them `refused`.
    pub fn weights_written(&self, step: &'static str) {
        self.weights.get_or_create(&StepLabels { step }).inc();
    }
}

fn task_label(task: &str) -> &'static str {
    match task {
        "embed" => "embed",
        "generate" => "generate",
        _ => "other",
    }
}

/// One query as the status page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct QueryRecord {
    /// When it ended, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `in` (we answered) or `out` (we asked).
    pub direction: &'static str,
    /// The task.
    pub task: String,
    /// The model.
    pub model: String,
    /// The other side's peer id.
    pub peer: String,
    /// `ok` or why not (a metric result label).
    pub result: &'static str,
    /// How long it took, in milliseconds (service time in, round trip out).
    pub latency_ms: f64,
    /// Price paid or earned when `ok`, in units.
    pub price: u64,
}

impl QueryRecord {
    /// A record stamped now.
    pub fn now(
        direction: &'static str,
        task: Task,
        model: &str,
        peer: String,
        result: &'static str,
        latency: Duration,
        price: u64,
    ) -> Self {
        Self {
            at_ms: agora_overlay::now_ms(),
            direction,
            task: task.as_str().to_string(),
            model: model.chars().take(64).collect(),
            peer,
            result,
            latency_ms: latency.as_secs_f64() * 1000.0,
            price,
        }
    }
}

/// One point of the earnings series.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SeriesPoint {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Units earned since start.
    pub earned: u64,
    /// Units spent since start.
    pub spent: u64,
}

/// The recent history behind the status page: both bounded.
#[derive(Debug, Default)]
pub struct Activity {
    recent: Mutex<VecDeque<QueryRecord>>,
    series: Mutex<VecDeque<SeriesPoint>>,
    totals: Mutex<(u64, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Activity {
    fn push(&self, record: QueryRecord) {
        let mut recent = lock(&self.recent);
        if recent.len() >= RECENT_QUERIES {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    fn add_earned(&self, units: u64) {
        let mut t = lock(&self.totals);
        t.0 = t.0.saturating_add(units);
    }

    fn add_spent(&self, units: u64) {
        let mut t = lock(&self.totals);
        t.1 = t.1.saturating_add(units);
    }

    /// The last queries, oldest first.
    pub fn recent(&self) -> Vec<QueryRecord> {
        lock(&self.recent).iter().cloned().collect()
    }

    /// Units earned and spent since start.
    pub fn totals(&self) -> (u64, u64) {
        *lock(&self.totals)
    }

    /// Takes a point of the series now (the status module calls it every [`SERIES_INTERVAL`]).
    pub fn sample(&self) {
        let (earned, spent) = self.totals();
        let mut series = lock(&self.series);
        if series.len() >= SERIES_POINTS {
            series.pop_front();
        }
        series.push_back(SeriesPoint {
            at_ms: agora_overlay::now_ms(),
            earned,
            spent,
        });
    }

    /// The series, oldest first, with a last point for now.
    pub fn series(&self) -> Vec<SeriesPoint> {
        let (earned, spent) = self.totals();
        let mut points: Vec<SeriesPoint> = lock(&self.series).iter().copied().collect();
        points.push(SeriesPoint {
            at_ms: agora_overlay::now_ms(),
            earned,
            spent,
        });
        points
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counters_and_the_ring_are_bounded_and_exposed() {
        let mut registry = Registry::with_prefix("agora");
        let m = Metrics::register(&mut registry, "serve");
        for i in 0..(RECENT_QUERIES + 5) {
            let record = QueryRecord::now(
                "in",
                Task::Embed,
                "m",
                "peer".into(),
                if i % 2 == 0 { "ok" } else { "busy" },
                Duration::from_millis(3),
                10,
            );
            m.query_received(record, Some(Duration::from_millis(3)));
        }
        m.receipt_stored("provider", 10);
        assert_eq!(m.activity().recent().len(), RECENT_QUERIES);
        assert_eq!(m.activity().totals(), (10, 0));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("agora_queries_received_total{task=\"embed\",result=\"ok\"} 103"));
        assert!(text.contains("agora_earned_units_total 10"));
        assert!(text.contains("agora_query_service_seconds_count{task=\"embed\"} 205"));
    }
}
